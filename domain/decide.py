"""``decide(state, command, now) -> events``: one entry point, one small function per command
(in ``pending_zone``, ``freezing`` and ``runs``), all pure.

A decision never mutates the state it reads. It returns the events to save, their versions
stamped consecutively after the state's; none when the command changes nothing (an idempotent
repeat). What the caller gets back is read from those events by ``results``.
"""

from __future__ import annotations

from datetime import datetime
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
from .events import AnyThreadEvent
from .freezing import freeze, submit
from .pending_zone import deliver, edit, reorder, retract
from .runs import commit_output, finish_run, hide, suspend_run
from .thread import Thread


def decide(state: Thread, command: Command, now: datetime) -> list[AnyThreadEvent]:
    """The events ``command`` produces on ``state`` at time ``now``; raises the command's
    domain error (``threadbox.errors``) when the state does not allow it."""
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
        case _:
            assert_never(command)
