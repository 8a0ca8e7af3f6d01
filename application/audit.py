"""The audit of a whole store against the invariants (docs/semantics.md §7): every thread of
the log folded and checked.

Per thread: every event is one a decision could have written on the state before it (its run,
the pending ids it names, new ids, seqs, revisions: ``ThreadChecker``, which import uses too);
seqs run 1..N without gaps, no message is committed twice, every delivered id has one fate
(pending, then committed, retracted or expired), at most one run is open at any version and the
pending zone at the end is exactly the delivered ids still pending. An event that does not
decode or does not fold is a finding, not a crash. On a sample of the longest
threads: the state at a past version equals the fold of events 1..v, and snapshot + tail gives
what the full fold gives to decisions. Every thread's ids are in the id table, at the version that
used them first. Last, the views are verified against the log (invariant 5).

``audit(store, views)`` returns an ``AuditReport``; ``threadbox audit`` prints one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import assert_never, cast

from threadbox.domain.claims import ClaimKey, claims
from threadbox.domain.errors import CorruptHistory
from threadbox.domain.events import (
    EVENT_TYPES,
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
from threadbox.domain.records import RunStatus
from threadbox.domain.results import thread_state
from threadbox.domain.thread import Thread, apply_event, fold
from threadbox.domain.values import Role, check_id

from .ports import EventStore, Progress, Views

BATCH = 5000  # events per read of the log
SAMPLE = 20  # threads checked at past versions and through their snapshot
WAIT_BEHIND = 0.01  # seconds between reads while an older transaction holds committed events back
MOST_DIFFERENCES = 20  # of views.verify, kept in the report


@dataclass
class ThreadAudit:
    """One thread folded from the log, with the fate of every message delivered to it."""

    thread_id: str
    state: Thread
    fates: dict[str, str]  # delivered message id -> pending | committed | retracted | expired
    problems: list[str]


@dataclass
class AuditReport:
    """The audit of a store: how many threads and events, the problems found (empty: none)
    and whether the views match the log."""

    threads: int
    events: int
    problems: list[str]
    views_ok: bool
    audited: dict[str, ThreadAudit] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """No problem found, and the views match the log."""
        return self.views_ok and not self.problems

    def fate(self, thread_id: str, message_id: str) -> str | None:
        """What became of a delivered message: None if it was never delivered to the thread."""
        found = self.audited.get(thread_id)
        return found.fates.get(message_id) if found else None

    def state(self, thread_id: str) -> Thread | None:
        """The thread folded from its whole log (None if the log has no such thread)."""
        found = self.audited.get(thread_id)
        return found.state if found else None


class ThreadChecker:
    """One thread folded event by event, each event checked first against the state before it:
    could a decision have written it there (its thread, run, pending ids, revisions, seqs,
    ids new or known as the event needs), and do invariants 1-4 still hold after it.

    ``check(event)`` folds the event and returns what is wrong with it (empty: nothing); once
    an event does not fold, ``broken`` is set and later events are not looked at. ``finish()``
    gives what is wrong with the end state. The audit and the import use it alike."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.state = Thread(thread_id)
        self.fates: dict[str, str] = {}  # delivered message id -> its fate
        self.committed: set[str] = set()
        self.seq = 0
        self.open_runs: dict[str, None] = {}  # running or waiting, in the order they started
        self.broken = False

    def check(self, event: AnyThreadEvent) -> list[str]:
        """What is wrong with ``event`` after the events checked so far; it is folded."""
        if self.broken:
            return []
        problems = _not_decided(self.state, event, self.thread_id)
        try:
            apply_event(self.state, event)
        except CorruptHistory as e:  # a history that does not fold is the finding, not a crash
            self.broken = True
            return [*problems, f"does not fold: {e}"]
        problems.extend(self._invariants(event))
        return problems

    def _fate(self, message_id: str, new: str, problems: list[str]) -> None:
        if self.fates.get(message_id) != "pending":
            problems.append(f"{message_id!r} {self.fates.get(message_id)} -> {new}")
        self.fates[message_id] = new

    def _commit(self, message_id: str | None, at_seq: int, problems: list[str]) -> None:
        if message_id in self.committed:
            problems.append(f"{message_id!r} committed twice")
        if at_seq != self.seq + 1:
            problems.append(f"seq {at_seq} after {self.seq}")
        if message_id is not None:
            self.committed.add(message_id)
        self.seq = at_seq

    def _invariants(self, event: AnyThreadEvent) -> list[str]:
        problems: list[str] = []
        match event:
            case MessagesDelivered(messages=delivered):
                for d in delivered:
                    message_id = d.message.id or ""
                    if message_id in self.fates:
                        problems.append(f"{message_id!r} delivered twice")
                    self.fates[message_id] = "pending"
            case PendingMessageRetracted(pending_id=pending_id):
                self._fate(pending_id, "retracted", problems)
            case PendingMessagesExpired(pending_ids=pending_ids):
                for pending_id in pending_ids:
                    self._fate(pending_id, "expired", problems)
            case PendingMessagesFrozen(messages=frozen):
                for m in frozen:
                    self._fate(m.message.id or "", "committed", problems)
                    self._commit(m.message.id, m.seq, problems)
            case RunOutputCommitted(messages=outputs):
                for o in outputs:
                    self._commit(o.message.id, o.seq, problems)
            case _:
                pass
        if isinstance(event, RunStarted | RunResumed | RunSuspended | RunFinished):
            # Only these change a run's status: keep the open ones, in the order they started.
            if self.state.runs[event.run_id].status is RunStatus.DONE:
                self.open_runs.pop(event.run_id, None)
            else:
                self.open_runs.setdefault(event.run_id)
            if len(self.open_runs) > 1:
                problems.append(f"{len(self.open_runs)} open runs {list(self.open_runs)}")
        return problems

    def finish(self) -> list[str]:
        """What is wrong with the state after the last event (nothing if it did not fold)."""
        if self.broken:
            return []
        state, problems = self.state, []
        pending_ids = [p.pending_id for p in state.pending]
        if sorted(pending_ids) != sorted(i for i, f in self.fates.items() if f == "pending"):
            problems.append("pending zone does not match the delivered messages still pending")
        if len(set(pending_ids)) != len(pending_ids) or set(pending_ids) & self.committed:
            problems.append("a pending id is repeated or also committed")
        if state.last_seq != self.seq:
            problems.append(f"last seq {state.last_seq} != {self.seq}")
        return problems


