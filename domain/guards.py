"""The checks decisions share: each raises (or builds) the error of docs/semantics.md §4 that a
command meets when the thread's state does not allow it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import cast

from . import errors
from .thread import Pending, Thread
from .values import DeliveryBoundary, DeliveryMode, Message

B = DeliveryBoundary


def require_thread(state: Thread) -> None:
    """The thread must exist (have an event)."""
    if not state.exists:
        raise errors.ThreadNotFound(state.thread_id)


def require_version(state: Thread, expected: int | None) -> None:
    """The thread must be at the version the caller expects, if it expects one."""
    if expected is not None and expected != state.version:
        raise errors.VersionConflict(expected, state.version)


def in_use(state: Thread, message_id: str) -> errors.MessageIdInUse:
    """The error for a message id the thread already used."""
    how, seq = state.used[message_id]
    return errors.MessageIdInUse(message_id, how, seq)


def not_pending(state: Thread, pending_id: str) -> errors.ThreadboxError:
    """The error for an id that names no pending entry: never delivered, or gone (and how)."""
    match state.used.get(pending_id):
        case None:
            return errors.PendingNotFound(state.thread_id, pending_id)
        case ("committed", int() as seq):
            return errors.AlreadyConsumed(pending_id, seq)
        case (how, seq):
            return errors.NotPending(pending_id, how, seq)


def find_pending(state: Thread, pending_id: str, expected_revision: int | None) -> Pending:
    """The pending entry; it must exist, at the expected revision if one is."""
    require_thread(state)
    found = state.find_pending(pending_id)
    if found is None:
        raise not_pending(state, pending_id)
    if expected_revision is not None and expected_revision != found.revision:
        raise errors.RevisionConflict(expected_revision, found.revision)
    return found


def require_unique_ids(messages: Sequence[Message]) -> list[str]:
    """The messages' ids: every message has one, and no two the same."""
    ids = [m.id for m in messages]
    if None in ids:
        raise errors.InvalidInput("every message needs an id before a decision", "messages.id")
    if len(set(ids)) < len(ids):  # counted only when some id repeats (every command checks)
        repeated = [i for i, n in Counter(ids).items() if n > 1]
        raise errors.InvalidInput(f"duplicate message ids in one call: {repeated}", "messages.id")
    return cast(list[str], ids)


def check_mode_shape(mode: DeliveryMode) -> None:
    """A mode that could never be consumed is invalid input (docs/semantics.md §3)."""
    if mode.boundary == B.RESUME_INPUT and (mode.target_run_id is None or mode.fallback_to_new_run):
        raise errors.InvalidInput(
            "a resume_input mode needs a target_run_id and fallback_to_new_run = false", "mode"
        )


def check_delivery_mode(state: Thread, mode: DeliveryMode) -> None:
    """The rules of docs/semantics.md §3 a mode must meet to be delivered to this thread now."""
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
