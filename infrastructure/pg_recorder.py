"""One commit order over all events of a PostgreSQL store, without a table lock (ADR 0009).

eventsourcing's PostgreSQL recorder takes ``LOCK TABLE … IN EXCLUSIVE MODE`` on every insert so
that notification ids follow commit order. ``CommitOrderRecorder`` keeps the library and drops only
that lock. Each row records the transaction that wrote it (``transaction_id xid8``, defaulting to
``pg_current_xact_id()``), and a reader of the global order reads only rows whose transaction is
below the oldest one still running, in ``(transaction_id, notification_id)`` order:

- ``pg_snapshot_xmin(pg_current_snapshot())`` is the lowest transaction id still running in the
  statement's own snapshot. Every id below it has ended: committed (its rows are visible in that
  same snapshot) or aborted (its rows never are). Ids handed out later are never below it. So the
  rows below the bound are final: none will be added or removed there, and a reader that tracks
  the last pair it read sees each row exactly once, even when a transaction that began earlier
  commits later (it holds the bound down until it ends).
- The bound and the rows come from one statement, hence one snapshot. A bound from a later snapshot
  than the rows would pass transactions that committed in between, unseen.
- A transaction gets its id no later than its first row (the column default assigns it) and keeps it
  until it ends, so its rows never appear below a bound a reader has already passed.
- A reader whose own transaction holds an id has a bound at most that id: it never returns its own
  uncommitted rows (which it alone could see, and which may still abort), and it cannot read past
  itself until it ends, so it must not wait, inside that transaction, for the order to pass it.
- Per stream, version v+1 is written by a transaction that saw version v committed, so it was given
  a larger transaction id: within a stream, events come in version order.

Transaction-id order is not the order of the commits themselves; it is the one order every reader
agrees on and can read safely. ``select_notifications`` and ``max_notification_id`` still work, in
notification-id order, which is no longer commit order: a reader tracking notification ids may skip
events. Only ``select_after`` and ``head`` are in commit order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.persistence import (
    ApplicationRecorder,
    InterfaceError,
    Notification,
    OperationalError,
    ProgrammingError,
    Subscription,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier
from threadbox.domain.errors import InvalidInput

RECORDER_TOPIC = "threadbox.infrastructure.pg_recorder:CommitOrderRecorder"
"""Set as eventsourcing's ``APPLICATION_RECORDER_TOPIC`` to make the factory build this recorder."""

XID8_MAX = 2**64 - 1
BIGINT_MAX = 2**63 - 1
_ENCODED = re.compile(r"([0-9]{20})\.([0-9]{20})")
_READABLE = "transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
_CURRENT_DEFAULT = "pg_current_xact_id()"


@dataclass(frozen=True, order=True)
class LogPosition:
    """A point in a store's commit order: after the row ``notification_id`` written by the
    transaction ``transaction_id``. Positions compare in commit order, and so do their encodings."""

    transaction_id: int
    notification_id: int

    START: ClassVar[LogPosition]
    """Before everything; encoded as ``""``."""

    def __post_init__(self) -> None:
        if not 0 <= self.transaction_id <= XID8_MAX:
            raise InvalidInput(
                f"transaction id {self.transaction_id} is outside 0..{XID8_MAX}", "position"
            )
        if not 0 <= self.notification_id <= BIGINT_MAX:
            raise InvalidInput(
                f"notification id {self.notification_id} is outside 0..{BIGINT_MAX}", "position"
            )

    def encode(self) -> str:
        """An opaque string that compares as the position does: ``""`` for the start, else two
        zero-padded 20-digit numbers joined by ``.``."""
        if self == LogPosition.START:
            return ""
        return f"{self.transaction_id:020d}.{self.notification_id:020d}"

    @classmethod
    def decode(cls, text: str) -> LogPosition:
        """The position ``encode`` made; anything else raises ``InvalidInput`` naming it."""
        if text == "":
            return cls.START
        found = _ENCODED.fullmatch(text)
        if found is None:
            raise InvalidInput(
                f"{text[:60]!r} is not a position of this store: expected '' (the start) or "
                "20 digits, '.', 20 digits",
                "position",
            )
        position = cls(int(found[1]), int(found[2]))
        if position == cls.START:
            raise InvalidInput("the start of the log is written '' (the empty string)", "position")
        return position

    @classmethod
    def before_upgrade(cls, notification_id: int) -> LogPosition:
        """Where a reader that tracked ``notification_id`` before the upgrade goes on: rows
        written before it carry transaction id 0, in notification-id (then commit) order."""
        return cls(0, notification_id)


