"""Ids a thread uses once and forever, kept out of its snapshots (ADR 0010).

A message id, a run id and the hiding of a committed message are each used at most once in a
thread. A state folded from the whole log knows every one (``Thread.ids_complete``); a state
restored from a snapshot knows only the pending entries and what it folded since. The store keeps
every use in an id table, written with the events: ``claims(events)`` is what a write adds to it,
and a write that claims a key the thread already holds is refused whole.

When a partial state may be missing a fact a decision needs, the application looks the ids up
(``referenced``: the keys a command names), learns their facts into the state (``learn``: the
usage ``usage_after`` folds from the events since the id's claim) and decides again, so every
rule stays in the decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import assert_never

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
    AnyThreadEvent,
    CommittedMessageHidden,
    MessagesDelivered,
    PendingMessageRetracted,
    PendingMessagesExpired,
    PendingMessagesFrozen,
    RunFinished,
    RunOutputCommitted,
    RunStarted,
    ThreadEvent,
)
from .thread import Thread, Usage

MESSAGE = "m"  # a message id: delivered, submitted or output
RUN = "r"  # a run id: started
HIDDEN = "h"  # a committed message id: hidden


@dataclass(frozen=True, order=True)
class ClaimKey:
    """One use that happens once per thread: ``kind`` (``MESSAGE``, ``RUN``, ``HIDDEN``), id."""

    kind: str
    id: str


@dataclass(frozen=True)
class Claim:
    """A key, and the version of the event that first used it."""

    key: ClaimKey
    version: int


def claims(events: Iterable[ThreadEvent]) -> list[Claim]:
    """The keys these events use for the first time in their thread (a decision never emits
    an event that reuses one): what a write adds to the id table."""
    found: list[Claim] = []
    for event in events:
        keys: list[ClaimKey] = []
        match event:
            case MessagesDelivered(messages=delivered):
                keys = [ClaimKey(MESSAGE, str(d.message.id)) for d in delivered]
            case RunOutputCommitted(messages=outputs):
                keys = [ClaimKey(MESSAGE, str(o.message.id)) for o in outputs]
            case RunStarted(run_id=run_id):
                keys = [ClaimKey(RUN, run_id)]
            case CommittedMessageHidden(message_id=message_id):
                keys = [ClaimKey(HIDDEN, message_id)]
            case _:
                pass
        found.extend(Claim(k, event.version) for k in keys)
    return found


def referenced(command: Command) -> set[ClaimKey]:
    """The keys whose facts a decision on ``command`` may read: what to look up when a state
    restored from a snapshot refuses the command or finds nothing to do (either may be for
    lack of them)."""
    messages: Iterable[str | None]
    runs: Iterable[str] = ()
    match command:
        case Deliver(messages=given):
            messages = (m.id for m in given)
        case CommitOutput(messages=given, run_id=run_id):
            messages, runs = (m.id for m in given), (run_id,)
        case Submit(messages=given, run_id=run_id):
            messages, runs = (m.id for m in given), (run_id,)
        case Edit(pending_id=pending_id) | Retract(pending_id=pending_id):
            messages = (pending_id,)
        case Reorder(ordered_ids=ordered):
            messages = ordered
        case Freeze(run_id=run_id):
            messages, runs = (), (run_id,)
        case Hide(message_id=message_id):
            return {ClaimKey(MESSAGE, message_id), ClaimKey(HIDDEN, message_id)}
        case SuspendRun(run_id=run_id) | FinishRun(run_id=run_id):
            messages, runs = (), (run_id,)
        case _:
            assert_never(command)
    keys = {ClaimKey(MESSAGE, i) for i in messages if i is not None}
    return keys | {ClaimKey(RUN, r) for r in runs}


def known(state: Thread, key: ClaimKey) -> bool:
    """Does ``state`` hold the fact of ``key`` already (its use, or for a hidden mark, the
    message's committed use)?"""
    if key.kind == MESSAGE:
        return key.id in state.used
    if key.kind == RUN:
        return state.run_id_used(key.id)
    return key.id in state.hidden


def usage_after(message_id: str, usage: Usage, event: AnyThreadEvent) -> Usage:
    """A message id's usage after ``event`` (``apply_event`` records the same in ``used``)."""
    match event:
        case MessagesDelivered(messages=delivered):
            if any(d.message.id == message_id for d in delivered):
                return ("pending", None)
        case PendingMessageRetracted(pending_id=pending_id):
            if pending_id == message_id:
                return ("retracted", None)
        case PendingMessagesExpired(pending_ids=pending_ids):
            if message_id in pending_ids:
                return ("expired", None)
        case PendingMessagesFrozen(messages=frozen):
            for m in frozen:
                if m.message.id == message_id:
                    return ("committed", m.seq)
        case RunOutputCommitted(messages=outputs):
            for o in outputs:
                if o.message.id == message_id:
                    return ("committed", o.seq)
        case _:
            pass
    return usage


def run_end(run_id: str, event: AnyThreadEvent) -> tuple[str | None] | None:
    """``(by_run_id,)`` when ``event`` ends the run ``run_id`` (``by_run_id``: the run an
    interrupting freeze started, else None); None for any other event."""
    if isinstance(event, RunFinished) and event.run_id == run_id:
        return (event.by_run_id,)
    return None


def settled(usage: Usage) -> bool:
    """A usage no later event changes: committed, retracted or expired."""
    return usage[0] in ("committed", "retracted", "expired")


def learn(state: Thread, key: ClaimKey, usage: Usage | None) -> None:
    """Record in ``state`` a fact read from the id table at the state's version: a message
    id's ``usage``, a run id used, a committed message hidden."""
    if key.kind == MESSAGE:
        if usage is None:
            raise ValueError(f"message id {key.id!r} was claimed: its usage is needed")
        state.used[key.id] = usage
    elif key.kind == RUN:
        state.earlier_run_ids.add(key.id)
    else:
        state.hidden.add(key.id)