def _bad_id(value: object, what: str) -> list[str]:
    try:
        check_id(value, what)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        return [str(e)]
    return []


_NAMING = (
    PendingMessageEdited,
    PendingMessageRetracted,
    PendingQueueReordered,
    PendingMessagesExpired,
    PendingMessagesFrozen,
)


def _not_decided(state: Thread, event: AnyThreadEvent, thread_id: str) -> list[str]:
    """Why no decision could have written ``event`` on ``state`` (empty: one could)."""
    name = type(event).__name__
    if event.thread_id != thread_id:
        return [f"{name} belongs to thread {event.thread_id!r}, not {thread_id!r}"]
    if (event.version == 1) != isinstance(event, ThreadOpened):
        return [
            f"{name} at version {event.version}: a thread's first event, and only it, is "
            "ThreadOpened"
        ]
    # The pending entries by id, for the events that name them (not for each delivery: a
    # thread with a long pending zone would cost the square of its length to check).
    pending = {p.pending_id: p for p in state.pending} if isinstance(event, _NAMING) else {}
    running, waiting, open_run = state.running_run_id, state.waiting_run_id, state.open_run_id

    def not_pending(ids: list[str]) -> list[str]:
        return [f"{name} names {i!r}, which is not pending" for i in ids if i not in pending]

    def new_ids(messages: list[str | None]) -> list[str]:
        if any(i is None for i in messages):
            return [f"{name} holds a message without an id"]
        found = [f"{name} reuses message id {i!r}" for i in messages if i in state.used]
        if len(set(messages)) != len(messages):
            found.append(f"{name} repeats a message id")
        return found

    def seqs(numbers: list[int]) -> list[str]:
        expected = list(range(state.last_seq + 1, state.last_seq + 1 + len(numbers)))
        return [] if numbers == expected else [f"{name} seqs {numbers}, expected {expected}"]

    def runs(run_id: str, should_be: str | None, what: str) -> list[str]:
        if run_id != should_be:
            return [f"{name} for run {run_id!r}, which is not {what} (that is {should_be!r})"]
        return []

    match event:
        case ThreadOpened():
            return []
        case MessagesDelivered(messages=delivered):
            if not delivered:
                return [f"{name} delivers nothing"]
            return new_ids([d.message.id for d in delivered])
        case PendingMessageEdited(pending_id=pending_id, message=message, revision=revision):
            problems = not_pending([pending_id])
            if problems:
                return problems
            if message.id != pending_id:
                problems.append(f"{name} gives {pending_id!r} the id {message.id!r}")
            if revision != pending[pending_id].revision + 1:
                problems.append(f"{name} revision {revision} after {pending[pending_id].revision}")
            return problems
        case PendingMessageRetracted(pending_id=pending_id, revision=revision):
            problems = not_pending([pending_id])
            if not problems and revision != pending[pending_id].revision:
                problems.append(
                    f"{name} at revision {revision}, the entry is at {pending[pending_id].revision}"
                )
            return problems
        case PendingQueueReordered(order=order):
            if sorted(order) != sorted(pending) or len(set(order)) != len(order):
                return [f"{name} order is not a permutation of the pending ids"]
            return []
        case PendingMessagesExpired(run_id=run_id, pending_ids=pending_ids):
            problems = _bad_id(run_id, "run_id") or not_pending(pending_ids)
            if not pending_ids:
                problems.append(f"{name} expires nothing")
            problems.extend(
                f"{name} expires {i!r}, which is not aimed at run {run_id!r}"
                for i in pending_ids
                if i in pending and pending[i].mode.target_run_id != run_id
            )
            return problems
        case RunStarted(run_id=run_id):
            problems = _bad_id(run_id, "run_id")
            if state.run_id_used(run_id):
                problems.append(f"{name} reuses run id {run_id!r}")
            if open_run is not None:
                problems.append(f"{name} while run {open_run!r} is open")
            return problems
        case RunResumed(run_id=run_id):
            return runs(run_id, waiting, "waiting")
        case RunSuspended(run_id=run_id):
            return runs(run_id, running, "running")
        case RunFinished(run_id=run_id):
            return runs(run_id, open_run, "open")
        case PendingMessagesFrozen(run_id=run_id, messages=frozen, first_seq=first, last_seq=last):
            problems = runs(run_id, running, "running")
            if not frozen:
                return [*problems, f"{name} freezes nothing"]
            ids = [m.message.id or "" for m in frozen]
            problems.extend(not_pending(ids))
            problems.extend(seqs([m.seq for m in frozen]))
            if (first, last) != (frozen[0].seq, frozen[-1].seq):
                problems.append(f"{name} seqs {first}..{last} do not span its messages")
            for m, i in zip(frozen, ids, strict=True):
                p = pending.get(i)
                if p is not None and (m.message, m.mode, m.revision) != (
                    p.message,
                    p.mode,
                    p.revision,
                ):
                    problems.append(f"{name} commits {i!r} other than it is pending")
            return problems
        case RunOutputCommitted(run_id=run_id, messages=outputs):
            problems = runs(run_id, running, "running")
            if not outputs:
                return [*problems, f"{name} commits nothing"]
            problems.extend(new_ids([o.message.id for o in outputs]))
            problems.extend(seqs([o.seq for o in outputs]))
            problems.extend(
                f"{name} commits a user message as an output"
                for o in outputs
                if o.message.role is Role.USER
            )
            return problems
        case CommittedMessageHidden(message_id=message_id, seq=seq):
            if state.used.get(message_id) != ("committed", seq):
                return [f"{name}: {message_id!r} is not committed at seq {seq}"]
            return []
        case _:
            assert_never(event)


