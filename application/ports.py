"""What the application needs from the outside, as protocols: the event store, the views and
where their rows live, an archive of stored events, and a way to learn of new events.
``threadbox.infrastructure`` implements them; ``threadbox.open`` wires them together."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from threadbox.domain.claims import ClaimKey
from threadbox.domain.events import AnyThreadEvent
from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    PendingEntry,
    RunRecord,
    ThreadSummary,
)
from threadbox.domain.thread import Thread
from threadbox.projections.changes import Change, Key, Row
from threadbox.projections.tables import Tables

Position = str
"""A point in one store's commit order, as an opaque string: ``""`` is before every event.
Positions of one store compare (as strings) in its commit order, survive restarts and are the same
in every process; callers never parse them. SQLite and memory number events in commit order
(one writer at a time); PostgreSQL orders them by writing transaction, then id (ADR 0009)."""


class StreamConflict(Exception):
    """Another writer saved the thread first: the version this write expected is taken."""


class IdsTaken(Exception):
    """The write uses an id (message id, run id, a hiding) its thread used before: the id
    table's unique key refused it, and nothing was written (ADR 0010)."""


@dataclass(frozen=True)
class Notified:
    """One event of the whole store's log, at its position."""

    position: Position
    event: AnyThreadEvent


# One event of the log as stored, without pydantic: (position, event id, event type name, payload
# upcast to the type's current version; the JSON form of ``threadbox.domain.events``). The event
# id is the store's number for the event (unique, increasing along each thread's versions).
StoredPayload = tuple[Position, int, str, dict[str, Any]]

Progress = Callable[[int, int], None]  # (done, total)


class CommandMetrics(Protocol):
    """Where the application reports each command it ran (``threadbox_commands_total`` and
    ``threadbox_command_seconds`` in the Prometheus adapter)."""

    def command_done(self, command: str, outcome: str, seconds: float) -> None:
        """``command`` (``deliver``, ``freeze``, …) ended with ``outcome`` after ``seconds``:
        ``ok`` (events written), ``unchanged`` (a no-op), an error code (``revision_conflict``,
        ``contention``, …) or ``store_error`` (the store failed)."""


class NoMetrics:
    """Commands reported nowhere (the default)."""

    def command_done(self, command: str, outcome: str, seconds: float) -> None:
        """Nothing."""


class EventStore(Protocol):
    """Every thread's events, one stream per thread, in one log; and the threads' snapshots."""

    kind: str  # "memory", "sqlite" or "postgres"

    def append(self, events: Sequence[AnyThreadEvent], snapshot: Thread | None = None) -> list[int]:
        """Save the events atomically, with the ids they use for the first time in the id
        table; their versions are the guard (``StreamConflict``), and each id is used once per
        thread (``IdsTaken``). ``snapshot``, the state the events were decided on, is saved
        in the same transaction (it replaces the thread's older snapshots): with the events,
        or not at all."""

    def claimed(self, thread_id: str, keys: Iterable[ClaimKey]) -> dict[ClaimKey, int]:
        """Which of ``keys`` the thread has used, each with the version of the event that first
        used it (the id table, ADR 0010)."""

    def load(
        self, thread_id: str, *, after: int = 0, upto: int | None = None, limit: int | None = None
    ) -> list[AnyThreadEvent]:
        """The thread's events after version ``after``, up to ``upto``, at most ``limit``."""

    def load_snapshot(self, thread_id: str) -> Thread | None:
        """The thread's latest snapshot, if one was saved (and its format is known)."""

    def save_snapshot(self, state: Thread) -> None:
        """Save what decisions need of ``state``, at its version, in place of the thread's older
        snapshots (tools; commands save theirs with ``append``)."""

    def read(self, *, after: Position, limit: int, upto: Position | None = None) -> list[Notified]:
        """Events of every thread in commit order, after ``after`` (and at or before ``upto``):
        only events whose place in the order is final, so a reader that goes on from the last
        position it read sees every event exactly once."""

    def read_payloads(
        self, *, after: Position, limit: int, upto: Position | None = None
    ) -> Iterator[StoredPayload]:
        """As ``read``, but the payloads as stored, without pydantic (for the projections),
        each decoded only when the iterator reaches it."""

    def last_position(self) -> Position:
        """The newest position ``read`` reaches now (``""``: none): no event will ever appear
        at or before it that a reader going on from it has not read."""

    def committed_head(self) -> Position:
        """The position of the newest committed event, readable yet or not. It is readable
        once every transaction older than its own has ended (at once on SQLite and memory)."""

    def count_after(self, position: Position, upto: Position | None = None) -> int:
        """How many committed events come after ``position`` (at or before ``upto``)."""

    def oldest_transaction_age(self) -> float | None:
        """Seconds the oldest transaction that holds readers back has run (PostgreSQL: any
        writing transaction on the server); ``None`` where none can (SQLite, memory)."""

    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    def ping_write(self) -> None:
        """Raise ``StoreUnavailable`` if the store cannot be written now."""

    def close(self) -> None:
        """Release the store's connections."""


