"""What callers read back: pending entries, committed messages, runs, checkpoints, results."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from .values import DeliveryBoundary, DeliveryMode, Message


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommitKind(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class RunStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"


class Termination(StrEnum):
    NATURAL_END = "natural_end"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class PendingEntry(_Record):
    pending_id: str
    thread_id: str
    position: int
    revision: int
    message: Message
    mode: DeliveryMode
    delivered_at: datetime
    updated_at: datetime


class CommittedMessage(_Record):
    thread_id: str
    seq: int
    message: Message
    run_id: str
    kind: CommitKind
    boundary: DeliveryBoundary | None
    visible: bool
    committed_at: datetime


class FreezeResult(_Record):
    thread_id: str
    run_id: str
    boundary: DeliveryBoundary
    committed: list[CommittedMessage]
    version: int
    interrupted_run_id: str | None = None
    expired: list[str] = []


class RunRecord(_Record):
    run_id: str
    thread_id: str
    status: RunStatus
    termination: Termination | None = None
    detail: str | None = None
    trigger_message_ids: list[str] = []
    input_ranges: list[tuple[int, int]] = []
    output_message_ids: list[str] = []
    freeze_count: int = 0
    started_at: datetime
    finished_at: datetime | None = None


class Checkpoint(_Record):
    thread_id: str
    run_id: str
    kind: CommitKind
    boundary: DeliveryBoundary | None
    first_seq: int
    last_seq: int
    message_ids: list[str]
    version: int
    at: datetime


class ThreadSummary(_Record):
    """A thread as the threads view has it (SEMANTICS §6, threads)."""

    thread_id: str
    version: int
    pending_count: int
    committed_count: int
    running_run_id: str | None
    waiting_run_id: str | None
    latest_run_id: str | None
    updated_at: datetime


class ThreadState(_Record):
    thread_id: str
    version: int
    pending: list[PendingEntry]
    committed_count: int
    running_run_id: str | None
    waiting_run_id: str | None
    runs: list[RunRecord]


class RecordedEvent(_Record):
    version: int
    type: str
    timestamp: datetime
    data: dict[str, Any]
