"""The thread aggregate's state and its fold: ``apply_event(state, event)``, ``fold``.

``apply_event`` updates the state in place — it is a mutation, and named so: one event costs
O(size of the event), not O(size of the thread), so a 100,000-event thread folds in linear time.
Decisions never mutate a state; callers that need the old state keep a ``copy()`` (ADR 0002).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from . import errors
from .errors import CorruptHistory
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
    ThreadEvent,
    ThreadOpened,
)
from .records import RunStatus, Termination
from .values import DeliveryMode, Message

# How a message id was used: ("pending", None), ("committed", seq), ("retracted", None), ...
Usage = tuple[str, int | None]


@dataclass
class Pending:
    """A message in the pending zone, as decisions read it."""

    pending_id: str  # its message's id
    message: Message
    mode: DeliveryMode
    revision: int
    delivered_at: datetime
    updated_at: datetime
    original: Message  # as first delivered: a repeat of it is an idempotent no-op


class PendingQueue:
    """The pending zone: its entries in queue order, indexed by pending id.

    Appending, finding and removing an entry by id cost O(1), a reorder O(size of the queue);
    only an entry's position costs a walk of the queue (``position``), and the fold never asks
    for one. It compares equal to another queue, or to a list, with the same entries in the
    same order."""

    __slots__ = ("_by_id",)

    def __init__(self, entries: Iterable[Pending] = ()) -> None:
        self._by_id: dict[str, Pending] = {p.pending_id: p for p in entries}

    def __iter__(self) -> Iterator[Pending]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PendingQueue):
            return list(self._by_id.values()) == list(other._by_id.values())
        if isinstance(other, list):
            return list(self._by_id.values()) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"PendingQueue({list(self._by_id.values())!r})"

    def get(self, pending_id: str) -> Pending | None:
        """The entry with this id, or None."""
        return self._by_id.get(pending_id)

    def ids(self) -> list[str]:
        """The entries' ids, in queue order."""
        return list(self._by_id)

    def position(self, pending_id: str) -> int | None:
        """The entry's position (1 for the head), or None; walks the queue."""
        for position, key in enumerate(self._by_id, start=1):
            if key == pending_id:
                return position
        return None

    def append(self, entry: Pending) -> None:
        """Add an entry at the end of the queue."""
        self._by_id[entry.pending_id] = entry

    def remove(self, pending_ids: Iterable[str]) -> None:
        """Take these entries out (each must be in the queue)."""
        for pending_id in pending_ids:
            del self._by_id[pending_id]

    def reorder(self, order: Sequence[str]) -> None:
        """Put the queue in this order (a permutation of its ids); ``KeyError`` for an id not
        pending, ``ValueError`` for an order that leaves one out or names one twice (an entry
        is never dropped by a reorder)."""
        by_id = self._by_id
        reordered = {pending_id: by_id[pending_id] for pending_id in order}
        if len(reordered) != len(by_id) or len(order) != len(by_id):
            raise ValueError(
                f"the order names {len(reordered)} distinct of {len(order)} ids; "
                f"the queue holds {len(by_id)}"
            )
        self._by_id = reordered


@dataclass
class Run:
    """A run of the thread: its status and what it read and wrote."""

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
    output_seqs: list[int] = field(default_factory=list)  # of output_message_ids, in order


@dataclass
class Thread:
    """Everything decisions read about one thread, folded from its events."""

    thread_id: str
    version: int = 0
    pending: PendingQueue = field(default_factory=PendingQueue)
    used: dict[str, Usage] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    last_seq: int = 0
    runs: dict[str, Run] = field(default_factory=dict)
    open_run_id: str | None = None
    # A snapshot keeps what decisions need now: the pending entries, the open run's status and the
    # counters, not the runs' history (runs_complete False) nor the ids used before (ids_complete
    # False: ``used``, ``hidden`` and ``earlier_run_ids`` hold only what was folded or learned
    # since; the store's id table holds every one, ADR 0010 and ``claims``).
    earlier_run_ids: set[str] = field(default_factory=set)
    runs_complete: bool = True
    ids_complete: bool = True
    # Runs that an interrupting freeze ended, with the run it started; a state restored from a
    # snapshot learns those of the runs a command names (``claims.run_end``).
    interrupted_by: dict[str, str] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        """Has the thread any event (it exists from its first one)?"""
        return self.version > 0

    def run_id_used(self, run_id: str) -> bool:
        """Has any run of this thread had this id (run ids are never reused)?"""
        return run_id in self.runs or run_id in self.earlier_run_ids

    @property
    def open_run(self) -> Run | None:
        """The run that is running or waiting, if any (at most one is open)."""
        return self.runs[self.open_run_id] if self.open_run_id is not None else None

    @property
    def running_run_id(self) -> str | None:
        """The open run's id while it is running."""
        run = self.open_run
        return run.run_id if run is not None and run.status is RunStatus.RUNNING else None

    @property
    def waiting_run_id(self) -> str | None:
        """The open run's id while it waits (suspended)."""
        run = self.open_run
        return run.run_id if run is not None and run.status is RunStatus.WAITING else None

    def find_pending(self, pending_id: str) -> Pending | None:
        """The pending entry with this id, or None."""
        return self.pending.get(pending_id)

    def expiring(self, run_id: str) -> list[str]:
        """Pending entries that only ``run_id`` could consume: they expire when it ends."""
        return [
            p.pending_id
            for p in self.pending
            if p.mode.target_run_id == run_id and not p.mode.fallback_to_new_run
        ]

    def open_run_outputs(self) -> list[tuple[str, int]]:
        """The open run's outputs, (message id, seq) in order (what a rollback hides)."""
        run = self.open_run
        if run is None:
            return []
        return list(zip(run.output_message_ids, run.output_seqs, strict=True))

    def not_running(self, run_id: str, detail: str) -> Exception:
        """The error for a command by ``run_id`` when it is not the run the command needs:
        ``RunInterrupted`` if another writer's interrupt ended it, else ``RunNotRunning``."""
        if run_id in self.interrupted_by:
            return errors.RunInterrupted(run_id, self.interrupted_by[run_id])
        return errors.RunNotRunning(run_id, detail)

    def decision_state(self) -> tuple[object, ...]:
        """What a snapshot keeps of what decisions read: equal for two states means the same
        decisions, whatever run history or used ids either holds (the ids a snapshot leaves out
        are the store's id table's to answer, ADR 0010)."""
        return (
            self.version,
            self.pending,
            self.last_seq,
            (self.open_run_id, self.running_run_id, self.waiting_run_id),
            self.open_run_outputs(),
        )

    def copy(self) -> Thread:
        """A deep copy: folding into it leaves this state as it is."""
        return copy.deepcopy(self)


