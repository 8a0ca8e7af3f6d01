"""A thread's events as AG-UI events (docs/ag-ui.md; ADR 0014): the pure translation, no I/O.

The AG-UI state of a thread is ``{pending: [PendingEntry], runs: [RunRecord], version}``, as
``GET …/pending`` and ``GET …/runs`` answer them. A ``ThreadTranslator`` folds the thread's
events with the domain's own fold, so the state after each event is the thread's, and each
``STATE_DELTA`` is the RFC 6902 patch (``jsonpatch.make_patch``) from the state before it to the
state after it. Every event changes ``version``: every event brings a ``STATE_DELTA``, beside
what it means to AG-UI:

- ``RunStarted``: ``RUN_STARTED``, then the delta;
- ``RunFinished``: the delta, then ``RUN_FINISHED`` (``RUN_ERROR`` for the ``error`` ending);
- ``PendingMessagesFrozen``, ``RunOutputCommitted``: the delta, then each committed message as
  ``TEXT_MESSAGE_*``, ``TOOL_CALL_*`` and ``TOOL_CALL_RESULT`` events;
- the other pending-zone changes (delivered, edited, retracted, reordered, expired): the delta;
- ``ThreadOpened``, ``RunSuspended``, ``RunResumed``, ``CommittedMessageHidden``: the delta, then
  ``CUSTOM`` named ``threadbox.<type>`` whose value is the event's data.

Messages with ``visibility: internal`` are left out unless ``include_internal``; hidden messages
are left out of ``MESSAGES_SNAPSHOT``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, assert_never, cast

import ag_ui.core as ag
import jsonpatch
from threadbox import Message, RecordedEvent, Termination, Visibility
from threadbox.domain.events import (
    EVENT_TYPES,
    AnyThreadEvent,
    CommittedMessageHidden,
    MessagesDelivered,
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
    ThreadOpened,
)
from threadbox.domain.results import thread_state
from threadbox.domain.thread import Thread, fold

from .ag_ui_messages import to_ag_ui

ENVELOPE = {"thread_id", "version", "timestamp"}  # what a RecordedEvent keeps out of ``data``
RUN_ERROR_CODE = "run_error"


def thread_event(thread_id: str, recorded: RecordedEvent) -> AnyThreadEvent:
    """The domain event a ``RecordedEvent`` (``Mailbox.history``) was made from."""
    envelope = {"thread_id": thread_id, "version": recorded.version}
    payload = {**recorded.data, **envelope, "timestamp": recorded.timestamp}
    return cast(AnyThreadEvent, EVENT_TYPES[recorded.type].model_validate(payload))


def state_of(thread: Thread) -> dict[str, Any]:
    """The AG-UI state of a thread, as JSON."""
    state = thread_state(thread)
    return {
        "pending": [entry.model_dump(mode="json") for entry in state.pending],
        "runs": [run.model_dump(mode="json") for run in state.runs],
        "version": state.version,
    }


def millis(at: datetime) -> int:
    """An AG-UI timestamp: milliseconds since the Unix epoch."""
    return int(at.timestamp() * 1000)


def run_ended(
    thread_id: str, run_id: str, termination: Termination, detail: str | None, at: datetime
) -> ag.RunFinishedEvent | ag.RunErrorEvent:
    """How a run's end shows: ``error`` is ``RUN_ERROR`` with the detail; every other ending is
    ``RUN_FINISHED`` whose ``result`` says how it ended, with the outcome ``success`` for a
    natural end and ``cancelled`` for a run cancelled or interrupted (it stopped short, did not
    fail, and the next run on the thread is a new one)."""
    if termination is Termination.ERROR:
        return ag.RunErrorEvent(
            message=detail or f"run {run_id!r} ended with an error",
            code=RUN_ERROR_CODE,
            metadata={"threadId": thread_id, "runId": run_id},
            timestamp=millis(at),
        )
    outcome: ag.RunFinishedSuccessOutcome | ag.RunFinishedCancelledOutcome = (
        ag.RunFinishedSuccessOutcome()
        if termination is Termination.NATURAL_END
        else ag.RunFinishedCancelledOutcome()
    )
    return ag.RunFinishedEvent(
        thread_id=thread_id,
        run_id=run_id,
        result={"termination": termination.value, "detail": detail},
        outcome=outcome,
        timestamp=millis(at),
    )


def _text(
    message_id: str, role: str, text: str, at: int
) -> list[ag.TextMessageStartEvent | ag.TextMessageContentEvent | ag.TextMessageEndEvent]:
    start = ag.TextMessageStartEvent(message_id=message_id, role=role, timestamp=at)
    end = ag.TextMessageEndEvent(message_id=message_id, timestamp=at)
    if not text:
        return [start, end]
    content = ag.TextMessageContentEvent(message_id=message_id, delta=text, timestamp=at)
    return [start, content, end]


def message_events(message: Message, at: int) -> list[ag.BaseEvent]:
    """A committed message as the events that stream it."""
    events: list[ag.BaseEvent] = []
    for shown in to_ag_ui(message):
        if isinstance(shown, ag.ToolMessage):
            events.append(
                ag.ToolCallResultEvent(
                    message_id=shown.id,
                    tool_call_id=shown.tool_call_id,
                    content=shown.content,
                    role="tool",
                    timestamp=at,
                )
            )
        elif isinstance(shown, ag.AssistantMessage):
            if shown.content is not None:
                events += _text(shown.id, "assistant", shown.content, at)
            for call in shown.tool_calls or []:
                events += [
                    ag.ToolCallStartEvent(
                        tool_call_id=call.id,
                        tool_call_name=call.function.name,
                        parent_message_id=shown.id,
                        timestamp=at,
                    ),
                    ag.ToolCallArgsEvent(
                        tool_call_id=call.id, delta=call.function.arguments, timestamp=at
                    ),
                    ag.ToolCallEndEvent(tool_call_id=call.id, timestamp=at),
                ]
        else:
            content = shown.content
            text = (
                content
                if isinstance(content, str)
                else "".join(p.text for p in content if isinstance(p, ag.TextPart))
            )
            events += _text(shown.id, shown.role, text, at)
    return events


class ThreadTranslator:
    """One thread's events as AG-UI events, for one stream: ``advance`` folds the events up
    to the point the stream starts from, ``snapshots`` gives the two snapshots there, and
    ``translate`` each later event, in version order."""

    def __init__(self, thread_id: str, *, include_internal: bool = False) -> None:
        self.thread = Thread(thread_id)
        self.include_internal = include_internal
        self._state = state_of(self.thread)
        # Committed messages in seq order, kept for MESSAGES_SNAPSHOT only (then let go).
        self._committed: list[Message] | None = []

    @property
    def thread_id(self) -> str:
        """The thread translated."""
        return self.thread.thread_id

    def shown(self, message: Message) -> bool:
        """Is this message in the stream (``internal`` ones only when asked for)?"""
        return self.include_internal or message.visibility is not Visibility.INTERNAL

    def advance(self, events: Iterable[AnyThreadEvent]) -> None:
        """Fold events before the snapshots, translating none of them."""
        if self._committed is None:
            raise RuntimeError("the snapshots were taken: translate the events that follow")
        for event in events:
            fold(self.thread_id, [event], self.thread)
            if isinstance(event, PendingMessagesFrozen | RunOutputCommitted):
                self._committed.extend(m.message for m in event.messages)
        self._state = state_of(self.thread)

    def snapshots(self) -> list[ag.BaseEvent]:
        """``STATE_SNAPSHOT`` and ``MESSAGES_SNAPSHOT`` of the thread as folded so far."""
        if self._committed is None:
            raise RuntimeError("the snapshots were taken already")
        visible = [
            shown
            for message in self._committed
            if message.id not in self.thread.hidden and self.shown(message)
            for shown in to_ag_ui(message)
        ]
        self._committed = None
        return [
            ag.StateSnapshotEvent(snapshot=self._state),
            ag.MessagesSnapshotEvent(messages=visible),
        ]

    def translate(self, event: AnyThreadEvent) -> list[ag.BaseEvent]:
        """The AG-UI events of the next thread event (after the snapshots)."""
        if self._committed is not None:
            raise RuntimeError("take the snapshots before translating events")
        fold(self.thread_id, [event], self.thread)
        state = state_of(self.thread)
        at = millis(event.timestamp)
        delta = ag.StateDeltaEvent(
            delta=jsonpatch.make_patch(self._state, state).patch, timestamp=at
        )
        self._state = state
        match event:
            case RunStarted(run_id=run_id):
                started = ag.RunStartedEvent(
                    thread_id=self.thread_id,
                    run_id=run_id,
                    protocol_version=ag.PROTOCOL_VERSION,
                    timestamp=at,
                )
                return [started, delta]
            case RunFinished(run_id=run_id, termination=termination, detail=detail):
                return [
                    delta,
                    run_ended(self.thread_id, run_id, termination, detail, event.timestamp),
                ]
            case PendingMessagesFrozen(messages=committed) | RunOutputCommitted(messages=committed):
                shown = [m.message for m in committed if self.shown(m.message)]
                return [delta, *(e for m in shown for e in message_events(m, at))]
            case (
                MessagesDelivered()
                | PendingMessageEdited()
                | PendingMessageRetracted()
                | PendingQueueReordered()
                | PendingMessagesExpired()
            ):
                return [delta]
            case ThreadOpened() | RunSuspended() | RunResumed() | CommittedMessageHidden():
                data = event.model_dump(mode="json", exclude=ENVELOPE)
                name = f"threadbox.{type(event).__name__}"
                return [delta, ag.CustomEvent(name=name, value=data, timestamp=at)]
            case _:
                assert_never(event)