def audit_thread(thread_id: str, events: list[AnyThreadEvent]) -> ThreadAudit:
    """Fold one thread's events; check each against the state before it and invariants 1-4
    at every version."""
    checker = ThreadChecker(thread_id)
    problems: list[str] = []
    for event in events:
        problems.extend(f"v{event.version}: {p}" for p in checker.check(event))
        if checker.broken:
            break
    problems.extend(checker.finish())
    return ThreadAudit(thread_id, checker.state, checker.fates, problems)


def audit_reads(store: EventStore, thread_id: str, events: list[AnyThreadEvent]) -> list[str]:
    """The thread's own reads agree with the log: at past versions, and via snapshot + tail."""
    problems: list[str] = []
    for v in sorted({1, len(events) // 2 or 1, len(events)}):
        if thread_state(fold(thread_id, store.load(thread_id, upto=v))) != (
            thread_state(fold(thread_id, events[:v]))
        ):
            problems.append(f"state at v{v} differs from the fold of 1..{v}")
    snapshot = store.load_snapshot(thread_id)
    if snapshot is not None:
        restored = fold(thread_id, store.load(thread_id, after=snapshot.version), snapshot)
        if restored.decision_state() != fold(thread_id, events).decision_state():
            problems.append(f"snapshot at v{snapshot.version} + tail differs from the full fold")
    return problems


def audit_ids(store: EventStore, thread_id: str, events: list[AnyThreadEvent]) -> list[str]:
    """Every id the thread's log uses is in the id table, at the version that first used it
    (ADR 0010): a missing row would let the id be used again."""
    expected: dict[ClaimKey, int] = {}
    for claim in claims(events):
        expected.setdefault(claim.key, claim.version)
    found = store.claimed(thread_id, expected)
    missing = sorted(f"{k.kind}:{k.id}" for k in expected if k not in found)
    moved = sorted(f"{k.kind}:{k.id}" for k, v in expected.items() if found.get(k, v) != v)
    problems = []
    if missing:
        problems.append(f"id table: {len(missing)} ids of the log missing: {missing[:5]}")
    if moved:
        problems.append(f"id table: {len(moved)} ids at another version: {moved[:5]}")
    return problems


def audit(
    store: EventStore, views: Views, *, sample: int = SAMPLE, progress: Progress | None = None
) -> AuditReport:
    """Every thread of the store folded and checked; the ``sample`` longest threads also read at
    past versions and via snapshot + tail; then the views verified against the log.
    ``progress(done, total)`` counts the events read, then those verified (total: twice the log)."""
    end = store.committed_head()
    total = store.count_after("", end)
    logs: dict[str, list[AnyThreadEvent]] = {}
    undecodable: dict[str, str] = {}  # thread id -> its first event that does not decode
    position, read = "", 0
    while position < end:
        start = position
        for at, _, event_type, payload in store.read_payloads(after=start, limit=BATCH, upto=end):
            position, read = at, read + 1
            thread_id = str(payload.get("thread_id"))
            events = logs.setdefault(thread_id, [])
            if thread_id in undecodable:
                continue
            try:
                events.append(cast(AnyThreadEvent, EVENT_TYPES[event_type].model_validate(payload)))
            except ValueError as e:  # pydantic's ValidationError: a finding, not a crash
                first = " ".join(str(e).splitlines()[:3])
                undecodable[thread_id] = (
                    f"v{payload.get('version')}: does not decode as {event_type}: {first}"
                )
        if position == start:  # committed, but an older transaction still running holds it back
            time.sleep(WAIT_BEHIND)
            continue
        if progress is not None:
            progress(read, 2 * total)
    audited = {tid: audit_thread(tid, events) for tid, events in logs.items()}
    for thread_id, why in undecodable.items():
        audited[thread_id].problems.insert(0, why)
    problems = [f"{tid}: {p}" for tid, found in audited.items() for p in found.problems]
    longest = sorted(logs, key=lambda tid: (-len(logs[tid]), tid))[:sample]
    for tid in longest:
        if not audited[tid].problems:  # a history that fails its own checks is already reported
            problems.extend(f"{tid}: {p}" for p in audit_reads(store, tid, logs[tid]))
    for tid, log in logs.items():
        if not audited[tid].problems:
            problems.extend(f"{tid}: {p}" for p in audit_ids(store, tid, log))
    verified = views.verify(progress=_second_half(progress, total))
    problems.extend(f"views: {d}" for d in verified.differences[:MOST_DIFFERENCES])
    return AuditReport(len(logs), read, problems, verified.ok, audited)


def _second_half(progress: Progress | None, total: int) -> Progress | None:
    """The views' verify drawn on the same bar, after the read of the log."""
    if progress is None:
        return None
    report = progress

    def advance(done: int, _: int) -> None:
        report(total + min(done, total), 2 * total)

    return advance
