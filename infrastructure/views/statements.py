"""The SQL of the views, written once: per view table, the statements its catch-up, rebuild and
reads run, built when a backend is constructed, for its dialect.

Every row a view holds has the columns of ``threadbox.projections.changes.COLUMNS``; the
statements below are the only SQL the backend runs (``?`` placeholders, turned into the
dialect's own once, here). The reads of each view are written out as they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from threadbox.projections.changes import COLUMNS, KEYS, TABLES

TRACKING = "view_tracking"
TRACKING_NAME = "views"
REBUILD = "__rebuild"  # suffix of the tables a rebuild fills aside

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

# Secondary indexes for the reads (the unique key index is made for every table).
INDEXES: dict[str, list[str]] = {
    "threads": ["view_threads_pending ON view_threads (thread_id) WHERE pending_count > 0"],
    "pending": ["view_pending_position ON view_pending (thread_id, position)"],
    "runs": ["view_runs_run_id ON view_runs (run_id, started_position)"],
    "committed": ["view_committed_hidden ON view_committed (thread_id) WHERE NOT visible"],
}
# A catch-up batch reads the rows it changes first: the rows its changes name; a thread's whole
# pending queue only when the batch renumbers it (a retract, expiry or freeze); for an append,
# the queue's highest position (ADR 0023: a delivery no longer reads the queue it appends to).
WHOLE_THREAD = frozenset({"pending"})


class SqlTypes(Protocol):
    """What the statements need to know of a dialect."""

    id_type: str
    int_type: str
    bool_type: str
    lock_tracking: str  # appended to the tracking SELECT inside a write transaction
    tracked_columns: str  # what the tracking SELECT reads (``Dialect.position_of`` decodes it)
    tracked_assignment: str  # the SET clause that writes a position (``Dialect.tracked_values``)

    def sql(self, text: str) -> str:
        """Write ``?`` placeholders; the dialect turns them into its own."""

    def in_list(self, column: str, integers: bool) -> str:
        """A condition: ``column`` is one of the values of one list parameter."""

    def json_field(self, column: str, key: str) -> str:
        """An expression: the text of top-level ``key`` of the JSON text in ``column``."""

    def bulk_statement(self, table: str, columns: tuple[str, ...]) -> str:
        """The statement a rebuild fills ``table`` with."""


def _column_type(dialect: SqlTypes, column: str) -> str:
    if column in INT_COLUMNS:
        return dialect.int_type
    if column in BOOL_COLUMNS:
        return dialect.bool_type
    return dialect.id_type if column in ID_COLUMNS else "TEXT"


@dataclass(frozen=True)
class TableStatements:
    """The statements of one view table: its schema, the rows a batch touches, the writes of
    a batch, and the rebuild's fill and swap."""

    select: str  # every column, every row (append WHERE ... for a read)
    create: tuple[str, ...]  # the table and its indexes
    select_touched: str  # the rows of a list of threads (and of a list of ``second_key``s)
    second_key: str | None  # None: a batch reads the threads' whole tables
    select_named: str  # the rows of a list of threads and a list of second keys (or threads)
    insert: str
    update: str  # every column but the key, by key
    delete: str  # by key
    recreate_aside: tuple[str, ...]  # drop a killed rebuild's table, create it empty
    fill_aside: str
    swap: tuple[str, ...]  # drop the table, rename the one filled aside, index it

    @classmethod
    def build(cls, dialect: SqlTypes, table: str) -> TableStatements:
        """The statements of ``table`` in ``dialect``."""
        name, aside = f"view_{table}", f"view_{table}{REBUILD}"
        columns, keys = COLUMNS[table], KEYS[table]
        rest = [c for c in columns if c not in keys]
        definition = ", ".join(
            f"{c} {_column_type(dialect, c)}" + (" NOT NULL" if c in keys else "") for c in columns
        )
        indexes = (
            f"CREATE UNIQUE INDEX IF NOT EXISTS {name}_key ON {name} ({', '.join(keys)})",
            *(f"CREATE INDEX IF NOT EXISTS {index}" for index in INDEXES.get(table, [])),
        )
        second = keys[1] if len(keys) > 1 and table not in WHOLE_THREAD else None
        touched = named = dialect.in_list("thread_id", integers=False)
        if len(keys) > 1:
            named += " AND " + dialect.in_list(keys[1], integers=keys[1] in INT_COLUMNS)
        if second is not None:
            touched = named
        by_key = " AND ".join(f"{c} = ?" for c in keys)
        assignments = ", ".join(f"{c} = ?" for c in rest)
        marks = ", ".join("?" * len(columns))
        select = f"SELECT {', '.join(columns)} FROM {name}"
        return cls(
            select=select,
            create=(f"CREATE TABLE IF NOT EXISTS {name} ({definition})", *indexes),
            select_touched=dialect.sql(f"{select} WHERE {touched}"),
            second_key=second,
            select_named=dialect.sql(f"{select} WHERE {named}"),
            insert=dialect.sql(f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})"),
            update=dialect.sql(f"UPDATE {name} SET {assignments} WHERE {by_key}"),
            delete=dialect.sql(f"DELETE FROM {name} WHERE {by_key}"),
            recreate_aside=(
                f"DROP TABLE IF EXISTS {aside}",
                f"CREATE TABLE {aside} ({definition})",
            ),
            fill_aside=dialect.bulk_statement(aside, columns),
            swap=(f"DROP TABLE {name}", f"ALTER TABLE {aside} RENAME TO {name}", *indexes),
        )


