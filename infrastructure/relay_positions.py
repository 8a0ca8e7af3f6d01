"""Where relays keep their positions: a small table of its own, ``relay_positions``, in the
store's own database (the SQLite file, the PostgreSQL schema), one row per relay name; in
memory for a memory store (ADR 0021)."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from threadbox.application.ports import EventStore, Position
from threadbox.application.relay import RelayPositions

from .faults import translated
from .store import RecorderStore, StoreLocation

TABLE = "relay_positions"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "name TEXT PRIMARY KEY, position TEXT NOT NULL, updated_at TEXT NOT NULL)"
)
NOW_SQLITE = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
NOW_PG = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


def relay_positions(store: EventStore) -> RelayPositions:
    """The relay positions of the store a mailbox was opened on (``threadbox.open``)."""
    if not isinstance(store, RecorderStore):
        raise TypeError(f"relays need a store opened by threadbox.open, not {type(store)!r}")
    location: StoreLocation = store.location
    if location.kind == "sqlite":
        return SqliteRelayPositions(location.sqlite_path)
    if location.kind == "postgres":
        return PostgresRelayPositions(location.pg_conninfo, location.pg_schema)
    with _MEMORY_LOCK:  # a memory store's positions live as long as the store object
        return _MEMORY.setdefault(store, MemoryRelayPositions())


_MEMORY: weakref.WeakKeyDictionary[RecorderStore, MemoryRelayPositions] = (
    weakref.WeakKeyDictionary()
)
_MEMORY_LOCK = threading.Lock()


class MemoryRelayPositions:
    """Positions in this process only (a memory store lives no longer)."""

    def __init__(self) -> None:
        self._saved: dict[str, Position] = {}
        self._lock = threading.Lock()

    def position(self, name: str) -> Position:
        """The saved position, ``""`` if none."""
        with self._lock:
            return self._saved.get(name, "")

    def save(self, name: str, previous: Position, position: Position) -> bool:
        """Compare and set."""
        with self._lock:
            if self._saved.get(name, "") != previous:
                return False
            self._saved[name] = position
            return True

    def close(self) -> None:
        """Nothing to release."""


class SqliteRelayPositions:
    """The table in the event database file; one connection, used under a lock."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        with translated():
            self._conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(CREATE)

    def position(self, name: str) -> Position:
        """The saved position, ``""`` if none."""
        with self._lock, translated():
            row = self._conn.execute(
                f"SELECT position FROM {TABLE} WHERE name = ?", (name,)
            ).fetchone()
        return "" if row is None else str(row[0])

    def save(self, name: str, previous: Position, position: Position) -> bool:
        """Compare and set, in one statement (the row is made on the first save)."""
        with self._lock, translated():
            if previous == "":
                cursor = self._conn.execute(
                    f"INSERT INTO {TABLE} (name, position, updated_at) "
                    f"VALUES (?, ?, {NOW_SQLITE}) ON CONFLICT (name) DO UPDATE SET "
                    f"position = excluded.position, updated_at = excluded.updated_at "
                    f"WHERE {TABLE}.position = ''",
                    (name, position),
                )
            else:
                cursor = self._conn.execute(
                    f"UPDATE {TABLE} SET position = ?, updated_at = {NOW_SQLITE} "
                    "WHERE name = ? AND position = ?",
                    (position, name, previous),
                )
            return cursor.rowcount == 1

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


class PostgresRelayPositions:
    """The table in the store's schema; one connection, made again after it was lost."""

    def __init__(self, conninfo: str, schema: str) -> None:
        given = conninfo_to_dict(conninfo)
        options = f"{given.get('options', '')} -c search_path={schema}".strip()
        self._conninfo = make_conninfo(conninfo, options=options)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock:
            self._run("SELECT 1")  # connect, and make the table, now: fail early

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
            with self._conn.transaction():  # CREATE TABLE IF NOT EXISTS races: one at a time
                self._conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.relays'))"
                )
                self._conn.execute(CREATE)
        return self._conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> psycopg.Cursor[Any]:
        with translated():
            try:
                return self._connection().execute(sql, params)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                if self._conn is not None:
                    self._conn.close()  # lost: connect again on the next call
                raise

    def position(self, name: str) -> Position:
        """The saved position, ``""`` if none."""
        with self._lock:
            row = self._run(f"SELECT position FROM {TABLE} WHERE name = %s", (name,)).fetchone()
        return "" if row is None else str(row[0])

    def save(self, name: str, previous: Position, position: Position) -> bool:
        """Compare and set, in one statement (the row is made on the first save)."""
        with self._lock:
            if previous == "":
                cursor = self._run(
                    f"INSERT INTO {TABLE} (name, position, updated_at) "
                    f"VALUES (%s, %s, {NOW_PG}) ON CONFLICT (name) DO UPDATE SET "
                    f"position = excluded.position, updated_at = excluded.updated_at "
                    f"WHERE {TABLE}.position = ''",
                    (name, position),
                )
            else:
                cursor = self._run(
                    f"UPDATE {TABLE} SET position = %s, updated_at = {NOW_PG} "
                    "WHERE name = %s AND position = %s",
                    (position, name, previous),
                )
            return cursor.rowcount == 1

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
