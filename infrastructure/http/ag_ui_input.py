"""A posted AG-UI ``RunAgentInput`` as a delivery (docs/ag-ui.md; ADR 0014): which of its
messages the thread has not seen, the mode to deliver them with, and the messages whose run ends
the stream.

An AG-UI client posts the whole conversation every time. A message whose id the thread already
holds (in any zone, as any of the AG-UI messages it shows as) is seen: it is delivered again
never, and it must be the same message (``canonical``: all but metadata), else the id is in use.
The stream waits for the input's last messages, those after its last run output: the stream ends
when none of them is pending any more and every run that read one of them has finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ag_ui.core as ag
from pydantic import ValidationError
from threadbox import DeliveryMode, Message, RunStatus
from threadbox.domain.errors import InvalidInput, MessageIdInUse, PayloadTooLarge, ThreadboxError
from threadbox.domain.events import (
    AnyThreadEvent,
    MessagesDelivered,
    PendingMessageEdited,
    PendingMessagesFrozen,
    RunOutputCommitted,
)
from threadbox.domain.thread import Run, Thread

from .ag_ui_events import run_ended
from .ag_ui_messages import canonical, from_ag_ui, to_ag_ui

MODE_FIELD = "forwardedProps.threadbox.mode"


@dataclass(frozen=True)
class Posted:
    """One posted message that threadbox keeps: where it was, and as a threadbox message."""

    index: int  # in ``RunAgentInput.messages``
    message: Message

    @property
    def message_id(self) -> str:
        """Its id (the posted message's own)."""
        assert self.message.id is not None  # an AG-UI message always has an id
        return self.message.id


def posted_messages(body: ag.RunAgentInput, thread_id: str) -> list[Posted]:
    """The input's messages as threadbox messages (activity and reasoning left out), or
    ``InvalidInput`` naming the field."""
    if body.thread_id != thread_id:
        raise InvalidInput(
            f"invalid threadId: {body.thread_id!r} is not the thread of this path, {thread_id!r}",
            "threadId",
        )
    posted = []
    for index, message in enumerate(body.messages):
        converted = from_ag_ui(message, f"messages.{index}")
        if converted is not None:
            posted.append(Posted(index, converted))
    return posted


def delivery_mode(body: ag.RunAgentInput) -> DeliveryMode:
    """``forwardedProps.threadbox.mode`` (a ``DeliveryMode``), else ``new_run``. Other
    forwarded props belong to other parts of the application and are left alone; the
    ``threadbox`` object is ours, and holds ``mode`` only."""
    props = body.forwarded_props
    options = props.get("threadbox") if isinstance(props, dict) else None
    if options is None:
        return DeliveryMode()
    if not isinstance(options, dict) or set(options) - {"mode"}:
        field = "forwardedProps.threadbox"
        raise InvalidInput(f"invalid {field}: must be an object with one key, mode", field)
    if options.get("mode") is None:
        return DeliveryMode()
    try:
        return DeliveryMode.model_validate(options["mode"])
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in (MODE_FIELD, *first["loc"]))
        raise InvalidInput(f"invalid {field}: {first['msg']}", field) from None


class Known:
    """Every AG-UI message a thread has shown, by id: each content it had (a pending message
    may have been edited), the threadbox message it came from, and which were run outputs."""

    def __init__(self, events: Iterable[AnyThreadEvent]) -> None:
        self.contents: dict[str, set[str]] = {}
        self.origin: dict[str, str] = {}
        self.outputs: set[str] = set()
        for event in events:
            match event:
                case MessagesDelivered(messages=delivered):
                    self._add(d.message for d in delivered)
                case PendingMessageEdited(message=message):
                    self._add([message])
                case PendingMessagesFrozen(messages=frozen):
                    self._add(m.message for m in frozen)
                case RunOutputCommitted(messages=outputs):
                    self.outputs.update(self._add(o.message for o in outputs))

    def _add(self, messages: Iterable[Message]) -> list[str]:
        added = []
        for message in messages:
            assert message.id is not None  # a recorded message always has an id
            for shown in to_ag_ui(message):
                self.contents.setdefault(shown.id, set()).add(canonical(shown))
                self.origin[shown.id] = message.id
                added.append(shown.id)
        return added

    def seen(self, posted: Posted, thread: Thread) -> bool:
        """Has the thread this message already (else it is new)? ``MessageIdInUse`` when it has
        another message under this id."""
        contents = self.contents.get(posted.message_id)
        if contents is None:
            return False
        if any(canonical(shown) in contents for shown in to_ag_ui(posted.message)):
            return True
        how, seq = thread.used.get(self.origin[posted.message_id], ("used", None))
        raise MessageIdInUse(posted.message_id, how, seq)


