"""Decisions on runs and the committed zone (``domain/runs.py``): suspend, finish, commit
output and hide, with plain values — the events, the result and the errors of each."""

from __future__ import annotations

import pytest
from decide_support import RUNNING, after, decided, deliver, thread, types
from threadbox import DeliveryMode, Message, Termination
from threadbox.domain import errors
from threadbox.domain.commands import CommitOutput, FinishRun, Hide, SuspendRun
from threadbox.domain.events import (
    CommittedMessageHidden,
    RunFinished,
    RunOutputCommitted,
    RunSuspended,
)
from threadbox.domain.thread import Thread

# ---- suspend and finish ----------------------------------------------------------------------


def test_suspending_the_running_run_makes_it_wait() -> None:
    state = thread(*RUNNING)
    decision = decided(state, SuspendRun("r1", "tool approval"))
    assert types(decision) == ["RunSuspended"]
    event = decision.events[0]
    assert isinstance(event, RunSuspended)
    assert event.reason == "tool approval"
    assert after(state, decision).waiting_run_id == "r1"
    waiting = after(state, decision)
    with pytest.raises(errors.RunNotRunning):
        decided(waiting, SuspendRun("r1", "again"))
    with pytest.raises(errors.RunNotRunning):
        decided(state, SuspendRun("r2", "not this one"))


def test_finishing_a_run_expires_the_entries_only_it_could_consume() -> None:
    state = thread(
        *RUNNING,
        SuspendRun("r1", "asks"),
        deliver("answer", mode=DeliveryMode.resume_input("r1")),
        deliver("keep", mode=DeliveryMode.next_step().targeted_to_run("r1", True)),
    )
    decision = decided(state, FinishRun("r1", Termination.ERROR, "tool crashed"))
    assert types(decision) == ["RunFinished", "PendingMessagesExpired"]
    finished = decision.events[0]
    assert isinstance(finished, RunFinished)
    assert (finished.termination, finished.detail) == (Termination.ERROR, "tool crashed")
    assert decision.result == ["answer"]
    folded = after(state, decision)
    assert folded.open_run_id is None
    assert [p.pending_id for p in folded.pending] == ["keep"]


def test_finishing_a_run_that_is_not_open_is_run_not_running() -> None:
    with pytest.raises(errors.RunNotRunning):
        decided(thread(*RUNNING, FinishRun("r1")), FinishRun("r1"))
    with pytest.raises(errors.RunNotRunning):
        decided(thread(*RUNNING), FinishRun("r2"))
    with pytest.raises(errors.ThreadNotFound):
        decided(Thread("t"), FinishRun("r1"))


# ---- outputs and hiding ----------------------------------------------------------------------


def test_committed_output_takes_the_next_seqs() -> None:
    state = thread(*RUNNING)
    outputs = (Message.assistant("calling", id="o1"), Message.tool("call-1", "42", id="o2"))
    decision = decided(state, CommitOutput("r1", outputs))
    assert types(decision) == ["RunOutputCommitted"]
    event = decision.events[0]
    assert isinstance(event, RunOutputCommitted)
    assert [(m.seq, m.message.id) for m in event.messages] == [(2, "o1"), (3, "o2")]
    assert [(c.seq, c.kind, c.boundary) for c in decision.result] == [
        (2, "output", None),
        (3, "output", None),
    ]


def test_committed_output_is_refused_when_it_cannot_belong_to_the_run() -> None:
    state = thread(*RUNNING)
    with pytest.raises(errors.InvalidInput) as raised:
        decided(state, CommitOutput("r1", (Message.user("me", id="u"),)))
    assert raised.value.field == "messages.role"
    with pytest.raises(errors.RunNotRunning):
        decided(state, CommitOutput("r2", (Message.assistant("x", id="o"),)))
    with pytest.raises(errors.MessageIdInUse) as in_use:
        decided(state, CommitOutput("r1", (Message.assistant("x", id="a"),)))
    assert (in_use.value.how, in_use.value.seq) == ("committed", 1)
    assert decided(state, CommitOutput("r1", ())).events == []


def test_hiding_a_committed_message_is_a_tombstone_and_twice_is_a_no_op() -> None:
    state = thread(*RUNNING)
    decision = decided(state, Hide("a", "spam"))
    assert types(decision) == ["CommittedMessageHidden"]
    event = decision.events[0]
    assert isinstance(event, CommittedMessageHidden)
    assert (event.message_id, event.seq, event.reason) == ("a", 1, "spam")
    assert decided(after(state, decision), Hide("a", "spam")).events == []


def test_hiding_a_message_that_is_not_committed_is_message_not_found() -> None:
    state = thread(*RUNNING, deliver("p"))
    for message_id in ("p", "never"):
        with pytest.raises(errors.MessageNotFound):
            decided(state, Hide(message_id, "x"))