LogPosition.START = LogPosition(0, 0)


def _position(row: DictRow) -> LogPosition:
    return LogPosition(int(row["transaction_text"]), row["notification_id"])


class CommitOrderRecorder(PostgresApplicationRecorder):
    """eventsourcing's PostgreSQL application recorder without the table lock, with reads in
    commit order (``select_after``, ``head``). Same-stream conflicts still fail on the unique
    ``(originator_id, originator_version)`` key with eventsourcing's ``IntegrityError``, and every
    insert still sends ``NOTIFY`` on the table's channel."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.transaction_order_index_name = f"{self.events_table_name}_transaction_order_idx"
        self.check_identifier_length(self.transaction_order_index_name)
        # The only change on the write path: no LOCK TABLE (the library runs these per insert).
        self.lock_table_statements = []
        table = self._table()
        columns = SQL(
            "transaction_id::text AS transaction_text, notification_id, "
            "originator_id, originator_version, topic, state"
        )
        after = SQL("(transaction_id, notification_id) > (%s::xid8, %s)")
        upto = SQL(" AND (transaction_id, notification_id) <= (%s::xid8, %s)")
        order = SQL(" ORDER BY transaction_id, notification_id LIMIT %s")
        select = SQL("SELECT {} FROM {} WHERE {} AND " + _READABLE).format(columns, table, after)
        self._select_after = select + order
        self._select_after_upto = select + upto + order
        newest = SQL(
            "SELECT transaction_id::text AS transaction_text, notification_id FROM {}{} "
            "ORDER BY transaction_id DESC, notification_id DESC LIMIT 1"
        )
        self._head = newest.format(table, SQL(" WHERE " + _READABLE))
        self._committed_head = newest.format(table, SQL(""))
        count = SQL("SELECT count(*) AS events FROM {} WHERE {}").format(table, after)
        self._count_after = count
        self._count_after_upto = count + upto

    def _table(self) -> Composed:
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )

    # ---- reads in commit order ------------------------------------------------------------------

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_after(
        self, position: LogPosition, limit: int, upto: LogPosition | None = None
    ) -> list[tuple[LogPosition, Notification]]:
        """At most ``limit`` events after ``position`` (and at or before ``upto``), in commit
        order, each with its position; only events whose order is final (see the module)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        params: list[Any] = [str(position.transaction_id), position.notification_id]
        statement = self._select_after
        if upto is not None:
            params += [str(upto.transaction_id), upto.notification_id]
            statement = self._select_after_upto
        params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [
                (
                    _position(row),
                    Notification(
                        id=row["notification_id"],
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    ),
                )
                for row in curs.fetchall()
            ]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def head(self) -> LogPosition | None:
        """The newest position readable now (``None``: nothing is). It never moves back, and no
        event will ever appear at or before it that ``select_after`` has not already returned."""
        return self._newest(self._head)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def committed_head(self) -> LogPosition | None:
        """The newest position of any committed event, readable yet or not. A reader that must
        reflect every write committed before it started notes this first, then reads until
        ``head()`` reaches it (it does once every transaction older than that write has ended)."""
        return self._newest(self._committed_head)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def count_after(self, position: LogPosition, upto: LogPosition | None = None) -> int:
        """How many committed events come after ``position`` (and at or before ``upto``),
        readable yet or not: how far a reader at ``position`` is behind (an index range scan,
        so it costs in proportion to the answer)."""
        params: list[Any] = [str(position.transaction_id), position.notification_id]
        statement = self._count_after
        if upto is not None:
            params += [str(upto.transaction_id), upto.notification_id]
            statement = self._count_after_upto
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            row = curs.fetchone()
        return 0 if row is None else int(row["events"])

    def _newest(self, statement: Composed) -> LogPosition | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, prepare=True)
            row = curs.fetchone()
        return None if row is None else _position(row)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def oldest_transaction_start(self) -> datetime | None:
        """When the oldest transaction that holds a transaction id (anywhere on the server, or
        prepared) began: readers of the order wait for it. ``now - this`` is the age to watch;
        it bounds how long followers lag. Other roles' sessions show with ``pg_read_all_stats``."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT least("
                " (SELECT min(xact_start) FROM pg_stat_activity WHERE backend_xid IS NOT NULL),"
                " (SELECT min(prepared) FROM pg_prepared_xacts)) AS started",
                prepare=True,
            )
            row = curs.fetchone()
        return None if row is None else row["started"]

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """Refused: eventsourcing's subscriptions follow notification ids, which without the
        table lock are not commit order and would skip events. Follow ``select_after``."""
        raise ProgrammingError(
            "CommitOrderRecorder has no notification-id subscription (it would skip events "
            "committed out of id order): follow select_after() from a LogPosition instead"
        )

    # ---- tables, and the upgrade of tables made by the library's recorder -----------------------

    def create_table(self) -> None:
        """The library's table, type, index and function, then the transaction column and its
        index, added in place to a table made before (its rows get transaction id 0). All in one
        transaction under an advisory lock, so processes starting together take turns; what
        exists already is left alone, so a start never waits for running writers (a CREATE INDEX,
        even IF NOT EXISTS, would wait for every open insert and hold up every later one)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"threadbox-events:{self.datastore.schema}.{self.events_table_name}",),
            )
            for statement in self.sql_create_statements:
                text = statement.as_string()
                if "CREATE TYPE" in text:
                    missing = self._missing(curs, "to_regtype", self.stored_event_type_name)
                elif "CREATE UNIQUE INDEX" in text:
                    missing = self._missing(curs, "to_regclass", self.notification_id_index_name)
                else:
                    missing = True  # CREATE TABLE IF NOT EXISTS, CREATE OR REPLACE FUNCTION
                if missing:
                    curs.execute(statement, prepare=False)
            self._add_transaction_column(curs)
            self._check_transaction_ids(curs)
        self.datastore.register_type_adapters()

    def _check_transaction_ids(self, curs: Cursor[DictRow]) -> None:
        """Refuse a table whose ids are ahead of this server (a dump restored on another one, or
        logical replication): its new rows would sort before old ones, and followers skip them."""
        curs.execute(
            SQL(
                "SELECT max(transaction_id)::text AS newest,"
                " pg_snapshot_xmax(pg_current_snapshot())::text AS next FROM {}"
            ).format(self._table())
        )
        found = curs.fetchone()
        if found is not None and found["newest"] is not None:
            newest, following = int(found["newest"]), int(found["next"])
            if newest >= following:
                raise ProgrammingError(
                    f"{self.datastore.schema}.{self.events_table_name} holds transaction id "
                    f"{newest}, but this server's next is {following}: the table was written "
                    "on another server (a dump restored here?) and cannot be read in commit "
                    "order. With no writers running, UPDATE it SET transaction_id = '0' (the "
                    "log then reads in notification-id order) and rebuild every view and "
                    "follower position."
                )

    def _missing(self, curs: Cursor[DictRow], lookup: str, name: str) -> bool:
        """Whether the type (``to_regtype``) or relation (``to_regclass``) is absent."""
        curs.execute(
            SQL("SELECT {}(format('%%I.%%I', %s::text, %s::text)) IS NULL AS missing").format(
                SQL(lookup)
            ),
            (self.datastore.schema, name),
        )
        row = curs.fetchone()
        if row is None:
            raise ProgrammingError(f"{lookup} returned no row")
        return bool(row["missing"])

    def _add_transaction_column(self, curs: Cursor[DictRow]) -> None:
        # Each ALTER takes an ACCESS EXCLUSIVE lock: run only what is missing.
        curs.execute(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s AND column_name = 'transaction_id'",
            (self.datastore.schema, self.events_table_name),
        )
        found = curs.fetchone()
        default = None if found is None else found["column_default"]
        table = self._table()
        if found is None:
            # A constant default is a catalog change, no table rewrite; older rows read 0.
            curs.execute(
                SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS transaction_id xid8 NOT NULL "
                    "DEFAULT '0'"
                ).format(table)
            )
        if default != _CURRENT_DEFAULT:
            curs.execute(
                SQL(
                    "ALTER TABLE {} ALTER COLUMN transaction_id SET DEFAULT " + _CURRENT_DEFAULT
                ).format(table)
            )
        if self._missing(curs, "to_regclass", self.transaction_order_index_name):
            curs.execute(
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} (transaction_id, notification_id)").format(
                    Identifier(self.transaction_order_index_name), table
                )
            )
