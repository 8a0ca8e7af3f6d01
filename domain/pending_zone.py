"""Decisions on the pending zone: deliver, edit, retract, reorder (SEMANTICS §4)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from . import errors
from .commands import Deliver, Edit, Reorder, Retract
from .decision import (
    Decision,
    Emitter,
    check_delivery_mode,
    check_mode_shape,
    find_pending,
    in_use,
    require_thread,
    require_unique_ids,
    require_version,
)
from .events import (
    DeliveredMessage,
    MessagesDelivered,
    PendingMessageEdited,
    PendingMessageRetracted,
    PendingQueueReordered,
    ThreadOpened,
)
from .records import PendingEntry
from .thread import Thread
from .values import Message


def deliver(state: Thread, command: Deliver, now: datetime) -> Decision[list[PendingEntry]]:
    check_mode_shape(command.mode)
    require_unique_ids(command.messages)
    emit = Emitter(state, now)
    results: list[PendingEntry | None] = []
    new: list[Message] = []
    for message in command.messages:
        assert message.id is not None
        if message.id in state.used:
            found = state.find_pending(message.id)
            if found and found[1].original == message and found[1].mode == command.mode:
                results.append(state.entry(found[0]))
                continue
            raise in_use(state, message.id)
        new.append(message)
        results.append(None)
    if new:
        # The run a mode targets is checked for new messages only: a retried identical delivery
        # (or an empty one) stays a no-op even after that run has moved on.
        check_delivery_mode(state, command.mode)
        if not state.exists:
            emit(ThreadOpened)
        emit(
            MessagesDelivered,
            messages=[DeliveredMessage(message=m, mode=command.mode) for m in new],
        )
    fresh = iter(new)
    position = len(state.pending)
    entries: list[PendingEntry] = []
    for result in results:
        if result is None:
            position += 1
            message = next(fresh)
            assert message.id is not None
            result = PendingEntry(
                pending_id=message.id,
                thread_id=state.thread_id,
                position=position,
                revision=1,
                message=message,
                mode=command.mode,
                delivered_at=now,
                updated_at=now,
            )
        entries.append(result)
    return Decision(emit.events, entries)


def edit(state: Thread, command: Edit, now: datetime) -> Decision[PendingEntry]:
    index, item = find_pending(state, command.pending_id, command.expected_revision)
    if command.message.id is not None and command.message.id != command.pending_id:
        raise errors.InvalidInput(
            f"the message id {command.message.id!r} differs from the pending id "
            f"{command.pending_id!r}",
            "message.id",
        )
    message = command.message.with_id(command.pending_id)
    if message == item.message:
        return Decision([], state.entry(index))
    emit = Emitter(state, now)
    emit(
        PendingMessageEdited,
        pending_id=command.pending_id,
        message=message,
        revision=item.revision + 1,
    )
    entry = state.entry(index).model_copy(
        update={"message": message, "revision": item.revision + 1, "updated_at": now}
    )
    return Decision(emit.events, entry)


def retract(state: Thread, command: Retract, now: datetime) -> Decision[PendingEntry]:
    index, item = find_pending(state, command.pending_id, command.expected_revision)
    emit = Emitter(state, now)
    emit(PendingMessageRetracted, pending_id=command.pending_id, revision=item.revision)
    return Decision(emit.events, state.entry(index))


def reorder(state: Thread, command: Reorder, now: datetime) -> Decision[list[PendingEntry]]:
    require_thread(state)
    require_version(state, command.expected_version)
    current = [p.pending_id for p in state.pending]
    wanted = list(command.ordered_ids)
    counts = Counter(wanted)
    outside = [i for i in counts if i not in set(current)]
    mismatch = errors.ReorderMismatch(
        missing=[i for i in current if i not in counts],
        unknown=[i for i in outside if i not in state.used],
        duplicates=[i for i, n in counts.items() if n > 1],
        not_pending=[i for i in outside if i in state.used],
    )
    if mismatch.missing or mismatch.unknown or mismatch.duplicates or mismatch.not_pending:
        raise mismatch
    position = {pending_id: index for index, pending_id in enumerate(current)}
    entries = [
        state.entry(position[i]).model_copy(update={"position": n})
        for n, i in enumerate(wanted, start=1)
    ]
    if wanted == current:
        return Decision([], entries)
    emit = Emitter(state, now)
    emit(PendingQueueReordered, order=wanted)
    return Decision(emit.events, entries)
