"""Decisions on runs and the committed zone: suspend, finish, outputs, hide."""

from __future__ import annotations

from datetime import datetime

from . import errors
from .commands import CommitOutput, FinishRun, Hide, SuspendRun
from .emitter import Emitter
from .events import (
    AnyThreadEvent,
    CommittedMessageHidden,
    OutputMessage,
    PendingMessagesExpired,
    RunFinished,
    RunOutputCommitted,
    RunSuspended,
)
from .guards import in_use, require_thread, require_unique_ids
from .thread import Thread
from .values import Role


def suspend_run(state: Thread, command: SuspendRun, now: datetime) -> list[AnyThreadEvent]:
    """The running run waits (for resume_input work)."""
    require_thread(state)
    if state.running_run_id != command.run_id:
        raise state.not_running(command.run_id, f"the running run is {state.running_run_id!r}")
    emit = Emitter(state, now)
    emit(RunSuspended, run_id=command.run_id, reason=command.reason)
    return emit.events


def finish_run(state: Thread, command: FinishRun, now: datetime) -> list[AnyThreadEvent]:
    """The open run ends; entries only it could consume expire with it."""
    require_thread(state)
    if state.open_run_id != command.run_id:
        raise state.not_running(command.run_id, f"the open run is {state.open_run_id!r}")
    emit = Emitter(state, now)
    emit(RunFinished, run_id=command.run_id, termination=command.termination, detail=command.detail)
    expired = state.expiring(command.run_id)
    if expired:
        emit(PendingMessagesExpired, run_id=command.run_id, pending_ids=expired)
    return emit.events


def commit_output(state: Thread, command: CommitOutput, now: datetime) -> list[AnyThreadEvent]:
    """The running run's outputs join the committed zone, at the next seqs."""
    require_thread(state)
    if state.running_run_id != command.run_id:
        raise state.not_running(command.run_id, f"the running run is {state.running_run_id!r}")
    for message in command.messages:
        if message.role is Role.USER:
            raise errors.InvalidInput(
                f"output message {message.id!r} has role user; outputs are assistant, tool or "
                "system messages",
                "messages.role",
            )
    for message_id in require_unique_ids(command.messages):
        if message_id in state.used:
            raise in_use(state, message_id)
    if not command.messages:
        return []
    emit = Emitter(state, now)
    outputs = [
        OutputMessage(seq=state.last_seq + n, message=m)
        for n, m in enumerate(command.messages, start=1)
    ]
    emit(RunOutputCommitted, run_id=command.run_id, messages=outputs)
    return emit.events


def hide(state: Thread, command: Hide, now: datetime) -> list[AnyThreadEvent]:
    """Tombstone a committed message (it stays, marked hidden); hiding it again is a no-op."""
    require_thread(state)
    how, seq = state.used.get(command.message_id, ("unused", None))
    if how != "committed" or seq is None:
        raise errors.MessageNotFound(state.thread_id, command.message_id)
    if command.message_id in state.hidden:
        return []
    emit = Emitter(state, now)
    emit(CommittedMessageHidden, message_id=command.message_id, seq=seq, reason=command.reason)
    return emit.events
