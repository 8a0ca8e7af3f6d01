"""Decisions that freeze: the run rules at a boundary (docs/semantics.md §4.1), freeze and
submit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from . import errors
from .commands import Freeze, Submit
from .emitter import Emitter
from .events import (
    AnyThreadEvent,
    CommittedMessageHidden,
    DeliveredMessage,
    FrozenMessage,
    MessagesDelivered,
    PendingMessagesExpired,
    PendingMessagesFrozen,
    RunFinished,
    RunResumed,
    RunStarted,
    ThreadOpened,
)
from .guards import (
    check_delivery_mode,
    in_use,
    require_thread,
    require_unique_ids,
    require_version,
)
from .records import RunStatus, Termination
from .selection import Scan, scan_for_freeze
from .thread import Pending, Thread
from .values import DeliveryBoundary

B = DeliveryBoundary


@dataclass
class _RunPlan:
    """What a freeze at a boundary does to the runs, once its selection is non-empty."""

    start: bool  # run_id starts (else it resumes, or is already running)
    resume: bool
    interrupted: str | None  # the open run that the freeze ends as interrupted


def _plan_runs(state: Thread, boundary: DeliveryBoundary, run_id: str) -> _RunPlan:
    """The run rules of docs/semantics.md §4.1; they raise even when nothing would be selected."""
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
            raise state.not_running(run_id, f"the running run is {state.running_run_id!r}")
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


def _without(state: Thread, expired: list[str]) -> list[Pending]:
    """The queue a freeze scans: the pending zone less the entries that expire before it."""
    gone = set(expired)  # built once: the filter is one pass over the queue
    return [p for p in state.pending if p.pending_id not in gone]


def _commit_input(
    emit: Emitter,
    queue: Sequence[Pending],
    selected: Sequence[int],
    plan: _RunPlan,
    boundary: DeliveryBoundary,
    run_id: str,
    expired: list[str],
    rollback: bool = False,
) -> None:
    """The events of a non-empty freeze, in the fixed order of docs/semantics.md §5; a
    rollback hides the interrupted run's outputs right after its ``RunFinished``."""
    if plan.interrupted is not None:
        outputs = emit.state.open_run_outputs()
        emit(
            RunFinished,
            run_id=plan.interrupted,
            termination=Termination.INTERRUPTED,
            detail=f"interrupted by run {run_id!r}",
            by_run_id=run_id,
        )
        if rollback:
            for message_id, seq in outputs:
                if message_id not in emit.state.hidden:
                    emit(CommittedMessageHidden, message_id=message_id, seq=seq, reason="rollback")
        if expired:
            emit(PendingMessagesExpired, run_id=plan.interrupted, pending_ids=expired)
    if plan.start:
        emit(RunStarted, run_id=run_id, boundary=boundary)
    elif plan.resume:
        emit(RunResumed, run_id=run_id, boundary=boundary)
    first = emit.state.last_seq + 1
    frozen = [
        FrozenMessage(
            seq=first + n, message=queue[i].message, mode=queue[i].mode, revision=queue[i].revision
        )
        for n, i in enumerate(selected)
    ]
    emit(
        PendingMessagesFrozen,
        run_id=run_id,
        boundary=boundary,
        first_seq=first,
        last_seq=first + len(frozen) - 1,
        messages=frozen,
    )


def freeze(state: Thread, command: Freeze, now: datetime) -> list[AnyThreadEvent]:
    """Commit the entries a freeze at the boundary selects (none: nothing happens, no run
    changes); the run rules apply even then."""
    require_thread(state)
    require_version(state, command.expected_version)
    boundary, run_id = command.boundary, command.run_id
    if command.rollback and boundary != B.INTERRUPT:
        raise errors.InvalidInput(
            f"rollback is for interrupt freezes, not {boundary.value}", "rollback"
        )
    plan = _plan_runs(state, boundary, run_id)
    expired = state.expiring(plan.interrupted) if plan.interrupted else []
    queue = _without(state, expired)
    scan = scan_for_freeze(queue, boundary, run_id)
    if not scan.selected:
        return []
    emit = Emitter(state, now)
    _commit_input(emit, queue, scan.selected, plan, boundary, run_id, expired, command.rollback)
    return emit.events


def submit(state: Thread, command: Submit, now: datetime) -> list[AnyThreadEvent]:
    """Deliver and freeze in one write: every message is consumed now, or nothing is written."""
    if not command.messages:
        raise errors.InvalidInput("submit needs at least one message", "messages")
    mode, run_id = command.mode, command.run_id
    check_delivery_mode(state, mode)
    ids = require_unique_ids(command.messages)
    for message_id in ids:
        if message_id in state.used:
            raise in_use(state, message_id)
    plan = _plan_runs(state, mode.boundary, run_id)
    expired = state.expiring(plan.interrupted) if plan.interrupted else []
    new = [Pending(i, m, mode, 1, now, now, m) for i, m in zip(ids, command.messages, strict=True)]
    queue = _without(state, expired) + new
    scan = scan_for_freeze(queue, mode.boundary, run_id)
    first_new = len(queue) - len(new)
    if scan.selected[-len(new) :] != list(range(first_new, len(queue))):
        raise _blocked(queue, scan, first_new, run_id)
    emit = Emitter(state, now)
    if not state.exists:
        emit(ThreadOpened)
    emit(
        MessagesDelivered,
        messages=[DeliveredMessage(message=m, mode=mode) for m in command.messages],
    )
    _commit_input(emit, queue, scan.selected, plan, mode.boundary, run_id, expired)
    return emit.events


def _blocked(queue: Sequence[Pending], scan: Scan, first_new: int, run_id: str) -> Exception:
    """Why a submit's messages cannot all be consumed now (docs/semantics.md §4, submit): the
    entry the selection stopped at; when it stopped on a submitted message, the first selected
    entry, or else the skipped entry a barrier may not pass. A submitted mode that this very
    freeze can never consume is invalid input, not a blocked delivery."""
    selected = set(scan.selected)
    stop = scan.stopped_at  # None only if the scan passed a new entry by: then stop at it
    if stop is None:
        stop = next(i for i in range(first_new, len(queue)) if i not in selected)
    if stop < first_new or stop in selected:
        return errors.DeliveryBlocked(queue[stop].pending_id)
    if scan.selected:
        return errors.DeliveryBlocked(queue[scan.selected[0]].pending_id)
    if scan.first_skipped is not None:
        return errors.DeliveryBlocked(queue[scan.first_skipped].pending_id)
    return errors.InvalidInput(
        f"a {queue[stop].mode.boundary} submit targeted at run "
        f"{queue[stop].mode.target_run_id!r} cannot be consumed by run {run_id!r}",
        "mode.target_run_id",
    )
