"""The audit of a whole store against the invariants (docs/semantics.md §7): every thread of
the log folded and checked.

Per thread: seqs run 1..N without gaps, no message is committed twice, every delivered id has one
fate (pending, then committed, retracted or expired), at most one run is open at any version and
the pending zone at the end is exactly the delivered ids still pending. On a sample of the longest
threads: the state at a past version equals the fold of events 1..v, and snapshot + tail gives
what the full fold gives to decisions. Every thread's ids are in the id table, at the version that
used them first. Last, the views are verified against the log (invariant 5).

``audit(store, views)`` returns an ``AuditReport``; ``threadbox audit`` prints one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from threadbox.domain.claims import ClaimKey, claims
from threadbox.domain.events import (
    AnyThreadEvent,
    MessagesDelivered,
    PendingMessageRetracted,
    PendingMessagesExpired,
    PendingMessagesFrozen,
    RunOutputCommitted,
)
from threadbox.domain.records import RunStatus
from threadbox.domain.results import thread_state
from threadbox.domain.thread import Thread, apply_event, fold

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


def audit_thread(thread_id: str, events: list[AnyThreadEvent]) -> ThreadAudit:
    """Fold one thread's events and check invariants 1-4 at every version."""
    state = Thread(thread_id)
    fates: dict[str, str] = {}
    committed: set[str] = set()
    problems: list[str] = []
    seq = 0

    def fate(message_id: str, new: str) -> None:
        if fates.get(message_id) != "pending":
            problems.append(f"v{state.version}: {message_id!r} {fates.get(message_id)} -> {new}")
        fates[message_id] = new

    def commit(message_id: str | None, at_seq: int) -> None:
        nonlocal seq
        if message_id in committed:
            problems.append(f"v{state.version}: {message_id!r} committed twice")
        if at_seq != seq + 1:
            problems.append(f"v{state.version}: seq {at_seq} after {seq}")
        if message_id is not None:
            committed.add(message_id)
        seq = at_seq

    for event in events:
        try:
            apply_event(state, event)
        except Exception as e:  # a history that does not fold is the finding, not a crash
            problems.append(f"v{state.version + 1}: does not fold: {e!r}")
            break
        match event:
            case MessagesDelivered(messages=delivered):
                for d in delivered:
                    message_id = d.message.id or ""
                    if message_id in fates:
                        problems.append(f"v{event.version}: {message_id!r} delivered twice")
                    fates[message_id] = "pending"
            case PendingMessageRetracted(pending_id=pending_id):
                fate(pending_id, "retracted")
            case PendingMessagesExpired(pending_ids=pending_ids):
                for pending_id in pending_ids:
                    fate(pending_id, "expired")
            case PendingMessagesFrozen(messages=frozen):
                for m in frozen:
                    fate(m.message.id or "", "committed")
                    commit(m.message.id, m.seq)
            case RunOutputCommitted(messages=outputs):
                for o in outputs:
                    commit(o.message.id, o.seq)
            case _:
                pass
        open_runs = [r.run_id for r in state.runs.values() if r.status is not RunStatus.DONE]
        if len(open_runs) > 1:
            problems.append(f"v{event.version}: {len(open_runs)} open runs {open_runs}")
    pending_ids = [p.pending_id for p in state.pending]
    if sorted(pending_ids) != sorted(i for i, f in fates.items() if f == "pending"):
        problems.append("pending zone does not match the delivered messages still pending")
    if len(set(pending_ids)) != len(pending_ids) or set(pending_ids) & committed:
        problems.append("a pending id is repeated or also committed")
    if state.last_seq != seq:
        problems.append(f"last seq {state.last_seq} != {seq}")
    return ThreadAudit(thread_id, state, fates, problems)


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
    position, read = "", 0
    while position < end:
        batch = store.read(after=position, limit=BATCH, upto=end)
        if not batch:  # committed, but an older transaction still running holds it back
            time.sleep(WAIT_BEHIND)
            continue
        for item in batch:
            logs.setdefault(item.event.thread_id, []).append(item.event)
        position, read = batch[-1].position, read + len(batch)
        if progress is not None:
            progress(read, 2 * total)
    audited = {tid: audit_thread(tid, events) for tid, events in logs.items()}
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
    events = sum(len(e) for e in logs.values())
    return AuditReport(len(logs), events, problems, verified.ok, audited)


def _second_half(progress: Progress | None, total: int) -> Progress | None:
    """The views' verify drawn on the same bar, after the read of the log."""
    if progress is None:
        return None
    report = progress

    def advance(done: int, _: int) -> None:
        report(total + min(done, total), 2 * total)

    return advance
