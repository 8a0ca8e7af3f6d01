"""The SQLite dialect of the SQL views: its own connections to the event database file."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from threadbox.application.ports import Position

from ..positions import decode_id, encode_id
from .sql import SqlViewBackend


class SqliteDialect:
    """SQLite: WAL mode, ``BEGIN IMMEDIATE`` for writes, JSON arrays as list parameters."""

    id_type = "TEXT"  # compared bytewise (BINARY): the order of Python's str
    int_type = "INTEGER"
    bool_type = "INTEGER"
    begin_write = "BEGIN IMMEDIATE"  # take the write lock before reading tracking
    begin_snapshot = "BEGIN"  # WAL: every read of a transaction sees one snapshot
    lock_tracking = ""
    tracked_columns = "position"  # the notification id: SQLite's commit order
    tracked_assignment = "position = ?"
    no_limit: int | None = -1  # a negative LIMIT has no upper bound
    unavailable: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
    attempts = 1  # a file is not dropped: nothing to try again

    def __init__(self, path: str, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # Views are rebuildable and tracked in the same transaction: losing the last commits
        # on power loss only means catching up again, so skip the fsync per commit.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """An idle connection, or a new one; a connection that failed is closed, not reused."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()  # its state is unknown: never hand it out again
            raise
        with self._lock:
            self._idle.append(conn)

    def sql(self, text: str) -> str:
        """SQLite's placeholders are ``?`` already."""
        return text

    def in_list(self, column: str, integers: bool) -> str:
        """``column`` is in a JSON array (one parameter, whatever its length)."""
        return f"{column} IN (SELECT value FROM json_each(?))"

    def json_field(self, column: str, key: str) -> str:
        """SQLite's JSON1 ``json_extract``."""
        return f"json_extract({column}, '$.{key}')"

    def list_parameter(self, values: list[Any]) -> Any:
        """The values as a JSON array."""
        return orjson.dumps(values).decode()

    def bulk_statement(self, table: str, columns: tuple[str, ...]) -> str:
        """A plain INSERT, run over many rows."""
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )

    def guard_schema(self, conn: sqlite3.Connection) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` serialises schema creation."""
        return None  # BEGIN IMMEDIATE already lets one connection create the schema at a time

    def upgrade_tracking(self, conn: sqlite3.Connection) -> None:
        """Nothing: SQLite's tracking row has always held a notification id."""
        return None

    def position_of(self, values: Sequence[Any]) -> Position:
        """The notification id, as a position."""
        return encode_id(int(values[0]))

    def tracked_values(self, position: Position) -> tuple[Any, ...]:
        """The notification id of ``position``."""
        return (decode_id(position),)

    def guard_rebuild(self, conn: sqlite3.Connection, held: bool) -> None:
        """Nothing: rebuilds of one SQLite file are not coordinated (ADR 0005)."""
        return None  # not coordinated: run one rebuild at a time per SQLite file (ADR)

    def bulk_insert(
        self, conn: sqlite3.Connection, statement: str, rows: list[tuple[Any, ...]]
    ) -> None:
        """Insert the rows in one ``executemany``."""
        conn.executemany(statement, rows)

    def dropped(self, conn: sqlite3.Connection) -> bool:
        """Never: a SQLite file has no connection to lose."""
        return False

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def sqlite_view_backend(path: str) -> SqlViewBackend:
    """The views in the SQLite file at ``path`` (the event database)."""
    return SqlViewBackend(SqliteDialect(path))
