"""The id table: every message id, run id and hiding a thread ever used, unique per thread,
written in the same transaction as the events that use them (ADR 0010).

Each recorder here is eventsourcing's own with one hook on the insert path: ``insert_events``
takes ``claims=`` (``threadbox.domain.claims``) and writes them next to the events; a claim the
thread already holds fails the whole insert, nothing written, with ``IdsTaken``. On PostgreSQL
the events and their claims are one statement (``ClaimingPostgresRecorder``, ADR 0024), so a
command is one round trip.

A store made before the table existed is upgraded when it is opened: the table is created and
filled from the log, in one transaction (other processes opening it wait; progress is logged).
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import TupleRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier
from threadbox.application.ports import IdsTaken
from threadbox.domain.claims import Claim, ClaimKey, claims

from .codec import decode_event
from .pg_columns import Byteas, Column, Int8s, Texts, Uuids, register_columns
from .pg_wakeup import QuietRecorder

TABLE = "threadbox_ids"
PRIMARY_KEY = f"{TABLE}_pkey"
BACKFILL_BATCH = 1000
log = logging.getLogger("threadbox")

Row = tuple[Any, str, str, int]  # (stream, kind, id, version)


def _rows(
    stream_of: Callable[[uuid.UUID], Any], claims_: Iterable[tuple[uuid.UUID, Claim]]
) -> list[Row]:
    return [(stream_of(sid), c.key.kind, c.key.id, c.version) for sid, c in claims_]


def claims_of_stored(stored: Iterable[StoredEvent]) -> list[tuple[uuid.UUID, Claim]]:
    """The claims of stored events (decoded and upcast), each with its stream id."""
    found: list[tuple[uuid.UUID, Claim]] = []
    for s in stored:
        found.extend((originator_uuid(s.originator_id), c) for c in claims([decode_event(s)]))
    return found


def originator_uuid(originator_id: uuid.UUID | str) -> uuid.UUID:
    """A stored event's ``originator_id`` as a UUID (the recorders hold it as one or as text)."""
    return originator_id if isinstance(originator_id, uuid.UUID) else uuid.UUID(originator_id)


def _taken(keys: Sequence[ClaimKey]) -> IdsTaken:
    return IdsTaken(f"the thread already used {', '.join(f'{k.kind}:{k.id}' for k in keys)}")


def _progress(done: int, total: int) -> None:
    log.info("id table: filled from %d of %d events", done, total)


# ---- memory ------------------------------------------------------------------------------------


class ClaimingPOPORecorder(POPOApplicationRecorder):
    """eventsourcing's in-memory recorder, with the id table as a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: dict[tuple[uuid.UUID, ClaimKey], int] = {}

    def _assert_uniqueness(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        claims: Sequence[tuple[uuid.UUID, Claim]] = (),
        **kwargs: Any,
    ) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        keys = [(sid, c.key) for sid, c in claims]
        taken = [k for sid, k in keys if (sid, k) in self.claimed]
        if taken or len(set(keys)) < len(keys):
            raise _taken(taken or [k for _, k in keys])

    def _update_table(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        claims: Sequence[tuple[uuid.UUID, Claim]] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._update_table(stored_events, **kwargs)
        self.claimed.update(((sid, c.key), c.version) for sid, c in claims)
        return ids

    def select_claims(self, sid: uuid.UUID, keys: Iterable[ClaimKey]) -> dict[ClaimKey, int]:
        """The version that claimed each of ``keys`` in the stream, for those it holds."""
        with self._database_lock:
            return {k: self.claimed[(sid, k)] for k in keys if (sid, k) in self.claimed}

    def select_events(
        self,
        originator_id: uuid.UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """As the library's, without its scan of the whole stream: a stream whose versions are
        1..n (every threadbox stream) is read by version, so a cold load's tail costs the tail."""
        with self._database_lock:
            index = self._stored_events_index[str(originator_id)]
            last = next(reversed(index), 0)
            if last != len(index):  # versions with gaps: the library's scan
                return super().select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
            first, stop = max(gt or 0, 0) + 1, min(last if lte is None else lte, last)
            versions = range(stop, first - 1, -1) if desc else range(first, stop + 1)
            if limit:  # the library reads 0 (and less) as no limit
                versions = versions[: max(limit, 0)]
            return [self._stored_events[index[v]] for v in versions]


# ---- SQLite ------------------------------------------------------------------------------------


class ClaimingSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite recorder, with the id table in the same database file."""

    create_claims = (
        f"CREATE TABLE {TABLE} (originator_id TEXT, kind TEXT, id TEXT, version INTEGER, "
        "PRIMARY KEY (originator_id, kind, id)) WITHOUT ROWID"
    )
    insert_claims = f"INSERT INTO {TABLE} (originator_id, kind, id, version) VALUES (?, ?, ?, ?)"

    def _insert_events(
        self,
        c: Any,
        stored_events: Sequence[StoredEvent],
        *,
        claims: Sequence[tuple[uuid.UUID, Claim]] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        if claims:
            try:
                c.executemany(self.insert_claims, _rows(lambda s: s.hex, claims))
            except sqlite3.IntegrityError as e:
                if TABLE not in str(e):
                    raise
                raise _taken([claim.key for _, claim in claims]) from e
        return ids

    def create_table(self) -> None:
        super().create_table()
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(exists, (TABLE,))
            if cursor.fetchone() is not None:
                return  # upgraded already: a read-only file opens too (its reads still work)
        with self.datastore.transaction(commit=True) as cursor:
            c: sqlite3.Cursor = cast(Any, cursor).sqlite_cursor  # sqlite3's own cursor
            # A write first (it deletes nothing) takes the database's write lock: processes
            # opening it together take turns here, and only the first creates and fills the table.
            c.execute(f"DELETE FROM {self.events_table_name} WHERE 0")
            c.execute(exists, (TABLE,))
            if c.fetchone() is not None:
                return
            c.execute(self.create_claims)
            c.execute(f"SELECT COUNT(*) FROM {self.events_table_name}")
            total = c.fetchone()[0]
            reader = c.connection.cursor()
            reader.execute(
                "SELECT originator_id, originator_version, topic, state "
                f"FROM {self.events_table_name} ORDER BY rowid"
            )
            done = 0
            while batch := reader.fetchmany(BACKFILL_BATCH):
                stored = [StoredEvent(uuid.UUID(r[0]), r[1], r[2], r[3]) for r in batch]
                c.executemany(self.insert_claims, _rows(lambda s: s.hex, claims_of_stored(stored)))
                done += len(batch)
                if total > BACKFILL_BATCH:
                    _progress(done, total)
            reader.close()

    def select_claims(self, sid: uuid.UUID, keys: Iterable[ClaimKey]) -> dict[ClaimKey, int]:
        """The version that claimed each of ``keys`` in the stream, for those it holds."""
        wanted = set(keys)
        ids = sorted({k.id for k in wanted})
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT kind, id, version FROM {TABLE} "
                f"WHERE originator_id = ? AND id IN ({marks})",
                [sid.hex, *ids],
            )
            found = {ClaimKey(kind, i): v for kind, i, v in c.fetchall()}
        return {k: v for k, v in found.items() if k in wanted}


# ---- PostgreSQL --------------------------------------------------------------------------------


class PostgresClaims(PostgresApplicationRecorder):
    """The id table on PostgreSQL: a mixin over eventsourcing's application recorder (or a
    subclass of it) that makes the table and reads it; ``ClaimingPostgresRecorder`` writes it."""

    def _claims_table(self) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(TABLE))

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.get_connection() as conn, conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"threadbox-ids:{self.datastore.schema}",),
            )
            found = conn.execute(
                "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NULL AS missing",
                (self.datastore.schema, TABLE),
            ).fetchone()
            if found is None or not found["missing"]:
                return
            conn.execute(
                SQL(
                    "CREATE TABLE {} (originator_id uuid NOT NULL, kind text NOT NULL, "
                    "id text NOT NULL, version bigint NOT NULL, "
                    "CONSTRAINT {} PRIMARY KEY (originator_id, kind, id))"
                ).format(self._claims_table(), Identifier(PRIMARY_KEY))
            )
            events = SQL("{}.{}").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name)
            )
            count = conn.execute(SQL("SELECT COUNT(*) AS n FROM {}").format(events)).fetchone()
            total = int(count["n"]) if count else 0
            insert = SQL(
                "INSERT INTO {} (originator_id, kind, id, version) VALUES (%s, %s, %s, %s)"
            ).format(self._claims_table())
            done = 0
            with conn.cursor(name="threadbox_ids_backfill") as reader, conn.cursor() as writer:
                reader.execute(
                    SQL(
                        "SELECT originator_id, originator_version, topic, state FROM {} "
                        "ORDER BY notification_id"
                    ).format(events)
                )
                while batch := reader.fetchmany(BACKFILL_BATCH):
                    stored = [
                        StoredEvent(
                            r["originator_id"],
                            r["originator_version"],
                            r["topic"],
                            bytes(r["state"]),
                        )
                        for r in batch
                    ]
                    writer.executemany(insert, _rows(lambda s: s, claims_of_stored(stored)))
                    done += len(batch)
                    if total > BACKFILL_BATCH:
                        _progress(done, total)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_claims(self, sid: uuid.UUID, keys: Iterable[ClaimKey]) -> dict[ClaimKey, int]:
        """The version that claimed each of ``keys`` in the stream, for those it holds; on a
        dropped pooled connection, again on the next one, as the library's reads do."""
        wanted = set(keys)
        ids = sorted({k.id for k in wanted})
        if not ids:
            return {}
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                SQL(
                    "SELECT kind, id, version FROM {} WHERE originator_id = %s AND id = ANY(%s)"
                ).format(self._claims_table()),
                (sid, ids),
            ).fetchall()
        found = {ClaimKey(r["kind"], r["id"]): int(r["version"]) for r in rows}
        return {k: v for k, v in found.items() if k in wanted}


