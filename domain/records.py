"""What callers read back: pending entries, committed messages, runs, checkpoints, results."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from .values import DeliveryBoundary, DeliveryMode, Message


class _Record(BaseModel):
    """A frozen record."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CommitKind(StrEnum):
    """How a message entered the committed zone: a freeze's ``input``, or a run's ``output``."""

    INPUT = "input"
    OUTPUT = "output"


class RunStatus(StrEnum):
    """A run is ``running``, ``waiting`` (suspended) or ``done``."""

    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"


class Termination(StrEnum):
    """How a run ended."""

    NATURAL_END = "natural_end"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class PendingEntry(_Record):
    """A message in the pending zone: its position (1..n), revision (1, +1 per edit) and mode."""

    pending_id: str
    thread_id: str
    position: int
    revision: int
    message: Message
    mode: DeliveryMode
    delivered_at: datetime
    updated_at: datetime


class CommittedMessage(_Record):
    """A message of the committed zone, at its seq: the run that read (``input``) or wrote
    (``output``) it, the boundary of the freeze that committed an input, and whether it is
    visible (not hidden)."""

    thread_id: str
    seq: int
    message: Message
    run_id: str
    kind: CommitKind
    boundary: DeliveryBoundary | None
    visible: bool
    committed_at: datetime


class FreezeResult(_Record):
    """What a freeze (or submit) did: the messages it committed (``[]`` when nothing was
    selected), the thread version after it, the run it interrupted and the ids that expired
    with that run."""

    thread_id: str
    run_id: str
    boundary: DeliveryBoundary
    committed: list[CommittedMessage]
    version: int
    interrupted_run_id: str | None = None
    expired: list[str] = []
    hidden: list[str] = []


class RunRecord(_Record):
    """A run of a thread: its status, how it ended, the messages it read (by freezes, with
    their seq ranges) and wrote."""

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
    """One commit into the committed zone: a freeze (``input``, with its boundary) or a run's
    outputs (``output``), its seqs and message ids, at a thread version."""

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
    """A thread as the threads view has it (docs/semantics.md §6, threads)."""

    thread_id: str
    version: int
    pending_count: int
    committed_count: int
    running_run_id: str | None
    waiting_run_id: str | None
    latest_run_id: str | None
    updated_at: datetime


class ThreadState(_Record):
    """A thread folded from its log: version, pending zone, committed count and runs."""

    thread_id: str
    version: int
    pending: list[PendingEntry]
    committed_count: int
    running_run_id: str | None
    waiting_run_id: str | None
    runs: list[RunRecord]


class RecordedEvent(_Record):
    """One event of a thread's audit trail: its version, type, time and payload."""

    version: int
    type: str
    timestamp: datetime
    data: dict[str, Any]
