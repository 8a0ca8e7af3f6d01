"""Decisions on the pending zone: deliver, edit, retract, reorder (docs/semantics.md §4)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from . import errors
from .commands import Deliver, Edit, Reorder, Retract
from .emitter import Emitter
from .events import (
    AnyThreadEvent,
    DeliveredMessage,
    MessagesDelivered,
    PendingMessageEdited,
    PendingMessageRetracted,
    PendingQueueReordered,
    ThreadOpened,
)
from .guards import (
    check_delivery_mode,
    check_mode_shape,
    find_pending,
    in_use,
    require_thread,
    require_unique_ids,
    require_version,
)
from .thread import Thread
from .values import DeliveryMode, Message


def _is_new(state: Thread, message_id: str, message: Message, mode: DeliveryMode) -> bool:
    """True for an unused id, False for a repeat of the very delivery of a message still
    pending (an idempotent no-op); any other use of the id is an error."""
    if message_id not in state.used:
        return True
    found = state.find_pending(message_id)
    if found and found.original == message and found.mode == mode:
        return False
    raise in_use(state, message_id)


def deliver(state: Thread, command: Deliver, now: datetime) -> list[AnyThreadEvent]:
    """Append the messages to the pending zone; a repeated delivery of one is a no-op. New
    messages that would take the zone past its cap are refused, all of them."""
    check_mode_shape(command.mode)
    ids = require_unique_ids(command.messages)
    pairs = zip(ids, command.messages, strict=True)
    new = [message for i, message in pairs if _is_new(state, i, message, command.mode)]
    if not new:
        return []
    # The run a mode targets is checked for new messages only: a retried identical delivery
    # (or an empty one) stays a no-op even after that run has moved on.
    check_delivery_mode(state, command.mode)
    cap = command.max_pending
    if cap is not None and len(state.pending) + len(new) > cap:
        raise errors.PendingQueueFull(state.thread_id, cap, len(state.pending), len(new))
    emit = Emitter(state, now)
    if not state.exists:
        emit(ThreadOpened)
    emit(MessagesDelivered, messages=[DeliveredMessage(message=m, mode=command.mode) for m in new])
    return emit.events


def edit(state: Thread, command: Edit, now: datetime) -> list[AnyThreadEvent]:
    """Replace a pending message's content; the same content again is a no-op."""
    item = find_pending(state, command.pending_id, command.expected_revision)
    if command.message.id is not None and command.message.id != command.pending_id:
        raise errors.InvalidInput(
            f"the message id {command.message.id!r} differs from the pending id "
            f"{command.pending_id!r}",
            "message.id",
        )
    message = command.message.with_id(command.pending_id)
    if message == item.message:
        return []
    emit = Emitter(state, now)
    emit(
        PendingMessageEdited,
        pending_id=command.pending_id,
        message=message,
        revision=item.revision + 1,
    )
    return emit.events


def retract(state: Thread, command: Retract, now: datetime) -> list[AnyThreadEvent]:
    """Take a pending message back before the model reads it."""
    item = find_pending(state, command.pending_id, command.expected_revision)
    emit = Emitter(state, now)
    emit(PendingMessageRetracted, pending_id=command.pending_id, revision=item.revision)
    return emit.events


def reorder(state: Thread, command: Reorder, now: datetime) -> list[AnyThreadEvent]:
    """Put the pending zone in a new order (a permutation of it); the same order is a no-op."""
    require_thread(state)
    require_version(state, command.expected_version)
    current = state.pending.ids()
    wanted = list(command.ordered_ids)
    counts = Counter(wanted)  # every check below is one pass over a list, with O(1) look-ups
    outside = [i for i in counts if state.pending.get(i) is None]
    mismatch = errors.ReorderMismatch(
        missing=[i for i in current if i not in counts],
        unknown=[i for i in outside if i not in state.used],
        duplicates=[i for i, n in counts.items() if n > 1],
        not_pending=[i for i in outside if i in state.used],
    )
    if mismatch.missing or mismatch.unknown or mismatch.duplicates or mismatch.not_pending:
        raise mismatch
    if wanted == current:
        return []
    emit = Emitter(state, now)
    emit(PendingQueueReordered, order=wanted)
    return emit.events
