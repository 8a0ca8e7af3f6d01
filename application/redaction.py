"""What the audit trail shows of a message that external readers do not see: an ``internal``
message, or one hidden from the committed zone (docs/semantics.md §6), keeps its id, role,
tool call id and visibility; its content becomes one empty text part and its metadata says
why (``{"redacted": "internal"}`` or ``{"redacted": "hidden"}``)."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from threadbox.domain.records import RecordedEvent

REDACTED_CONTENT: list[dict[str, Any]] = [{"type": "text", "text": ""}]


def _why(message: dict[str, Any], hidden: Set[str]) -> str | None:
    if message.get("visibility") == "internal":
        return "internal"
    return "hidden" if message.get("id") in hidden else None


def _message(message: dict[str, Any], hidden: Set[str]) -> dict[str, Any]:
    why = _why(message, hidden)
    if why is None:
        return message
    return {**message, "content": list(REDACTED_CONTENT), "metadata": {"redacted": why}}


def redacted(event: RecordedEvent, hidden: Set[str]) -> RecordedEvent:
    """``event`` with the content of every internal message, and of every message whose id is
    in ``hidden``, left out (the same event when it carries none)."""
    data = event.data
    if isinstance(data.get("message"), dict):  # PendingMessageEdited
        changed = {**data, "message": _message(data["message"], hidden)}
    elif isinstance(data.get("messages"), list):  # delivered, frozen, output
        changed = {
            **data,
            "messages": [
                {**m, "message": _message(m["message"], hidden)} for m in data["messages"]
            ],
        }
    else:
        return event
    return event if changed == data else event.model_copy(update={"data": changed})
