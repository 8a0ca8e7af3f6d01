"""The event store on eventsourcing's recorders: POPO (memory), SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import retry
from psycopg.conninfo import make_conninfo
from threadbox.application.ports import (
    ArchivedEvent,
    IdsTaken,
    Notified,
    Position,
    StoredPayload,
    StreamConflict,
)
from threadbox.domain.claims import Claim, ClaimKey, claims
from threadbox.domain.errors import InvalidInput, StoreUnavailable
from threadbox.domain.events import AnyThreadEvent, ThreadEvent
from threadbox.domain.thread import Thread

from .codec import (
    archived_of,
    decode_archived,
    decode_event,
    decode_payload,
    decode_snapshot,
    encode_event,
    encode_snapshot,
    event_type,
    stored_of,
    stream_id,
)
from .faults import translated, translating
from .id_table import claims_of_stored, ids_taken
from .pg_pool import make_fail_fast, timeout_options
from .pg_recorder import CommitOrderRecorder, LogPosition
from .pg_wakeup import CommitNotifier, events_channel
from .positions import decode_id, encode_id
from .snapshots import SnapshottingPOPORecorder, write_postgres_snapshot, write_sqlite_snapshot

# A write that failed for want of the store makes /healthz say "not writable" this long, unless
# a write succeeds first (a full disk shows only when a write needs the space).
WRITE_FAILURE_MEMORY = 30.0

# eventsourcing's APPLICATION_RECORDER_TOPIC: its recorders with the id table (ADR 0010) and the
# snapshots written with the events; on PostgreSQL over QuietRecorder (commit order, NOTIFY
# after commit: ADR 0009).
CLAIMING_RECORDERS = {
    "sqlite": "threadbox.infrastructure.snapshots:SnapshottingSQLiteRecorder",
    "postgres": "threadbox.infrastructure.snapshots:SnapshottingPostgresRecorder",
}


@dataclass(frozen=True)
class StoreLocation:
    """Where a store lives, parsed from a threadbox URL."""

    kind: str  # memory | sqlite | postgres
    sqlite_path: str = ""
    pg_conninfo: str = ""
    pg_schema: str = "public"
    pg_env: tuple[tuple[str, str], ...] = ()
    pg_connect_timeout: float = 5.0  # seconds to connect, and to wait for a pooled connection
    pg_statement_timeout: float = 30.0  # seconds a statement may run (0: unbounded)

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        parts = urlsplit(url)
        if parts.scheme == "memory":
            return cls("memory")
        if parts.scheme == "sqlite":
            path = unquote(parts.path)
            if parts.netloc not in ("", "localhost"):
                path = unquote(parts.netloc) + path
            path = path[1:] if path.startswith("/") else path  # sqlite:///rel, sqlite:////abs
            if not path:
                raise InvalidInput(f"no database file in {url!r}", "url")
            return cls("sqlite", sqlite_path=str(Path(path)))
        if parts.scheme in ("postgresql", "postgres"):
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            schema = query.get("schema", "public")
            connect_timeout = _seconds(query, "connect_timeout", 5.0, minimum=1.0)
            statement_timeout = _seconds(query, "statement_timeout", 30.0, minimum=0.0)
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
                "POSTGRES_HOST": parts.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(parts.port or 5432),
                "POSTGRES_USER": unquote(parts.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(parts.password or ""),
                "POSTGRES_SCHEMA": schema,
                "POSTGRES_POOL_SIZE": query.get("pool_size", "4"),
                "POSTGRES_MAX_OVERFLOW": query.get("max_overflow", "8"),
                "POSTGRES_CONNECT_TIMEOUT": str(round(connect_timeout)),
                # No pre-ping: psycopg_pool backs off 1, 2, 4 s between failed checks, so a lost
                # server stalled writers ~7 s; eventsourcing retries a dead connection in 0.2 s.
                "POSTGRES_PRE_PING": "n",
            }
            conninfo = (
                f"host={env['POSTGRES_HOST']} port={env['POSTGRES_PORT']} "
                f"dbname={env['POSTGRES_DBNAME']} user={env['POSTGRES_USER']}"
                + (f" password={env['POSTGRES_PASSWORD']}" if env["POSTGRES_PASSWORD"] else "")
            )
            # Every connection made from the conninfo (views, LISTEN, setup) is bounded too.
            conninfo = make_conninfo(
                conninfo,
                connect_timeout=str(round(connect_timeout)),
                options=timeout_options(statement_timeout),
            )
            return cls(
                "postgres",
                pg_conninfo=conninfo,
                pg_schema=schema,
                pg_env=tuple(env.items()),
                pg_connect_timeout=connect_timeout,
                pg_statement_timeout=statement_timeout,
            )
        raise InvalidInput(
            f"unsupported store URL {url!r}: use memory://, sqlite:///PATH or postgresql://…",
            "url",
        )


def _seconds(query: dict[str, str], name: str, default: float, *, minimum: float) -> float:
    """A duration in seconds from the URL's query, at least ``minimum``."""
    text = query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not minimum <= value < 10**6:
        raise InvalidInput(
            f"{name}={text!r} in the store URL: expected seconds >= {minimum:g}", name
        )
    return value


