"""The read side of the mailbox: every read rule, in one place.

Reads of the views first catch them up to the end of the log, so a read reflects every
command that returned before it, in any process (read-your-writes). The pending zone is read
from the thread's own state, the thread from the views (at a past version: folded from the log,
a page at a time), its history from its event log. No read holds more than a page of events.
"""

from __future__ import annotations

from threadbox.domain import errors, guards, results
from threadbox.domain.events import CommittedMessageHidden
from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    PendingEntry,
    RecordedEvent,
    RunRecord,
    ThreadState,
    ThreadSummary,
)
from threadbox.domain.thread import Thread, apply_event

from . import inputs
from .ports import EventStore, Views
from .redaction import redacted
from .repository import ThreadRepository
from .subscriptions import LogItem

FOLD_PAGE = 1000  # events read at a time when a read folds the log
CONSISTENT_READ_ATTEMPTS = 5  # reads of a thread's views rows before folding it instead


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
        inputs.limit(limit)
        self._read_views(thread_id)
        if at_version is None:  # hidden and internal messages are left out by the query
            return self._views.committed(
                thread_id,
                after_seq=after_seq,
                limit=limit,
                include_hidden=include_hidden,
                include_internal=include_internal,
            )
        last_seq, hidden_since = self._then(thread_id, at_version)
        # Hidden now is not always hidden then: read on until the page is full or the zone ends.
        found: list[CommittedMessage] = []
        after = after_seq
        while True:
            batch = self._views.committed(
                thread_id,
                after_seq=after,
                limit=limit,
                include_hidden=True,
                include_internal=include_internal,
            )
            for message in batch:
                if message.seq > last_seq:
                    return found[:limit]
                message = _as_then(message, hidden_since)
                if include_hidden or message.visible:
                    found.append(message)
            if limit is None or not batch or len(found) >= limit:
                return found[:limit]
            after = batch[-1].seq

    def runs(self, thread_id: str, *, after: int = 0, limit: int | None = None) -> list[RunRecord]:
        """The thread's runs in the order they started, after the first ``after`` of them,
        at most ``limit`` (runs are only ever added: a count of runs is a stable cursor)."""
        _check_cursor(after, "after")
        inputs.limit(limit)
        self._read_views(thread_id)
        return self._views.runs(thread_id, offset=after, limit=limit)

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

    def checkpoints(
        self, thread_id: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Checkpoint]:
        """The thread's commits into its committed zone after ``after_version``, in version
        order, at most ``limit``."""
        _check_cursor(after_version, "after_version")
        inputs.limit(limit)
        self._read_views(thread_id)
        return self._views.checkpoints(thread_id, after_version=after_version, limit=limit)

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
        """The thread as it is now, read from the views (no fold of the log); with
        ``at_version``, as it was then, folded from the log a page at a time (the run
        history it answers with is not in snapshots; the views are not read)."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        if at_version is not None:
            if not inputs.is_int(at_version) or at_version < 1:
                raise errors.InvalidInput("at_version must be at least 1", "at_version")
            return results.thread_state(self._fold(Thread(thread_id), at_version))
        self._views.catch_up()
        for _ in range(CONSISTENT_READ_ATTEMPTS):
            now = self._viewed_state(thread_id)
            if now is not None:
                return now
        # The thread moved under every read of its views: fold it instead.
        return results.thread_state(self._fold(Thread(thread_id), None))

    def history(
        self,
        thread_id: str,
        *,
        after_version: int,
        limit: int | None,
        include_internal: bool = True,
    ) -> list[RecordedEvent]:
        """The audit trail: the thread's events after ``after_version`` (at most ``limit``);
        without ``include_internal``, internal and hidden messages' content is left out."""
        thread_id = inputs.identifier(thread_id, "thread_id")
        _check_cursor(after_version, "after_version")
        inputs.limit(limit)
        events = self._store.load(thread_id, after=after_version, limit=limit)
        if not events and not self._store.load(thread_id, upto=1):
            raise errors.ThreadNotFound(thread_id)
        recorded = [results.recorded_event(e) for e in events]
        if include_internal or not recorded:
            return recorded
        self._views.catch_up()  # after the events were read: every hide of theirs is applied
        hidden = self._views.hidden(thread_id)
        return [redacted(e, hidden) for e in recorded]

    def redacted_log(self, items: list[LogItem]) -> list[LogItem]:
        """``items`` of the store's log with the content of internal messages, and of messages
        hidden now, left out (as ``history`` without ``include_internal``)."""
        if not items:
            return items
        self._views.catch_up()  # after the items were read: every hide of theirs is applied
        hidden: dict[str, set[str]] = {}
        shown: list[LogItem] = []
        for item in items:
            if item.thread_id not in hidden:
                hidden[item.thread_id] = self._views.hidden(item.thread_id)
            event = redacted(item.event, hidden[item.thread_id])
            shown.append(item if event is item.event else item.model_copy(update={"event": event}))
        return shown

    def _viewed_state(self, thread_id: str) -> ThreadState | None:
        """The thread's state from its views rows, or None when a catch-up moved it while they
        were read (its version differs before and after: the rows may mix two versions)."""
        before = self._views.thread(thread_id)
        if before is None:
            raise errors.ThreadNotFound(thread_id)
        pending = self._views.pending(thread_id)
        runs = self._views.runs(thread_id)
        after = self._views.thread(thread_id)
        if after is None or after.version != before.version:
            return None
        return ThreadState(
            thread_id=thread_id,
            version=before.version,
            pending=pending,
            committed_count=before.committed_count,
            running_run_id=before.running_run_id,
            waiting_run_id=before.waiting_run_id,
            runs=runs,
        )

    def _then(self, thread_id: str, at_version: int) -> tuple[int, set[str]]:
        """The committed zone's last seq at ``at_version`` (folded from the latest snapshot when
        it is not after ``at_version``, else from the start), and the ids of the messages
        hidden since (the events after it): visible then = visible now, or hidden since."""
        if not inputs.is_int(at_version) or at_version < 1:
            raise errors.InvalidInput("at_version must be at least 1", "at_version")
        snapshot = self._store.load_snapshot(thread_id)
        start = snapshot if snapshot is not None and snapshot.version <= at_version else None
        then = self._fold(start or Thread(thread_id), at_version)
        hidden_since: set[str] = set()
        after = at_version
        while page := self._store.load(thread_id, after=after, limit=FOLD_PAGE):
            hidden_since.update(e.message_id for e in page if isinstance(e, CommittedMessageHidden))
            after = page[-1].version
        return then.last_seq, hidden_since

    def _fold(self, state: Thread, at_version: int | None) -> Thread:
        """``state`` with the thread's events after it up to ``at_version`` (None: all of
        them) folded in, read a page at a time (memory stays flat whatever the history)."""
        while at_version is None or state.version < at_version:
            page = self._store.load(
                state.thread_id, after=state.version, upto=at_version, limit=FOLD_PAGE
            )
            if not page:
                break
            for event in page:
                apply_event(state, event)
        if not state.exists:
            raise errors.ThreadNotFound(state.thread_id)
        if at_version is not None and state.version < at_version:
            raise _beyond(state.thread_id, state.version, at_version)
        return state

    def _read_views(self, thread_id: str) -> None:
        """Catch the views up; the thread must be in them."""
        self._views.catch_up()
        if not self._views.thread_exists(inputs.identifier(thread_id, "thread_id")):
            raise errors.ThreadNotFound(thread_id)


def _check_cursor(value: int, name: str) -> None:
    if not inputs.is_int(value) or value < 0:
        raise errors.InvalidInput(f"{name} must be a whole number >= 0", name)


def _beyond(thread_id: str, version: int, at_version: int) -> errors.InvalidInput:
    return errors.InvalidInput(
        f"thread {thread_id!r} has {version} versions, not {at_version}", "at_version"
    )


def _pending_page(state: Thread) -> tuple[list[PendingEntry], int]:
    if not state.exists:
        raise errors.ThreadNotFound(state.thread_id)
    return results.pending_entries(state), state.version


def _pending_entry(state: Thread, pending_id: str) -> PendingEntry:
    guards.find_pending(state, pending_id, None)  # there, or the error that says why not
    return results.entry_of(state, pending_id)


def _as_then(message: CommittedMessage, hidden_since: set[str]) -> CommittedMessage:
    """A committed message as it was before the hidings in ``hidden_since``: visible then if
    visible now or hidden since (hiding is the one change a committed message sees)."""
    visible = message.visible or message.message.id in hidden_since
    return (
        message if visible == message.visible else message.model_copy(update={"visible": visible})
    )