@dataclass(frozen=True)
class Plan:
    """What a POST does: deliver ``new`` (thread-unseen, in posted order), then stream until the
    runs that read ``awaited`` have finished."""

    new: list[Posted]
    awaited: frozenset[str]


def plan(posted: Sequence[Posted], known: Known, thread: Thread) -> Plan:
    """The delivery of a posted conversation to a thread in the state ``thread``."""
    new = [p for p in posted if not known.seen(p, thread)]
    tail: list[str] = []
    for p in reversed(posted):
        if p.message_id in known.outputs:
            break
        tail.append(known.origin.get(p.message_id, p.message_id))
    if not tail:
        last = f": its last message, {posted[-1].message_id!r}, is a run's output" if posted else ""
        raise InvalidInput(f"invalid messages: no message for a run to read{last}", "messages")
    return Plan(new, frozenset(tail))


def renamed(error: ThreadboxError, new: Sequence[Posted]) -> ThreadboxError:
    """An error of the delivery of ``new`` naming the posted message (``messages.<posted
    index>``) instead of its place among the delivered ones."""

    def rename(text: str) -> str:
        def posted(place: re.Match[str]) -> str:
            n = int(place.group(1))
            return f"messages.{new[n].index}" if n < len(new) else place.group(0)

        return re.sub(r"messages\.(\d+)", posted, text)

    if isinstance(error, InvalidInput):
        return InvalidInput(rename(error.message), rename(error.field) if error.field else None)
    if isinstance(error, PayloadTooLarge):
        return PayloadTooLarge(rename(error.message), error.size, error.limit)
    return error


@dataclass(frozen=True)
class Awaited:
    """The posted messages a POST stream waits for, and how it ends."""

    thread_id: str
    message_ids: frozenset[str]

    def readers(self, thread: Thread) -> list[Run]:
        """The runs that read any of the awaited messages, in the order they started."""
        return [r for r in thread.runs.values() if self.message_ids & set(r.trigger_message_ids)]

    def over(self, thread: Thread) -> bool:
        """None of the messages is pending any more, and each run that read one has finished."""
        if any(thread.find_pending(i) is not None for i in self.message_ids):
            return False
        return all(run.status is RunStatus.DONE for run in self.readers(thread))

    def ending(self, emitted: Sequence[Any], thread: Thread) -> list[Any]:
        """What still ends the stream once ``over``, after ``emitted`` (the events of the event
        that made it so): nothing when they end with the last reader's end; else that end
        again, or ``RUN_ERROR`` when no run read any of the messages (all retracted, expired)."""
        if emitted and isinstance(emitted[-1], ag.RunFinishedEvent | ag.RunErrorEvent):
            return []
        readers = self.readers(thread)
        if not readers:
            gone = ", ".join(repr(i) for i in sorted(self.message_ids))
            return [
                ag.RunErrorEvent(
                    message=f"no run read the input: {gone} left the pending zone unread "
                    "(retracted or expired)",
                    code="input_not_read",
                    metadata={"threadId": self.thread_id},
                )
            ]
        last = max(readers, key=lambda r: r.finished_at or r.started_at)
        assert last.termination is not None and last.finished_at is not None  # it is done
        return [
            run_ended(self.thread_id, last.run_id, last.termination, last.detail, last.finished_at)
        ]
