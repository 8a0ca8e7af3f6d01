"""Where view rows live: the interface each backend (memory, SQLite, PostgreSQL) implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from threadbox.application.ports import Progress

from .changes import Change, Key, Row
from .tables import Tables


class ViewBackend(Protocol):
    # Errors that mean the database could not be used (connection lost, disk full, locked):
    # they say nothing about the events, so catch-up raises them as they are.
    unavailable: tuple[type[Exception], ...]

    def position(self) -> int:
        """The log position the views reflect (the tracking record)."""

    def apply(self, changes: Sequence[Change], from_position: int, to_position: int) -> bool:
        """Apply the changes and move the tracking position from ``from_position`` to
        ``to_position`` in one transaction. False (and nothing written) if the tracking
        position was not ``from_position``: another catch-up got there first."""

    def replace_all(self, tables: Tables, position: int, progress: Progress | None) -> None:
        """Swap in rebuilt views at ``position``, atomically: readers see old or new, whole."""

    def dump(self) -> tuple[int, dict[str, dict[Key, Row]]]:
        """The tracking position and every row, read in one consistent snapshot."""

    def pending_rows(self, thread_id: str) -> list[Row]: ...

    def committed_rows(
        self, thread_id: str, after_seq: int, limit: int | None, include_hidden: bool
    ) -> list[Row]: ...

    def run_rows(self, thread_id: str) -> list[Row]: ...

    def latest_run_row(self, run_id: str) -> Row | None: ...

    def checkpoint_rows(self, thread_id: str) -> list[Row]: ...

    def thread_rows(self, limit: int, after: str | None, has_pending: bool | None) -> list[Row]:
        """Thread summary rows ordered by thread_id, after the exclusive cursor ``after``."""

    def thread_exists(self, thread_id: str) -> bool: ...

    def close(self) -> None: ...