@dataclass(frozen=True)
class ArchivedEvent:
    """One event as the store holds it, for export and import: its thread, version, type,
    topic and payload exactly as stored (never upcast), so a copy has the same history."""

    thread_id: str
    version: int
    type: str
    topic: str
    payload: dict[str, Any]


@runtime_checkable
class EventArchive(Protocol):
    """Stored events as they are, in and out (what ``export`` reads and ``import`` appends)."""

    def archived(self, thread_id: str) -> list[ArchivedEvent]:
        """One thread's events, in version order."""

    def archived_log(self, *, after: Position, limit: int) -> list[tuple[Position, ArchivedEvent]]:
        """Every thread's events in commit order, with their positions, after ``after``."""

    def stored_version(self, thread_id: str) -> int:
        """The thread's latest version in this store (0: no events)."""

    def event_type_name(self, topic: str) -> str:
        """The event type a stored topic names; ``ValueError`` if it names none."""

    def decoded(self, event: ArchivedEvent) -> AnyThreadEvent:
        """The event an archived one decodes to under the current schema (upcast);
        ``ValueError`` (pydantic's ``ValidationError`` is one) unless it decodes exactly."""

    def append_archived(self, events: Iterable[ArchivedEvent]) -> None:
        """Append events as they are, atomically, with the ids they use in the id table (the
        one insert ``append`` uses); versions still guard (``StreamConflict``), and ids are used
        once per thread (``IdsTaken``). ``events`` is read once, before the write begins: an
        error it raises writes nothing, and the events are held encoded, not as payloads."""

    def count_after(self, position: Position, upto: Position | None = None) -> int:
        """How many committed events come after ``position`` (at or before ``upto``)."""

    def committed_head(self) -> Position:
        """The newest committed event's position, readable yet or not (``""``: none)."""


@dataclass
class VerifyReport:
    """What ``views.verify()`` found: ``ok`` when the log folds and every view row matches a
    fold of it; ``position`` is where in the log it looked (opaque), ``events`` how many events
    it folded."""

    ok: bool
    differences: list[str] = field(default_factory=list)
    events: int = 0
    position: Position = ""


@dataclass(frozen=True)
class ViewStatus:
    """Where the views are in the log: their position, the position of the newest committed
    event, and ``lag``, how many committed events the views have not applied yet (on
    PostgreSQL it includes events a still-running older transaction keeps unreadable)."""

    position: Position
    log_position: Position
    lag: int
    oldest_transaction_seconds: float | None = None  # PostgreSQL: what the lag may wait on


class Views(Protocol):
    """The read models of docs/semantics.md §6, kept up to date from the log, exactly once."""

    def catch_up(self, until: Position | None = None, progress: Progress | None = None) -> Position:
        """Apply events up to ``until`` (default: every event committed before the call, waiting
        for older transactions still running); returns the position."""

    def rebuild(self, progress: Progress | None = None) -> Position:
        """Rebuild every view from the whole log, aside, then swap it in."""

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Compare every view row with an independent fold of the log."""

    def status(self) -> ViewStatus:
        """How far the views are behind the log."""

    def pending(self, thread_id: str) -> list[PendingEntry]:
        """The thread's pending queue, in position order."""

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

    def runs(self, thread_id: str, *, offset: int = 0, limit: int | None = None) -> list[RunRecord]:
        """The thread's runs in the order they started, after the first ``offset``."""

    def run(self, run_id: str) -> RunRecord | None:
        """The latest run to start with this id, in any thread."""

    def checkpoints(
        self, thread_id: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Checkpoint]:
        """The thread's commits into its committed zone after ``after_version``."""

    def thread(self, thread_id: str) -> ThreadSummary | None:
        """The thread's summary, if the views know the thread."""

    def hidden(self, thread_id: str) -> set[str]:
        """The ids of the thread's hidden committed messages."""

    def threads_with_pending(self, *, limit: int, after: str | None) -> list[str]:
        """Ids of threads with pending work, ordered, after ``after``."""

    def threads(
        self, *, limit: int, after: str | None, has_pending: bool | None
    ) -> list[ThreadSummary]:
        """Thread summaries ordered by thread id, after ``after``."""

    def thread_exists(self, thread_id: str) -> bool:
        """Do the views know this thread?"""

    def add_listener(self, listener: Callable[[Position], None]) -> None:
        """Call ``listener(position)`` whenever the views move past new events."""

    def remove_listener(self, listener: Callable[[Position], None]) -> None:
        """Stop calling ``listener``."""

    def start_following(self) -> None:
        """Catch up in a background thread from now on (for long-running processes)."""

    def stop_following(self) -> None:
        """Stop the background catch-up; raises if its latest attempt failed."""

    def close(self) -> None:
        """Stop following and release the views' connections."""


