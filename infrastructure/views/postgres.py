"""The PostgreSQL dialect of the SQL views: a small pool of its own, in the store's schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from .sql import SqlViewBackend

# A session lock: one rebuild at a time fills a schema's tables; the server releases it too if
# the rebuilding process dies.
LOCK_REBUILD = "SELECT pg_advisory_lock(hashtext(current_schema() || '.views-rebuild'))"
UNLOCK_REBUILD = "SELECT pg_advisory_unlock(hashtext(current_schema() || '.views-rebuild'))"
# CREATE TABLE IF NOT EXISTS races between processes: one at a time per schema.
LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(hashtext(current_schema()))"


class PostgresDialect:
    """PostgreSQL: a small pool of its own, in the store's schema; arrays as list parameters."""

    id_type = 'TEXT COLLATE "C"'  # code point order, as Python compares the `after` cursor
    int_type = "BIGINT"
    bool_type = "BOOLEAN"
    begin_write = "BEGIN"
    begin_snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    lock_tracking = " FOR UPDATE"  # concurrent catch-ups queue here; the loser sees a new position
    no_limit: int | None = None  # LIMIT NULL is LIMIT ALL
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
        """A connection of the pool (autocommit, ``search_path`` set to the schema)."""
        with self._pool.connection() as conn:
            yield conn

    def sql(self, text: str) -> str:
        """``?`` placeholders become psycopg's ``%s``."""
        return text.replace("?", "%s")

    def in_list(self, column: str, integers: bool) -> str:
        """``column`` is in an array (one parameter), typed so the column's index serves."""
        return f"{column} = ANY(?::{'bigint' if integers else 'text'}[])"

    def list_parameter(self, values: list[Any]) -> Any:
        """psycopg sends a list as an array."""
        return values

    def bulk_statement(self, table: str, columns: tuple[str, ...]) -> str:
        """COPY ... FROM STDIN."""
        return f"COPY {table} ({', '.join(columns)}) FROM STDIN"

    def guard_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Take the schema's lock until the transaction ends."""
        conn.execute(LOCK_SCHEMA)

    def guard_rebuild(self, conn: psycopg.Connection[Any], held: bool) -> None:
        """Take or release the schema's rebuild lock."""
        conn.execute(LOCK_REBUILD if held else UNLOCK_REBUILD)

    def bulk_insert(
        self, conn: psycopg.Connection[Any], statement: str, rows: list[tuple[Any, ...]]
    ) -> None:
        """Stream the rows through COPY."""
        with conn.cursor().copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()


def postgres_view_backend(conninfo: str, schema: str) -> SqlViewBackend:
    """The views in the store's PostgreSQL schema."""
    return SqlViewBackend(PostgresDialect(conninfo, schema))
