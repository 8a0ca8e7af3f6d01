"""The PostgreSQL dialect of the SQL views: a small pool of its own, in the store's schema."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from threadbox.application.ports import Position

from ..pg_pool import RECONNECT_TIMEOUT, FailFastPool
from ..pg_recorder import LogPosition
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
    # A LogPosition in two columns (ADR 0009): the writing transaction, then the notification id.
    tracked_columns = "transaction_id::text, position"
    tracked_assignment = "transaction_id = ?::xid8, position = ?"
    no_limit: int | None = None  # LIMIT NULL is LIMIT ALL
    unavailable: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)

    def __init__(self, conninfo: str, schema: str, pool_size: int = 4) -> None:
        given = conninfo_to_dict(conninfo)  # its options bound statements (ADR 0015): keep them
        options = f"{given.get('options', '')} -c search_path={schema}".strip()
        self.conninfo = make_conninfo(conninfo, options=options)
        self.schema = schema
        self.attempts = pool_size + 1  # every pooled connection may be dead after a restart
        self._pool = FailFastPool(
            self.conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=True,
            name="threadbox-views",
            timeout=float(given.get("connect_timeout") or 5),
            reconnect_timeout=RECONNECT_TIMEOUT,
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

    def json_field(self, column: str, key: str) -> str:
        """The ``->>`` operator on the text read as ``json`` (parsed, not converted to jsonb)."""
        return f"({column}::json ->> '{key}')"

    def list_parameter(self, values: list[Any]) -> Any:
        """psycopg sends a list as an array."""
        return values

    def bulk_statement(self, table: str, columns: tuple[str, ...]) -> str:
        """COPY ... FROM STDIN."""
        return f"COPY {table} ({', '.join(columns)}) FROM STDIN"

    def guard_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Take the schema's lock until the transaction ends."""
        conn.execute(LOCK_SCHEMA)

    def upgrade_tracking(self, conn: psycopg.Connection[Any]) -> None:
        """Add the transaction column to a tracking table made before commit order (ADR 0009):
        its position ``p`` (a notification id, in the order of the table lock) reads as
        ``LogPosition(0, p)``, where the events written before the upgrade are. Only when
        missing: an ALTER would wait for every catch-up in flight."""
        found = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = 'view_tracking' AND column_name = 'transaction_id'"
        ).fetchone()
        if found is None:
            conn.execute(
                "ALTER TABLE view_tracking ADD COLUMN IF NOT EXISTS"
                " transaction_id xid8 NOT NULL DEFAULT '0'"
            )

    def position_of(self, values: Sequence[Any]) -> Position:
        """The tracking row's ``LogPosition``, encoded."""
        return LogPosition(int(values[0]), int(values[1])).encode()

    def tracked_values(self, position: Position) -> tuple[Any, ...]:
        """The transaction id (as text, cast to xid8) and notification id of ``position``."""
        decoded = LogPosition.decode(position)
        return (str(decoded.transaction_id), decoded.notification_id)

    def guard_rebuild(self, conn: psycopg.Connection[Any], held: bool) -> None:
        """Take or release the schema's rebuild lock; a rebuild's statements are unbounded."""
        conn.execute("SET statement_timeout = 0" if held else "RESET statement_timeout")
        conn.execute(LOCK_REBUILD if held else UNLOCK_REBUILD)

    def dropped(self, conn: psycopg.Connection[Any]) -> bool:
        """The connection broke (the server closed it, or it was terminated)."""
        return conn.broken

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
