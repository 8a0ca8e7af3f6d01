"""View rows held in memory: the memory backend's views, and the fold that rebuild and verify use.

Rows are grouped by thread: ``rows[table][thread_id][rest of key] = row``. Rows and values
are kept as the changes bring them, uncopied: a projection builds them for one change alone
(see ``changes.py``).

Applying an event costs O(size of the event), whatever the size of the thread's queue: an
append numbers its rows after the highest position in use (kept per thread, not searched for),
and ``Renumber`` only marks the queue; positions are made 1..n again, in one sort, when rows
are read (``thread_rows``, ``all_rows``, ``flat``). Until then a queue's positions may have
gaps, never a different order (ADR 0013).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast, get_args

from .changes import (
    KEYS,
    TABLES,
    AppendPending,
    Change,
    Delete,
    Extend,
    Increment,
    Insert,
    Key,
    Renumber,
    Row,
    Update,
)

# The threads a batch touches, and their rows as they were before it (by table, then thread).
SavedThreads = tuple[set[str], dict[str, dict[str, dict[Key, Row]]]]


class MissingRow(LookupError):
    """A change names a row the view does not have: the view and the log disagree."""


class Tables:
    """View rows in memory, grouped by table, then thread (see the module's docstring)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[Key, Row]]] = {t: {} for t in TABLES}
        self._unsettled: set[str] = set()  # threads whose queue positions may have gaps
        self._top: dict[str, int] = {}  # per thread, at least its queue's highest position

    def _get(self, table: str, key: Key) -> Row:
        try:
            return self.rows[table][key[0]][key[1:]]
        except KeyError:
            raise MissingRow(f"view {table}: no row {key!r}") from None

    def apply(self, change: Change) -> None:
        """Apply one change; a row it names must exist (else ``MissingRow``)."""
        _APPLY[type(change)](self, change)  # one lookup: faster than matching each type

    def _insert(self, change: Insert) -> None:
        key = tuple(change.row[c] for c in KEYS[change.table])
        self.rows[change.table].setdefault(key[0], {})[key[1:]] = change.row

    def _update(self, change: Update) -> None:
        self._get(change.table, change.key).update(change.values)
        position = change.values.get("position") if change.table == "pending" else None
        top = self._top.get(change.key[0])
        if isinstance(position, int) and top is not None and position > top:
            self._top[change.key[0]] = position

    def _delete(self, change: Delete) -> None:
        self._get(change.table, change.key)
        del self.rows[change.table][change.key[0]][change.key[1:]]

    def _increment(self, change: Increment) -> None:
        self._get(change.table, change.key)[change.column] += change.delta

    def _extend(self, change: Extend) -> None:
        self._get(change.table, change.key)[change.column].extend(change.items)

    def _append_pending(self, change: AppendPending) -> None:
        thread_id = change.thread_id
        queue = self.rows["pending"].setdefault(thread_id, {})
        last = self._top.get(thread_id)
        if last is None:  # rows loaded from elsewhere: look once
            last = max((r["position"] for r in queue.values()), default=0)
        for n, row in enumerate(change.rows, start=last + 1):
            queue[(row["pending_id"],)] = {**row, "position": n}
        self._top[thread_id] = last + len(change.rows)

    def know_top(self, thread_id: str, position: int) -> None:
        """The thread's queue, of which only some rows (or none) are held here, has no
        position above ``position`` (its highest): appends number their rows after it."""
        self.rows["pending"].setdefault(thread_id, {})
        self._top[thread_id] = max(position, self._top.get(thread_id, 0))

    def _renumber(self, change: Renumber) -> None:
        self._unsettled.add(change.thread_id)  # renumbered when read: see the module docstring

    def _settle(self, thread_ids: Iterable[str]) -> None:
        """Number these threads' queues 1..n again, in their order (gaps closed)."""
        for thread_id in thread_ids:
            queue = self.rows["pending"].get(thread_id, {})
            for n, row in enumerate(sorted(queue.values(), key=_position), start=1):
                row["position"] = n
            self._top[thread_id] = len(queue)

    def _settle_all(self) -> None:
        self._settle(self._unsettled)
        self._unsettled.clear()

    def copy_threads(self, thread_ids: set[str]) -> SavedThreads:
        """A private copy of these threads' rows in every table, for ``restore_threads``."""
        rows = {
            table: {t: copy.deepcopy(by_thread[t]) for t in thread_ids if t in by_thread}
            for table, by_thread in self.rows.items()
        }
        return thread_ids, rows

    def restore_threads(self, saved: SavedThreads) -> None:
        """Put these threads' rows back as ``copy_threads`` found them (rows added since go)."""
        thread_ids, rows = saved
        for table, by_thread in self.rows.items():
            for thread_id in thread_ids:
                by_thread.pop(thread_id, None)
            by_thread.update(rows[table])
        for thread_id in thread_ids:  # as saved, perhaps unsettled: settle them when read
            self._top.pop(thread_id, None)
            self._unsettled.add(thread_id)

    def thread_rows(self, table: str, thread_id: str) -> list[Row]:
        """One thread's rows of ``table`` (a queue's positions 1..n)."""
        if table == "pending" and thread_id in self._unsettled:
            self._settle([thread_id])
            self._unsettled.discard(thread_id)
        return list(self.rows[table].get(thread_id, {}).values())

    def all_rows(self, table: str) -> Iterator[Row]:
        """Every row of ``table`` (queues' positions 1..n)."""
        if table == "pending":
            self._settle_all()
        for group in self.rows[table].values():
            yield from group.values()

    def flat(self) -> dict[str, dict[Key, Row]]:
        """Every row, keyed by table and full key (for comparison)."""
        self._settle_all()
        return {
            table: {
                (tid, *rest): row for tid, group in by_thread.items() for rest, row in group.items()
            }
            for table, by_thread in self.rows.items()
        }


class Outline(Tables):
    """View rows kept in outline: what applying changes needs, not what the rows say. Of every
    row and value a change brings, the key columns stay as they are, every other string becomes
    ``""``, every list ``[]`` and every dict ``{}`` (numbers, booleans and None stay), and an
    ``Extend`` appends nothing. So a change applies to an outline exactly when it applies to the
    full rows (the same rows exist with the same columns, counters hold the same numbers, a
    value of the wrong kind is still of that kind, and the same error is raised), while the
    rows hold no message: checking that the views can apply a thread's history (import) takes
    memory for its rows, not for its content."""

    def apply(self, change: Change) -> None:
        """Apply the outline of one change (see the class)."""
        super().apply(_outline(change))


_HOLLOW: dict[type[Any], Callable[[], Any]] = {str: str, list: list, dict: dict}  # -> "", [], {}


def _outline_row(table: str, row: Row) -> Row:
    if type(row) is not dict:
        return row  # applying it fails as it would on full rows
    keys, hollow = KEYS[table], _HOLLOW
    return {
        c: v if c in keys or type(v) not in hollow else hollow[type(v)]() for c, v in row.items()
    }


def _outline(change: Change) -> Change:
    kind = type(change)
    if kind is Insert:
        i = cast(Insert, change)
        return Insert(i.table, _outline_row(i.table, i.row))
    if kind is Update:
        u = cast(Update, change)
        return Update(u.table, u.key, _outline_row(u.table, u.values))
    if kind is AppendPending:
        a = cast(AppendPending, change)
        if type(a.rows) is not list:
            return change
        return AppendPending(a.thread_id, [_outline_row("pending", r) for r in a.rows])
    if kind is Extend and type(cast(Extend, change).items) is list:
        e = cast(Extend, change)
        return Extend(e.table, e.key, e.column, [])
    return change


def _position(row: dict[str, Any]) -> int:
    return int(row["position"])


_APPLY: dict[type[Any], Callable[[Tables, Any], None]] = {
    Insert: Tables._insert,
    Update: Tables._update,
    Delete: Tables._delete,
    Increment: Tables._increment,
    Extend: Tables._extend,
    AppendPending: Tables._append_pending,
    Renumber: Tables._renumber,
}
if set(_APPLY) != set(get_args(Change)):  # a new kind of change must say how it applies
    raise TypeError(f"Tables cannot apply {set(get_args(Change)) - set(_APPLY)}")