def _take_out(state: Thread, ids: Sequence[str], event: ThreadEvent) -> None:
    """Take the entries out of the queue: O(len(ids)), whatever the queue's size."""
    try:
        state.pending.remove(ids)
    except KeyError as e:  # a stored event that names no pending entry is damage
        raise ValueError(
            f"thread {event.thread_id!r}: event version {event.version} takes {e.args[0]!r} "
            "out of the pending zone, where it is not"
        ) from None


def _remove_pending(state: Thread, ids: Sequence[str], fate: str, event: ThreadEvent) -> None:
    _take_out(state, ids, event)
    for pending_id in ids:
        state.used[pending_id] = (fate, None)


def _message_id(message: Message, event: ThreadEvent) -> str:
    if message.id is None:  # a decision assigns every id: a stored message without one is damage
        raise ValueError(
            f"thread {event.thread_id!r}: event version {event.version} holds a message "
            "without an id"
        )
    return message.id


def apply_event(state: Thread, event: AnyThreadEvent) -> None:
    """Apply one event to ``state``, in place; its version must be the next one.
    ``CorruptHistory`` if it cannot follow the state (a history written past the decisions)."""
    if event.version != state.version + 1:
        raise CorruptHistory(
            state.thread_id, event.version, f"does not follow version {state.version}"
        )
    try:
        _apply(state, event)
    except (KeyError, IndexError, ValueError) as e:  # the state is left half applied: drop it
        reason = f"{type(event).__name__} does not apply: {type(e).__name__} {e}"
        raise CorruptHistory(state.thread_id, event.version, reason) from e


def _apply(state: Thread, event: AnyThreadEvent) -> None:
    state.version = event.version
    at = event.timestamp
    match event:
        case ThreadOpened():
            pass
        case MessagesDelivered(messages=delivered):
            for d in delivered:
                pending_id = _message_id(d.message, event)
                state.pending.append(Pending(pending_id, d.message, d.mode, 1, at, at, d.message))
                state.used[pending_id] = ("pending", None)
        case PendingMessageEdited(pending_id=pending_id, message=message, revision=revision):
            item = state.pending.get(pending_id)
            if item is None:
                raise ValueError(f"thread {state.thread_id!r}: edit of unknown {pending_id!r}")
            item.message, item.revision, item.updated_at = message, revision, at
        case PendingMessageRetracted(pending_id=pending_id):
            _remove_pending(state, [pending_id], "retracted", event)
        case PendingQueueReordered(order=order):
            state.pending.reorder(order)
        case PendingMessagesExpired(pending_ids=pending_ids):
            _remove_pending(state, pending_ids, "expired", event)
        case RunStarted(run_id=run_id):
            state.runs[run_id] = Run(run_id, RunStatus.RUNNING, at)
            state.open_run_id = run_id
        case RunResumed(run_id=run_id):
            state.runs[run_id].status = RunStatus.RUNNING
            state.open_run_id = run_id
        case RunSuspended(run_id=run_id):
            state.runs[run_id].status = RunStatus.WAITING
        case RunFinished(run_id=run_id, termination=termination, detail=detail, by_run_id=by):
            if by is not None:
                state.interrupted_by[run_id] = by
            run = state.runs[run_id]
            run.status, run.termination, run.detail = RunStatus.DONE, termination, detail
            run.finished_at = at
            state.open_run_id = None
        case PendingMessagesFrozen(run_id=run_id, messages=frozen, first_seq=first, last_seq=last):
            ids = [_message_id(m.message, event) for m in frozen]
            _take_out(state, ids, event)
            for message_id, m in zip(ids, frozen, strict=True):
                state.used[message_id] = ("committed", m.seq)
            state.last_seq = last
            run = state.runs[run_id]
            run.trigger_message_ids.extend(ids)
            run.input_ranges.append((first, last))
            run.freeze_count += 1
        case RunOutputCommitted(run_id=run_id, messages=outputs):
            for o in outputs:
                message_id = _message_id(o.message, event)
                state.used[message_id] = ("committed", o.seq)
                state.runs[run_id].output_message_ids.append(message_id)
                state.runs[run_id].output_seqs.append(o.seq)
            state.last_seq = outputs[-1].seq
        case CommittedMessageHidden(message_id=message_id):
            state.hidden.add(message_id)
        case _:
            assert_never(event)


def fold(thread_id: str, events: list[AnyThreadEvent], state: Thread | None = None) -> Thread:
    """The state after ``events``, applied to ``state`` (in place) or to a new thread."""
    state = state if state is not None else Thread(thread_id)
    for event in events:
        apply_event(state, event)
    return state
