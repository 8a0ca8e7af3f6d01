"""What callers read back, built in this one place: records of a thread's state, and the result
of each command, read from the events it wrote and the state they were decided on.

A command result is ``result(command, state, events)`` with ``state`` as the decision saw it
(before the events are applied); a command that wrote no events (an idempotent repeat, an
empty freeze) gets its result from the same function, from the state alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from .commands import (
    Command,
    CommitOutput,
    Deliver,
    Edit,
    FinishRun,
    Freeze,
    Reorder,
    Retract,
    Submit,
)
from .events import (
    AnyThreadEvent,
    CommittedMessageHidden,
    MessagesDelivered,
    PendingMessageEdited,
    PendingMessagesExpired,
    PendingMessagesFrozen,
    PendingQueueReordered,
    RunFinished,
    RunOutputCommitted,
)
from .guards import not_pending, require_unique_ids
from .records import (
    CommitKind,
    CommittedMessage,
    FreezeResult,
    PendingEntry,
    RecordedEvent,
    RunRecord,
    Termination,
    ThreadState,
)
from .thread import Pending, Run, Thread

# ---- records of the state --------------------------------------------------------------------


def pending_entry(state: Thread, item: Pending, position: int) -> PendingEntry:
    """A pending entry of the thread as callers read it, at ``position`` (1 for the head)."""
    return PendingEntry(
        pending_id=item.pending_id,
        thread_id=state.thread_id,
        position=position,
        revision=item.revision,
        message=item.message,
        mode=item.mode,
        delivered_at=item.delivered_at,
        updated_at=item.updated_at,
    )


def pending_entries(state: Thread) -> list[PendingEntry]:
    """The pending zone, in position order."""
    return [pending_entry(state, item, n) for n, item in enumerate(state.pending, start=1)]


def run_record(state: Thread, run: Run) -> RunRecord:
    """One run of the thread, as callers read it."""
    return RunRecord(
        run_id=run.run_id,
        thread_id=state.thread_id,
        status=run.status,
        termination=run.termination,
        detail=run.detail,
        trigger_message_ids=list(run.trigger_message_ids),
        input_ranges=list(run.input_ranges),
        output_message_ids=list(run.output_message_ids),
        freeze_count=run.freeze_count,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def thread_state(state: Thread) -> ThreadState:
    """The whole thread as callers read it; needs the run history (a state folded from the
    log, not one restored from a snapshot)."""
    if not state.runs_complete:
        raise ValueError("a state restored from a snapshot lacks the run history: fold the log")
    return ThreadState(
        thread_id=state.thread_id,
        version=state.version,
        pending=pending_entries(state),
        committed_count=state.last_seq,
        running_run_id=state.running_run_id,
        waiting_run_id=state.waiting_run_id,
        runs=[run_record(state, run) for run in state.runs.values()],
    )


def entry_of(state: Thread, pending_id: str) -> PendingEntry:
    """The pending entry with this id as it is now (one walk of the queue, for its position)."""
    found = state.find_pending(pending_id)
    position = state.pending.position(pending_id)
    if found is None or position is None:  # the decision found it on this very state: a misuse
        raise not_pending(state, pending_id)
    return pending_entry(state, found, position)


# ---- command results -------------------------------------------------------------------------


def delivered(
    command: Deliver, state: Thread, events: Sequence[AnyThreadEvent]
) -> list[PendingEntry]:
    """An entry per message, in the order given: new ones appended after the queue, repeats
    of a delivery as they are now."""
    new = [(e, d) for e in events if isinstance(e, MessagesDelivered) for d in e.messages]
    appended: dict[str | None, PendingEntry] = {
        d.message.id: PendingEntry(
            pending_id=message_id,
            thread_id=state.thread_id,
            position=len(state.pending) + n,
            revision=1,
            message=d.message,
            mode=d.mode,
            delivered_at=event.timestamp,
            updated_at=event.timestamp,
        )
        for n, (event, d) in enumerate(new, start=1)
        if (message_id := d.message.id) is not None
    }
    ids = require_unique_ids(command.messages)
    if all(message_id in appended for message_id in ids):
        return [appended[message_id] for message_id in ids]
    # Repeats of a delivery answer with their entries as they are: positions read in one walk.
    now = {entry.pending_id: entry for entry in pending_entries(state)}
    return [appended.get(message_id) or now[message_id] for message_id in ids]


def edited(command: Edit, state: Thread, events: Sequence[AnyThreadEvent]) -> PendingEntry:
    """The entry with its new content and revision (as it is, when the edit changed nothing)."""
    entry = entry_of(state, command.pending_id)
    for event in events:
        if isinstance(event, PendingMessageEdited):
            update = {"message": event.message, "revision": event.revision}
            entry = entry.model_copy(update={**update, "updated_at": event.timestamp})
    return entry


def retracted(command: Retract, state: Thread, events: Sequence[AnyThreadEvent]) -> PendingEntry:
    """The entry as it was when it was retracted."""
    return entry_of(state, command.pending_id)


def reordered(
    command: Reorder, state: Thread, events: Sequence[AnyThreadEvent]
) -> list[PendingEntry]:
    """The pending zone in its new order (as it is, when the order did not change)."""
    order = state.pending.ids()
    for event in events:
        if isinstance(event, PendingQueueReordered):
            order = list(event.order)
    return [
        pending_entry(state, item, n)
        for n, pending_id in enumerate(order, start=1)
        if (item := state.find_pending(pending_id)) is not None
    ]


def frozen(
    command: Freeze | Submit, state: Thread, events: Sequence[AnyThreadEvent]
) -> FreezeResult:
    """What a freeze (or submit) committed, the run it interrupted and the entries that
    expired with that run; ``committed == []`` when nothing was selected."""
    committed: list[CommittedMessage] = []
    interrupted: str | None = None
    expired_ids: list[str] = []
    hidden: list[str] = []
    for event in events:
        match event:
            case CommittedMessageHidden(message_id=message_id):
                hidden.append(message_id)
            case RunFinished(termination=Termination.INTERRUPTED, run_id=run_id):
                interrupted = run_id
            case PendingMessagesExpired(pending_ids=pending_ids):
                expired_ids = list(pending_ids)
            case PendingMessagesFrozen():
                committed = [
                    CommittedMessage(
                        thread_id=state.thread_id,
                        seq=f.seq,
                        message=f.message,
                        run_id=event.run_id,
                        kind=CommitKind.INPUT,
                        boundary=event.boundary,
                        visible=True,
                        committed_at=event.timestamp,
                    )
                    for f in event.messages
                ]
    return FreezeResult(
        thread_id=state.thread_id,
        run_id=command.run_id,
        boundary=command.boundary if isinstance(command, Freeze) else command.mode.boundary,
        committed=committed,
        version=state.version + len(events),
        interrupted_run_id=interrupted,
        expired=expired_ids,
        hidden=hidden,
    )


def expired(command: FinishRun, state: Thread, events: Sequence[AnyThreadEvent]) -> list[str]:
    """The pending ids that expired with the run."""
    return [i for e in events if isinstance(e, PendingMessagesExpired) for i in e.pending_ids]


def outputs(
    command: CommitOutput, state: Thread, events: Sequence[AnyThreadEvent]
) -> list[CommittedMessage]:
    """The outputs as committed messages, at their seqs."""
    return [
        CommittedMessage(
            thread_id=state.thread_id,
            seq=o.seq,
            message=o.message,
            run_id=event.run_id,
            kind=CommitKind.OUTPUT,
            boundary=None,
            visible=True,
            committed_at=event.timestamp,
        )
        for event in events
        if isinstance(event, RunOutputCommitted)
        for o in event.messages
    ]


def nothing(command: Command, state: Thread, events: Sequence[AnyThreadEvent]) -> None:
    """The result of a command that returns none (suspend, hide)."""
    return None


def recorded_event(event: AnyThreadEvent) -> RecordedEvent:
    """One event of the audit trail: its version, type, time and payload."""
    data = event.model_dump(mode="json", exclude={"thread_id", "version", "timestamp"})
    return RecordedEvent(
        version=event.version, type=type(event).__name__, timestamp=event.timestamp, data=data
    )