class RecorderStore:
    """Threadbox's event store over an eventsourcing application recorder, plus snapshots."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.kind = location.kind
        self._write_failed: tuple[float, str] | None = None  # (monotonic time, reason)
        with translated():
            self._open(location)

    def _open(self, location: StoreLocation) -> None:
        env: dict[str, str]
        if location.kind == "memory":
            env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        elif location.kind == "sqlite":
            Path(location.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": location.sqlite_path,
                "SQLITE_LOCK_TIMEOUT": "30",
                "APPLICATION_RECORDER_TOPIC": CLAIMING_RECORDERS["sqlite"],
            }
        else:
            ensure_pg_schema(location)
            env = dict(location.pg_env)
            env["APPLICATION_RECORDER_TOPIC"] = CLAIMING_RECORDERS["postgres"]
        with creating_tables(location):
            factory: Any = InfrastructureFactory.construct(env)
            self._factory = factory
            if location.kind == "postgres":
                options = timeout_options(location.pg_statement_timeout)
                make_fail_fast(factory.datastore.pool, location.pg_connect_timeout, options)
            self.events: ApplicationRecorder
            self.snapshots: AggregateRecorder
            if location.kind == "memory":  # eventsourcing's POPO factory takes no recorder topic
                self.events = memory = SnapshottingPOPORecorder()
                self.snapshots = memory.snapshot_recorder
            else:
                self.events = self._factory.application_recorder()
                self.snapshots = self._factory.aggregate_recorder("snapshots")
                recorder: Any = self.events  # one of snapshots' recorders
                recorder.snapshots_table = cast(Any, self.snapshots).events_table_name
        self.log: LogOrder
        self._notifier: CommitNotifier | None = None
        if isinstance(self.events, CommitOrderRecorder):
            self.log = CommitOrder(self.events)
            channel = events_channel(location.pg_schema)
            self._notifier = CommitNotifier(location.pg_conninfo, channel)
        else:
            self.log = IdOrder(self.events, location.kind)

    def append(self, events: Sequence[ThreadEvent], snapshot: Thread | None = None) -> list[int]:
        stored = [encode_event(e) for e in events]
        found = [(stream_id(e.thread_id), c) for e in events for c in claims([e])]
        return self._insert(stored, found, None if snapshot is None else encode_snapshot(snapshot))

    def _insert(
        self,
        stored: Sequence[StoredEvent],
        found: Sequence[tuple[uuid.UUID, Claim]],
        snapshot: StoredEvent | None = None,
    ) -> list[int]:
        """The one way events reach the log: with their claims (and a snapshot, if one is
        due), in one transaction."""
        extra = {} if snapshot is None else {"snapshot": snapshot}
        try:
            with translated():
                positions = self.events.insert_events(stored, claims=found, **extra)
        except IntegrityError as conflict:
            if ids_taken(conflict):
                raise IdsTaken(str(conflict)) from conflict
            raise StreamConflict(str(conflict)) from conflict
        except StoreUnavailable as failed:
            self._write_failed = (time.monotonic(), failed.reason)
            raise
        self._write_failed = None
        if self._notifier is not None:
            self._notifier.committed()
        return list(positions or [])

    @translating
    def claimed(self, thread_id: str, keys: Iterable[ClaimKey]) -> dict[ClaimKey, int]:
        recorder: Any = self.events  # one of id_table's recorders
        found: dict[ClaimKey, int] = recorder.select_claims(stream_id(thread_id), keys)
        return found

    @translating
    def load(
        self, thread_id: str, *, after: int = 0, upto: int | None = None, limit: int | None = None
    ) -> list[AnyThreadEvent]:
        sid = stream_id(thread_id)
        stored = self.events.select_events(sid, gt=after or None, lte=upto, limit=limit)
        return [decode_event(s) for s in stored]

    @translating
    def load_snapshot(self, thread_id: str) -> Thread | None:
        found = self.snapshots.select_events(stream_id(thread_id), desc=True, limit=1)
        return decode_snapshot(found[0]) if found else None

    @translating
    def save_snapshot(self, state: Thread) -> None:
        snapshot = encode_snapshot(state)
        recorder: Any = self.events  # one of snapshots' recorders
        if self.kind == "memory":
            recorder.snapshot_recorder.insert_latest(snapshot)
        elif self.kind == "sqlite":
            with recorder.datastore.transaction(commit=True) as cursor:
                write_sqlite_snapshot(cursor, recorder.snapshots_table, snapshot)
        else:
            self._save_pg_snapshot(recorder, snapshot)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.05)
    def _save_pg_snapshot(self, recorder: Any, snapshot: StoredEvent) -> None:
        with recorder.datastore.transaction(commit=True) as cursor:
            schema = recorder.datastore.schema
            write_postgres_snapshot(cursor, schema, recorder.snapshots_table, snapshot)

    @translating
    def read(self, *, after: Position, limit: int, upto: Position | None = None) -> list[Notified]:
        return [Notified(at, decode_event(n)) for at, n in self.log.select(after, limit, upto)]

    @translating
    def read_payloads(
        self, *, after: Position, limit: int, upto: Position | None = None
    ) -> Iterator[StoredPayload]:
        for at, n in self.log.select(after, limit, upto):
            cls, payload = decode_payload(n.topic, n.state)
            yield at, n.id, cls.__name__, payload

    @translating
    def last_position(self) -> Position:
        return self.log.head()

    @translating
    def committed_head(self) -> Position:
        return self.log.committed_head()

    @translating
    def count_after(self, position: Position, upto: Position | None = None) -> int:
        return self.log.count_after(position, upto)

    @translating
    def oldest_transaction_age(self) -> float | None:
        if not isinstance(self.events, CommitOrderRecorder):
            return None
        started = self.events.oldest_transaction_start()
        if started is None:
            return 0.0
        age: float = (datetime.now(started.tzinfo) - started).total_seconds()
        return max(0.0, age)

    # ---- the archive of stored events (export and import) ----------------------------------

    @translating
    def archived(self, thread_id: str) -> list[ArchivedEvent]:
        return [archived_of(s) for s in self.events.select_events(stream_id(thread_id))]

    @translating
    def archived_log(self, *, after: Position, limit: int) -> list[tuple[Position, ArchivedEvent]]:
        return [(at, archived_of(n)) for at, n in self.log.select(after, limit, None)]

    @translating
    def stored_version(self, thread_id: str) -> int:
        last = self.events.select_events(stream_id(thread_id), desc=True, limit=1)
        return last[0].originator_version if last else 0

    def event_type_name(self, topic: str) -> str:
        return event_type(topic).__name__

    def decoded(self, event: ArchivedEvent) -> AnyThreadEvent:
        return decode_archived(event)

    @translating
    def append_archived(self, events: Iterable[ArchivedEvent]) -> None:
        stored = [stored_of(e) for e in events]
        self._insert(stored, claims_of_stored(stored))

    @translating
    def ping(self) -> None:
        self.events.max_notification_id()

    def ping_write(self) -> None:
        """Raise ``StoreUnavailable`` if the store cannot be written now: a write probe that
        changes nothing (SQLite: a read-only file or mount; PostgreSQL: a read-only server or
        a standby), or a write that failed for want of the store in the last
        ``WRITE_FAILURE_MEMORY`` seconds with none succeeding since (a full disk)."""
        with translated():
            self._probe_write()
        failed = self._write_failed
        if failed is not None and time.monotonic() - failed[0] < WRITE_FAILURE_MEMORY:
            raise StoreUnavailable(f"the latest write failed: {failed[1]}")

    def _probe_write(self) -> None:
        if self.kind == "sqlite":
            probe = sqlite3.connect(self.location.sqlite_path, timeout=1.0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                try:
                    # Changes no row, yet needs a writable file: SQLITE_READONLY otherwise.
                    probe.execute("UPDATE stored_events SET topic = topic WHERE 0")
                finally:
                    probe.execute("ROLLBACK")
            except sqlite3.OperationalError as busy:
                if busy.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise  # a writer holding the lock means writes do happen
            finally:
                probe.close()
        elif self.kind == "postgres":
            row = self._pg_read_only()
            if row["standby"] or row["read_only"] == "on":
                raise StoreUnavailable("PostgreSQL is read-only (a standby, or read-only mode)")

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.05)
    def _pg_read_only(self) -> Any:
        """Whether the server is a standby or read-only; on a dropped pooled connection, again
        on the next one, as the recorders do (a server that is down fails at once instead)."""
        with self.events.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            return conn.execute(
                "SELECT pg_is_in_recovery() AS standby,"
                " current_setting('transaction_read_only') AS read_only"
            ).fetchone()

    def close(self) -> None:
        try:
            if self._notifier is not None:
                self._notifier.close()
        finally:
            self._factory.close()


class LogOrder(Protocol):
    """How a store's recorder reads the log in commit order, with positions as strings."""

    def select(
        self, after: Position, limit: int, upto: Position | None
    ) -> list[tuple[Position, Notification]]:
        """Events after ``after`` (at or before ``upto``), in commit order, with positions."""

    def head(self) -> Position:
        """The newest position a reader can read now (``""``: none)."""

    def committed_head(self) -> Position:
        """The newest committed position, readable yet or not."""

    def count_after(self, position: Position, upto: Position | None) -> int:
        """Committed events after ``position``, at or before ``upto``."""


