"""Thread states between commands: cached, loaded from the latest snapshot and the log's tail,
saved with the version guard, retried on conflict (ADR 0002).

``transact`` is the one way a command reaches the store: decide on the latest state, append
the events in one write (the thread version guards it), fold them into the cached state. On a
conflict with another writer it folds what that writer saved and decides again, with backoff,
until ``Contention``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TypeVar

from threadbox.domain import claims, errors
from threadbox.domain import commands as c
from threadbox.domain.decide import decide
from threadbox.domain.events import AnyThreadEvent
from threadbox.domain.thread import Thread, Usage, apply_event

from .ports import CommandMetrics, EventStore, IdsTaken, NoMetrics, StreamConflict
from .settings import Settings

C = TypeVar("C", bound=c.Command)
R = TypeVar("R")
# A command's result, read from the command, the state it was decided on and its events.
Outcome = Callable[[C, Thread, list[AnyThreadEvent]], R]

STRIPES = 64  # locks in-process writers take turns on, by thread id
# How metrics name each command: the Python API's method names.
COMMAND_NAMES: dict[type[object], str] = {
    c.Deliver: "deliver",
    c.Edit: "edit",
    c.Retract: "retract",
    c.Reorder: "reorder",
    c.Freeze: "freeze",
    c.Submit: "submit",
    c.SuspendRun: "suspend_run",
    c.FinishRun: "finish_run",
    c.CommitOutput: "commit_output",
    c.Hide: "hide",
}
USAGE_PAGE = 64  # events read at a time to find a message id's usage
log = logging.getLogger("threadbox")


class ThreadRepository:
    """The threads' states over an ``EventStore``: a bounded cache of folded states, one
    lock stripe per group of threads, snapshots every few versions, conflict retries."""

    def __init__(
        self,
        store: EventStore,
        settings: Settings,
        clock: Callable[[], datetime],
        metrics: CommandMetrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self.metrics: CommandMetrics = metrics or NoMetrics()
        self._cache: OrderedDict[str, Thread] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(STRIPES)]
        self._counting = threading.Lock()
        self.conflicts = 0  # storage conflicts retried (versions taken, ids taken)
        self.snapshot_failures = 0  # snapshot writes that failed (logged); the log stays whole

    def transact(self, thread_id: str, command: C, outcome: Outcome[C, R]) -> tuple[R, int]:
        """Decide ``command`` on the thread's latest state and save its events; returns
        ``outcome(command, state, events)`` and the thread's version after the write.

        A decision that raises or changes nothing is confirmed against the latest version
        first (a stale cache never gives a wrong error or a wrong no-op); a decision that
        writes is confirmed by the version guard itself. Each call is reported to ``metrics``
        with how it ended."""
        started = time.perf_counter()
        ended = "store_error"  # anything but a decision's own answer is the store's failure
        try:
            result, version, wrote = self._transact(thread_id, command, outcome)
            ended = "ok" if wrote else "unchanged"
            return result, version
        except errors.ThreadboxError as refused:
            ended = refused.code
            raise
        finally:
            name = COMMAND_NAMES.get(type(command), type(command).__name__)
            self.metrics.command_done(name, ended, time.perf_counter() - started)

    def _transact(self, thread_id: str, command: C, outcome: Outcome[C, R]) -> tuple[R, int, bool]:
        with self._stripe(thread_id):
            state = self._load(thread_id)
            for attempt in range(self.settings.max_attempts):
                try:
                    events = decide(state, command, self._clock())
                except errors.ThreadboxError:
                    if self._refresh(state):
                        continue  # decided on a stale state: decide again on the latest
                    if self._learn(state, claims.referenced(command)):
                        continue  # refused for want of ids a snapshot leaves out: decide again
                    raise
                if not events:
                    if self._refresh(state) or self._learn(state, claims.referenced(command)):
                        continue
                    return outcome(command, state, events), state.version, False
                try:
                    self._append(state, events)
                except StreamConflict:
                    with self._counting:
                        self.conflicts += 1
                    self._refresh(state)
                    self._backoff(attempt)
                    continue
                except IdsTaken:
                    # The id table holds an id the state did not know (it was restored from a
                    # snapshot): learn the ids the write used and decide again, as the decision
                    # would have on the whole log. Nothing was written.
                    with self._counting:
                        self.conflicts += 1
                    refreshed = self._refresh(state)
                    learned = self._learn(state, {claim.key for claim in claims.claims(events)})
                    if not (refreshed or learned):
                        self._backoff(attempt)  # claimed after this state's version: wait
                    continue
                result = outcome(command, state, events)  # read before the state moves on
                self._fold(state, events)
                return result, state.version, True
            raise errors.Contention(thread_id, self.settings.max_attempts)

    def read(self, thread_id: str, view: Callable[[Thread], R]) -> R:
        """``view(state)`` of the thread's latest state, read while no in-process writer of
        the thread moves it (``view`` must not keep the state)."""
        with self._stripe(thread_id):
            return view(self._load(thread_id, refresh=True))

    def _stripe(self, thread_id: str) -> threading.Lock:
        """In-process writers of one thread take turns; other processes meet at the version."""
        return self._stripes[hash(thread_id) % len(self._stripes)]

    def _backoff(self, attempt: int) -> None:
        """Full-jitter exponential backoff before the next attempt."""
        ceiling = min(self.settings.backoff_cap, self.settings.backoff_base * 2**attempt)
        time.sleep(random.uniform(0, ceiling))

    def _load(self, thread_id: str, *, refresh: bool = False) -> Thread:
        with self._cache_lock:
            state = self._cache.get(thread_id)
            if state is not None:
                self._cache.move_to_end(thread_id)
        if state is None:
            state = self.store.load_snapshot(thread_id) or Thread(thread_id)
            self._refresh(state)
            with self._cache_lock:
                self._cache[thread_id] = state
                while len(self._cache) > self.settings.cache_size:
                    self._cache.popitem(last=False)
        elif refresh:
            self._refresh(state)
        return state

    def _refresh(self, state: Thread) -> int:
        """Fold the events other writers saved since ``state``; how many there were."""
        newer = self.store.load(state.thread_id, after=state.version)
        self._fold(state, newer)
        return len(newer)

    def _fold(self, state: Thread, events: Iterable[AnyThreadEvent]) -> None:
        try:
            for event in events:
                apply_event(state, event)
        except Exception:
            with self._cache_lock:  # a state half folded is never read again
                self._cache.pop(state.thread_id, None)
            raise

    def _learn(self, state: Thread, keys: set[claims.ClaimKey]) -> bool:
        """Look up in the id table the keys a state restored from a snapshot does not know, and
        record their facts in it as of its version: a message id's usage (folded from the events
        since its claim until it settles), a run id used, a hiding. Whether it learned any."""
        if state.ids_complete:
            return False
        unknown = {k for k in keys if not claims.known(state, k)}
        if not unknown:
            return False
        claimed = self.store.claimed(state.thread_id, unknown)
        found = {k: v for k, v in claimed.items() if v <= state.version}
        for key, version in sorted(found.items(), key=lambda kv: kv[1]):
            usage = None
            if key.kind == claims.MESSAGE:
                usage = self._usage(state, key.id, version)
            claims.learn(state, key, usage)
            if key.kind == claims.RUN:
                self._learn_run_end(state, key.id, version)
        return bool(found)

    def _learn_run_end(self, state: Thread, run_id: str, started_at: int) -> None:
        """Learn which run interrupted ``run_id``, if one did: read from its start until its
        end, a page at a time (``RunInterrupted`` needs it; a snapshot leaves it out)."""
        for event in self._events_from(state, started_at):
            ended = claims.run_end(run_id, event)
            if ended is not None:
                if ended[0] is not None:
                    state.interrupted_by[run_id] = ended[0]
                return

    def _events_from(self, state: Thread, version: int) -> Iterator[AnyThreadEvent]:
        """The thread's events from ``version`` through the state's, read a page
        (``USAGE_PAGE``) at a time as the caller goes on."""
        after = version - 1
        while after < state.version:
            page = self.store.load(
                state.thread_id, after=after, upto=state.version, limit=USAGE_PAGE
            )
            if not page:
                return
            yield from page
            after = page[-1].version

    def _usage(self, state: Thread, message_id: str, claimed_at: int) -> Usage:
        """A message id's usage at the state's version: folded from the event that claimed it
        through the later ones, a page at a time, until it settles."""
        usage: Usage = ("unused", None)
        for event in self._events_from(state, claimed_at):
            usage = claims.usage_after(message_id, usage, event)
            if claims.settled(usage):
                break
        return usage

    def _append(self, state: Thread, events: list[AnyThreadEvent]) -> None:
        """Save ``events``, decided on ``state``; with a snapshot of ``state`` in the same
        transaction when they take the thread past a multiple of the snapshot interval. The
        snapshot is of the state the events were decided on, not of the state after them: it
        is whole before the write (a failed write leaves the state as it was, for the retry),
        and it can never be ahead of the log. A snapshot that cannot be written (a defect, not
        the store being unavailable or taken by another writer) does not fail the command: it
        is logged and counted, and the events are saved without it."""
        interval = self._snapshot_every(state)
        after = state.version + len(events)
        if state.version == 0 or after // interval == state.version // interval:
            self.store.append(events)
            return
        try:
            self.store.append(events, state)
            return
        except (StreamConflict, IdsTaken, errors.StoreUnavailable):
            raise  # the events' own failures, which the command handles or reports
        except Exception:
            # A snapshot only saves a cold load some folding; the next interval tries again, and
            # the failures are counted for /healthz.
            with self._counting:
                self.snapshot_failures += 1
            log.warning(
                "snapshot of thread %r at version %d failed; its events are saved without it",
                state.thread_id,
                state.version,
                exc_info=True,
            )
        self.store.append(events)

    def _snapshot_every(self, state: Thread) -> int:
        """A snapshot costs about as much to write and read as folding ~1 event per 10 of its
        pending entries (it holds nothing else that grows, ADR 0010): snapshot a thread with a
        long queue less often, so neither the writes nor a cold load's tail ever dominate."""
        settings = self.settings
        weight = len(state.pending) // 10
        return max(settings.snapshot_interval, min(settings.snapshot_interval_max, weight))
