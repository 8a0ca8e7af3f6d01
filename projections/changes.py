"""Row changes: what a projection asks of a view store, independent of the backend.

Rows are plain dicts of JSON-able values (timestamps as ISO-8601 strings); every backend keeps
them so, and ``verify`` compares them as such. A message and a delivery mode are held as their
JSON text (``JSON_TEXT_COLUMNS``): what the SQL column stores, and no nested objects for the
garbage collector to trace while a fold holds many rows.

Ownership: every row, value dict and list a projection puts in a change is built for that change
alone (never shared with another row or change), so backends may keep or mutate it without copying.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

Row = dict[str, Any]
Key = tuple[Any, ...]

TABLES = ("threads", "pending", "committed", "runs", "checkpoints")
KEYS: dict[str, tuple[str, ...]] = {
    "threads": ("thread_id",),
    "pending": ("thread_id", "pending_id"),
    "committed": ("thread_id", "seq"),
    "runs": ("thread_id", "run_id"),
    "checkpoints": ("thread_id", "version"),
}
COLUMNS: dict[str, tuple[str, ...]] = {
    "threads": (
        "thread_id",
        "version",
        "pending_count",
        "committed_count",
        "running_run_id",
        "waiting_run_id",
        "latest_run_id",
        "updated_at",
    ),
    "pending": (
        "thread_id",
        "pending_id",
        "position",
        "revision",
        "mode",
        "message",
        "delivered_at",
        "updated_at",
    ),
    "committed": (
        "thread_id",
        "seq",
        "message_id",
        "role",
        "message",
        "run_id",
        "kind",
        "boundary",
        "visible",
        "committed_at",
    ),
    "runs": (
        "thread_id",
        "run_id",
        "status",
        "termination",
        "detail",
        "trigger_message_ids",
        "input_ranges",
        "output_message_ids",
        "freeze_count",
        "started_at",
        "finished_at",
        "started_position",
    ),
    "checkpoints": (
        "thread_id",
        "version",
        "run_id",
        "kind",
        "boundary",
        "first_seq",
        "last_seq",
        "message_ids",
        "at",
    ),
}
# Columns holding JSON lists (appended to by ``Extend``), and columns holding JSON text.
JSON_COLUMNS = frozenset(
    {"trigger_message_ids", "input_ranges", "output_message_ids", "message_ids"}
)
JSON_TEXT_COLUMNS = frozenset({"mode", "message"})


def json_text(value: Any) -> str:
    """A JSON value as the text a ``JSON_TEXT_COLUMNS`` column holds."""
    return orjson.dumps(value).decode()


def key_of(table: str, row: Row) -> Key:
    return tuple(row[c] for c in KEYS[table])


@dataclass(frozen=True)
class Insert:
    table: str
    row: Row


@dataclass(frozen=True)
class Update:
    table: str
    key: Key
    values: Row


@dataclass(frozen=True)
class Delete:
    table: str
    key: Key


@dataclass(frozen=True)
class Increment:
    table: str
    key: Key
    column: str
    delta: int


@dataclass(frozen=True)
class Extend:
    """Append items to a JSON list column."""

    table: str
    key: Key
    column: str
    items: list[Any]


@dataclass(frozen=True)
class AppendPending:
    """Insert pending rows after the thread's last position, in order."""

    thread_id: str
    rows: list[Row]


@dataclass(frozen=True)
class Renumber:
    """Close the gaps in a thread's pending positions: 1..n in their current order."""

    thread_id: str


Change = Insert | Update | Delete | Increment | Extend | AppendPending | Renumber

# One view's projection of one event type: (payload of that type, ISO timestamp, log position).
Projection = Callable[[Any, str, int], list[Change]]


def thread_of(change: Change) -> str:
    """The thread whose rows a change touches (every key starts with the thread id)."""
    match change:
        case Insert(table=table, row=row):
            return str(row[KEYS[table][0]])
        case Update(key=key) | Delete(key=key) | Increment(key=key) | Extend(key=key):
            return str(key[0])
        case AppendPending(thread_id=thread_id) | Renumber(thread_id=thread_id):
            return thread_id
