"""The thread aggregate's state and its fold: ``evolve(state, event) -> state``.

The fold updates the state in place (one event costs O(size of the event), not O(size of the
thread): a 100,000-event thread folds in linear time). Decisions never mutate a state; callers
that need the old state keep a ``copy()`` (ADR 0002).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from .events import (
    AnyThreadEvent,
    CommittedMessageHidden,
    MessagesDelivered,
    PendingMessageEdited,
    PendingMessageRetracted,
    PendingMessagesExpired,
    PendingMessagesFrozen,
    PendingQueueReordered,
    RunFinished,
    RunOutputCommitted,
    RunResumed,
    RunStarted,
    RunSuspended,
    ThreadOpened,
)
from .records import PendingEntry, RunRecord, RunStatus, Termination, ThreadState
from .values import DeliveryMode, Message

# How a message id was used: ("pending", None), ("committed", seq), ("retracted", None), ...
Usage = tuple[str, int | None]


@dataclass
class Pending:
    message: Message
    mode: DeliveryMode
    revision: int
    delivered_at: datetime
    updated_at: datetime
    original: Message  # as first delivered: a repeat of it is an idempotent no-op

    @property
    def pending_id(self) -> str:
        assert self.message.id is not None
        return self.message.id


@dataclass
class Run:
    run_id: str
    status: RunStatus
    started_at: datetime
    termination: Termination | None = None
    detail: str | None = None
    finished_at: datetime | None = None
    trigger_message_ids: list[str] = field(default_factory=list)
    input_ranges: list[tuple[int, int]] = field(default_factory=list)
    output_message_ids: list[str] = field(default_factory=list)
    freeze_count: int = 0


@dataclass
class Thread:
    thread_id: str
    version: int = 0
    pending: list[Pending] = field(default_factory=list)
    used: dict[str, Usage] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    last_seq: int = 0
    runs: dict[str, Run] = field(default_factory=dict)
    open_run_id: str | None = None
    # A snapshot keeps what decisions need: every run id ever used (earlier_run_ids) and the open
    # run's status, not the runs' history; a state restored from one has runs_complete False.
    earlier_run_ids: set[str] = field(default_factory=set)
    runs_complete: bool = True

    @property
    def exists(self) -> bool:
        return self.version > 0

    def run_id_used(self, run_id: str) -> bool:
        return run_id in self.runs or run_id in self.earlier_run_ids

    @property
    def open_run(self) -> Run | None:
        return self.runs[self.open_run_id] if self.open_run_id is not None else None

    @property
    def running_run_id(self) -> str | None:
        run = self.open_run
        return run.run_id if run is not None and run.status is RunStatus.RUNNING else None

    @property
    def waiting_run_id(self) -> str | None:
        run = self.open_run
        return run.run_id if run is not None and run.status is RunStatus.WAITING else None

    def find_pending(self, pending_id: str) -> tuple[int, Pending] | None:
        for index, item in enumerate(self.pending):
            if item.pending_id == pending_id:
                return index, item
        return None

    def decision_state(self) -> tuple[object, ...]:
        """Everything a decision reads (all a snapshot keeps): equal for two states means the
        same decisions, whatever run history either holds."""
        return (
            self.version,
            self.entries(),
            self.used,
            self.hidden,
            self.last_seq,
            (self.open_run_id, self.running_run_id, self.waiting_run_id),
            set(self.runs) | self.earlier_run_ids,
        )

    def copy(self) -> Thread:
        return copy.deepcopy(self)

    def entry(self, index: int) -> PendingEntry:
        item = self.pending[index]
        return PendingEntry(
            pending_id=item.pending_id,
            thread_id=self.thread_id,
            position=index + 1,
            revision=item.revision,
            message=item.message,
            mode=item.mode,
            delivered_at=item.delivered_at,
            updated_at=item.updated_at,
        )

    def entries(self) -> list[PendingEntry]:
        return [self.entry(i) for i in range(len(self.pending))]

    def run_record(self, run: Run) -> RunRecord:
        return RunRecord(
            run_id=run.run_id,
            thread_id=self.thread_id,
            status=run.status,
            termination=run.termination,
            detail=run.detail,
            trigger_message_ids=list(run.trigger_message_ids),
            input_ranges=list(run.input_ranges),
            output_message_ids=list(run.output_message_ids),
            freeze_count=run.freeze_count,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )

    def to_state(self) -> ThreadState:
        if not self.runs_complete:
            raise ValueError("a state restored from a snapshot lacks the run history: fold the log")
        return ThreadState(
            thread_id=self.thread_id,
            version=self.version,
            pending=self.entries(),
            committed_count=self.last_seq,
            running_run_id=self.running_run_id,
            waiting_run_id=self.waiting_run_id,
            runs=[self.run_record(run) for run in self.runs.values()],
        )


def _remove_pending(state: Thread, ids: set[str], fate: str) -> None:
    state.pending = [p for p in state.pending if p.pending_id not in ids]
    for pending_id in ids:
        state.used[pending_id] = (fate, None)


def evolve(state: Thread, event: AnyThreadEvent) -> Thread:
    """Apply one event; its version must be the next one."""
    if event.version != state.version + 1:
        raise ValueError(
            f"thread {state.thread_id!r}: event version {event.version} "
            f"does not follow state version {state.version}"
        )
    state.version = event.version
    at = event.timestamp
    match event:
        case ThreadOpened():
            pass
        case MessagesDelivered(messages=delivered):
            for d in delivered:
                assert d.message.id is not None
                state.pending.append(Pending(d.message, d.mode, 1, at, at, d.message))
                state.used[d.message.id] = ("pending", None)
        case PendingMessageEdited(pending_id=pending_id, message=message, revision=revision):
            found = state.find_pending(pending_id)
            assert found is not None, f"edit of unknown pending {pending_id!r}"
            item = found[1]
            item.message, item.revision, item.updated_at = message, revision, at
        case PendingMessageRetracted(pending_id=pending_id):
            _remove_pending(state, {pending_id}, "retracted")
        case PendingQueueReordered(order=order):
            by_id = {p.pending_id: p for p in state.pending}
            state.pending = [by_id[pending_id] for pending_id in order]
        case PendingMessagesExpired(pending_ids=pending_ids):
            _remove_pending(state, set(pending_ids), "expired")
        case RunStarted(run_id=run_id):
            state.runs[run_id] = Run(run_id, RunStatus.RUNNING, at)
            state.open_run_id = run_id
        case RunResumed(run_id=run_id):
            state.runs[run_id].status = RunStatus.RUNNING
            state.open_run_id = run_id
        case RunSuspended(run_id=run_id):
            state.runs[run_id].status = RunStatus.WAITING
        case RunFinished(run_id=run_id, termination=termination, detail=detail):
            run = state.runs[run_id]
            run.status, run.termination, run.detail = RunStatus.DONE, termination, detail
            run.finished_at = at
            state.open_run_id = None
        case PendingMessagesFrozen(run_id=run_id, messages=frozen, first_seq=first, last_seq=last):
            ids = [m.message.id for m in frozen if m.message.id is not None]
            state.pending = [p for p in state.pending if p.pending_id not in set(ids)]
            for m in frozen:
                assert m.message.id is not None
                state.used[m.message.id] = ("committed", m.seq)
            state.last_seq = last
            run = state.runs[run_id]
            run.trigger_message_ids.extend(ids)
            run.input_ranges.append((first, last))
            run.freeze_count += 1
        case RunOutputCommitted(run_id=run_id, messages=outputs):
            for o in outputs:
                assert o.message.id is not None
                state.used[o.message.id] = ("committed", o.seq)
                state.runs[run_id].output_message_ids.append(o.message.id)
            state.last_seq = outputs[-1].seq
        case CommittedMessageHidden(message_id=message_id):
            state.hidden.add(message_id)
        case _:
            assert_never(event)
    return state


def fold(thread_id: str, events: list[AnyThreadEvent], state: Thread | None = None) -> Thread:
    state = state if state is not None else Thread(thread_id)
    for event in events:
        evolve(state, event)
    return state