class ClaimingPostgresRecorder(PostgresClaims, QuietRecorder):
    """The store's PostgreSQL recorder: ``QuietRecorder`` (commit order without the table lock,
    ``NOTIFY`` after commit, ADR 0009) with the id table, writing in one statement (ADR 0024).

    ``insert_events`` sends the events and their claims as one prepared statement on an
    autocommit connection: a data-modifying ``WITH`` whose two ``INSERT``s read ``unnest`` of
    arrays (binary parameters), so a command is one round trip and one implicit transaction, with
    no ``BEGIN``/``COMMIT`` and no pipeline. It is one statement, so it commits whole or not at
    all: a version taken fails on the events' primary key (``IntegrityError``, a stream
    conflict), a claim taken (or claimed twice) on the id table's (``ids_taken``), and nothing is
    written. Each row still gets its transaction id from the column default (commit order, ADR
    0009). The tables, the reads and the library's own insert paths are eventsourcing's, as before.
    """

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self._statements: dict[Any, bytes] = {}  # by variant (see ``_variant``)
        # One cursor per pooled connection, kept: a new one would look up its dumpers anew.
        self._cursors: weakref.WeakKeyDictionary[Any, Cursor[TupleRow]] = (
            weakref.WeakKeyDictionary()
        )

    def _ctes(self, variant: Any) -> list[Composed]:
        """The data-modifying ``WITH`` queries of the statement, in the order of their
        parameters; the first, ``written``, inserts the events (a subclass adds its own)."""
        events = SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        return [
            SQL(
                "written AS (INSERT INTO {} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
                "RETURNING notification_id)"
            ).format(events),
            SQL(
                "claimed AS (INSERT INTO {} (originator_id, kind, id, version) "
                "SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bigint[]))"
            ).format(self._claims_table()),
        ]

    def _params(
        self,
        stored_events: Sequence[StoredEvent],
        claims: Sequence[tuple[uuid.UUID, Claim]],
        **kwargs: Any,
    ) -> list[Column]:
        """The parameters of ``_ctes``, in their order."""
        return [
            Uuids(originator_uuid(e.originator_id) for e in stored_events),
            Int8s(e.originator_version for e in stored_events),
            Texts(e.topic for e in stored_events),
            Byteas(e.state for e in stored_events),
            Uuids(sid for sid, _ in claims),
            Texts(c.key.kind for _, c in claims),
            Texts(c.key.id for _, c in claims),
            Int8s(c.version for _, c in claims),
        ]

    def _variant(self, **kwargs: Any) -> Any:
        """Which statement a write with these keywords sends (one prepared statement each)."""
        return None

    def one_statement_insert(self, variant: Any = None) -> bytes:
        """The statement ``insert_events`` sends: the ``WITH`` queries, then the events' ids.
        The outer ``SELECT`` reads ``written``, so PostgreSQL runs it first; every other one runs
        to completion before the statement ends."""
        found = self._statements.get(variant)
        if found is None:
            statement = SQL("WITH {} SELECT notification_id FROM written ORDER BY notification_id")
            found = statement.format(SQL(", ").join(self._ctes(variant))).as_bytes()
            self._statements[variant] = found
        return found

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        claims: Sequence[tuple[uuid.UUID, Claim]] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Insert the events and their claims in one statement, one transaction; their
        notification ids, in the order of ``stored_events``."""
        if not stored_events and not claims:
            return []
        params = self._params(stored_events, claims, **kwargs)
        statement = self.one_statement_insert(self._variant(**kwargs))
        with self.datastore.get_connection() as conn:
            curs = self._cursors.get(conn)
            if curs is None:
                curs = self._cursors[conn] = conn.cursor(row_factory=tuple_row)
                register_columns(curs)
            curs.execute(statement, params, prepare=True)
            return [row[0] for row in curs.fetchall()]


def ids_taken(conflict: IntegrityError) -> bool:
    """Was this integrity error the id table's unique key (not the events' version key)?"""
    cause = conflict.__cause__
    if isinstance(cause, psycopg.errors.UniqueViolation):
        return cause.diag.constraint_name == PRIMARY_KEY
    return False
