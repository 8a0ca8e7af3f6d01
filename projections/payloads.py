"""The stored payloads of the events, as the projections read them (no pydantic on this path).

``threadbox.domain.events`` stays the schema of record; these ``TypedDict``s mirror its JSON
form field for field (``tests/test_payloads.py`` keeps the two equal). Messages and delivery
modes stay in their JSON form: exactly what the view columns hold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from threadbox.domain.events import EVENT_TYPES

MessageJson = dict[str, Any]  # a Message as ``model_dump(mode="json")`` gives it
ModeJson = dict[str, Any]  # a DeliveryMode likewise


class DeliveredMessage(TypedDict):
    message: MessageJson
    mode: ModeJson


class FrozenMessage(TypedDict):
    seq: int
    message: MessageJson
    mode: ModeJson
    revision: int


class OutputMessage(TypedDict):
    seq: int
    message: MessageJson


class ThreadEvent(TypedDict):
    thread_id: str
    version: int
    timestamp: str


class ThreadOpened(ThreadEvent):
    pass


class MessagesDelivered(ThreadEvent):
    messages: list[DeliveredMessage]


class PendingMessageEdited(ThreadEvent):
    pending_id: str
    message: MessageJson
    revision: int


class PendingMessageRetracted(ThreadEvent):
    pending_id: str
    revision: int


class PendingQueueReordered(ThreadEvent):
    order: list[str]


class PendingMessagesExpired(ThreadEvent):
    run_id: str
    pending_ids: list[str]


class RunStarted(ThreadEvent):
    run_id: str
    boundary: str


class RunResumed(ThreadEvent):
    run_id: str
    boundary: str


class RunSuspended(ThreadEvent):
    run_id: str
    reason: str


class RunFinished(ThreadEvent):
    run_id: str
    termination: str
    detail: str | None
    by_run_id: str | None


class PendingMessagesFrozen(ThreadEvent):
    run_id: str
    boundary: str
    first_seq: int
    last_seq: int
    messages: list[FrozenMessage]


class RunOutputCommitted(ThreadEvent):
    run_id: str
    messages: list[OutputMessage]


class CommittedMessageHidden(ThreadEvent):
    message_id: str
    seq: int
    reason: str


# The payload type of every event type, by name: the names come from the event union (a
# missing TypedDict fails here, at import).
PAYLOAD_TYPES: dict[str, type] = {name: globals()[name] for name in EVENT_TYPES}


def view_timestamp(stored: str) -> str:
    """An event's stored timestamp as the views hold it: ``datetime.isoformat()`` (``+00:00``
    where the stored JSON says ``Z``), as the pydantic event's ``timestamp.isoformat()``."""
    return datetime.fromisoformat(stored).isoformat()
