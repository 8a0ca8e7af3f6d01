"""The views as SQL tables next to the events: one implementation for SQLite and PostgreSQL.

A ``Dialect`` supplies what differs (connections, placeholders, types, locking, list
parameters, bulk loading); the statements are written once per table (``statements.py``).
Rows go in and come out in the canonical form of ``threadbox.projections.changes``: JSON
columns are TEXT holding JSON (exact round trip, no jsonb key reordering or NUL refusal; a
message or mode is JSON text in the row already), timestamps ISO strings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

import orjson
from threadbox.application.ports import Position, Progress
from threadbox.domain.errors import StoreUnavailable
from threadbox.projections.changes import (
    COLUMNS,
    JSON_COLUMNS,
    KEYS,
    TABLES,
    AppendPending,
    Change,
    Delete,
    Extend,
    Increment,
    Key,
    Renumber,
    Row,
    Update,
)
from threadbox.projections.tables import Tables

from ..faults import translated
from .statements import BOOL_COLUMNS, TRACKING_NAME, SqlTypes, TableStatements, ViewStatements

# Free text stored as JSON too: PostgreSQL TEXT refuses NUL, which a run's detail may hold.
ENCODED = JSON_COLUMNS | {"detail"}
BULK_ROWS = 5000  # rows per transaction while a rebuild fills its tables

T = TypeVar("T")
log = logging.getLogger("threadbox.views")
Connection = Any  # sqlite3.Connection or psycopg.Connection, both in autocommit mode


class Dialect(SqlTypes, Protocol):
    """What SQLite and PostgreSQL do differently."""

    begin_write: str  # a transaction that holds the write lock before reading tracking
    begin_snapshot: str  # a transaction whose reads all see one snapshot
    no_limit: int | None  # the LIMIT parameter that means "no limit"
    # Errors of the database itself (connection lost, disk full, locked): not the event's fault.
    unavailable: tuple[type[Exception], ...]

    def connection(self) -> AbstractContextManager[Connection]:
        """A connection of the dialect's pool, in autocommit mode."""

    def list_parameter(self, values: list[Any]) -> Any:
        """``values`` as the one parameter of an ``in_list`` condition."""

    def guard_schema(self, conn: Connection) -> None:
        """Inside a transaction: serialise concurrent schema creation."""

    def upgrade_tracking(self, conn: Connection) -> None:
        """Inside the schema's creation: add what older tracking tables lack."""

    def position_of(self, values: Sequence[Any]) -> Position:
        """The position a tracking row holds (its ``tracked_columns``)."""

    def tracked_values(self, position: Position) -> tuple[Any, ...]:
        """The parameters of ``tracked_assignment`` for ``position``."""

    def guard_rebuild(self, conn: Connection, held: bool) -> None:
        """Take (``held``) or release the lock that lets one rebuild at a time fill tables."""

    def bulk_insert(self, conn: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
        """Run a rebuild's fill ``statement`` over ``rows``."""

    def close(self) -> None:
        """Close the dialect's connections."""

    def dropped(self, conn: Connection) -> bool:
        """Whether ``conn`` was lost (a server restart, a terminated backend): work that failed
        on it may run again on another connection."""

    attempts: int  # connections to try before a dropped one fails the work


def _encode(table: str, row: Row) -> tuple[Any, ...]:
    return tuple(orjson.dumps(row[c]).decode() if c in ENCODED else row[c] for c in COLUMNS[table])


def _decode(table: str, values: Sequence[Any]) -> Row:
    row: Row = {}
    for column, value in zip(COLUMNS[table], values, strict=True):
        if value is None:
            row[column] = None
        elif column in ENCODED:
            row[column] = orjson.loads(value)
        elif column in BOOL_COLUMNS:
            row[column] = bool(value)
        else:
            row[column] = value
    return row


def _private(row: Row) -> Row:
    """A copy the changes may modify without touching ``row``: they replace values or extend
    lists, never mutate anything deeper."""
    return {c: v.copy() if isinstance(v, list) else v for c, v in row.items()}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlViewBackend:
    """A ``ViewBackend`` on SQL tables ``view_*`` plus one tracking row, in the event database."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.unavailable: tuple[type[Exception], ...] = (StoreUnavailable, *dialect.unavailable)
        self.statements = ViewStatements.build(dialect)
        try:
            self._connected(
                lambda conn: self._transaction(conn, dialect.begin_write, self._create_schema)
            )
        except StoreUnavailable:
            # A read-only file or server whose views exist already: serve reads, and let
            # writes answer store_unavailable (ADR 0015). Without the views, nothing to serve.
            self.position()
            log.warning("the views' database cannot be written; serving reads only")

    def _connected(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` on a connection of the dialect; again on another one when the
        connection was dropped (its transaction, if any, rolled back with it: every piece of
        work here is a read, or a transaction that checks the tracking position first). The
        database's own failures raise ``StoreUnavailable``."""
        with translated():
            for attempt in range(1, self.dialect.attempts + 1):
                with self.dialect.connection() as conn:
                    try:
                        return work(conn)
                    except self.dialect.unavailable:
                        if attempt == self.dialect.attempts or not self.dialect.dropped(conn):
                            raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _create_schema(self, conn: Connection) -> None:
        self.dialect.guard_schema(conn)
        for table in TABLES:
            for statement in self.statements.tables[table].create:
                conn.execute(statement)
        create_table, insert_row = self.statements.create_tracking
        conn.execute(create_table)
        self.dialect.upgrade_tracking(conn)
        conn.execute(insert_row, (TRACKING_NAME,))

    def _transaction(self, conn: Connection, begin: str, work: Callable[[Connection], T]) -> T:
        conn.execute(begin)
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _tracked(self, conn: Connection, lock: bool) -> Position:
        statement = self.statements.tracked_for_update if lock else self.statements.tracked
        return self.dialect.position_of(conn.execute(statement, (TRACKING_NAME,)).fetchone())

    def _set_tracked(self, conn: Connection, position: Position) -> None:
        values = self.dialect.tracked_values(position)
        conn.execute(self.statements.set_tracked, (*values, TRACKING_NAME))

    # ---- catch-up --------------------------------------------------------------------------

    def position(self) -> Position:
        """The log position the views reflect."""
        return self._connected(lambda conn: self._tracked(conn, lock=False))

    def apply(
        self, changes: Sequence[Change], from_position: Position, to_position: Position
    ) -> bool:
        """Apply a batch's changes and move tracking, in one transaction (see ``ViewBackend``):
        read the rows the batch touches, apply the changes to them in memory, write what
        differs."""

        def work(conn: Connection) -> bool:
            if self._tracked(conn, lock=True) != from_position:
                return False  # another catch-up applied these events first
            before, tops = self._load_touched(conn, changes)
            tables = Tables()
            for table, rows in before.items():
                for key, row in rows.items():
                    tables.rows[table].setdefault(key[0], {})[key[1:]] = _private(row)
            for thread_id, top in tops.items():
                tables.know_top(thread_id, top)
            for change in changes:
                tables.apply(change)
            self._write_difference(conn, before, tables.flat())
            self._set_tracked(conn, to_position)
            return True

        return bool(
            self._connected(lambda conn: self._transaction(conn, self.dialect.begin_write, work))
        )

    def _load_touched(
        self, conn: Connection, changes: Sequence[Change]
    ) -> tuple[dict[str, dict[Key, Row]], dict[str, int]]:
        """The rows the changes read or modify (a superset), as they are before the batch; and
        the highest queue position of each thread the batch appends to without renumbering
        (its queue is not read: an append needs only that position)."""
        threads: dict[str, set[str]] = {t: set() for t in TABLES}
        seconds: dict[str, set[Any]] = {t: set() for t in TABLES}
        renumbered: set[str] = set()  # pending queues read whole
        appended: set[str] = set()
        for change in changes:
            if isinstance(change, AppendPending):
                appended.add(change.thread_id)
            elif isinstance(change, Renumber):
                renumbered.add(change.thread_id)
            elif isinstance(change, (Update, Delete, Increment, Extend)):
                key = change.key
                threads[change.table].add(key[0])
                if len(key) > 1:
                    seconds[change.table].add(key[1])
                if change.table == "pending" and isinstance(change, Delete):
                    renumbered.add(key[0])
        loaded: dict[str, dict[Key, Row]] = {t: {} for t in TABLES}
        as_list = self.dialect.list_parameter

        def load(table: str, statement: str, params: list[Any]) -> None:
            for values in conn.execute(statement, params).fetchall():
                row = _decode(table, values)
                loaded[table][tuple(row[c] for c in KEYS[table])] = row

        for table in TABLES:
            statements = self.statements.tables[table]
            if table == "pending":
                if renumbered:
                    load(table, statements.select_touched, [as_list(sorted(renumbered))])
                named = threads[table] - renumbered
                if named:
                    params = [as_list(sorted(named)), as_list(sorted(seconds[table]))]
                    load(table, statements.select_named, params)
                continue
            if not threads[table]:
                continue
            params = [as_list(sorted(threads[table]))]
            if statements.second_key is not None:
                params.append(as_list(sorted(seconds[table])))
            load(table, statements.select_touched, params)
        tops: dict[str, int] = {}
        unread = appended - renumbered
        if unread:
            tops = {t: 0 for t in unread}
            found = conn.execute(self.statements.queue_tops, [as_list(sorted(unread))])
            tops.update((str(t), int(top)) for t, top in found.fetchall())
        return loaded, tops

    def _write_difference(
        self, conn: Connection, before: dict[str, dict[Key, Row]], after: dict[str, dict[Key, Row]]
    ) -> None:
        for table in TABLES:
            old, new = before[table], after[table]
            statements, keys = self.statements.tables[table], KEYS[table]
            gone = [k for k in old if k not in new]
            changed = [row for k, row in new.items() if k in old and old[k] != row]
            added = [row for k, row in new.items() if k not in old]
            cursor = conn.cursor()
            if gone:
                cursor.executemany(statements.delete, gone)
            if changed:
                rest = [n for n, c in enumerate(COLUMNS[table]) if c not in keys]
                params = []
                for row in changed:
                    encoded = _encode(table, row)
                    params.append((*(encoded[n] for n in rest), *(row[c] for c in keys)))
                cursor.executemany(statements.update, params)
            if added:
                cursor.executemany(statements.insert, [_encode(table, r) for r in added])

    # ---- rebuild ---------------------------------------------------------------------------

    def replace_all(self, tables: Tables, position: Position, progress: Progress | None) -> None:
        """Fill ``view_*__rebuild`` tables in batches, then swap them in in one transaction."""
        total = sum(len(group) for t in TABLES for group in tables.rows[t].values())
        with translated(), self.dialect.connection() as conn:
            self.dialect.guard_rebuild(conn, held=True)
            try:
                self._rebuild(conn, tables, position, total, progress)
            finally:
                self.dialect.guard_rebuild(conn, held=False)

    def _rebuild(
        self,
        conn: Connection,
        tables: Tables,
        position: Position,
        total: int,
        progress: Progress | None,
    ) -> None:
        done = 0
        for table in TABLES:
            for statement in self.statements.tables[table].recreate_aside:
                conn.execute(statement)  # a killed rebuild's leftovers go first
        for table in TABLES:
            rows = [_encode(table, r) for r in tables.all_rows(table)]
            for chunk in _chunks(rows, BULK_ROWS):
                self._fill(conn, self.statements.tables[table], list(chunk))
                done += len(chunk)
                if progress:
                    progress(done, total)
        self._transaction(conn, self.dialect.begin_write, lambda c: self._swap(c, position))

    def _fill(self, conn: Connection, table: TableStatements, rows: list[tuple[Any, ...]]) -> None:
        def insert(c: Connection) -> None:
            self.dialect.bulk_insert(c, table.fill_aside, rows)

        self._transaction(conn, self.dialect.begin_write, insert)

    def _swap(self, conn: Connection, position: Position) -> None:
        self._tracked(conn, lock=True)  # wait for (and then exclude) any catch-up in flight
        for table in TABLES:
            self._swap_table(conn, self.statements.tables[table])
        self._set_tracked(conn, position)

    def _swap_table(self, conn: Connection, table: TableStatements) -> None:
        for statement in table.swap:
            conn.execute(statement)

    # ---- reads -----------------------------------------------------------------------------

    def _rows(self, table: str, statement: str, params: Sequence[Any]) -> list[Row]:
        found = self._connected(lambda conn: conn.execute(statement, params).fetchall())
        return [_decode(table, r) for r in found]

    def dump(self) -> tuple[Position, dict[str, dict[Key, Row]]]:
        """The tracking position and every row, in one snapshot."""

        def read(conn: Connection) -> tuple[Position, dict[str, dict[Key, Row]]]:
            position = self._tracked(conn, lock=False)
            found: dict[str, dict[Key, Row]] = {}
            for table in TABLES:
                rows = conn.execute(self.statements.tables[table].select).fetchall()
                decoded = (_decode(table, r) for r in rows)
                found[table] = {tuple(r[c] for c in KEYS[table]): r for r in decoded}
            return position, found

        result: tuple[Position, dict[str, dict[Key, Row]]] = self._connected(
            lambda conn: self._transaction(conn, self.dialect.begin_snapshot, read)
        )
        return result

    def pending_rows(self, thread_id: str) -> list[Row]:
        """The thread's pending rows, by position."""
        return self._rows("pending", self.statements.pending, (thread_id,))

    def committed_rows(
        self,
        thread_id: str,
        after_seq: int,
        limit: int | None,
        include_hidden: bool,
        include_internal: bool = True,
    ) -> list[Row]:
        """The thread's committed rows after ``after_seq``, by seq, at most ``limit``; rows
        of internal messages only with ``include_internal`` (filtered by the query)."""
        rows = self.dialect.no_limit if limit is None else limit
        params = (thread_id, after_seq, include_hidden, include_internal, rows)
        return self._rows("committed", self.statements.committed, params)

    def run_rows(self, thread_id: str, offset: int = 0, limit: int | None = None) -> list[Row]:
        """The thread's run rows in the order they started, after the first ``offset``."""
        rows = self.dialect.no_limit if limit is None else limit
        return self._rows("runs", self.statements.runs, (thread_id, rows, offset))

    def latest_run_row(self, run_id: str) -> Row | None:
        """The latest run to start with this id, in any thread."""
        rows = self._rows("runs", self.statements.latest_run, (run_id,))
        return rows[0] if rows else None

    def checkpoint_rows(
        self, thread_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[Row]:
        """The thread's checkpoint rows after ``after_version``, by version."""
        rows = self.dialect.no_limit if limit is None else limit
        return self._rows(
            "checkpoints", self.statements.checkpoints, (thread_id, after_version, rows)
        )

    def hidden_ids(self, thread_id: str) -> set[str]:
        """The ids of the thread's hidden messages."""
        with self.dialect.connection() as conn:
            return {r[0] for r in conn.execute(self.statements.hidden, (thread_id,)).fetchall()}

    def thread_row(self, thread_id: str) -> Row | None:
        """The thread's summary row, if the views know the thread."""
        rows = self._rows("threads", self.statements.thread, (thread_id,))
        return rows[0] if rows else None

    def thread_rows(self, limit: int, after: str | None, has_pending: bool | None) -> list[Row]:
        """Thread summary rows by thread id after ``after`` (thread ids are never empty)."""
        params = ("" if after is None else after, limit)
        return self._rows("threads", self.statements.threads[has_pending], params)

    def thread_exists(self, thread_id: str) -> bool:
        """Is there a summary row for this thread?"""
        found = self._connected(
            lambda conn: conn.execute(self.statements.thread_exists, (thread_id,)).fetchone()
        )
        return found is not None

    def close(self) -> None:
        """Close the dialect's connections."""
        self.dialect.close()
