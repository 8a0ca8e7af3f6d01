"""What every decision shares: the ``Decision`` it returns, the event emitter that stamps
versions, and the guards that raise the errors of SEMANTICS §4."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from . import errors
from .events import ThreadEvent
from .thread import Pending, Thread
from .values import DeliveryBoundary, DeliveryMode, Message

B = DeliveryBoundary
T = TypeVar("T")
E = TypeVar("E", bound=ThreadEvent)


@dataclass
class Decision(Generic[T]):
    events: list[ThreadEvent]
    result: T


@dataclass
class Emitter:
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


def require_thread(state: Thread) -> None:
    if not state.exists:
        raise errors.ThreadNotFound(state.thread_id)


def require_version(state: Thread, expected: int | None) -> None:
    if expected is not None and expected != state.version:
        raise errors.VersionConflict(expected, state.version)


def in_use(state: Thread, message_id: str) -> errors.MessageIdInUse:
    how, seq = state.used[message_id]
    return errors.MessageIdInUse(message_id, how, seq)


def not_pending(state: Thread, pending_id: str) -> errors.ThreadboxError:
    usage = state.used.get(pending_id)
    if usage is None:
        return errors.PendingNotFound(state.thread_id, pending_id)
    how, seq = usage
    if how == "committed":
        assert seq is not None
        return errors.AlreadyConsumed(pending_id, seq)
    return errors.NotPending(pending_id, how)


def find_pending(
    state: Thread, pending_id: str, expected_revision: int | None
) -> tuple[int, Pending]:
    require_thread(state)
    found = state.find_pending(pending_id)
    if found is None:
        raise not_pending(state, pending_id)
    if expected_revision is not None and expected_revision != found[1].revision:
        raise errors.RevisionConflict(expected_revision, found[1].revision)
    return found


def require_unique_ids(messages: Sequence[Message]) -> list[str]:
    ids = [m.id for m in messages]
    if any(i is None for i in ids):
        raise errors.InvalidInput("every message needs an id before a decision", "messages.id")
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    if repeated:
        raise errors.InvalidInput(f"duplicate message ids in one call: {repeated}", "messages.id")
    return [i for i in ids if i is not None]


def check_mode_shape(mode: DeliveryMode) -> None:
    """A mode that could never be consumed is invalid input (SEMANTICS §3)."""
    if mode.boundary == B.RESUME_INPUT and (mode.target_run_id is None or mode.fallback_to_new_run):
        raise errors.InvalidInput(
            "a resume_input mode needs a target_run_id and fallback_to_new_run = false", "mode"
        )


def check_delivery_mode(state: Thread, mode: DeliveryMode) -> None:
    """The rules of SEMANTICS §3 a mode must meet to be delivered to this thread now."""
    check_mode_shape(mode)
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


def expiring(state: Thread, run_id: str) -> list[str]:
    """Pending entries that only ``run_id`` could consume: they expire when it ends."""
    return [
        p.pending_id
        for p in state.pending
        if p.mode.target_run_id == run_id and not p.mode.fallback_to_new_run
    ]
