"""The events of a thread (docs/semantics.md §5).

Stored format: each event is stored under its topic ``threadbox.domain.events:<ClassName>`` with
its ``class_version``; renaming or moving a class here breaks every stored stream. Change a
payload by bumping ``class_version`` and adding an upcaster, never by editing a shape in place.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict

from .records import Termination
from .values import DeliveryBoundary, DeliveryMode, Message

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class ThreadEvent(BaseModel):
    """Base of a thread's events: the thread, the version the event gives it, and its time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    class_version: ClassVar[int] = 1
    # upcasters[n] turns the stored payload of version n into version n + 1.
    upcasters: ClassVar[dict[int, Upcaster]] = {}

    thread_id: str
    version: int
    timestamp: datetime

    @classmethod
    def upcast(cls, data: dict[str, Any], stored_version: int) -> dict[str, Any]:
        """A payload stored at ``stored_version`` of this type, as its current version."""
        for version in range(stored_version, cls.class_version):
            data = cls.upcasters[version](data)
        return data


class DeliveredMessage(BaseModel):
    """A message as delivered, with its mode."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    message: Message
    mode: DeliveryMode


class FrozenMessage(BaseModel):
    """A pending entry as the model read it: its seq, and the revision that was read."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    seq: int
    message: Message
    mode: DeliveryMode
    revision: int


class OutputMessage(BaseModel):
    """A run's output message, at its seq."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    seq: int
    message: Message


class ThreadOpened(ThreadEvent):
    """The thread's first event (written with its first delivery)."""


class MessagesDelivered(ThreadEvent):
    """Messages joined the end of the pending zone, in order."""

    messages: list[DeliveredMessage]


class PendingMessageEdited(ThreadEvent):
    """A pending message has new content, at a new revision."""

    pending_id: str
    message: Message
    revision: int


class PendingMessageRetracted(ThreadEvent):
    """A pending message was taken back, at its revision then."""

    pending_id: str
    revision: int


class PendingQueueReordered(ThreadEvent):
    """The pending zone is in a new order."""

    order: list[str]


class PendingMessagesExpired(ThreadEvent):
    """Pending entries only ``run_id`` could consume left the zone with that run's end."""

    run_id: str
    pending_ids: list[str]


class RunStarted(ThreadEvent):
    """A run started, at a freeze at ``boundary``."""

    run_id: str
    boundary: DeliveryBoundary


class RunResumed(ThreadEvent):
    """The waiting run runs again, at a freeze at ``boundary``."""

    run_id: str
    boundary: DeliveryBoundary


class RunSuspended(ThreadEvent):
    """The running run waits."""

    run_id: str
    reason: str


def _run_finished_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Version 1 carried no detail: a run's end had only its termination.
    return {**data, "detail": None}


def _run_finished_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    # Version 2 did not say which run an interrupting freeze started.
    return {**data, "by_run_id": None}


class RunFinished(ThreadEvent):
    """The open run ended (version 2: with a ``detail``; version 3: ``by_run_id``, the run an
    interrupting freeze started, else None)."""

    class_version: ClassVar[int] = 3
    upcasters: ClassVar[dict[int, Upcaster]] = {
        1: _run_finished_v1_to_v2,
        2: _run_finished_v2_to_v3,
    }

    run_id: str
    termination: Termination
    detail: str | None
    by_run_id: str | None = None


class PendingMessagesFrozen(ThreadEvent):
    """Pending entries moved into the committed zone, seqs ``first_seq..last_seq``."""

    run_id: str
    boundary: DeliveryBoundary
    first_seq: int
    last_seq: int
    messages: list[FrozenMessage]


class RunOutputCommitted(ThreadEvent):
    """A run's outputs joined the committed zone."""

    run_id: str
    messages: list[OutputMessage]


class CommittedMessageHidden(ThreadEvent):
    """A committed message is hidden (a tombstone: its content stays)."""

    message_id: str
    seq: int
    reason: str


AnyThreadEvent = (
    ThreadOpened
    | MessagesDelivered
    | PendingMessageEdited
    | PendingMessageRetracted
    | PendingQueueReordered
    | PendingMessagesExpired
    | RunStarted
    | RunResumed
    | RunSuspended
    | RunFinished
    | PendingMessagesFrozen
    | RunOutputCommitted
    | CommittedMessageHidden
)

# Every event type by its class name (the stored topic's last part), from the union above.
EVENT_TYPES: dict[str, type[ThreadEvent]] = {cls.__name__: cls for cls in get_args(AnyThreadEvent)}
