"""Decisions: ``decide(state, command, now) -> Decision(events, result)``, pure.

A decision never mutates the state it reads. It returns the events to save (versions stamped
consecutively after the state's) and the result the caller gets back once they are saved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from . import errors
from .commands import (
    Command,
    CommitOutput,
    Deliver,
    Edit,
    FinishRun,
    Freeze,
    Hide,
    Reorder,
    Retract,
    Submit,
    SuspendRun,
)
from .events import (
    CommittedMessageHidden,
    DeliveredMessage,
    FrozenMessage,
    MessagesDelivered,
    OutputMessage,
    PendingMessageEdited,
    PendingMessageRetracted,
    PendingMessagesExpired,
    PendingMessagesFrozen,
    PendingQueueReordered,
    RunFinished,
    RunOutputCommitted,
    RunResumed,
    RunStarted,
    RunSuspended,
    ThreadEvent,
    ThreadOpened,
)
from .records import (
    CommitKind,
    CommittedMessage,
    FreezeResult,
    PendingEntry,
    RunStatus,
    Termination,
)
from .selection import scan_for_freeze
from .thread import Pending, Thread
from .values import DeliveryBoundary, DeliveryMode, Message, Role

B = DeliveryBoundary
T = TypeVar("T")
E = TypeVar("E", bound=ThreadEvent)


@dataclass
class Decision(Generic[T]):
    events: list[ThreadEvent]
    result: T


@dataclass
class _Emitter:
    """Stamps thread id, consecutive versions and the decision's time on each event."""

    state: Thread
    now: datetime
    events: list[ThreadEvent] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.state.version + len(self.events)

    def __call__(self, event_type: type[E], **payload: Any) -> E:
        event = event_type(
            thread_id=self.state.thread_id, version=self.version + 1, timestamp=self.now, **payload
        )
        self.events.append(event)
        return event


def decide(state: Thread, command: Command, now: datetime) -> Decision[Any]:
    match command:
        case Deliver():
            return deliver(state, command, now)
        case Edit():
            return edit(state, command, now)
        case Retract():
            return retract(state, command, now)
        case Reorder():
            return reorder(state, command, now)
        case Freeze():
            return freeze(state, command, now)
        case Submit():
            return submit(state, command, now)
        case SuspendRun():
            return suspend_run(state, command, now)
        case FinishRun():
            return finish_run(state, command, now)
        case CommitOutput():
            return commit_output(state, command, now)
        case Hide():
            return hide(state, command, now)


# ---- guards ----------------------------------------------------------------------------------


def _require_thread(state: Thread) -> None:
    if not state.exists:
        raise errors.ThreadNotFound(state.thread_id)


def _require_version(state: Thread, expected: int | None) -> None:
    if expected is not None and expected != state.version:
        raise errors.VersionConflict(expected, state.version)


def _in_use(state: Thread, message_id: str) -> errors.MessageIdInUse:
    how, seq = state.used[message_id]
    return errors.MessageIdInUse(message_id, how, seq)


def _not_pending(state: Thread, pending_id: str) -> errors.ThreadboxError:
    usage = state.used.get(pending_id)
    if usage is None:
        return errors.PendingNotFound(state.thread_id, pending_id)
    how, seq = usage
    if how == "committed":
        assert seq is not None
        return errors.AlreadyConsumed(pending_id, seq)
    return errors.NotPending(pending_id, how)


def _find(state: Thread, pending_id: str, expected_revision: int | None) -> tuple[int, Pending]:
    _require_thread(state)
    found = state.find_pending(pending_id)
    if found is None:
        raise _not_pending(state, pending_id)
    if expected_revision is not None and expected_revision != found[1].revision:
        raise errors.RevisionConflict(expected_revision, found[1].revision)
    return found


def _require_unique_ids(messages: Sequence[Message]) -> list[str]:
    ids = [m.id for m in messages]
    if any(i is None for i in ids):
        raise errors.InvalidInput("every message needs an id before a decision", "messages.id")
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    if repeated:
        raise errors.InvalidInput(f"duplicate message ids in one call: {repeated}", "messages.id")
    return [i for i in ids if i is not None]


