"""Request and response bodies of the HTTP API (records are sent as their own JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model, field_validator
from threadbox import (
    Checkpoint,
    CommittedMessage,
    DeliveryBoundary,
    DeliveryMode,
    LogItem,
    Message,
    PendingEntry,
    RunRecord,
    Termination,
    ThreadSummary,
)
from threadbox import RecordedEvent as MailboxEvent
from threadbox.domain.events import AnyThreadEvent, ThreadEvent


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
    run_id: str | None = None
    expected_version: int | None = Field(default=None, ge=0)
    rollback: bool = False


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


NEXT = "the cursor of the next page (send it back as the `after…` parameter), null on the last"


class CommittedReadPage(CommittedPage):
    next: int | None = Field(description=NEXT + ": the seq of this page's last message")


class RunsPage(BaseModel):
    runs: list[RunRecord]
    next: int | None = Field(description=NEXT + ": the runs read so far (the next `after`)")


class CheckpointsPage(BaseModel):
    checkpoints: list[Checkpoint]
    next: int | None = Field(description=NEXT + ": the version of this page's last checkpoint")


# ---- recorded events, typed -----------------------------------------------------------------
# A ``RecordedEvent`` is ``{version, type, timestamp, data}``, ``data`` being the event's payload
# without the envelope. For the OpenAPI document each event type gets a model of its own, made
# from its domain class, so ``data`` is a union discriminated by ``type`` instead of an object.

_ENVELOPE = frozenset(ThreadEvent.model_fields)


def _recorded_model(event: type[ThreadEvent]) -> type[BaseModel]:
    name = event.__name__
    strict = ConfigDict(extra="forbid", frozen=True)
    fields: dict[str, Any] = {
        field: (info.annotation, info)
        for field, info in event.model_fields.items()
        if field not in _ENVELOPE
    }
    data = create_model(f"{name}Data", __config__=strict, **fields)
    envelope: dict[str, Any] = {
        "version": (int, Field(description="the thread version this event created")),
        "type": (Literal[name], Field(description="the event type")),
        "timestamp": (datetime, Field(description="when it was recorded (UTC)")),
        "data": (data, Field(description=f"the payload of {name}")),
    }
    return create_model(name, __config__=strict, __doc__=f"A recorded {name} event.", **envelope)


EVENT_MODELS: tuple[type[BaseModel], ...] = tuple(
    _recorded_model(event) for event in get_args(AnyThreadEvent)
)


class RecordedEvent(RootModel[Any]):
    """One recorded event of a thread (``threadbox.RecordedEvent`` as JSON, typed): ``type``
    names its kind and the shape of ``data``."""

    root: Annotated[Union[EVENT_MODELS], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007


class EventsPage(BaseModel):
    events: list[RecordedEvent]
    next: int | None = Field(description=NEXT + ": the version of this page's last event")

    @field_validator("events", mode="before")
    @classmethod
    def _as_json(cls, events: Any) -> Any:
        """The mailbox's ``RecordedEvent``s are read as their JSON."""
        if isinstance(events, list):
            return [e.model_dump(mode="json") if isinstance(e, MailboxEvent) else e for e in events]
        return events


class FinishReply(BaseModel):
    expired: list[str]


class ThreadsPage(BaseModel):
    threads: list[ThreadSummary]
    next_after: str | None
    next: str | None = Field(description=NEXT + " (the same as `next_after`)")


class Health(BaseModel):
    status: str
    store: str
    writable: bool = True  # the store accepts writes now (a write probe that changes nothing)
    snapshot_failures: int = 0  # snapshot writes that failed since start (commands still succeed)
    open_streams: int = 0  # event streams being served now


class LogItemBody(BaseModel):
    """One event of the store's log at its position in commit order, with its thread."""

    position: str = Field(description="where this event is in the store's commit order")
    thread_id: str
    event: RecordedEvent

    @field_validator("event", mode="before")
    @classmethod
    def _as_json(cls, event: Any) -> Any:
        """A mailbox ``RecordedEvent`` is read as its JSON."""
        return event.model_dump(mode="json") if hasattr(event, "model_dump") else event


class LogPage(BaseModel):
    """A page of the store's log."""

    items: list[LogItemBody]
    next: str = Field(
        description="the position to read on from (the next `after`): the last item's, or "
        "the `after` sent when the page is empty. The log grows: read again later from there"
    )

    @field_validator("items", mode="before")
    @classmethod
    def _as_json(cls, items: Any) -> Any:
        """The mailbox's ``LogItem``s are read as their JSON."""
        if isinstance(items, list):
            return [i.model_dump(mode="json") if isinstance(i, LogItem) else i for i in items]
        return items
