"""Rich tables of the pending zone, the committed zone, runs and the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from threadbox import CommittedMessage, PendingEntry, RecordedEvent, RunRecord

PREVIEW = 60


def preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"


def pending_table(entries: Sequence[PendingEntry], title: str = "pending") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("pos", "id", "rev", "role", "boundary", "text"):
        table.add_column(column)
    for e in entries:
        mode = e.mode.boundary.value + (" ⛔" if e.mode.barrier else "")
        if e.mode.granularity.value == "one":
            mode += " (one)"
        table.add_row(
            str(e.position),
            e.pending_id,
            str(e.revision),
            e.message.role.value,
            mode,
            preview(e.message.text),
        )
    return table


def committed_table(messages: Sequence[CommittedMessage], title: str = "committed") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("seq", "id", "role", "run", "kind", "boundary", "text"):
        table.add_column(column)
    for m in messages:
        text = preview(m.message.text) if m.visible else "[hidden]"
        table.add_row(
            str(m.seq),
            m.message.id or "",
            m.message.role.value,
            m.run_id,
            m.kind.value,
            m.boundary.value if m.boundary else "",
            text,
        )
    return table


def runs_table(runs: Sequence[RunRecord], title: str = "runs") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("run", "status", "termination", "freezes", "triggers", "outputs"):
        table.add_column(column)
    for r in runs:
        table.add_row(
            r.run_id,
            r.status.value,
            r.termination.value if r.termination else "",
            str(r.freeze_count),
            ", ".join(r.trigger_message_ids),
            ", ".join(r.output_message_ids),
        )
    return table


def _message_ids(items: Any) -> str:
    """The message ids of an event's ``messages`` list ({message: {id, ...}, ...} items)."""
    if not isinstance(items, list):
        return ""
    return ", ".join(str(i.get("message", {}).get("id", "?")) for i in items)


def what_changed(event: RecordedEvent) -> str:
    """One short line per event type, from its payload."""
    d = event.data
    match event.type:
        case "MessagesDelivered":
            return "delivered " + _message_ids(d.get("messages"))
        case "PendingMessageEdited":
            return f"edited {d.get('pending_id', '')}"
        case "PendingMessageRetracted":
            return f"retracted {d.get('pending_id', '')}"
        case "PendingQueueReordered":
            return "order " + ", ".join(map(str, d.get("order", [])))
        case "PendingMessagesExpired":
            return "expired " + ", ".join(map(str, d.get("pending_ids", [])))
        case "RunStarted" | "RunResumed" | "RunSuspended":
            return f"run {d.get('run_id', '')}"
        case "RunFinished":
            return f"run {d.get('run_id', '')} {d.get('termination', '')}"
        case "PendingMessagesFrozen":
            return (
                f"{d.get('boundary', '')}: {_message_ids(d.get('messages'))} -> seq "
                f"{d.get('first_seq')}..{d.get('last_seq')}, run {d.get('run_id', '')}"
            )
        case "RunOutputCommitted":
            return f"run {d.get('run_id', '')} output " + _message_ids(d.get("messages"))
        case "CommittedMessageHidden":
            return f"hid {d.get('message_id', '')}"
        case _:
            return ""


def history_table(events: Sequence[RecordedEvent], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("version", "time", "event", "what changed"):
        table.add_column(column)
    for e in events:
        table.add_row(
            str(e.version), e.timestamp.isoformat(timespec="milliseconds"), e.type, what_changed(e)
        )
    return table
