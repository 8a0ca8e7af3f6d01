"""The views kept from the log: catch-up (exactly once), rebuild (aside, then swap) and verify,
over the ``ViewBackend`` where their rows live. The projections (``threadbox.projections``) say
what each event changes; this module decides when and in which transaction."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from threadbox.domain.errors import CorruptHistory, ProjectionFailed, StoreUnavailable
from threadbox.domain.events import EVENT_TYPES, AnyThreadEvent
from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    PendingEntry,
    RunRecord,
    ThreadSummary,
)
from threadbox.domain.thread import Thread, apply_event
from threadbox.projections import changes_for, reading
from threadbox.projections.changes import Change, Key, Row
from threadbox.projections.tables import Tables

from .following import Follower, FollowerFailed, FollowerStatus, PollingWakeup
from .ports import (
    EventStore,
    Position,
    Progress,
    VerifyReport,
    ViewBackend,
    ViewStatus,
    Wakeup,
)

BATCH = 1000  # events per catch-up transaction
# While committed events wait behind an older transaction still running (PostgreSQL), a catch-up
# that must reach them reads again after these pauses, doubling from the first to the last.
FIRST_PAUSE, LAST_PAUSE = 0.001, 0.05
log = logging.getLogger("threadbox.views")


def difference(table: str, key: Key, expected: Row | None, found: Row | None) -> str:
    """One verify finding: (thread, view, key, expected, found); None where a row is absent."""
    if expected is not None and found is not None:
        columns = [c for c in expected if found.get(c) != expected[c]]
        expected = {c: expected[c] for c in columns}
        found = {c: found.get(c) for c in columns}
    return f"thread {key[0]!r} view_{table} key {key!r}: expected {expected}, found {found}"


class DomainFold:
    """Every thread of the log folded through the domain's own fold, payload by payload, as
    ``verify`` reads the log: the threads whose events do not decode or do not fold."""

    def __init__(self) -> None:
        self.states: dict[str, Thread] = {}
        self.broken: dict[str, str] = {}  # thread id -> why it cannot be folded
        self.events = 0  # how many it was given

    def __call__(self, event_id: int, event_type: str, payload: dict[str, Any]) -> None:
        self.events += 1
        thread_id = str(payload.get("thread_id"))
        if thread_id in self.broken:
            return
        state = self.states.get(thread_id)
        if state is None:
            state = self.states[thread_id] = Thread(thread_id)
        try:
            event = cast(AnyThreadEvent, EVENT_TYPES[event_type].model_validate(payload))
            apply_event(state, event)
        except CorruptHistory as e:
            self.broken[thread_id] = e.message
        except ValueError as e:  # pydantic's ValidationError
            first = " ".join(str(e).splitlines()[:3])
            reason = f"event {event_id} ({event_type}) does not decode: {first}"
            self.broken[thread_id] = f"thread {thread_id!r} cannot be read: {reason}"

    def differences(self) -> list[str]:
        """One line per thread that cannot be folded."""
        return [f"the log does not fold: {why}" for _, why in sorted(self.broken.items())]


def fold_log(
    store: EventStore,
    upto: Position | None = None,
    progress: Progress | None = None,
    each: Callable[[int, str, dict[str, Any]], None] | None = None,
) -> tuple[Tables, Position, int]:
    """Every view folded in memory from the log (up to ``upto``, else every event readable
    now), independently of any view table; with the position reached and the events folded.

    Each payload is decoded when the fold reaches it and dropped once projected, so the
    heap holds the rows and one batch of stored events, not a batch of decoded payloads:
    the cyclic collector has little to scan, and the fold runs at full speed with it on.
    ``each(position, event type, payload)`` also sees every event, before it is projected."""
    tables = Tables()
    apply = tables.apply
    position: Position = ""
    folded = 0
    total = store.count_after("", upto) if progress else 0
    while True:
        start = position
        for position, event_id, event_type, payload in store.read_payloads(  # noqa: B007
            after=start, limit=BATCH, upto=upto
        ):  # the position of the last event read is kept
            folded += 1
            if each is not None:
                each(event_id, event_type, payload)
            for change in changes_for(event_type, payload, event_id):
                apply(change)
        if position == start:
            return tables, position, folded
        if progress:
            progress(folded, max(total, folded))


class ProjectedViews:
    """The ``Views`` port over a backend: every read first sees the backend's latest position."""

    def __init__(
        self, store: EventStore, backend: ViewBackend, wakeup: Wakeup | None = None
    ) -> None:
        self.store = store
        self.backend = backend
        self.wakeup = wakeup or PollingWakeup(0.05)
        self._lock = threading.Lock()
        self._seen: Position = ""  # a lower bound of the backend's position
        self._follower: Follower | None = None
        self._listeners: list[Callable[[Position], None]] = []
        self._short = False  # the last batch applied was all there was to read (``_advance``)

    def add_listener(self, listener: Callable[[Position], None]) -> None:
        """Call ``listener(position)`` whenever these views move past new events (it must be
        quick and thread-safe: it runs on the thread that caught up)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Position], None]) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def catch_up(self, until: Position | None = None, progress: Progress | None = None) -> Position:
        """Apply the events the views have not seen, a batch per transaction, up to ``until``
        (default: every event committed before the call, in any process); returns the position
        the views are at. Events that an older transaction, still running, keeps unreadable
        (PostgreSQL) are waited for: a read after a write, anywhere, sees it."""
        target = self.store.committed_head() if until is None else until
        if self._seen >= target:
            return self._seen
        return self._run(target, bounded=until is not None, wait=True, progress=progress)

    def catch_up_readable(self) -> Position:
        """Apply every event readable now, without waiting for older transactions: what the
        background follower does on each wake-up (it wakes again when they commit)."""
        return self._run(None, bounded=False, wait=False, progress=None)

    def _run(
        self, target: Position | None, *, bounded: bool, wait: bool, progress: Progress | None
    ) -> Position:
        with self._lock:
            # Where the views were left, as this process last saw them: another process's
            # catch-up may have moved them since, which ``apply`` notices (then they are read).
            position = self._seen if self._seen and not progress else self.backend.position()
            total = self.store.count_after(position, target) if progress else 0
            position = self._catch_up(position, target, bounded, wait, total, progress)
            moved, self._seen = position > self._seen, max(self._seen, position)
        if moved:
            for listener in list(self._listeners):
                listener(position)
        return position

    def _catch_up(
        self,
        position: Position,
        target: Position | None,
        bounded: bool,
        wait: bool,
        total: int,
        progress: Progress | None,
    ) -> Position:
        applied, pause = 0, FIRST_PAUSE
        while target is None or position < target:
            moved = self._advance(position, BATCH, target if bounded else None)
            if moved is None:
                if not wait or target is None:
                    break
                # ``target`` is committed but not readable yet: an older transaction is still
                # running. Read again shortly; it is as long as that transaction runs.
                time.sleep(pause)
                pause = min(2 * pause, LAST_PAUSE)
                continue
            pause = FIRST_PAUSE
            position, count = moved
            applied += count
            if progress:
                progress(applied, max(total, applied))
            if target is None and self._short:
                break  # every event readable was in that batch: no read that finds nothing
        return position

    def _advance(
        self, position: Position, limit: int, upto: Position | None = None
    ) -> tuple[Position, int] | None:
        """Apply the next ``limit`` events after ``position`` (at or before ``upto``) in one
        transaction; the position the views are at afterwards and the events applied (None:
        nothing readable after ``position``). Each payload is projected as it is read, so
        decoded payloads never pile up."""
        self._short = False  # set when every event read (fewer than ``limit``) was applied
        read: list[tuple[Position, int, str, str]] = []  # (position, event id, type, thread)
        changes: list[Change] = []
        try:
            for at, event_id, event_type, payload in self.store.read_payloads(
                after=position, limit=limit, upto=upto
            ):
                read.append((at, event_id, event_type, str(payload.get("thread_id"))))
                changes.extend(changes_for(event_type, payload, event_id))
            if not read:
                return None
            applied = self.backend.apply(changes, position, read[-1][0])
        except StoreUnavailable:
            raise  # the store could not be used: no event is at fault
        except self.backend.unavailable:
            raise  # the database, not an event: retrying event by event would only mislead
        except Exception as error:
            if not read:
                raise  # the log itself could not be read: no event is at fault
            if limit == 1:
                raise ProjectionFailed(read[0][1], read[0][2], read[0][3]) from error
            # Find the failing event: apply the events before it one by one, then stop at it.
            done = 0
            for _ in range(len(read)):
                after = self._advance(position, 1, upto)
                if after is None:
                    break
                position, done = after[0], done + 1
            return position, done
        if applied:
            self._short = len(read) < limit
            return read[-1][0], len(read)
        return self.backend.position(), 0  # another catch-up applied them first

    def rebuild(self, progress: Progress | None = None) -> Position:
        """Fold the log aside, swap the result in, catch up. ``progress`` is called with
        (events, log events) while folding, then with (rows, all rows) while filling."""
        with self._lock:
            tables, position, _ = fold_log(self.store, progress=progress)
            self.backend.replace_all(tables, position, progress)
            self._seen = position
        return self.catch_up()

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Catch up, then compare every row with a fold of the log up to the same position;
        the log is also folded thread by thread through the domain's fold. A log that does
        not fold, or that the views cannot apply, is a difference: never "match"."""
        differences: list[str] = []
        try:
            self.catch_up()
        except ProjectionFailed as failed:
            differences.append(str(failed))
        position, found = self.backend.dump()
        domain = DomainFold()
        try:
            expected, _, _ = fold_log(self.store, upto=position, progress=progress, each=domain)
        except StoreUnavailable:
            raise  # the log could not be read: nothing is known about it
        except Exception as error:  # the projections cannot fold the log: the finding
            differences.append(f"the log cannot be projected: {type(error).__name__} {error}")
            expected = None
        if differences:  # the views stopped at an event: fold the rest to say what is wrong
            self._fold_rest(position, domain)
        differences.extend(domain.differences())
        for table, rows in expected.flat().items() if expected is not None else ():
            seen = found.get(table, {})
            for key in sorted(rows.keys() | seen.keys(), key=repr):
                if rows.get(key) != seen.get(key):
                    differences.append(difference(table, key, rows.get(key), seen.get(key)))
        return VerifyReport(
            ok=not differences, differences=differences, events=domain.events, position=position
        )

    def _fold_rest(self, position: Position, domain: DomainFold) -> None:
        """The events readable after ``position``, through the domain's fold."""
        while True:
            start = position
            for position, event_id, event_type, payload in self.store.read_payloads(  # noqa: B007
                after=start, limit=BATCH
            ):  # the position of the last event read is kept
                domain(event_id, event_type, payload)
            if position == start:
                return

    def status(self) -> ViewStatus:
        """The views' position, the newest committed event's, and how many committed events the
        views have not applied (``lag``; on PostgreSQL, events an older transaction still
        running keeps unreadable count too: the figure a long transaction makes grow)."""
        position = self.backend.position()
        head = self.store.committed_head()
        lag = self.store.count_after(position, head) if head > position else 0
        oldest = self.store.oldest_transaction_age()
        return ViewStatus(position, head, lag, oldest)

    def pending(self, thread_id: str) -> list[PendingEntry]:
        """The thread's pending queue, in position order."""
        return [reading.pending_entry(r) for r in self.backend.pending_rows(thread_id)]

    def committed(
        self,
        thread_id: str,
        *,
        after_seq: int,
        limit: int | None,
        include_hidden: bool,
        include_internal: bool = True,
    ) -> list[CommittedMessage]:
        """The thread's committed messages after ``after_seq``, in seq order (internal ones
        only with ``include_internal``)."""
        rows = self.backend.committed_rows(
            thread_id, after_seq, limit, include_hidden, include_internal
        )
        return [reading.committed_message(r) for r in rows]

    def runs(self, thread_id: str, *, offset: int = 0, limit: int | None = None) -> list[RunRecord]:
        """The thread's runs in the order they started, after the first ``offset``."""
        return [reading.run_record(r) for r in self.backend.run_rows(thread_id, offset, limit)]

    def run(self, run_id: str) -> RunRecord | None:
        """The latest run to start with this id, in any thread."""
        row = self.backend.latest_run_row(run_id)
        return reading.run_record(row) if row is not None else None

    def checkpoints(
        self, thread_id: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Checkpoint]:
        """The thread's commits into its committed zone after ``after_version``, by version."""
        rows = self.backend.checkpoint_rows(thread_id, after_version, limit)
        return [reading.checkpoint(r) for r in rows]

    def hidden(self, thread_id: str) -> set[str]:
        """The ids of the thread's hidden committed messages."""
        return self.backend.hidden_ids(thread_id)

    def thread(self, thread_id: str) -> ThreadSummary | None:
        """The thread's summary, if the views know the thread."""
        row = self.backend.thread_row(thread_id)
        return reading.thread_summary(row) if row is not None else None

    def threads_with_pending(self, *, limit: int, after: str | None) -> list[str]:
        """Ids of threads with pending work, ordered, after ``after``."""
        return [r["thread_id"] for r in self.backend.thread_rows(limit, after, True)]

    def threads(
        self, *, limit: int, after: str | None, has_pending: bool | None
    ) -> list[ThreadSummary]:
        """Thread summaries ordered by thread id, after ``after``."""
        return [
            reading.thread_summary(r) for r in self.backend.thread_rows(limit, after, has_pending)
        ]

    def thread_exists(self, thread_id: str) -> bool:
        """Do the views know this thread?"""
        return self.backend.thread_exists(thread_id)

    def start_following(self) -> None:
        """Keep catching up in a background thread (long-running processes: the server)."""
        if self._follower is None or not self._follower.status().running:
            self._follower = Follower(self.catch_up_readable, self.wakeup)
            self._follower.start()

    def stop_following(self) -> None:
        """Stop the background catch-up; raises ``FollowerFailed`` if its latest attempt failed."""
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()

    def following(self) -> FollowerStatus | None:
        """The background catch-up's status, if one was started."""
        return self._follower.status() if self._follower is not None else None

    def close(self) -> None:
        """Stop following and close the backend."""
        try:
            self.stop_following()
        except FollowerFailed:
            # Logged when it happened and shown by following(); closing must still free all.
            log.warning("views closed while their background catch-up was failing")
        finally:
            self.backend.close()
