"""Subscriptions (API.md §4): the store's log in commit order (``follow``), one thread's events
by version (``watch``), and waiting for work at a boundary (``wait_for_work``).

Each subscriber has a ``Doorbell`` of its own: LISTEN/NOTIFY on PostgreSQL, a poll of at most
50 ms on SQLite and memory. It listens before its first read, reads in pages (a follower far
behind holds one page at a time), and waits on the doorbell only when a read found nothing new.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

from pydantic import BaseModel, ConfigDict
from threadbox.domain import errors, results
from threadbox.domain.records import RecordedEvent
from threadbox.domain.selection import scan_for_freeze
from threadbox.domain.thread import Thread
from threadbox.domain.values import DeliveryBoundary

from . import inputs
from .ports import Doorbell, EventStore, Position
from .repository import ThreadRepository

PAGE = 500  # events read at a time
# Committed events that an older transaction still running keeps unreadable (PostgreSQL) are
# read again after these pauses, doubling from the first to the last (no notification comes
# when that transaction ends without writing).
FIRST_PAUSE, LAST_PAUSE = 0.001, 0.05
STOP_CHECK = 0.1  # seconds between looks at a watcher's stop event


class LogItem(BaseModel):
    """One event of the store's log, at its position in commit order, with its thread."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: str
    thread_id: str
    event: RecordedEvent


class Subscriptions:
    """``head``, ``follow``, ``watch`` and ``wait_for_work`` over a store."""

    def __init__(
        self,
        store: EventStore,
        repository: ThreadRepository,
        doorbell: Callable[[], Doorbell],
    ) -> None:
        self._store = store
        self._repository = repository
        self._doorbell = doorbell

    def head(self) -> Position:
        """The position of the newest committed event (``""`` when the log is empty)."""
        return self._store.committed_head()

    def check_position(self, after: object, what: str = "after") -> Position:
        """``after`` as a position of this store, or ``InvalidInput`` naming ``what``: not a
        string, not a position of this store's kind, or past this store's newest event (a
        position of another store)."""
        if not isinstance(after, str):
            raise errors.InvalidInput(f"{what} must be a position string, got {after!r}", what)
        if after > self._store.committed_head():
            raise errors.InvalidInput(
                f"{after[:60]!r} is not a position of this store: it is past its newest event "
                "(a position of another store?)",
                what,
            )
        try:
            self._store.read(after=after, limit=1, upto=after)  # the store checks its form
        except errors.InvalidInput as bad:
            raise errors.InvalidInput(bad.text, what) from None
        return after

    def follow(
        self, after: Position = "", *, limit: int | None = None, timeout: float | None = 0.0
    ) -> Iterator[LogItem]:
        """Every event committed after ``after``, each once, in commit order (see Mailbox)."""
        position = self.check_position(after)
        remaining = inputs.limit(limit)
        wait = inputs.timeout(timeout)
        return self._follow(position, remaining, wait)

    def _follow(self, position: Position, remaining: int | None, wait: float) -> Iterator[LogItem]:
        # The doorbell (a LISTEN connection on PostgreSQL) is opened only once the follower has
        # to wait: a follow that reads what is there and ends (timeout 0) costs its reads alone.
        bell: Doorbell | None = None
        try:
            quiet_since = time.monotonic()
            pause = FIRST_PAUSE
            while True:
                page = PAGE if remaining is None else min(PAGE, remaining)
                found = self._store.read(after=position, limit=page)
                for notified in found:
                    event = notified.event
                    yield LogItem(
                        position=notified.position,
                        thread_id=event.thread_id,
                        event=results.recorded_event(event),
                    )
                    position = notified.position
                    if remaining is not None:
                        remaining -= 1
                        if remaining == 0:
                            return
                if found:
                    quiet_since, pause = time.monotonic(), FIRST_PAUSE
                    continue
                left = wait - (time.monotonic() - quiet_since)
                if left <= 0:
                    return
                if bell is None:
                    bell = self._doorbell()
                    bell.listen()
                    continue  # read again: a commit may have come before the bell listened
                if self._store.committed_head() > position:
                    time.sleep(min(pause, left))  # committed, not readable yet
                    pause = min(pause * 2, LAST_PAUSE)
                else:
                    bell.wait(left)
        finally:
            if bell is not None:
                bell.close()

    def watch(
        self, thread_id: str, after_version: int = 0, *, timeout: float | None = 0.0
    ) -> Iterator[RecordedEvent]:
        """The thread's events after ``after_version``, in version order (see Mailbox)."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        version = after_version
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise errors.InvalidInput(
                f"after_version must be an integer >= 0, got {after_version!r}", "after_version"
            )
        wait = inputs.timeout(timeout)
        return self._watch(thread_id, after_version, wait)

    def _watch(
        self, thread_id: str, version: int, wait: float, stop: threading.Event | None = None
    ) -> Iterator[RecordedEvent]:
        bell = self._doorbell()
        try:
            bell.listen()
            quiet_since = time.monotonic()
            read = True
            while stop is None or not stop.is_set():
                found = self._store.load(thread_id, after=version, limit=PAGE) if read else []
                for event in found:
                    yield results.recorded_event(event)
                    version = event.version
                if found:
                    quiet_since = time.monotonic()
                    continue
                left = wait - (time.monotonic() - quiet_since)
                if left <= 0:
                    return
                # with a stop event, look at it every STOP_CHECK seconds (no read unless rung)
                read = bell.wait(left if stop is None else min(left, STOP_CHECK))
        finally:
            bell.close()

    def watch_until(
        self, thread_id: str, after_version: int, stop: threading.Event
    ) -> Iterator[RecordedEvent]:
        """``watch`` without a timeout that ends soon after ``stop`` is set (for ``Run``)."""
        return self._watch(thread_id, after_version, math.inf, stop)

    def wait_for_work(
        self,
        thread_id: str,
        boundary: DeliveryBoundary | str,
        run_id: str | None = None,
        *,
        timeout: float | None,
    ) -> bool:
        """Wait until a freeze at ``boundary`` would select an entry (see Mailbox)."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        at = inputs.boundary(boundary)
        run = None if run_id is None else inputs.identifier(run_id, "run_id")
        wait = inputs.timeout(timeout)
        deadline = time.monotonic() + wait
        bell = self._doorbell()
        try:
            bell.listen()
            while True:
                if self._repository.read(thread_id, lambda s: has_work(s, at, run)):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                bell.wait(left)
        finally:
            bell.close()

    def waiting_run_id(self, thread_id: str) -> str | None:
        """The thread's waiting run, read from its latest state."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        return self._repository.read(thread_id, _waiting)


def _waiting(state: Thread) -> str | None:
    return state.waiting_run_id


def has_work(state: Thread, boundary: DeliveryBoundary, run_id: str | None) -> bool:
    """Would a freeze at ``boundary`` by ``run_id`` (default: the thread's open run) select an
    entry of the pending zone now?"""
    current = run_id if run_id is not None else state.open_run_id
    return bool(scan_for_freeze(list(state.pending), boundary, current).selected)
