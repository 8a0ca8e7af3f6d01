"""``Mailbox``: the public face of the application — its commands go to the service, its reads
to the queries, both over one repository of thread states."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from threadbox.domain.errors import InvalidInput, ThreadBusy, ThreadNotFound
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
from threadbox.domain.values import DeliveryBoundary, DeliveryMode, Message

from . import inputs
from .agent import Run
from .following import PollingDoorbell
from .ports import CommandMetrics, Doorbell, EventStore, Position, Views
from .queries import Queries
from .repository import ThreadRepository
from .service import CommandService
from .settings import Settings
from .subscriptions import LogItem, Subscriptions

RUN_WATCH_JOIN = 5.0  # seconds close() waits for a run's watch to end


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Mailbox:
    """Threads with a pending zone and a committed zone, on an event store, with views to read.

    Open one with ``threadbox.open(url)``; close it with ``close()`` or use it as a context
    manager. It is safe to share between threads; several processes may write one store.
    Every method raises ``threadbox.errors.InvalidInput`` for an argument that is not valid
    (nothing is written then), and the errors its command or read documents.
    """

    def __init__(
        self,
        store: EventStore,
        views: Views,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        metrics: CommandMetrics | None = None,
        doorbell: Callable[[], Doorbell] | None = None,
    ) -> None:
        """A mailbox over ``store`` and ``views`` (``threadbox.open`` wires both from a URL);
        ``clock`` gives the time stamped on events (default: now, in UTC); ``metrics`` is told
        of every command (``threadbox.open`` gives a Prometheus registry, ``threadbox.metrics``);
        ``doorbell`` makes what each subscriber waits on for commits (default: a 50 ms poll;
        ``threadbox.open`` gives LISTEN/NOTIFY on PostgreSQL)."""
        self.store = store
        """The event store: every thread's events, one stream per thread."""
        self.views = views
        """The read models: catch-up, rebuild, verify, status, following."""
        self.settings = settings or Settings()
        """The limits and tuning this mailbox runs with."""
        self._repository = ThreadRepository(store, self.settings, clock or _utc_now, metrics)
        self.metrics = self._repository.metrics
        """Where every command is reported (with its outcome and duration)."""
        self._commands = CommandService(self._repository, self.settings)
        self._queries = Queries(store, views, self._repository)
        self._live_runs: weakref.WeakSet[Run] = weakref.WeakSet()  # close() stops their watches
        self._subscriptions = Subscriptions(
            store, self._repository, doorbell or (lambda: PollingDoorbell(0.05))
        )

    @property
    def conflicts(self) -> int:
        """Storage conflicts with other writers retried so far (for benchmarks and audits)."""
        return self._repository.conflicts

    @property
    def snapshot_failures(self) -> int:
        """Snapshot writes that failed so far (logged; the commands still succeeded)."""
        return self._repository.snapshot_failures

    # ---- commands --------------------------------------------------------------------------

    def deliver(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None = None,
    ) -> list[PendingEntry]:
        """Deliver messages to the thread's pending zone, in order, with one delivery mode
        (default: the next new run, as a batch); the thread opens on its first delivery.

        Messages without an id get a new one (UUIDv7). Delivering the very same message
        (id, content and mode) again is a no-op that returns its entry as it is now; any other
        reuse of an id raises ``MessageIdInUse``. A mode aimed at a run
        (``target_run_id`` without fallback) needs that run running (``RunNotRunning``), or
        waiting for ``resume_input`` (``RunNotWaiting``). Returns one entry per message."""
        return self._commands.deliver(thread_id, messages, mode)[0]

    def deliver_page(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None = None,
    ) -> tuple[list[PendingEntry], int]:
        """``deliver``, with the thread version its write produced (for ETags)."""
        return self._commands.deliver(thread_id, messages, mode)

    def edit(
        self,
        thread_id: str,
        pending_id: str,
        message: Message | dict[str, Any],
        *,
        expected_revision: int | None = None,
    ) -> PendingEntry:
        """Replace a pending message's content; its id, position and mode stay, its revision
        goes up by one (unless the content is the same: then nothing changes).

        Raises ``PendingNotFound``, ``NotPending`` (consumed, retracted or expired) or, when
        ``expected_revision`` is given and differs, ``RevisionConflict``."""
        return self._commands.edit(thread_id, pending_id, message, expected_revision)

    def retract(
        self, thread_id: str, pending_id: str, *, expected_revision: int | None = None
    ) -> PendingEntry:
        """Take a pending message back before the model reads it; returns the entry as it
        was. Raises as ``edit`` does."""
        return self._commands.retract(thread_id, pending_id, expected_revision)

    def reorder(
        self, thread_id: str, ordered_ids: Sequence[str], *, expected_version: int | None = None
    ) -> list[PendingEntry]:
        """Put the pending zone in a new order: ``ordered_ids`` must name every pending entry
        once (else ``ReorderMismatch``). Returns the entries in their new positions; with
        ``expected_version`` given, a thread at another version raises ``VersionConflict``."""
        return self._commands.reorder(thread_id, ordered_ids, expected_version)[0]

    def reorder_page(
        self, thread_id: str, ordered_ids: Sequence[str], *, expected_version: int | None = None
    ) -> tuple[list[PendingEntry], int]:
        """``reorder``, with the thread version after it (for ETags)."""
        return self._commands.reorder(thread_id, ordered_ids, expected_version)

    def freeze(
        self,
        thread_id: str,
        boundary: DeliveryBoundary | str,
        run_id: str | None = None,
        *,
        expected_version: int | None = None,
        rollback: bool = False,
    ) -> FreezeResult:
        """Move the pending entries that a freeze at ``boundary`` selects into the committed
        zone, as inputs of ``run_id``, in one write.

        ``interrupt`` starts ``run_id`` and ends the open run as interrupted; ``next_step``
        and ``on_natural_end`` need ``run_id`` running (``RunNotRunning``); ``resume_input``
        needs it waiting (``RunNotWaiting``); ``new_run`` starts it, or resumes it when it is
        the waiting run, and needs no other open run (``ThreadBusy``). When nothing is
        selected, nothing changes and ``committed`` is empty.

        ``run_id=None`` at ``new_run`` or ``interrupt`` starts a run with a generated id (a
        UUIDv7, in ``FreezeResult.run_id``). ``rollback=True`` (``interrupt`` only) also hides,
        in the same write, every output the interrupted run committed (their ids in
        ``FreezeResult.hidden``). A command by a run that an interrupt ended raises
        ``RunInterrupted``, naming the run that interrupted it."""
        return self._commands.freeze(thread_id, boundary, run_id, expected_version, rollback)

    def submit(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None,
        run_id: str,
    ) -> FreezeResult:
        """Deliver and freeze at ``mode.boundary`` in one write: every message is committed
        now, or nothing is written (``DeliveryBlocked`` names the pending entry in the way)."""
        return self._commands.submit(thread_id, messages, mode, run_id)

    def suspend_run(self, thread_id: str, run_id: str, reason: str) -> RunRecord:
        """The running run waits (for ``resume_input`` work); returns it, now waiting.
        Raises ``RunNotRunning`` unless ``run_id`` is the running run."""
        self._commands.suspend_run(thread_id, run_id, reason)
        return self._queries.thread_run(thread_id, run_id)

    def finish_run(
        self,
        thread_id: str,
        run_id: str,
        termination: Termination | str = Termination.NATURAL_END,
        detail: str | None = None,
    ) -> list[str]:
        """End the thread's open run (running or waiting); returns the ids of the pending
        entries that only this run could consume, which expire with it."""
        return self._commands.finish_run(thread_id, run_id, termination, detail)

    def commit_output(
        self, thread_id: str, run_id: str, messages: Sequence[Message | dict[str, Any]]
    ) -> list[CommittedMessage]:
        """Append the running run's outputs (assistant, tool or system messages) to the
        committed zone, at the next seqs."""
        return self._commands.commit_output(thread_id, run_id, messages)

    def hide(self, thread_id: str, message_id: str, reason: str) -> None:
        """Tombstone a committed message: it stays in the zone, marked not visible (hiding
        it again changes nothing). Raises ``MessageNotFound`` for an id not committed."""
        self._commands.hide(thread_id, message_id, reason)

    # ---- reads -----------------------------------------------------------------------------

    def pending(self, thread_id: str) -> list[PendingEntry]:
        """The thread's pending zone, in position order."""
        return self._queries.pending_page(thread_id)[0]

    def pending_entry(self, thread_id: str, pending_id: str) -> PendingEntry:
        """One entry of the pending zone. Raises ``ThreadNotFound``, ``PendingNotFound`` for an
        id never delivered, and ``NotPending`` (``already_consumed``, ``retracted``,
        ``expired``) for one that left the zone."""
        return self._queries.pending_entry(thread_id, pending_id)

    def pending_page(self, thread_id: str) -> tuple[list[PendingEntry], int]:
        """The pending zone and the thread version it is at, read together (for ETags)."""
        return self._queries.pending_page(thread_id)

    def committed(
        self,
        thread_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        include_hidden: bool = False,
        include_internal: bool = True,
        at_version: int | None = None,
    ) -> list[CommittedMessage]:
        """The committed zone in seq order: messages after ``after_seq``, at most ``limit``.

        Hidden messages only with ``include_hidden``; ``include_internal=False`` leaves out
        messages of visibility ``internal`` (the HTTP API's default). ``at_version`` gives
        the zone as it was at that thread version: its messages then, hidden as they were."""
        return self._queries.committed(
            thread_id,
            after_seq=after_seq,
            limit=limit,
            include_hidden=include_hidden,
            include_internal=include_internal,
            at_version=at_version,
        )

    def runs(self, thread_id: str, *, after: int = 0, limit: int | None = None) -> list[RunRecord]:
        """The thread's runs, in the order they started: after the first ``after`` of them
        (runs are never removed, so a count is a stable cursor), at most ``limit``."""
        return self._queries.runs(thread_id, after=after, limit=limit)

    def run(self, run_id: str) -> RunRecord:
        """The run with this id (the latest to start, if threads share run ids); raises
        ``RunNotFound``."""
        return self._queries.run(run_id)

    def checkpoints(
        self, thread_id: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Checkpoint]:
        """Every commit into the thread's committed zone: freezes (``input``) and outputs, in
        version order, after the thread version ``after_version``, at most ``limit``."""
        return self._queries.checkpoints(thread_id, after_version=after_version, limit=limit)

    def threads_with_pending(self, *, limit: int = 100, after: str | None = None) -> list[str]:
        """Ids of the threads with pending work, in id order, after the cursor ``after``."""
        return self._queries.threads_with_pending(limit=limit, after=after)

    def threads(
        self, *, has_pending: bool | None = None, limit: int = 100, after: str | None = None
    ) -> list[ThreadSummary]:
        """Thread summaries ordered by thread id (``after``: exclusive cursor); ``has_pending``
        True or False keeps the threads with or without pending work."""
        return self._queries.threads(has_pending=has_pending, limit=limit, after=after)

    def thread(self, thread_id: str, *, at_version: int | None = None) -> ThreadState:
        """The thread's state (read from the views, the same as a fold of its event log), or
        as it was at ``at_version`` (folded from the log)."""
        return self._queries.thread(thread_id, at_version=at_version)

    def history(
        self,
        thread_id: str,
        *,
        after_version: int = 0,
        limit: int | None = None,
        include_internal: bool = True,
    ) -> list[RecordedEvent]:
        """The audit trail: the thread's events after ``after_version`` (at most ``limit``),
        each with its version, type, time and payload. ``include_internal=False`` (the HTTP
        API's default) leaves out the content of internal messages and of hidden ones: the
        message keeps its id, role and visibility, its content is one empty text part and its
        metadata ``{"redacted": "internal"}`` or ``{"redacted": "hidden"}``."""
        return self._queries.history(
            thread_id,
            after_version=after_version,
            limit=limit,
            include_internal=include_internal,
        )

    # ---- subscriptions ---------------------------------------------------------------------

    def redacted(self, items: list[LogItem]) -> list[LogItem]:
        """Items read with ``follow``, as an external reader may see them: the content of
        internal messages and of hidden ones left out, as ``history(include_internal=False)``
        shows them (what the HTTP log routes send by default)."""
        return self._queries.redacted_log(items)

    def head(self) -> Position:
        """The position of the newest event in the store's commit order (``""`` if none): a
        ``follow(after=mb.head())`` yields only what is committed from now on."""
        return self._subscriptions.head()

    def follow(
        self, after: Position = "", *, limit: int | None = None, timeout: float | None = 0.0
    ) -> Iterator[LogItem]:
        """Every event of every thread committed after the position ``after`` (``""``: from
        the first), each exactly once, in commit order, also while other processes write; within
        a thread in version order. Each ``LogItem`` has its position: follow on from the last one
        read, in this process or another, after a restart too.

        It ends after ``limit`` items, or once nothing new has arrived for ``timeout`` seconds
        (``None``: never). It reads in pages, so a follower far behind holds one page at a time.
        ``after`` that is no position of this store raises ``InvalidInput`` (field ``after``)."""
        return self._subscriptions.follow(after, limit=limit, timeout=timeout)

    def watch(
        self, thread_id: str, after_version: int = 0, *, timeout: float | None = 0.0
    ) -> Iterator[RecordedEvent]:
        """``follow`` for one thread, keyed by version: its events after ``after_version``, in
        version order; it ends once nothing new has arrived for ``timeout`` seconds (``None``:
        never)."""
        return self._subscriptions.watch(thread_id, after_version, timeout=timeout)

    def wait_for_work(
        self,
        thread_id: str,
        boundary: DeliveryBoundary | str,
        run_id: str | None = None,
        *,
        timeout: float | None,
    ) -> bool:
        """``True`` as soon as a freeze at ``boundary`` by ``run_id`` (default: the thread's
        open run) would select at least one pending entry, ``False`` after ``timeout`` seconds
        (``None``: wait for ever). It wakes on commits by any process (PostgreSQL LISTEN/NOTIFY,
        else a poll every 50 ms), never by a busy loop; a thread not created yet has no work."""
        return self._subscriptions.wait_for_work(thread_id, boundary, run_id, timeout=timeout)

    # ---- running an agent ------------------------------------------------------------------

    def start_run(
        self,
        thread_id: str,
        run_id: str | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        interrupt: bool = False,
        rollback: bool = False,
    ) -> Run | None:
        """Start a run on the thread: freeze at ``new_run`` and return the ``Run`` when the
        freeze committed at least one message, ``None`` when there was nothing to start. With
        ``wait=True`` it first waits (event-driven) for ``new_run`` work, up to ``timeout``
        seconds (``None``: for ever). ``run_id=None`` generates one (UUIDv7). A thread not
        created yet has nothing to start.

        It never takes a waiting run: a thread with an open run raises ``ThreadBusy``, and so
        does the id of the waiting run. ``interrupt=True`` freezes at ``interrupt`` instead,
        ending the open run (whose ``Run.interrupted`` turns true), with ``rollback`` as for
        ``freeze``: the double-texting strategies "interrupt" and "rollback"."""
        boundary = DeliveryBoundary.INTERRUPT if interrupt else DeliveryBoundary.NEW_RUN
        for name, flag in (("wait", wait), ("interrupt", interrupt)):
            if not isinstance(flag, bool):
                raise InvalidInput(f"{name} must be a bool, got {flag!r}", name)
        deadline = time.monotonic() + inputs.timeout(timeout)  # None: inf
        while True:
            if wait:
                left = max(0.0, deadline - time.monotonic())
                if not self.wait_for_work(thread_id, boundary, timeout=left):
                    return None
            resumes = run_id is not None and not interrupt
            if resumes and self._subscriptions.waiting_run_id(thread_id) == run_id:
                raise ThreadBusy(str(run_id), "start_run never resumes a waiting run")
            try:
                result = self.freeze(thread_id, boundary, run_id, rollback=rollback)
            except ThreadNotFound:
                return None  # a thread with no event yet has nothing to start
            if result.committed:
                run = Run(
                    self,
                    self._subscriptions,
                    result.thread_id,
                    result.run_id,
                    list(result.committed),
                    result.version,
                )
                self._live_runs.add(run)
                return run
            if not wait or time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        """Stop the runs' watches and the views' background work, then close the views and
        the store (a watch still reading a closed store would fail, or worse)."""
        for run in list(self._live_runs):
            run.close(wait=RUN_WATCH_JOIN)
        self.views.close()
        self.store.close()

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
