"""The memory backend of the views: rows in process memory, guarded by one lock."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence

import orjson
from threadbox.application.ports import Position, Progress
from threadbox.projections.changes import Change, Key, Row, thread_of
from threadbox.projections.tables import Tables


def _internal(row: Row) -> bool:
    """Is the row's message of visibility ``internal`` (what the SQL backends ask their JSON)?"""
    return bool(orjson.loads(row["message"]).get("visibility") == "internal")


class MemoryViewBackend:
    """A ``ViewBackend`` in process memory (``memory://``): all or nothing per batch, like a
    transaction."""

    unavailable: tuple[type[Exception], ...] = ()  # process memory is always there

    def __init__(self) -> None:
        self._tables = Tables()
        self._position: Position = ""
        self._lock = threading.RLock()

    def position(self) -> Position:
        return self._position

    def apply(
        self, changes: Sequence[Change], from_position: Position, to_position: Position
    ) -> bool:
        with self._lock:
            if self._position != from_position:
                return False
            saved = self._tables.copy_threads({thread_of(change) for change in changes})
            try:
                for change in changes:
                    self._tables.apply(change)
            except Exception:
                self._tables.restore_threads(saved)  # all or nothing, like a transaction
                raise
            self._position = to_position
            return True

    def replace_all(self, tables: Tables, position: Position, progress: Progress | None) -> None:
        with self._lock:
            self._tables, self._position = tables, position

    def dump(self) -> tuple[Position, dict[str, dict[Key, Row]]]:
        with self._lock:
            return self._position, copy.deepcopy(self._tables.flat())

    def pending_rows(self, thread_id: str) -> list[Row]:
        with self._lock:
            rows = self._tables.thread_rows("pending", thread_id)
            return sorted(copy.deepcopy(rows), key=lambda r: r["position"])

    def committed_rows(
        self,
        thread_id: str,
        after_seq: int,
        limit: int | None,
        include_hidden: bool,
        include_internal: bool = True,
    ) -> list[Row]:
        with self._lock:
            rows = sorted(self._tables.thread_rows("committed", thread_id), key=lambda r: r["seq"])
            rows = [
                r
                for r in rows
                if r["seq"] > after_seq
                and (include_hidden or r["visible"])
                and (include_internal or not _internal(r))
            ]
            return copy.deepcopy(rows[:limit] if limit is not None else rows)

    def run_rows(self, thread_id: str, offset: int = 0, limit: int | None = None) -> list[Row]:
        with self._lock:
            rows = self._tables.thread_rows("runs", thread_id)
            rows = sorted(rows, key=lambda r: r["started_position"])[offset:]
            return copy.deepcopy(rows[:limit] if limit is not None else rows)

    def latest_run_row(self, run_id: str) -> Row | None:
        with self._lock:
            rows = [r for r in self._tables.all_rows("runs") if r["run_id"] == run_id]
            return copy.deepcopy(max(rows, key=lambda r: r["started_position"])) if rows else None

    def checkpoint_rows(
        self, thread_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[Row]:
        with self._lock:
            rows = self._tables.thread_rows("checkpoints", thread_id)
            rows = [
                r for r in sorted(rows, key=lambda r: r["version"]) if r["version"] > after_version
            ]
            return copy.deepcopy(rows[:limit] if limit is not None else rows)

    def hidden_ids(self, thread_id: str) -> set[str]:
        with self._lock:
            rows = self._tables.thread_rows("committed", thread_id)
            return {r["message_id"] for r in rows if not r["visible"]}

    def thread_row(self, thread_id: str) -> Row | None:
        with self._lock:
            rows = self._tables.thread_rows("threads", thread_id)
            return copy.deepcopy(rows[0]) if rows else None

    def thread_rows(self, limit: int, after: str | None, has_pending: bool | None) -> list[Row]:
        with self._lock:
            rows = sorted(
                (
                    r
                    for r in self._tables.all_rows("threads")
                    if (has_pending is None or (r["pending_count"] > 0) == has_pending)
                    and (after is None or r["thread_id"] > after)
                ),
                key=lambda r: str(r["thread_id"]),
            )
            return copy.deepcopy(rows[:limit])

    def thread_exists(self, thread_id: str) -> bool:
        with self._lock:
            return thread_id in self._tables.rows["threads"]

    def close(self) -> None:
        return None
