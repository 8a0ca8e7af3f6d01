"""``decide(state, command, now) -> Decision(events, result)``: one entry point, one small
function per command (in ``pending_zone``, ``freezing`` and ``runs``), all pure.

A decision never mutates the state it reads. It returns the events to save (versions stamped
consecutively after the state's) and the result the caller gets back once they are saved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from .decision import Decision
from .freezing import freeze, submit
from .pending_zone import deliver, edit, reorder, retract
from .runs import commit_output, finish_run, hide, suspend_run
from .thread import Thread


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


__all__ = ["Decision", "decide"]
