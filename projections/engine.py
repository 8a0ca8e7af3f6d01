"""The views kept from the log: catch-up (exactly once), rebuild (aside, then swap) and verify."""

from __future__ import annotations

import threading

from threadbox.domain.records import Checkpoint, CommittedMessage, PendingEntry, RunRecord
from threadbox.ports import EventStore, Progress, VerifyReport, ViewStatus

from . import changes_for, reading
from .backend import ViewBackend
from .changes import TABLES, Change
from .tables import Tables

BATCH = 1000


def fold_log(
    store: EventStore, upto: int | None = None, progress: Progress | None = None
) -> tuple[Tables, int]:
    """Every view folded in memory from the log, independently of any view table."""
    tables = Tables()
    position = 0
    total = upto if upto is not None else store.last_position()
    while True:
        batch = store.read(after=position, limit=BATCH * 5, upto=upto)
        if not batch:
            return tables, position
        for item in batch:
            for change in changes_for(item.event, item.position):
                tables.apply(change)
        position = batch[-1].position
        if progress:
            progress(position, max(total, position))


class ProjectedViews:
    """The ``Views`` port over a backend: every read first sees the backend's latest position."""

    def __init__(self, store: EventStore, backend: ViewBackend) -> None:
        self.store = store
        self.backend = backend
        self._lock = threading.Lock()
        self._seen = 0  # a lower bound of the backend's position

    def catch_up(self, until: int | None = None, progress: Progress | None = None) -> int:
        if until is not None and self._seen >= until:
            return self._seen
        with self._lock:
            position = self.backend.position()
            total = self.store.last_position()
            while until is None or position < until:
                batch = self.store.read(after=position, limit=BATCH)
                if not batch:
                    break
                changes: list[Change] = []
                for item in batch:
                    changes.extend(changes_for(item.event, item.position))
                if self.backend.apply(changes, position, batch[-1].position):
                    position = batch[-1].position
                else:
                    position = self.backend.position()  # another process applied them
                if progress:
                    progress(position, max(total, position))
            self._seen = max(self._seen, position)
            return position

    def rebuild(self, progress: Progress | None = None) -> int:
        with self._lock:
            tables, position = fold_log(self.store, progress=progress)
            self.backend.replace_all(tables, position, progress)
            self._seen = position
        return self.catch_up()

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        self.catch_up()
        position, found = self.backend.dump()
        expected, _ = fold_log(self.store, upto=position, progress=progress)
        differences: list[str] = []
        for table, rows in expected.flat().items():
            seen = found.get(table, {})
            for key, row in rows.items():
                if key not in seen:
                    differences.append(
                        f"thread {key[0]!r} view_{table} {key!r}: missing; expected {row}"
                    )
                elif seen[key] != row:
                    diff = {
                        c: (v, seen[key].get(c)) for c, v in row.items() if seen[key].get(c) != v
                    }
                    differences.append(
                        f"thread {key[0]!r} view_{table} {key!r}: (expected, found) {diff}"
                    )
            for key, row in seen.items():
                if key not in rows:
                    differences.append(
                        f"thread {key[0]!r} view_{table} {key!r}: unexpected row {row}"
                    )
        assert set(expected.rows) == set(TABLES)
        return VerifyReport(ok=not differences, differences=differences, events=position)

    def status(self) -> ViewStatus:
        return ViewStatus(position=self.backend.position(), log_position=self.store.last_position())

    def pending(self, thread_id: str) -> list[PendingEntry]:
        return [reading.pending_entry(r) for r in self.backend.pending_rows(thread_id)]

    def committed(
        self, thread_id: str, *, after_seq: int, limit: int | None, include_hidden: bool
    ) -> list[CommittedMessage]:
        rows = self.backend.committed_rows(thread_id, after_seq, limit, include_hidden)
        return [reading.committed_message(r) for r in rows]

    def runs(self, thread_id: str) -> list[RunRecord]:
        return [reading.run_record(r) for r in self.backend.run_rows(thread_id)]

    def run(self, run_id: str) -> RunRecord | None:
        row = self.backend.latest_run_row(run_id)
        return reading.run_record(row) if row is not None else None

    def checkpoints(self, thread_id: str) -> list[Checkpoint]:
        return [reading.checkpoint(r) for r in self.backend.checkpoint_rows(thread_id)]

    def threads_with_pending(self, *, limit: int, after: str | None) -> list[str]:
        return self.backend.threads_with_pending(limit, after)

    def thread_exists(self, thread_id: str) -> bool:
        return self.backend.thread_exists(thread_id)

    def close(self) -> None:
        self.backend.close()