@dataclass(frozen=True)
class ViewStatements:
    """Every statement of the views in one dialect: each table's, the tracking record's and
    the reads of each view."""

    tables: dict[str, TableStatements]
    create_tracking: tuple[str, ...]
    tracked: str  # the position the views reflect
    tracked_for_update: str  # the same, locked until the transaction ends (catch-up, swap)
    set_tracked: str
    pending: str  # a thread's queue, by position
    queue_tops: str  # (thread, highest position) of the non-empty queues of a list of threads
    committed: str  # a thread's messages after a seq, hidden / internal ones too or not, limited
    runs: str  # a thread's runs, in the order they started, limited, after an offset
    latest_run: str  # the latest run to start with an id, in any thread
    checkpoints: str  # a thread's commits after a version, by version, limited
    thread: str  # one thread's summary
    hidden: str  # the ids of a thread's hidden messages
    threads: dict[bool | None, str]  # summaries after a thread id, limited; by has_pending
    thread_exists: str

    @classmethod
    def build(cls, dialect: SqlTypes) -> ViewStatements:
        """The statements in ``dialect``, with its placeholders."""
        tables = {t: TableStatements.build(dialect, t) for t in TABLES}
        sql, select = dialect.sql, {t: tables[t].select for t in TABLES}
        tracked = f"SELECT {dialect.tracked_columns} FROM {TRACKING} WHERE name = ?"
        visibility = dialect.json_field("message", "visibility")  # internal: left out in SQL
        summaries = f"{select['threads']} WHERE thread_id > ? {{}} ORDER BY thread_id LIMIT ?"
        return cls(
            tables=tables,
            create_tracking=(
                f"CREATE TABLE IF NOT EXISTS {TRACKING} "
                f"(name TEXT PRIMARY KEY, position {dialect.int_type} NOT NULL)",
                sql(
                    f"INSERT INTO {TRACKING} (name, position) VALUES (?, 0) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
            ),
            tracked=sql(tracked),
            tracked_for_update=sql(tracked + dialect.lock_tracking),
            set_tracked=sql(f"UPDATE {TRACKING} SET {dialect.tracked_assignment} WHERE name = ?"),
            pending=sql(f"{select['pending']} WHERE thread_id = ? ORDER BY position"),
            queue_tops=sql(
                "SELECT thread_id, MAX(position) FROM view_pending WHERE "
                f"{dialect.in_list('thread_id', integers=False)} GROUP BY thread_id"
            ),
            committed=sql(
                f"{select['committed']} WHERE thread_id = ? AND seq > ? AND (visible OR ?) "
                f"AND (? OR COALESCE({visibility}, '') <> 'internal') ORDER BY seq LIMIT ?"
            ),
            runs=sql(
                f"{select['runs']} WHERE thread_id = ? ORDER BY started_position LIMIT ? OFFSET ?"
            ),
            latest_run=sql(
                f"{select['runs']} WHERE run_id = ? ORDER BY started_position DESC LIMIT 1"
            ),
            checkpoints=sql(
                f"{select['checkpoints']} WHERE thread_id = ? AND version > ? "
                "ORDER BY version LIMIT ?"
            ),
            thread=sql(f"{select['threads']} WHERE thread_id = ?"),
            hidden=sql("SELECT message_id FROM view_committed WHERE thread_id = ? AND NOT visible"),
            threads={
                None: sql(summaries.format("")),
                True: sql(summaries.format("AND pending_count > 0")),
                False: sql(summaries.format("AND pending_count = 0")),
            },
            thread_exists=sql("SELECT 1 FROM view_threads WHERE thread_id = ?"),
        )
