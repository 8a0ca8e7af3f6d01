"""What the decider's tests share (``test_decide*.py``): plain values, a thread built by
deciding commands in turn, one decision with its result, and a strategy of any command.

Every helper builds a new state from scratch: a test never reads another test's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from threadbox import DeliveryBoundary, DeliveryMode, Message
from threadbox.domain import results
from threadbox.domain.commands import (
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
from threadbox.domain.decide import decide
from threadbox.domain.events import AnyThreadEvent
from threadbox.domain.thread import Thread, fold

B = DeliveryBoundary
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # when the commands that build a thread were decided
NOW = T0 + timedelta(minutes=5)  # when the decision under test is made


def user(message_id: str, text: str | None = None) -> Message:
    return Message.user(text if text is not None else f"text of {message_id}", id=message_id)


def deliver(*ids: str, mode: DeliveryMode | None = None) -> Deliver:
    return Deliver(tuple(user(i) for i in ids), mode or DeliveryMode())


# The result each command returns, read from its events (``threadbox.domain.results``), as the
# application's service reads it.
RESULTS: dict[type[Any], Any] = {
    Deliver: results.delivered,
    Edit: results.edited,
    Retract: results.retracted,
    Reorder: results.reordered,
    Freeze: results.frozen,
    Submit: results.frozen,
    SuspendRun: results.nothing,
    FinishRun: results.expired,
    CommitOutput: results.outputs,
    Hide: results.nothing,
}


@dataclass
class Decision:
    """A decision's events, and the result its caller gets back."""

    events: list[AnyThreadEvent]
    result: Any


def thread(*commands: Command) -> Thread:
    """A new thread ``"t"`` after each command's events, decided in turn."""
    state = Thread("t")
    for command in commands:
        fold("t", decide(state, command, T0), state)
    return state


def decided(state: Thread, command: Command) -> Decision:
    """``command`` decided on ``state`` at ``NOW``, with its result; checks that neither the
    decision nor the result touches ``state``."""
    before = state.copy()
    events = decide(state, command, NOW)
    assert state == before, "a decision never mutates the state it reads"
    result = RESULTS[type(command)](command, state, events)
    assert state == before, "a result never mutates the state it reads"
    return Decision(events, result)


def types(decision: Decision) -> list[str]:
    return [type(e).__name__ for e in decision.events]


def after(state: Thread, decision: Decision) -> Thread:
    """The state once the decision's events are applied (``state`` itself is left as it is)."""
    return fold("t", decision.events, state.copy())


def thread_after(state: Thread, command: Command) -> Thread:
    return after(state, decided(state, command))


RUNNING = (deliver("a"), Freeze(B.NEW_RUN, "r1"))  # r1 running, "a" committed at seq 1
ONLY_R1 = DeliveryMode.next_step().targeted_to_run("r1", False)  # expires when r1 ends
# Where the properties start: a new thread, and threads one command away from an expiry, an
# interrupt or a resume, which random commands alone reach only now and then.
STARTS: list[tuple[Command, ...]] = [
    (),
    (*RUNNING, deliver("only-r1", mode=ONLY_R1)),
    (*RUNNING, deliver("only-r1", mode=ONLY_R1), deliver("stop", mode=DeliveryMode.interrupt())),
    (*RUNNING, SuspendRun("r1", "asks"), deliver("answer", mode=DeliveryMode.resume_input("r1"))),
]


# ---- any command, for the properties ----------------------------------------------------------

IDS = [f"m{n}" for n in range(16)]  # message ids are used once: enough for a long sequence
RUNS = ["r1", "r2", "r3", "r4"]
MODES = [
    DeliveryMode(),
    DeliveryMode.next_step(),
    DeliveryMode.on_natural_end("one"),
    DeliveryMode.interrupt(),
    DeliveryMode.new_run().with_barrier(),
    DeliveryMode.next_step().targeted_to_run("r1", False),
]


@st.composite
def commands(draw: st.DrawFn, state: Thread) -> Command:
    """Any command a caller could send to ``state``: valid, refused or a no-op. Only a
    delivery or a submit on a thread that does not exist yet; the open run drawn more often,
    and modes aimed at it, so that steering, resuming and expiry happen."""
    pending = [p.pending_id for p in state.pending]
    open_run = state.open_run_id
    run_ids = RUNS if open_run is None else [open_run] * 3 + RUNS
    modes = MODES
    if open_run is not None:
        at_open = DeliveryMode.next_step().targeted_to_run(open_run, False)
        modes = [*MODES, *[at_open, DeliveryMode.resume_input(open_run)] * 3]
    kinds = ["deliver", "submit"]  # the commands that open a thread
    if state.exists:
        kinds += ["edit", "retract", "reorder", "freeze", "suspend", "finish", "output", "hide"]
    kind = draw(st.sampled_from(kinds))
    text = draw(st.sampled_from(["x", "y"]))
    if kind == "deliver":
        ids = draw(st.lists(st.sampled_from(IDS), max_size=3, unique=True))
        return Deliver(tuple(user(i, text) for i in ids), draw(st.sampled_from(modes)))
    if kind in ("edit", "retract") and pending:
        target = draw(st.sampled_from(pending))
        return Edit(target, user(target, text)) if kind == "edit" else Retract(target)
    if kind == "reorder":
        return Reorder(tuple(draw(st.permutations(pending))))
    if kind == "submit":
        ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=2, unique=True))
        mode = draw(st.sampled_from(modes))
        return Submit(tuple(user(i, text) for i in ids), mode, draw(st.sampled_from(run_ids)))
    run_id = draw(st.sampled_from(run_ids))
    if kind == "suspend":
        return SuspendRun(run_id, "waits")
    if kind == "finish":
        return FinishRun(run_id)
    if kind == "output":
        return CommitOutput(run_id, (Message.assistant(text, id=draw(st.sampled_from(IDS))),))
    if kind == "hide":
        return Hide(draw(st.sampled_from(IDS)), "hidden")
    return Freeze(draw(st.sampled_from(list(B))), run_id)
