"""The read side of the mailbox: every read rule, in one place.

Reads of the views first catch them up to the end of the log, so a read reflects every
command that returned before it, in any process (read-your-writes). The pending zone is read
from the thread's own state, the thread and its history from its event log.
"""

from __future__ import annotations

from threadbox.domain import errors, guards, results
from threadbox.domain.events import AnyThreadEvent
from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    PendingEntry,
    RecordedEvent,
    RunRecord,
    ThreadState,
    ThreadSummary,
)
from threadbox.domain.thread import Thread, fold
from threadbox.domain.values import Visibility

from . import inputs
from .ports import EventStore, Views
from .repository import ThreadRepository


class Queries:
    """Reads of the pending zone, the committed zone, runs, checkpoints, thread summaries,
    the thread's state at a version and its audit trail."""

    def __init__(self, store: EventStore, views: Views, repository: ThreadRepository) -> None:
        self._store = store
        self._views = views
        self._repository = repository

    def pending_page(self, thread_id: str) -> tuple[list[PendingEntry], int]:
        """The pending queue and the thread version it is at, read together."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        return self._repository.read(thread_id, _pending_page)

    def pending_entry(self, thread_id: str, pending_id: str) -> PendingEntry:
        """One pending entry, as the pending zone has it now (its revision is the ETag an
        edit or retract is guarded by)."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        pending_id = inputs.identifier(pending_id, "pending_id")
        return self._repository.read(thread_id, lambda state: _pending_entry(state, pending_id))

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
        """The committed zone by seq, after ``after_seq``, at most ``limit`` messages.

        Hidden messages only with ``include_hidden``; messages of visibility ``internal`` only
        with ``include_internal``. With ``at_version``: the zone as it was at that thread
        version (its seqs then, hidden as they were then)."""
        if not inputs.is_int(after_seq) or after_seq < 0:
            raise errors.InvalidInput("after_seq must be a whole number >= 0", "after_seq")
        if limit is not None and (not inputs.is_int(limit) or limit < 1):
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        self._read_views(thread_id)
        then = None if at_version is None else fold(thread_id, self._log(thread_id, at_version))
        if then is None and include_internal:
            return self._views.committed(
                thread_id, after_seq=after_seq, limit=limit, include_hidden=include_hidden
            )
        # Messages are dropped after paging: read on until the page is full or the zone ends.
        found: list[CommittedMessage] = []
        after = after_seq
        while True:
            batch = self._views.committed(
                thread_id,
                after_seq=after,
                limit=limit,
                include_hidden=include_hidden or then is not None,
            )
            for message in batch:
                if then is not None:
                    if message.seq > then.last_seq:
                        return found[:limit]
                    message = _as_then(message, then)
                    if not (include_hidden or message.visible):
                        continue
                if include_internal or message.message.visibility is not Visibility.INTERNAL:
                    found.append(message)
            if limit is None or not batch or len(found) >= limit:
                return found[:limit]
            after = batch[-1].seq

    def runs(self, thread_id: str) -> list[RunRecord]:
        """The thread's runs, in the order they started."""
        self._read_views(thread_id)
        return self._views.runs(thread_id)

    def run(self, run_id: str) -> RunRecord:
        """The latest run with this id, in any thread."""
        run_id = inputs.identifier(run_id, "run_id")
        self._views.catch_up()
        found = self._views.run(run_id)
        if found is None:
            raise errors.RunNotFound(run_id)
        return found

    def thread_run(self, thread_id: str, run_id: str) -> RunRecord:
        """The run with this id in this thread."""
        for run in self.runs(thread_id):
            if run.run_id == run_id:
                return run
        raise errors.RunNotFound(run_id)

    def checkpoints(self, thread_id: str) -> list[Checkpoint]:
        """Every commit into the thread's committed zone, in version order."""
        self._read_views(thread_id)
        return self._views.checkpoints(thread_id)

    def threads_with_pending(self, *, limit: int, after: str | None) -> list[str]:
        """Ids of threads with pending work, ordered, after the exclusive cursor ``after``."""
        if not inputs.is_int(limit) or limit < 1:
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        if after is not None:
            after = inputs.identifier(after, "after")
        self._views.catch_up()
        return self._views.threads_with_pending(limit=limit, after=after)

    def threads(
        self, *, has_pending: bool | None, limit: int, after: str | None
    ) -> list[ThreadSummary]:
        """Thread summaries ordered by thread id, after the exclusive cursor ``after``;
        ``has_pending`` True or False keeps the threads with or without pending work."""
        if not inputs.is_int(limit) or limit < 1:
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        if has_pending is not None and not isinstance(has_pending, bool):
            raise errors.InvalidInput("has_pending must be true, false or absent", "has_pending")
        if after is not None:
            after = inputs.identifier(after, "after")
        self._views.catch_up()
        return self._views.threads(limit=limit, after=after, has_pending=has_pending)

    def thread(self, thread_id: str, *, at_version: int | None) -> ThreadState:
        """The thread folded from its event log, optionally as it was at ``at_version``."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        return results.thread_state(fold(thread_id, self._log(thread_id, at_version)))

    def history(
        self, thread_id: str, *, after_version: int, limit: int | None
    ) -> list[RecordedEvent]:
        """The audit trail: the thread's events after ``after_version`` (at most ``limit``)."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        if not inputs.is_int(after_version) or after_version < 0:
            raise errors.InvalidInput("after_version must be a whole number >= 0", "after_version")
        if limit is not None and (not inputs.is_int(limit) or limit < 1):
            raise errors.InvalidInput("limit must be a whole number >= 1", "limit")
        events = self._store.load(thread_id, after=after_version, limit=limit)
        if not events and not self._store.load(thread_id, upto=1):
            raise errors.ThreadNotFound(thread_id)
        return [results.recorded_event(e) for e in events]

    def _log(self, thread_id: str, at_version: int | None) -> list[AnyThreadEvent]:
        """The thread's events up to ``at_version`` (all of them without one)."""
        if at_version is not None and (not inputs.is_int(at_version) or at_version < 1):
            raise errors.InvalidInput("at_version must be at least 1", "at_version")
        events = self._store.load(thread_id, upto=at_version)
        if not events:
            raise errors.ThreadNotFound(thread_id)
        if at_version is not None and events[-1].version < at_version:
            raise errors.InvalidInput(
                f"thread {thread_id!r} has {events[-1].version} versions, not {at_version}",
                "at_version",
            )
        return events

    def _read_views(self, thread_id: str) -> None:
        """Catch the views up; the thread must be in them."""
        self._views.catch_up()
        if not self._views.thread_exists(inputs.identifier(thread_id, "thread_id")):
            raise errors.ThreadNotFound(thread_id)


def _pending_page(state: Thread) -> tuple[list[PendingEntry], int]:
    if not state.exists:
        raise errors.ThreadNotFound(state.thread_id)
    return results.pending_entries(state), state.version


def _pending_entry(state: Thread, pending_id: str) -> PendingEntry:
    guards.find_pending(state, pending_id, None)  # there, or the error that says why not
    return results.entry_of(state, pending_id)


def _as_then(message: CommittedMessage, then: Thread) -> CommittedMessage:
    """A committed message as it was in ``then``: visible unless hidden by then (hiding is the
    one change a committed message sees)."""
    visible = message.message.id not in then.hidden
    return (
        message if visible == message.visible else message.model_copy(update={"visible": visible})
    )
