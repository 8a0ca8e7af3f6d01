"""The PostgreSQL dialect of the SQL views: a small pool of its own, in the store's schema."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from .sql_views import SqlViewBackend


class PostgresDialect:
    id_type = 'TEXT COLLATE "C"'  # code point order, as Python compares the `after` cursor
    int_type = "BIGINT"
    bool_type = "BOOLEAN"
    begin_write = "BEGIN"
    begin_snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    lock_tracking = " FOR UPDATE"  # concurrent catch-ups queue here; the loser sees a new position
    unavailable: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)

    def __init__(self, conninfo: str, schema: str, pool_size: int = 4) -> None:
        self.conninfo = make_conninfo(conninfo, options=f"-c search_path={schema}")
        self.schema = schema
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=True,
            name="threadbox-views",
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def guard_schema(self, conn: psycopg.Connection[Any]) -> None:
        # CREATE TABLE IF NOT EXISTS races between processes; one at a time per schema.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")

    def guard_rebuild(self, conn: psycopg.Connection[Any], held: bool) -> None:
        # A session lock: released by the server too if the rebuilding process dies.
        verb = "pg_advisory_lock" if held else "pg_advisory_unlock"
        conn.execute(f"SELECT {verb}(hashtext(current_schema() || '.views-rebuild'))")

    def bulk_insert(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        columns: Sequence[str],
        rows: list[tuple[Any, ...]],
    ) -> None:
        with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        self._pool.close()


def postgres_view_backend(conninfo: str, schema: str) -> SqlViewBackend:
    return SqlViewBackend(PostgresDialect(conninfo, schema))
