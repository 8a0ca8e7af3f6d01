"""What the application needs from storage: the event store and the views (implemented in
``threadbox.infrastructure`` and ``threadbox.projections``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from threadbox.domain.events import AnyThreadEvent, ThreadEvent
from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    PendingEntry,
    RunRecord,
    ThreadSummary,
)
from threadbox.domain.thread import Thread


class StreamConflict(Exception):
    """Another writer saved the thread first: the version this write expected is taken."""


@dataclass(frozen=True)
class Notified:
    """One event of the whole store's log, at its position (notification id)."""

    position: int
    event: AnyThreadEvent


# One event of the log as stored, without pydantic: (position, event type name, payload upcast
# to the type's current version; the JSON form of ``threadbox.domain.events``).
StoredPayload = tuple[int, str, dict[str, Any]]


class EventStore(Protocol):
    kind: str  # "memory", "sqlite" or "postgres"

    def append(self, events: Sequence[ThreadEvent]) -> list[int]:
        """Save the events atomically; their versions are the guard. Raises StreamConflict."""

    def load(
        self, thread_id: str, *, after: int = 0, upto: int | None = None, limit: int | None = None
    ) -> list[AnyThreadEvent]: ...

    def load_snapshot(self, thread_id: str) -> Thread | None: ...

    def save_snapshot(self, state: Thread) -> None: ...

    def read(self, *, after: int, limit: int, upto: int | None = None) -> list[Notified]:
        """Events of every thread in log order, with positions greater than ``after``."""

    def read_payloads(
        self, *, after: int, limit: int, upto: int | None = None
    ) -> list[StoredPayload]:
        """As ``read``, but the stored payloads undecoded (for the projections: fast)."""

    def last_position(self) -> int: ...

    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    def close(self) -> None: ...


Progress = Callable[[int, int], None]  # (done, total)


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

    def archived_log(self, *, after: int, limit: int) -> list[tuple[int, ArchivedEvent]]:
        """Every thread's events in log order, with their positions, after ``after``."""

    def stored_version(self, thread_id: str) -> int:
        """The thread's latest version in this store (0: no events)."""

    def event_type_name(self, topic: str) -> str:
        """The event type a stored topic names; ``ValueError`` if it names none."""

    def append_archived(self, events: Sequence[ArchivedEvent]) -> None:
        """Append events as they are, atomically; versions still guard (``StreamConflict``)."""

    def last_position(self) -> int:
        """The position of the newest event of the log (0: none)."""


@dataclass
class VerifyReport:
    ok: bool
    differences: list[str] = field(default_factory=list)
    events: int = 0


@dataclass(frozen=True)
class ViewStatus:
    position: int
    log_position: int

    @property
    def lag(self) -> int:
        return self.log_position - self.position


class Views(Protocol):
    """The read models of SEMANTICS §6, kept up to date from the log, exactly once."""

    def catch_up(self, until: int | None = None, progress: Progress | None = None) -> int:
        """Apply events up to ``until`` (default: the end of the log); returns the position."""

    def rebuild(self, progress: Progress | None = None) -> int: ...

    def verify(self, progress: Progress | None = None) -> VerifyReport: ...

    def status(self) -> ViewStatus: ...

    def pending(self, thread_id: str) -> list[PendingEntry]: ...

    def committed(
        self, thread_id: str, *, after_seq: int, limit: int | None, include_hidden: bool
    ) -> list[CommittedMessage]: ...

    def runs(self, thread_id: str) -> list[RunRecord]: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def checkpoints(self, thread_id: str) -> list[Checkpoint]: ...

    def threads_with_pending(self, *, limit: int, after: str | None) -> list[str]: ...

    def threads(
        self, *, limit: int, after: str | None, has_pending: bool | None
    ) -> list[ThreadSummary]: ...

    def thread_exists(self, thread_id: str) -> bool: ...

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(position)`` whenever the views move past new events."""

    def remove_listener(self, listener: Callable[[int], None]) -> None: ...

    def start_following(self) -> None:
        """Catch up in a background thread from now on (for long-running processes)."""

    def stop_following(self) -> None:
        """Stop the background catch-up; raises if its latest attempt failed."""

    def close(self) -> None: ...
