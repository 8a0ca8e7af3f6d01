"""Request bodies of the HTTP API (responses are the records' own JSON)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from threadbox import (
    Checkpoint,
    CommittedMessage,
    DeliveryBoundary,
    DeliveryMode,
    Message,
    PendingEntry,
    RecordedEvent,
    RunRecord,
    Termination,
    ThreadSummary,
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeliverBody(_Body):
    messages: list[Message]
    mode: DeliveryMode = Field(default_factory=DeliveryMode)


class SubmitBody(_Body):
    messages: list[Message]
    mode: DeliveryMode = Field(default_factory=DeliveryMode)
    run_id: str


class EditBody(_Body):
    message: Message


class OrderBody(_Body):
    order: list[str]


class FreezeBody(_Body):
    boundary: DeliveryBoundary
    run_id: str
    expected_version: int | None = Field(default=None, ge=0)


class SuspendBody(_Body):
    reason: str = ""


class FinishBody(_Body):
    termination: Termination = Termination.NATURAL_END
    detail: str | None = None


class OutputBody(_Body):
    messages: list[Message]


class HideBody(_Body):
    reason: str = ""


# ---- responses -------------------------------------------------------------------------------


class PendingPage(BaseModel):
    entries: list[PendingEntry]
    version: int


class CommittedPage(BaseModel):
    messages: list[CommittedMessage]


class RunsPage(BaseModel):
    runs: list[RunRecord]


class CheckpointsPage(BaseModel):
    checkpoints: list[Checkpoint]


class EventsPage(BaseModel):
    events: list[RecordedEvent]


class FinishReply(BaseModel):
    expired: list[str]


class ThreadsPage(BaseModel):
    threads: list[ThreadSummary]
    next_after: str | None


class Health(BaseModel):
    status: str
    store: str
    snapshot_failures: int = 0  # snapshot writes that failed since start (commands still succeed)
    open_streams: int = 0  # event streams being served now
