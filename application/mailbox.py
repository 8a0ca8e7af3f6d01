"""The application service: one way through for every command (load, decide, save, retry)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from threadbox.application import inputs
from threadbox.domain import commands as c
from threadbox.domain import errors, results
from threadbox.domain.decide import decide
from threadbox.domain.events import AnyThreadEvent
from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    FreezeResult,
    PendingEntry,
    RecordedEvent,
    RunRecord,
    Termination,
    ThreadState,
    ThreadSummary,
)
from threadbox.domain.thread import Thread, apply_event, fold
from threadbox.domain.values import DeliveryBoundary, DeliveryMode, Message

from .ids import uuid7
from .ports import EventStore, StreamConflict, Views
from .settings import Settings

C = TypeVar("C", bound=c.Command)
R = TypeVar("R")
# A command's result, from the command, the state it was decided on and its events.
Outcome = Callable[[C, Thread, list[AnyThreadEvent]], R]
log = logging.getLogger("threadbox")


class Mailbox:
    """Threads with a pending and a committed zone, on an event store, with views to read."""

    def __init__(
        self,
        store: EventStore,
        views: Views,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.views = views
        self.settings = settings or Settings()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._cache: OrderedDict[str, Thread] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(64)]
        self.conflicts = 0  # storage conflicts retried (under _counting), for benchmarks and audits
        self.snapshot_failures = 0  # snapshot writes that failed (logged); the log stays whole
        self._counting = threading.Lock()

    # ---- commands --------------------------------------------------------------------------

    def deliver(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None = None,
    ) -> list[PendingEntry]:
        return self.deliver_page(thread_id, messages, mode)[0]

    def deliver_page(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None = None,
    ) -> tuple[list[PendingEntry], int]:
        """``deliver``, with the thread version its write produced (for ETags)."""
        command = c.Deliver(self._messages(messages), inputs.mode(mode))
        return self._transact_versioned(thread_id, command, results.delivered)

    def edit(
        self,
        thread_id: str,
        pending_id: str,
        message: Message | dict[str, Any],
        *,
        expected_revision: int | None = None,
    ) -> PendingEntry:
        msg = inputs.message(message, "message", self.settings.max_message_bytes)
        expected = inputs.guard(expected_revision, "expected_revision")
        command = c.Edit(inputs.identifier(pending_id, "pending_id"), msg, expected)
        return self._transact(thread_id, command, results.edited)

    def retract(
        self, thread_id: str, pending_id: str, *, expected_revision: int | None = None
    ) -> PendingEntry:
        expected = inputs.guard(expected_revision, "expected_revision")
        command = c.Retract(inputs.identifier(pending_id, "pending_id"), expected)
        return self._transact(thread_id, command, results.retracted)

    def reorder(
        self, thread_id: str, ordered_ids: Sequence[str], *, expected_version: int | None = None
    ) -> list[PendingEntry]:
        return self.reorder_page(thread_id, ordered_ids, expected_version=expected_version)[0]

    def reorder_page(
        self, thread_id: str, ordered_ids: Sequence[str], *, expected_version: int | None = None
    ) -> tuple[list[PendingEntry], int]:
        """``reorder``, with the thread version after it (for ETags)."""
        if not isinstance(ordered_ids, (list, tuple)) or not all(
            isinstance(i, str) for i in ordered_ids
        ):
            raise errors.InvalidInput("ordered_ids must be a list of pending ids", "ordered_ids")
        command = c.Reorder(tuple(ordered_ids), inputs.guard(expected_version, "expected_version"))
        return self._transact_versioned(thread_id, command, results.reordered)

    def freeze(
        self,
        thread_id: str,
        boundary: DeliveryBoundary | str,
        run_id: str,
        *,
        expected_version: int | None = None,
    ) -> FreezeResult:
        expected = inputs.guard(expected_version, "expected_version")
        command = c.Freeze(inputs.boundary(boundary), inputs.identifier(run_id, "run_id"), expected)
        return self._transact(thread_id, command, results.frozen)

    def submit(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None,
        run_id: str,
    ) -> FreezeResult:
        command = c.Submit(
            self._messages(messages), inputs.mode(mode), inputs.identifier(run_id, "run_id")
        )
        return self._transact(thread_id, command, results.frozen)

    def suspend_run(self, thread_id: str, run_id: str, reason: str) -> None:
        if not isinstance(reason, str):
            raise errors.InvalidInput("reason must be a string", "reason")
        command = c.SuspendRun(inputs.identifier(run_id, "run_id"), reason)
        self._transact(thread_id, command, results.nothing)

    def finish_run(
        self,
        thread_id: str,
        run_id: str,
        termination: Termination | str = Termination.NATURAL_END,
        detail: str | None = None,
    ) -> list[str]:
        try:
            ending = Termination(termination)
        except ValueError:
            raise errors.InvalidInput(
                f"termination must be one of {[t.value for t in Termination]}, not {termination!r}",
                "termination",
            ) from None
        if detail is not None and not isinstance(detail, str):
            raise errors.InvalidInput("detail must be a string", "detail")
        command = c.FinishRun(inputs.identifier(run_id, "run_id"), ending, detail)
        return self._transact(thread_id, command, results.expired)

    def commit_output(
        self, thread_id: str, run_id: str, messages: Sequence[Message | dict[str, Any]]
    ) -> list[CommittedMessage]:
        command = c.CommitOutput(inputs.identifier(run_id, "run_id"), self._messages(messages))
        return self._transact(thread_id, command, results.outputs)

    def hide(self, thread_id: str, message_id: str, reason: str) -> None:
        if not isinstance(reason, str):
            raise errors.InvalidInput("reason must be a string", "reason")
        command = c.Hide(inputs.identifier(message_id, "message_id"), reason)
        self._transact(thread_id, command, results.nothing)

    # ---- reads -----------------------------------------------------------------------------

    def pending(self, thread_id: str) -> list[PendingEntry]:
        return self.pending_page(thread_id)[0]

    def pending_page(self, thread_id: str) -> tuple[list[PendingEntry], int]:
        """The pending queue and the thread version it is at, read together."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        with self._stripe(thread_id):
            state = self._load(thread_id, refresh=True)
            if not state.exists:
                raise errors.ThreadNotFound(thread_id)
            return results.pending_entries(state), state.version

    def committed(
        self,
        thread_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        include_hidden: bool = False,
    ) -> list[CommittedMessage]:
        if not inputs.is_int(after_seq) or after_seq < 0:
            raise errors.InvalidInput("after_seq must be a whole number >= 0", "after_seq")
        if limit is not None and (not inputs.is_int(limit) or limit < 1):
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        self._read_views(thread_id)
        return self.views.committed(
            thread_id, after_seq=after_seq, limit=limit, include_hidden=include_hidden
        )

    def runs(self, thread_id: str) -> list[RunRecord]:
        self._read_views(thread_id)
        return self.views.runs(thread_id)

    def run(self, run_id: str) -> RunRecord:
        run_id = inputs.identifier(run_id, "run_id")
        self._catch_up()
        found = self.views.run(run_id)
        if found is None:
            raise errors.RunNotFound(run_id)
        return found

    def checkpoints(self, thread_id: str) -> list[Checkpoint]:
        self._read_views(thread_id)
        return self.views.checkpoints(thread_id)

    def threads_with_pending(self, *, limit: int = 100, after: str | None = None) -> list[str]:
        if not inputs.is_int(limit) or limit < 1:
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        if after is not None:
            after = inputs.identifier(after, "after")
        self._catch_up()
        return self.views.threads_with_pending(limit=limit, after=after)

    def threads(
        self, *, has_pending: bool | None = None, limit: int = 100, after: str | None = None
    ) -> list[ThreadSummary]:
        """Thread summaries ordered by thread_id (``after``: exclusive cursor); ``has_pending``
        True or False keeps the threads with or without pending work."""
        if not inputs.is_int(limit) or limit < 1:
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        if has_pending is not None and not isinstance(has_pending, bool):
            raise errors.InvalidInput("has_pending must be true, false or absent", "has_pending")
        if after is not None:
            after = inputs.identifier(after, "after")
        self._catch_up()
        return self.views.threads(limit=limit, after=after, has_pending=has_pending)

    def thread(self, thread_id: str, *, at_version: int | None = None) -> ThreadState:
        """The thread folded from its event log, optionally as it was at ``at_version``."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        if at_version is not None and (not inputs.is_int(at_version) or at_version < 1):
            raise errors.InvalidInput("at_version must be at least 1", "at_version")
        events = self.store.load(thread_id, upto=at_version)
        if not events:
            raise errors.ThreadNotFound(thread_id)
        if at_version is not None and events[-1].version < at_version:
            raise errors.InvalidInput(
                f"thread {thread_id!r} has {events[-1].version} versions, not {at_version}",
                "at_version",
            )
        return results.thread_state(fold(thread_id, events))

    def history(
        self, thread_id: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        """The audit trail: the thread's events after ``after_version`` (at most ``limit``)."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        if not inputs.is_int(after_version) or after_version < 0:
            raise errors.InvalidInput("after_version must be a whole number >= 0", "after_version")
        if limit is not None and (not inputs.is_int(limit) or limit < 1):
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        events = self.store.load(thread_id, after=after_version, limit=limit)
        if not events and not self.store.load(thread_id, upto=1):
            raise errors.ThreadNotFound(thread_id)
        return [recorded(e) for e in events]

    def close(self) -> None:
        self.views.close()
        self.store.close()

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the one way through ---------------------------------------------------------------

    def _transact(self, thread_id: str, command: C, outcome: Outcome[C, R]) -> R:
        return self._transact_versioned(thread_id, command, outcome)[0]

    def _transact_versioned(
        self, thread_id: str, command: C, outcome: Outcome[C, R]
    ) -> tuple[R, int]:
        thread_id = inputs.identifier(thread_id, "thread_id")
        with self._stripe(thread_id):
            state = self._load(thread_id)
            for attempt in range(self.settings.max_attempts):
                try:
                    events = decide(state, command, self._clock())
                except errors.ThreadboxError:
                    if self._refresh(state):
                        continue  # decided on a stale state: decide again on the latest
                    raise
                if not events:
                    if self._refresh(state):
                        continue
                    return outcome(command, state, events), state.version
                try:
                    self.store.append(events)
                except StreamConflict:
                    with self._counting:
                        self.conflicts += 1
                    self._refresh(state)
                    self._backoff(attempt)
                    continue
                result = outcome(command, state, events)  # read before the state moves on
                self._applied(state, events)
                return result, state.version
            raise errors.Contention(thread_id, self.settings.max_attempts)

    def _stripe(self, thread_id: str) -> threading.Lock:
        """In-process writers of one thread take turns; other processes meet at the version."""
        return self._stripes[hash(thread_id) % len(self._stripes)]

    def _backoff(self, attempt: int) -> None:
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
            with self._cache_lock:
                self._cache.pop(state.thread_id, None)
            raise

    def _applied(self, state: Thread, events: Sequence[AnyThreadEvent]) -> None:
        before = state.version
        self._fold(state, events)
        interval = self._snapshot_every(state)
        if state.version // interval > before // interval:
            try:
                self.store.save_snapshot(state)
            except Exception:
                # The command's events are saved: it succeeded, and must say so. A snapshot only
                # saves a cold load some folding; the next interval tries again, and the failures
                # are counted for /healthz.
                with self._counting:
                    self.snapshot_failures += 1
                log.warning(
                    "snapshot of thread %r at version %d failed",
                    state.thread_id,
                    state.version,
                    exc_info=True,
                )

    def _snapshot_every(self, state: Thread) -> int:
        """A snapshot costs about as much to write and read as folding ~1 event per 100 of its
        ids (a pending entry weighs ~10 ids): snapshot a big thread less often, so neither the
        writes nor a cold load's tail ever dominate."""
        settings = self.settings
        weight = (len(state.used) + 10 * len(state.pending)) // 100
        return max(settings.snapshot_interval, min(settings.snapshot_interval_max, weight))

    def _messages(self, values: Any) -> tuple[Message, ...]:
        return inputs.messages(values, self.settings.max_message_bytes, uuid7)

    def _catch_up(self) -> None:
        """A view read reflects every command that returned before it, in any process: the
        views catch up to the end of the log first (a position check when they are current)."""
        self.views.catch_up()

    def _read_views(self, thread_id: str) -> None:
        self._catch_up()
        if not self.views.thread_exists(inputs.identifier(thread_id, "thread_id")):
            raise errors.ThreadNotFound(thread_id)


def recorded(event: AnyThreadEvent) -> RecordedEvent:
    data = event.model_dump(mode="json", exclude={"thread_id", "version", "timestamp"})
    return RecordedEvent(
        version=event.version, type=type(event).__name__, timestamp=event.timestamp, data=data
    )
