"""The SQLite dialect of the SQL views: its own connections to the event database file."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .sql_views import SqlViewBackend


class SqliteDialect:
    id_type = "TEXT"  # compared bytewise (BINARY): the order of Python's str
    int_type = "INTEGER"
    bool_type = "INTEGER"
    begin_write = "BEGIN IMMEDIATE"  # take the write lock before reading tracking
    begin_snapshot = "BEGIN"  # WAL: every read of a transaction sees one snapshot
    lock_tracking = ""
    unavailable: tuple[type[Exception], ...] = (sqlite3.OperationalError,)

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
        return text

    def guard_schema(self, conn: sqlite3.Connection) -> None:
        return None  # BEGIN IMMEDIATE already lets one connection create the schema at a time

    def guard_rebuild(self, conn: sqlite3.Connection, held: bool) -> None:
        return None  # not coordinated: run one rebuild at a time per SQLite file (ADR)

    def bulk_insert(
        self,
        conn: sqlite3.Connection,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        marks = ", ".join("?" * len(columns))
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def sqlite_view_backend(path: str) -> SqlViewBackend:
    return SqlViewBackend(SqliteDialect(path))