def check_delivery_mode(state: Thread, mode: DeliveryMode) -> None:
    """The rules of SEMANTICS §3 a mode must meet to be delivered to this thread now."""
    if mode.boundary == B.RESUME_INPUT and (mode.target_run_id is None or mode.fallback_to_new_run):
        raise errors.InvalidInput(
            "a resume_input mode needs a target_run_id and fallback_to_new_run = false", "mode"
        )
    if mode.target_run_id is None or mode.fallback_to_new_run:
        return
    if mode.boundary == B.RESUME_INPUT:
        if state.waiting_run_id != mode.target_run_id:
            raise errors.RunNotWaiting(
                mode.target_run_id, f"the waiting run is {state.waiting_run_id!r}"
            )
    elif state.running_run_id != mode.target_run_id:
        raise errors.RunNotRunning(
            mode.target_run_id, f"the running run is {state.running_run_id!r}"
        )


def _expiring(state: Thread, run_id: str) -> list[str]:
    """Pending entries that only ``run_id`` could consume: they expire when it ends."""
    return [
        p.pending_id
        for p in state.pending
        if p.mode.target_run_id == run_id and not p.mode.fallback_to_new_run
    ]


# ---- pending zone ----------------------------------------------------------------------------


def deliver(state: Thread, command: Deliver, now: datetime) -> Decision[list[PendingEntry]]:
    check_delivery_mode(state, command.mode)
    _require_unique_ids(command.messages)
    emit = _Emitter(state, now)
    results: list[PendingEntry | None] = []
    new: list[Message] = []
    for message in command.messages:
        assert message.id is not None
        if message.id in state.used:
            found = state.find_pending(message.id)
            if found and found[1].original == message and found[1].mode == command.mode:
                results.append(state.entry(found[0]))
                continue
            raise _in_use(state, message.id)
        new.append(message)
        results.append(None)
    if new:
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
    index, item = _find(state, command.pending_id, command.expected_revision)
    if command.message.id is not None and command.message.id != command.pending_id:
        raise errors.InvalidInput(
            f"the message id {command.message.id!r} differs from the pending id "
            f"{command.pending_id!r}",
            "message.id",
        )
    message = command.message.with_id(command.pending_id)
    if message == item.message:
        return Decision([], state.entry(index))
    emit = _Emitter(state, now)
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
    index, item = _find(state, command.pending_id, command.expected_revision)
    emit = _Emitter(state, now)
    emit(PendingMessageRetracted, pending_id=command.pending_id, revision=item.revision)
    return Decision(emit.events, state.entry(index))


def reorder(state: Thread, command: Reorder, now: datetime) -> Decision[list[PendingEntry]]:
    _require_thread(state)
    _require_version(state, command.expected_version)
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
    emit = _Emitter(state, now)
    emit(PendingQueueReordered, order=wanted)
    return Decision(emit.events, entries)


# ---- freezes ---------------------------------------------------------------------------------


@dataclass
class _RunPlan:
    """What a freeze at a boundary does to the runs, once its selection is non-empty."""

    start: bool  # run_id starts (else it resumes, or is already running)
    resume: bool
    interrupted: str | None  # the open run that the freeze ends as interrupted


def _plan_runs(state: Thread, boundary: DeliveryBoundary, run_id: str) -> _RunPlan:
    """The run rules of SEMANTICS §4.1; they raise even when nothing would be selected."""
    open_run = state.open_run
    if boundary == B.INTERRUPT:
        if state.run_id_used(run_id):
            raise errors.InvalidInput(
                f"run id {run_id!r} was already used in this thread; interrupt starts a new run",
                "run_id",
            )
        return _RunPlan(True, False, open_run.run_id if open_run else None)
    if boundary in (B.NEXT_STEP, B.ON_NATURAL_END):
        if state.running_run_id != run_id:
            raise errors.RunNotRunning(run_id, f"the running run is {state.running_run_id!r}")
        return _RunPlan(False, False, None)
    if boundary == B.RESUME_INPUT:
        if state.waiting_run_id != run_id:
            raise errors.RunNotWaiting(run_id, f"the waiting run is {state.waiting_run_id!r}")
        return _RunPlan(False, True, None)
    if open_run is not None:
        if open_run.status is RunStatus.RUNNING:
            raise errors.ThreadBusy(open_run.run_id, "a new_run freeze needs no running run")
        if open_run.run_id != run_id:
            raise errors.ThreadBusy(open_run.run_id, "only the waiting run may resume now")
        return _RunPlan(False, True, None)
    if state.run_id_used(run_id):
        raise errors.InvalidInput(f"run id {run_id!r} was already used in this thread", "run_id")
    return _RunPlan(True, False, None)