class ViewBackend(Protocol):
    """Where view rows live (memory, SQLite, PostgreSQL), with the position they reflect."""

    # Errors that mean the database could not be used (connection lost, disk full, locked):
    # they say nothing about the events, so catch-up raises them as they are.
    unavailable: tuple[type[Exception], ...]

    def position(self) -> Position:
        """The log position the views reflect (the tracking record)."""

    def apply(
        self, changes: Sequence[Change], from_position: Position, to_position: Position
    ) -> bool:
        """Apply the changes and move the tracking position from ``from_position`` to
        ``to_position`` in one transaction. False (and nothing written) if the tracking
        position was not ``from_position``: another catch-up got there first."""

    def replace_all(self, tables: Tables, position: Position, progress: Progress | None) -> None:
        """Swap in rebuilt views at ``position``, atomically: readers see old or new, whole."""

    def dump(self) -> tuple[Position, dict[str, dict[Key, Row]]]:
        """The tracking position and every row, read in one consistent snapshot."""

    def pending_rows(self, thread_id: str) -> list[Row]:
        """The thread's pending rows, by position."""

    def committed_rows(
        self,
        thread_id: str,
        after_seq: int,
        limit: int | None,
        include_hidden: bool,
        include_internal: bool = True,
    ) -> list[Row]:
        """The thread's committed rows after ``after_seq``, by seq, at most ``limit``; those of
        internal messages only with ``include_internal`` (left out by the query itself)."""

    def run_rows(self, thread_id: str, offset: int = 0, limit: int | None = None) -> list[Row]:
        """The thread's run rows in the order they started, after the first ``offset``."""

    def latest_run_row(self, run_id: str) -> Row | None:
        """The row of the latest run to start with this id, in any thread."""

    def checkpoint_rows(
        self, thread_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[Row]:
        """The thread's checkpoint rows after ``after_version``, by version."""

    def thread_row(self, thread_id: str) -> Row | None:
        """The thread's summary row, if there is one."""

    def hidden_ids(self, thread_id: str) -> set[str]:
        """The ids of the thread's committed messages that are hidden."""

    def thread_rows(self, limit: int, after: str | None, has_pending: bool | None) -> list[Row]:
        """Thread summary rows ordered by thread_id, after the exclusive cursor ``after``."""

    def thread_exists(self, thread_id: str) -> bool:
        """Is there a summary row for this thread?"""

    def close(self) -> None:
        """Release the backend's connections."""


class Wakeup(Protocol):
    """How a background catch-up learns that new events may be in the log."""

    def wait(self, stop: threading.Event) -> None:
        """Return when new events may be in the log, when ``stop`` is set, or after a while."""

    def close(self) -> None:
        """Release what waiting holds (a connection)."""


class Doorbell(Protocol):
    """How one subscriber (``follow``, ``watch``, ``wait_for_work``) learns that other writers
    may have committed: PostgreSQL LISTEN/NOTIFY, or a short poll on SQLite and memory."""

    def listen(self) -> None:
        """Start listening, before the subscriber's first read: no commit after it is missed."""

    def wait(self, timeout: float) -> bool:
        """Return when new events may have been committed (``True``), or after ``timeout``
        seconds (``False`` when surely nothing was: a caller may skip its read then)."""

    def close(self) -> None:
        """Release what listening holds (a connection)."""