class IdOrder:
    """SQLite and memory: one writer at a time, so notification ids are the commit order."""

    def __init__(self, recorder: ApplicationRecorder, kind: str) -> None:
        self.recorder = recorder
        self.kind = kind

    def select(
        self, after: Position, limit: int, upto: Position | None
    ) -> list[tuple[Position, Notification]]:
        stop = None if upto is None else decode_id(upto)
        found = self.recorder.select_notifications(
            decode_id(after), limit, stop=stop, inclusive_of_start=False
        )
        return [(encode_id(n.id), n) for n in found]

    def head(self) -> Position:
        return encode_id(self.recorder.max_notification_id() or 0)

    def committed_head(self) -> Position:
        return self.head()

    def count_after(self, position: Position, upto: Position | None) -> int:
        start = decode_id(position)
        stop = decode_id(upto) if upto is not None else self.recorder.max_notification_id() or 0
        if stop <= start:
            return 0
        if self.kind == "memory":
            return stop - start  # POPO numbers its events 1, 2, 3… without gaps
        recorder: Any = self.recorder
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {recorder.events_table_name} WHERE rowid > ? AND rowid <= ?",
                (start, stop),
            )
            return int(cursor.fetchone()[0])


class CommitOrder:
    """PostgreSQL without a table lock: positions are ``LogPosition`` encodings (ADR 0009)."""

    def __init__(self, recorder: CommitOrderRecorder) -> None:
        self.recorder = recorder

    def select(
        self, after: Position, limit: int, upto: Position | None
    ) -> list[tuple[Position, Notification]]:
        bound = None if upto is None else LogPosition.decode(upto)
        found = self.recorder.select_after(LogPosition.decode(after), limit, bound)
        return [(at.encode(), n) for at, n in found]

    def head(self) -> Position:
        found = self.recorder.head()
        return "" if found is None else found.encode()

    def committed_head(self) -> Position:
        found = self.recorder.committed_head()
        return "" if found is None else found.encode()

    def count_after(self, position: Position, upto: Position | None) -> int:
        bound = None if upto is None else LogPosition.decode(upto)
        return int(self.recorder.count_after(LogPosition.decode(position), bound))


def ensure_pg_schema(location: StoreLocation) -> None:
    if location.pg_schema == "public":
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(location.pg_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(location.pg_schema))
        )


@contextmanager
def creating_tables(location: StoreLocation) -> Iterator[None]:
    """One process at a time creates a schema's tables: PostgreSQL's CREATE OR REPLACE FUNCTION
    fails with "tuple concurrently updated" when two processes start together."""
    if location.kind != "postgres":
        yield
        return
    import psycopg

    with psycopg.connect(location.pg_conninfo, autocommit=True) as conn:
        key = f"threadbox-store:{location.pg_schema}"
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        yield
