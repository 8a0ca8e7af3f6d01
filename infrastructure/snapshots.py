"""Snapshots written in the same transaction as the events that make them due (ADR 0010).

Each recorder here is the store's recorder with the id table (``id_table``) plus one keyword on
the insert path: ``insert_events(..., snapshot=StoredEvent)`` writes the snapshot into the
snapshots table, and deletes the thread's older ones, in the transaction of the events: both are
committed or neither is, with one commit (one fsync on SQLite), and pruning costs no transaction
of its own. The snapshot a command carries is of the state its events were decided on, so it is
never ahead of the log even where the two were written apart (``RecorderStore.save_snapshot``).

A snapshot of a version is a function of the log up to that version, which never changes, so a
snapshot already stored at the same version is replaced by the new one (the same state, perhaps
in a newer format) instead of failing the write.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOAggregateRecorder
from psycopg.sql import SQL, Composed, Identifier

from .id_table import (
    ClaimingPOPORecorder,
    ClaimingPostgresRecorder,
    ClaimingSQLiteRecorder,
    originator_uuid,
)
from .pg_columns import Byteas, Column, Int8s, Texts, Uuids

SNAPSHOTS_TABLE = "stored_snapshots"  # eventsourcing's name for the "snapshots" recorder's table


# ---- SQLite ------------------------------------------------------------------------------------


def sqlite_statements(table: str) -> tuple[str, str]:
    """The upsert of a snapshot and the delete of the thread's older ones, on SQLite."""
    return (
        f"INSERT OR REPLACE INTO {table} (originator_id, originator_version, topic, state) "
        "VALUES (?, ?, ?, ?)",
        f"DELETE FROM {table} WHERE originator_id = ? AND originator_version < ?",
    )


def write_sqlite_snapshot(cursor: Any, table: str, snapshot: StoredEvent) -> None:
    """Store ``snapshot`` and delete the thread's older snapshots, in ``cursor``'s transaction."""
    upsert, prune = sqlite_statements(table)
    sid = originator_uuid(snapshot.originator_id).hex
    cursor.execute(upsert, (sid, snapshot.originator_version, snapshot.topic, snapshot.state))
    cursor.execute(prune, (sid, snapshot.originator_version))


class SnapshottingSQLiteRecorder(ClaimingSQLiteRecorder):
    """The store's SQLite recorder: events, their claims and the snapshot they make due, in one
    transaction."""

    snapshots_table = SNAPSHOTS_TABLE  # the store sets its snapshot recorder's table

    def _insert_events(
        self,
        c: Any,
        stored_events: Any,
        *,
        snapshot: StoredEvent | None = None,
        **kwargs: Any,
    ) -> Any:
        ids = super()._insert_events(c, stored_events, **kwargs)
        if snapshot is not None:
            write_sqlite_snapshot(c, self.snapshots_table, snapshot)
        return ids


# ---- PostgreSQL --------------------------------------------------------------------------------


def postgres_statements(schema: str, table: str) -> tuple[Composed, Composed]:
    """The upsert of a snapshot and the delete of the thread's older ones, on PostgreSQL."""
    name = SQL("{}.{}").format(Identifier(schema), Identifier(table))
    return (
        SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (originator_id, originator_version) "
            "DO UPDATE SET topic = EXCLUDED.topic, state = EXCLUDED.state"
        ).format(name),
        SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version < %s").format(name),
    )


def write_postgres_snapshot(cursor: Any, schema: str, table: str, snapshot: StoredEvent) -> None:
    """Store ``snapshot`` and delete the thread's older snapshots, in ``cursor``'s transaction
    (in a pipeline: no round trip of their own)."""
    upsert, prune = postgres_statements(schema, table)
    sid = originator_uuid(snapshot.originator_id)
    cursor.execute(upsert, (sid, snapshot.originator_version, snapshot.topic, snapshot.state))
    cursor.execute(prune, (sid, snapshot.originator_version))


class SnapshottingPostgresRecorder(ClaimingPostgresRecorder):
    """The store's PostgreSQL recorder: the snapshot is written in the one statement of the
    events and their claims (ADR 0024): two more ``WITH`` queries, the delete of the thread's
    older snapshots and the upsert of this one (a write without a snapshot sends the statement
    without them). A write that fails (a version taken, an id taken) leaves no snapshot either."""

    snapshots_table = SNAPSHOTS_TABLE  # the store sets its snapshot recorder's table

    def _variant(self, *, snapshot: StoredEvent | None = None, **kwargs: Any) -> Any:
        # Writes without a snapshot never name its table (a recorder may be used without one).
        return None if snapshot is None else self.snapshots_table

    def _ctes(self, variant: Any) -> list[Composed]:
        if variant is None:
            return super()._ctes(variant)
        name = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(variant))
        return [
            *super()._ctes(variant),
            SQL(
                "pruned AS (DELETE FROM {} AS s USING unnest(%b::uuid[], %b::bigint[]) "
                "AS n(originator_id, originator_version) WHERE s.originator_id = n.originator_id "
                "AND s.originator_version < n.originator_version)"
            ).format(name),
            SQL(
                "snapshotted AS (INSERT INTO {} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
                "ON CONFLICT (originator_id, originator_version) "
                "DO UPDATE SET topic = EXCLUDED.topic, state = EXCLUDED.state)"
            ).format(name),
        ]

    def _params(
        self,
        stored_events: Any,
        claims: Any,
        *,
        snapshot: StoredEvent | None = None,
        **kwargs: Any,
    ) -> list[Column]:
        found = super()._params(stored_events, claims, **kwargs)
        if snapshot is None:
            return found
        sid = originator_uuid(snapshot.originator_id)
        return [
            *found,
            Uuids([sid]),
            Int8s([snapshot.originator_version]),
            Uuids([sid]),
            Int8s([snapshot.originator_version]),
            Texts([snapshot.topic]),
            Byteas([snapshot.state]),
        ]


# ---- memory ------------------------------------------------------------------------------------


class LatestPOPOSnapshots(POPOAggregateRecorder):
    """eventsourcing's in-memory aggregate recorder, keeping only each thread's latest snapshot
    (as the SQL stores do): older ones are dropped when a newer one is inserted."""

    def insert_latest(self, snapshot: StoredEvent) -> None:
        """Store ``snapshot`` (replacing one of the same version) and drop the thread's older
        ones."""
        with self._database_lock:
            index = self._stored_events_index[str(snapshot.originator_id)]
            if any(v > snapshot.originator_version for v in index):
                return  # a newer one is stored: this one would never be read
            at = index.get(snapshot.originator_version)
            if at is not None:
                self._stored_events[at] = snapshot
            else:
                self._stored_events.append(snapshot)
                index[snapshot.originator_version] = len(self._stored_events) - 1
            for version in [v for v in index if v < snapshot.originator_version]:
                self._stored_events[index.pop(version)] = _DROPPED


_DROPPED = StoredEvent(uuid.UUID(int=0), 0, "", b"")  # a dropped snapshot's place in the list


class SnapshottingPOPORecorder(ClaimingPOPORecorder):
    """The store's in-memory recorder: the snapshot is added to the snapshot recorder under the
    events' lock, once the events are."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshot_recorder = LatestPOPOSnapshots()

    def _update_table(
        self,
        stored_events: Any,
        *,
        snapshot: StoredEvent | None = None,
        **kwargs: Any,
    ) -> Any:
        ids = super()._update_table(stored_events, **kwargs)
        if snapshot is not None:
            self.snapshot_recorder.insert_latest(snapshot)
        return ids