def _commit_input(
    emit: _Emitter,
    queue: Sequence[Pending],
    selected: Sequence[int],
    plan: _RunPlan,
    boundary: DeliveryBoundary,
    run_id: str,
    expired: list[str],
) -> FreezeResult:
    """The events of a non-empty freeze, in the fixed order of SEMANTICS §5."""
    state = emit.state
    if plan.interrupted is not None:
        emit(
            RunFinished,
            run_id=plan.interrupted,
            termination=Termination.INTERRUPTED,
            detail=f"interrupted by run {run_id!r}",
        )
        if expired:
            emit(PendingMessagesExpired, run_id=plan.interrupted, pending_ids=expired)
    if plan.start:
        emit(RunStarted, run_id=run_id, boundary=boundary)
    elif plan.resume:
        emit(RunResumed, run_id=run_id, boundary=boundary)
    first = state.last_seq + 1
    frozen = [
        FrozenMessage(
            seq=first + n, message=queue[i].message, mode=queue[i].mode, revision=queue[i].revision
        )
        for n, i in enumerate(selected)
    ]
    event = emit(
        PendingMessagesFrozen,
        run_id=run_id,
        boundary=boundary,
        first_seq=first,
        last_seq=first + len(frozen) - 1,
        messages=frozen,
    )
    committed = [
        CommittedMessage(
            thread_id=state.thread_id,
            seq=f.seq,
            message=f.message,
            run_id=run_id,
            kind=CommitKind.INPUT,
            boundary=boundary,
            visible=True,
            committed_at=event.timestamp,
        )
        for f in frozen
    ]
    return FreezeResult(
        thread_id=state.thread_id,
        run_id=run_id,
        boundary=boundary,
        committed=committed,
        version=emit.version,
        interrupted_run_id=plan.interrupted,
        expired=expired if plan.interrupted else [],
    )


def freeze(state: Thread, command: Freeze, now: datetime) -> Decision[FreezeResult]:
    _require_thread(state)
    _require_version(state, command.expected_version)
    boundary, run_id = command.boundary, command.run_id
    plan = _plan_runs(state, boundary, run_id)
    expired = _expiring(state, plan.interrupted) if plan.interrupted else []
    queue = [p for p in state.pending if p.pending_id not in set(expired)]
    scan = scan_for_freeze(queue, boundary, run_id)
    if not scan.selected:
        empty = FreezeResult(
            thread_id=state.thread_id,
            run_id=run_id,
            boundary=boundary,
            committed=[],
            version=state.version,
        )
        return Decision([], empty)
    emit = _Emitter(state, now)
    result = _commit_input(emit, queue, scan.selected, plan, boundary, run_id, expired)
    return Decision(emit.events, result)


