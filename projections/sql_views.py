"""The views as SQL tables next to the events: one implementation for SQLite and PostgreSQL.

A ``Dialect`` supplies what differs (connections, placeholders, types, locking, bulk loading);
everything else — schema, catch-up writes, the rebuild swap, reads — is written once here.
Rows go in and come out in the canonical form of ``changes.py``: JSON columns are TEXT holding
JSON (exact round trip, no jsonb key reordering or NUL refusal), timestamps ISO strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

import orjson
from threadbox.application.ports import Progress

from .changes import (
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
from .tables import Tables

TRACKING = "view_tracking"
TRACKING_NAME = "views"
INT_COLUMNS = frozenset(
    {
        "version",
        "pending_count",
        "committed_count",
        "position",
        "revision",
        "seq",
        "freeze_count",
        "started_position",
        "first_seq",
        "last_seq",
    }
)
BOOL_COLUMNS = frozenset({"visible"})
ID_COLUMNS = frozenset({"thread_id", "pending_id", "run_id", "message_id"})
# Free text stored as JSON too: PostgreSQL TEXT refuses NUL, which a run's detail may hold.
ENCODED = JSON_COLUMNS | {"detail"}
REBUILD = "__rebuild"
BULK_ROWS = 5000
IN_LIST = 500  # parameters per IN (...) list when loading rows for a batch

# Secondary indexes for the reads (the unique key index is made for every table).
INDEXES: dict[str, list[tuple[str, str]]] = {
    "threads": [("view_threads_pending", "(thread_id) WHERE pending_count > 0")],
    "pending": [("view_pending_position", "(thread_id, position)")],
    "runs": [("view_runs_run_id", "(run_id, started_position)")],
}
# Which rows a batch must read before applying changes: the thread's whole pending queue
# (appends and renumbering need it), else just the rows the changes name.
WHOLE_THREAD = frozenset({"pending"})

T = TypeVar("T")
Connection = Any  # sqlite3.Connection or psycopg.Connection, both in autocommit mode


class Dialect(Protocol):
    """What SQLite and PostgreSQL do differently."""

    id_type: str
    int_type: str
    bool_type: str
    begin_write: str  # a transaction that holds the write lock before reading tracking
    begin_snapshot: str  # a transaction whose reads all see one snapshot
    lock_tracking: str  # appended to the tracking SELECT inside a write transaction
    # Errors of the database itself (connection lost, disk full, locked): not the event's fault.
    unavailable: tuple[type[Exception], ...]

    def connection(self) -> AbstractContextManager[Connection]: ...

    def sql(self, text: str) -> str:
        """Write ``?`` placeholders; the dialect turns them into its own."""

    def guard_schema(self, conn: Connection) -> None:
        """Inside a transaction: serialise concurrent schema creation."""

    def guard_rebuild(self, conn: Connection, held: bool) -> None:
        """Take (``held``) or release the lock that lets one rebuild at a time fill tables."""

    def bulk_insert(
        self, conn: Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None: ...

    def close(self) -> None: ...


def _column_type(dialect: Dialect, column: str) -> str:
    if column in INT_COLUMNS:
        return dialect.int_type
    if column in BOOL_COLUMNS:
        return dialect.bool_type
    return dialect.id_type if column in ID_COLUMNS else "TEXT"


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
        self.unavailable = dialect.unavailable
        self._select = {t: f"SELECT {', '.join(COLUMNS[t])} FROM view_{t}" for t in TABLES}
        with dialect.connection() as conn:
            self._transaction(conn, dialect.begin_write, self._create_schema)

    # ---- schema ----------------------------------------------------------------------------

    def _create_table(self, conn: Connection, table: str, name: str) -> None:
        columns = ", ".join(
            f"{c} {_column_type(self.dialect, c)}" + (" NOT NULL" if c in KEYS[table] else "")
            for c in COLUMNS[table]
        )
        conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")

    def _create_indexes(self, conn: Connection, table: str) -> None:
        keys = ", ".join(KEYS[table])
        conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS view_{table}_key ON view_{table} ({keys})")
        for name, definition in INDEXES.get(table, []):
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON view_{table} {definition}")

    def _create_schema(self, conn: Connection) -> None:
        self.dialect.guard_schema(conn)
        for table in TABLES:
            self._create_table(conn, table, f"view_{table}")
            self._create_indexes(conn, table)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TRACKING} "
            f"(name TEXT PRIMARY KEY, position {self.dialect.int_type} NOT NULL)"
        )
        conn.execute(
            self.dialect.sql(
                f"INSERT INTO {TRACKING} (name, position) VALUES (?, 0) "
                "ON CONFLICT (name) DO NOTHING"
            ),
            (TRACKING_NAME,),
        )

    def _transaction(self, conn: Connection, begin: str, work: Callable[[Connection], T]) -> T:
        conn.execute(begin)
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _tracked(self, conn: Connection, lock: bool) -> int:
        text = f"SELECT position FROM {TRACKING} WHERE name = ?"
        text += self.dialect.lock_tracking if lock else ""
        return int(conn.execute(self.dialect.sql(text), (TRACKING_NAME,)).fetchone()[0])

    def _set_tracked(self, conn: Connection, position: int) -> None:
        text = self.dialect.sql(f"UPDATE {TRACKING} SET position = ? WHERE name = ?")
        conn.execute(text, (position, TRACKING_NAME))

    # ---- catch-up --------------------------------------------------------------------------

    def position(self) -> int:
        with self.dialect.connection() as conn:
            return self._tracked(conn, lock=False)

    def apply(self, changes: Sequence[Change], from_position: int, to_position: int) -> bool:
        def work(conn: Connection) -> bool:
            if self._tracked(conn, lock=True) != from_position:
                return False  # another catch-up applied these events first
            before = self._load_touched(conn, changes)
            tables = Tables()
            for table, rows in before.items():
                for key, row in rows.items():
                    tables.rows[table].setdefault(key[0], {})[key[1:]] = _private(row)
            for change in changes:
                tables.apply(change)
            self._write_difference(conn, before, tables.flat())
            self._set_tracked(conn, to_position)
            return True

        with self.dialect.connection() as conn:
            return bool(self._transaction(conn, self.dialect.begin_write, work))

    def _load_touched(
        self, conn: Connection, changes: Sequence[Change]
    ) -> dict[str, dict[Key, Row]]:
        """The rows the changes read or modify (a superset), as they are before the batch."""
        threads: dict[str, set[str]] = {t: set() for t in TABLES}
        seconds: dict[str, set[Any]] = {t: set() for t in TABLES}
        for change in changes:
            if isinstance(change, (AppendPending, Renumber)):
                threads["pending"].add(change.thread_id)
            elif isinstance(change, (Update, Delete, Increment, Extend)):
                key = change.key
                threads[change.table].add(key[0])
                if len(key) > 1:
                    seconds[change.table].add(key[1])
        loaded: dict[str, dict[Key, Row]] = {t: {} for t in TABLES}
        for table in TABLES:
            if not threads[table]:
                continue
            second = KEYS[table][1] if len(KEYS[table]) > 1 else None
            for ids in _chunks(sorted(threads[table]), IN_LIST):
                where = f"thread_id IN ({', '.join('?' * len(ids))})"
                params: list[Any] = list(ids)
                if second and table not in WHOLE_THREAD:
                    values = sorted(seconds[table])
                    where += f" AND {second} IN ({', '.join('?' * len(values))})"
                    params += values
                text = self.dialect.sql(f"{self._select[table]} WHERE {where}")
                for values_row in conn.execute(text, params).fetchall():
                    row = _decode(table, values_row)
                    loaded[table][tuple(row[c] for c in KEYS[table])] = row
        return loaded

    def _write_difference(
        self, conn: Connection, before: dict[str, dict[Key, Row]], after: dict[str, dict[Key, Row]]
    ) -> None:
        for table in TABLES:
            old, new = before[table], after[table]
            keys, columns = KEYS[table], COLUMNS[table]
            rest = [c for c in columns if c not in keys]
            gone = [k for k in old if k not in new]
            changed = [row for k, row in new.items() if k in old and old[k] != row]
            added = [row for k, row in new.items() if k not in old]
            cursor = conn.cursor()
            match = " AND ".join(f"{c} = ?" for c in keys)
            if gone:
                text = f"DELETE FROM view_{table} WHERE {match}"
                cursor.executemany(self.dialect.sql(text), gone)
            if changed:
                sets = ", ".join(f"{c} = ?" for c in rest)
                text = f"UPDATE view_{table} SET {sets} WHERE {match}"
                params = []
                for row in changed:
                    encoded = dict(zip(columns, _encode(table, row), strict=True))
                    params.append((*(encoded[c] for c in rest), *(row[c] for c in keys)))
                cursor.executemany(self.dialect.sql(text), params)
            if added:
                marks = ", ".join("?" * len(columns))
                text = f"INSERT INTO view_{table} ({', '.join(columns)}) VALUES ({marks})"
                cursor.executemany(self.dialect.sql(text), [_encode(table, r) for r in added])

    # ---- rebuild ---------------------------------------------------------------------------

    def replace_all(self, tables: Tables, position: int, progress: Progress | None) -> None:
        """Fill ``view_*__rebuild`` tables in batches, then swap them in in one transaction."""
        total = sum(len(group) for t in TABLES for group in tables.rows[t].values())
        with self.dialect.connection() as conn:
            self.dialect.guard_rebuild(conn, held=True)
            try:
                self._rebuild(conn, tables, position, total, progress)
            finally:
                self.dialect.guard_rebuild(conn, held=False)

    def _rebuild(
        self, conn: Connection, tables: Tables, position: int, total: int, progress: Progress | None
    ) -> None:
        done = 0
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS view_{table}{REBUILD}")  # a killed rebuild's
            self._create_table(conn, table, f"view_{table}{REBUILD}")
        for table in TABLES:
            rows = [_encode(table, r) for r in tables.all_rows(table)]
            for chunk in _chunks(rows, BULK_ROWS):
                self._fill(conn, table, list(chunk))
                done += len(chunk)
                if progress:
                    progress(done, total)
        self._transaction(conn, self.dialect.begin_write, lambda c: self._swap(c, position))

    def _fill(self, conn: Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
        def insert(c: Connection) -> None:
            self.dialect.bulk_insert(c, f"view_{table}{REBUILD}", COLUMNS[table], rows)

        self._transaction(conn, self.dialect.begin_write, insert)

    def _swap(self, conn: Connection, position: int) -> None:
        self._tracked(conn, lock=True)  # wait for (and then exclude) any catch-up in flight
        for table in TABLES:
            conn.execute(f"DROP TABLE view_{table}")
            conn.execute(f"ALTER TABLE view_{table}{REBUILD} RENAME TO view_{table}")
            self._create_indexes(conn, table)
        self._set_tracked(conn, position)

    # ---- reads -----------------------------------------------------------------------------

    def _rows(self, table: str, where: str, params: Sequence[Any]) -> list[Row]:
        text = self.dialect.sql(f"{self._select[table]} {where}")
        with self.dialect.connection() as conn:
            return [_decode(table, r) for r in conn.execute(text, params).fetchall()]

    def dump(self) -> tuple[int, dict[str, dict[Key, Row]]]:
        def read(conn: Connection) -> tuple[int, dict[str, dict[Key, Row]]]:
            position = self._tracked(conn, lock=False)
            found: dict[str, dict[Key, Row]] = {}
            for table in TABLES:
                rows = (_decode(table, r) for r in conn.execute(self._select[table]).fetchall())
                found[table] = {tuple(r[c] for c in KEYS[table]): r for r in rows}
            return position, found

        with self.dialect.connection() as conn:
            result: tuple[int, dict[str, dict[Key, Row]]] = self._transaction(
                conn, self.dialect.begin_snapshot, read
            )
            return result

    def pending_rows(self, thread_id: str) -> list[Row]:
        return self._rows("pending", "WHERE thread_id = ? ORDER BY position", (thread_id,))

    def committed_rows(
        self, thread_id: str, after_seq: int, limit: int | None, include_hidden: bool
    ) -> list[Row]:
        where = "WHERE thread_id = ? AND seq > ?"
        params: list[Any] = [thread_id, after_seq]
        if not include_hidden:
            where += " AND visible = ?"
            params.append(True)
        where += " ORDER BY seq"
        if limit is not None:
            where += " LIMIT ?"
            params.append(limit)
        return self._rows("committed", where, params)

    def run_rows(self, thread_id: str) -> list[Row]:
        return self._rows("runs", "WHERE thread_id = ? ORDER BY started_position", (thread_id,))

    def latest_run_row(self, run_id: str) -> Row | None:
        where = "WHERE run_id = ? ORDER BY started_position DESC LIMIT 1"
        rows = self._rows("runs", where, (run_id,))
        return rows[0] if rows else None

    def checkpoint_rows(self, thread_id: str) -> list[Row]:
        return self._rows("checkpoints", "WHERE thread_id = ? ORDER BY version", (thread_id,))

    def thread_rows(self, limit: int, after: str | None, has_pending: bool | None) -> list[Row]:
        conditions, params = ["TRUE"], list[Any]()
        if has_pending is not None:
            conditions.append("pending_count > 0" if has_pending else "pending_count = 0")
        if after is not None:
            conditions.append("thread_id > ?")
            params.append(after)
        where = f"WHERE {' AND '.join(conditions)} ORDER BY thread_id LIMIT ?"
        return self._rows("threads", where, (*params, limit))

    def thread_exists(self, thread_id: str) -> bool:
        text = self.dialect.sql("SELECT 1 FROM view_threads WHERE thread_id = ?")
        with self.dialect.connection() as conn:
            return conn.execute(text, (thread_id,)).fetchone() is not None

    def close(self) -> None:
        self.dialect.close()