def submit(state: Thread, command: Submit, now: datetime) -> Decision[FreezeResult]:
    if not command.messages:
        raise errors.InvalidInput("submit needs at least one message", "messages")
    mode, run_id = command.mode, command.run_id
    check_delivery_mode(state, mode)
    ids = _require_unique_ids(command.messages)
    for message_id in ids:
        if message_id in state.used:
            raise _in_use(state, message_id)
    plan = _plan_runs(state, mode.boundary, run_id)
    expired = _expiring(state, plan.interrupted) if plan.interrupted else []
    new = [Pending(m, mode, 1, now, now, m) for m in command.messages]
    queue = [p for p in state.pending if p.pending_id not in set(expired)] + new
    scan = scan_for_freeze(queue, mode.boundary, run_id)
    first_new = len(queue) - len(new)
    if scan.selected[-len(new) :] != list(range(first_new, len(queue))):
        raise errors.DeliveryBlocked(_blocker(queue, scan.selected, scan.stopped_at, first_new))
    emit = _Emitter(state, now)
    if not state.exists:
        emit(ThreadOpened)
    emit(
        MessagesDelivered,
        messages=[DeliveredMessage(message=m, mode=mode) for m in command.messages],
    )
    result = _commit_input(emit, queue, scan.selected, plan, mode.boundary, run_id, expired)
    return Decision(emit.events, result)


def _blocker(
    queue: Sequence[Pending], selected: Sequence[int], stopped_at: int | None, first_new: int
) -> str:
    """The entry that kept a submit's messages from being consumed (SEMANTICS §4, submit)."""
    assert stopped_at is not None, "a scan that ran off the queue's end selected every new entry"
    if stopped_at >= first_new and selected and stopped_at not in selected:
        return queue[selected[0]].pending_id
    return queue[stopped_at].pending_id


# ---- runs and the committed zone -------------------------------------------------------------


def suspend_run(state: Thread, command: SuspendRun, now: datetime) -> Decision[None]:
    _require_thread(state)
    if state.running_run_id != command.run_id:
        raise errors.RunNotRunning(command.run_id, f"the running run is {state.running_run_id!r}")
    emit = _Emitter(state, now)
    emit(RunSuspended, run_id=command.run_id, reason=command.reason)
    return Decision(emit.events, None)


def finish_run(state: Thread, command: FinishRun, now: datetime) -> Decision[list[str]]:
    _require_thread(state)
    if state.open_run_id != command.run_id:
        raise errors.RunNotRunning(command.run_id, f"the open run is {state.open_run_id!r}")
    emit = _Emitter(state, now)
    emit(RunFinished, run_id=command.run_id, termination=command.termination, detail=command.detail)
    expired = _expiring(state, command.run_id)
    if expired:
        emit(PendingMessagesExpired, run_id=command.run_id, pending_ids=expired)
    return Decision(emit.events, expired)


def commit_output(
    state: Thread, command: CommitOutput, now: datetime
) -> Decision[list[CommittedMessage]]:
    _require_thread(state)
    if state.running_run_id != command.run_id:
        raise errors.RunNotRunning(command.run_id, f"the running run is {state.running_run_id!r}")
    for message in command.messages:
        if message.role is Role.USER:
            raise errors.InvalidInput(
                f"output message {message.id!r} has role user; outputs are assistant, tool or "
                "system messages",
                "messages.role",
            )
    for message_id in _require_unique_ids(command.messages):
        if message_id in state.used:
            raise _in_use(state, message_id)
    if not command.messages:
        return Decision([], [])
    emit = _Emitter(state, now)
    outputs = [
        OutputMessage(seq=state.last_seq + n, message=m)
        for n, m in enumerate(command.messages, start=1)
    ]
    emit(RunOutputCommitted, run_id=command.run_id, messages=outputs)
    committed = [
        CommittedMessage(
            thread_id=state.thread_id,
            seq=o.seq,
            message=o.message,
            run_id=command.run_id,
            kind=CommitKind.OUTPUT,
            boundary=None,
            visible=True,
            committed_at=now,
        )
        for o in outputs
    ]
    return Decision(emit.events, committed)


def hide(state: Thread, command: Hide, now: datetime) -> Decision[None]:
    _require_thread(state)
    how, seq = state.used.get(command.message_id, ("unused", None))
    if how != "committed" or seq is None:
        raise errors.MessageNotFound(state.thread_id, command.message_id)
    if command.message_id in state.hidden:
        return Decision([], None)
    emit = _Emitter(state, now)
    emit(CommittedMessageHidden, message_id=command.message_id, seq=seq, reason=command.reason)
    return Decision(emit.events, None)
