"""Decisions that freeze (``domain/freezing.py``): the run rules at each boundary, freeze and
submit, with plain values — the events, the result and the errors of each."""

from __future__ import annotations

import pytest
from decide_support import RUNNING, B, after, decided, deliver, thread, types, user
from threadbox import DeliveryBoundary, DeliveryMode, Message, Termination
from threadbox.domain import errors
from threadbox.domain.commands import (
    Command,
    CommitOutput,
    Edit,
    FinishRun,
    Freeze,
    Retract,
    Submit,
    SuspendRun,
)
from threadbox.domain.events import (
    PendingMessagesExpired,
    PendingMessagesFrozen,
    RunFinished,
    RunStarted,
)
from threadbox.domain.thread import Thread

# ---- freeze ----------------------------------------------------------------------------------


def test_a_new_run_freeze_starts_the_run_and_commits_the_batch_with_seqs() -> None:
    state = thread(deliver("a", "b"), Edit("b", user("b", "v2")), deliver("c"))
    decision = decided(state, Freeze(B.NEW_RUN, "r1", expected_version=state.version))
    assert types(decision) == ["RunStarted", "PendingMessagesFrozen"]
    started, frozen = decision.events
    assert isinstance(started, RunStarted) and isinstance(frozen, PendingMessagesFrozen)
    assert (started.run_id, started.boundary) == ("r1", B.NEW_RUN)
    assert (frozen.run_id, frozen.boundary, frozen.first_seq, frozen.last_seq) == (
        "r1",
        B.NEW_RUN,
        1,
        3,
    )
    assert [(m.seq, m.message.id, m.revision) for m in frozen.messages] == [
        (1, "a", 1),
        (2, "b", 2),
        (3, "c", 1),
    ]
    assert frozen.messages[1].message.text == "v2"
    result = decision.result
    assert [(c.seq, c.message.id, c.run_id, c.kind, c.boundary) for c in result.committed] == [
        (1, "a", "r1", "input", B.NEW_RUN),
        (2, "b", "r1", "input", B.NEW_RUN),
        (3, "c", "r1", "input", B.NEW_RUN),
    ]
    assert result.version == frozen.version == state.version + 2
    folded = after(state, decision)
    assert (folded.pending, folded.last_seq, folded.running_run_id) == ([], 3, "r1")


def test_a_freeze_with_nothing_selected_starts_no_run_and_writes_nothing() -> None:
    state = thread(deliver("a", mode=DeliveryMode.next_step()), Retract("a"))
    decision = decided(state, Freeze(B.NEW_RUN, "r1"))
    assert decision.events == []
    assert (decision.result.committed, decision.result.version) == ([], state.version)


def test_a_freeze_checks_the_thread_and_its_version() -> None:
    with pytest.raises(errors.ThreadNotFound):
        decided(Thread("t"), Freeze(B.NEW_RUN, "r1"))
    with pytest.raises(errors.VersionConflict) as raised:
        decided(thread(deliver("a")), Freeze(B.NEW_RUN, "r1", expected_version=1))
    assert (raised.value.expected, raised.value.actual) == (1, 2)


def test_run_rules_raise_even_when_nothing_would_be_selected() -> None:
    idle = thread(deliver("a"), Retract("a"))
    with pytest.raises(errors.RunNotRunning):
        decided(idle, Freeze(B.NEXT_STEP, "r1"))
    with pytest.raises(errors.RunNotRunning):
        decided(idle, Freeze(B.ON_NATURAL_END, "r1"))
    with pytest.raises(errors.RunNotWaiting):
        decided(idle, Freeze(B.RESUME_INPUT, "r1"))
    with pytest.raises(errors.ThreadBusy) as busy:
        decided(thread(*RUNNING), Freeze(B.NEW_RUN, "r2"))
    assert busy.value.open_run_id == "r1"


def test_steering_commits_into_the_running_run_without_starting_one() -> None:
    state = thread(*RUNNING, deliver("b", mode=DeliveryMode.next_step()), deliver("q"))
    with pytest.raises(errors.RunNotRunning):
        decided(state, Freeze(B.NEXT_STEP, "r2"))
    decision = decided(state, Freeze(B.NEXT_STEP, "r1"))
    assert types(decision) == ["PendingMessagesFrozen"]
    assert [c.message.id for c in decision.result.committed] == ["b"]
    assert [c.seq for c in decision.result.committed] == [2]
    assert [p.pending_id for p in after(state, decision).pending] == ["q"]


def test_new_run_with_a_waiting_run_resumes_only_that_run() -> None:
    state = thread(*RUNNING, SuspendRun("r1", "tool approval"), deliver("b"))
    with pytest.raises(errors.ThreadBusy) as busy:
        decided(state, Freeze(B.NEW_RUN, "r2"))
    assert busy.value.open_run_id == "r1"
    decision = decided(state, Freeze(B.NEW_RUN, "r1"))
    assert types(decision) == ["RunResumed", "PendingMessagesFrozen"]
    assert after(state, decision).running_run_id == "r1"


def test_new_run_and_interrupt_refuse_a_run_id_the_thread_used_before() -> None:
    state = thread(*RUNNING, FinishRun("r1"), deliver("b", mode=DeliveryMode.interrupt()))
    for boundary in (B.NEW_RUN, B.INTERRUPT):
        with pytest.raises(errors.InvalidInput) as raised:
            decided(state, Freeze(boundary, "r1"))
        assert raised.value.field == "run_id"
    running = thread(*RUNNING, deliver("b", mode=DeliveryMode.interrupt()))
    with pytest.raises(errors.InvalidInput):
        decided(running, Freeze(B.INTERRUPT, "r1"))


def test_resume_input_resumes_the_waiting_run_with_its_targeted_input() -> None:
    state = thread(
        *RUNNING,
        SuspendRun("r1", "asks the user"),
        deliver("q"),
        deliver("answer", mode=DeliveryMode.resume_input("r1")),
    )
    with pytest.raises(errors.RunNotWaiting):
        decided(state, Freeze(B.RESUME_INPUT, "r2"))
    decision = decided(state, Freeze(B.RESUME_INPUT, "r1"))
    assert types(decision) == ["RunResumed", "PendingMessagesFrozen"]
    assert [c.message.id for c in decision.result.committed] == ["answer"]
    folded = after(state, decision)
    assert (folded.running_run_id, [p.pending_id for p in folded.pending]) == ("r1", ["q"])


def test_an_interrupt_finishes_the_open_run_expires_its_targeted_entries_and_starts_a_run() -> None:
    steer_r1 = DeliveryMode.on_natural_end().targeted_to_run("r1", False)
    state = thread(
        *RUNNING,
        deliver("q"),
        deliver("only-r1", mode=steer_r1),
        deliver("stop", mode=DeliveryMode.interrupt()),
    )
    decision = decided(state, Freeze(B.INTERRUPT, "r2"))
    assert types(decision) == [
        "RunFinished",
        "PendingMessagesExpired",
        "RunStarted",
        "PendingMessagesFrozen",
    ]
    finished, expired = decision.events[0], decision.events[1]
    assert isinstance(finished, RunFinished) and isinstance(expired, PendingMessagesExpired)
    assert (finished.run_id, finished.termination) == ("r1", Termination.INTERRUPTED)
    assert (expired.run_id, expired.pending_ids) == ("r1", ["only-r1"])
    result = decision.result
    assert (result.interrupted_run_id, result.expired, result.run_id) == ("r1", ["only-r1"], "r2")
    assert [c.message.id for c in result.committed] == ["stop"]
    folded = after(state, decision)
    assert folded.running_run_id == "r2"
    assert folded.runs["r1"].termination is Termination.INTERRUPTED
    assert [p.pending_id for p in folded.pending] == ["q"]
    assert folded.used["only-r1"] == ("expired", None)


def test_an_interrupt_with_nothing_selected_leaves_the_running_run_alone() -> None:
    state = thread(*RUNNING, deliver("q"))
    decision = decided(state, Freeze(B.INTERRUPT, "r2"))
    assert decision.events == []
    assert decision.result.interrupted_run_id is None


def test_an_earlier_steering_entry_blocks_an_interrupt() -> None:
    state = thread(
        *RUNNING,
        deliver("steer", mode=DeliveryMode.next_step()),
        deliver("stop", mode=DeliveryMode.interrupt()),
    )
    assert decided(state, Freeze(B.INTERRUPT, "r2")).events == []


def test_an_interrupt_on_an_idle_thread_just_starts_the_run() -> None:
    state = thread(deliver("stop", mode=DeliveryMode.interrupt()))
    decision = decided(state, Freeze(B.INTERRUPT, "r1"))
    assert types(decision) == ["RunStarted", "PendingMessagesFrozen"]
    assert decision.result.interrupted_run_id is None


def test_on_natural_end_continues_the_same_run() -> None:
    state = thread(*RUNNING, deliver("follow-up", mode=DeliveryMode.on_natural_end()))
    decision = decided(state, Freeze(B.ON_NATURAL_END, "r1"))
    assert types(decision) == ["PendingMessagesFrozen"]
    assert after(state, decision).runs["r1"].freeze_count == 2


def test_input_seqs_continue_after_committed_outputs() -> None:
    state = thread(
        *RUNNING,
        CommitOutput("r1", (Message.assistant("hi", id="o1"),)),
        deliver("b", mode=DeliveryMode.next_step()),
    )
    decision = decided(state, Freeze(B.NEXT_STEP, "r1"))
    frozen = decision.events[0]
    assert isinstance(frozen, PendingMessagesFrozen)
    assert (frozen.first_seq, frozen.last_seq) == (3, 3)


# ---- submit ----------------------------------------------------------------------------------


def test_a_submit_on_a_new_thread_delivers_starts_and_commits_in_one_write() -> None:
    decision = decided(Thread("t"), Submit((user("a"), user("b")), DeliveryMode(), "r1"))
    assert types(decision) == [
        "ThreadOpened",
        "MessagesDelivered",
        "RunStarted",
        "PendingMessagesFrozen",
    ]
    assert [e.version for e in decision.events] == [1, 2, 3, 4]
    assert [(c.seq, c.message.id) for c in decision.result.committed] == [(1, "a"), (2, "b")]


def test_a_submit_consumes_the_earlier_eligible_entries_with_its_own() -> None:
    state = thread(deliver("early"))
    decision = decided(state, Submit((user("s"),), DeliveryMode(), "r1"))
    assert [c.message.id for c in decision.result.committed] == ["early", "s"]
    assert after(state, decision).pending == []


def test_a_submit_interrupt_finishes_the_open_run() -> None:
    state = thread(*RUNNING)
    decision = decided(state, Submit((user("s"),), DeliveryMode.interrupt(), "r2"))
    assert types(decision) == [
        "MessagesDelivered",
        "RunFinished",
        "RunStarted",
        "PendingMessagesFrozen",
    ]
    assert decision.result.interrupted_run_id == "r1"


@pytest.mark.parametrize(
    ("history", "mode", "run_id", "blocker"),
    [
        # the scan stopped at an earlier entry it could not take
        (
            (*RUNNING, deliver("later", mode=DeliveryMode.on_natural_end())),
            DeliveryMode.next_step(),
            "r1",
            "later",
        ),
        # the scan stopped after taking a `one` entry
        ((deliver("single", mode=DeliveryMode.new_run("one")),), DeliveryMode(), "r1", "single"),
        # the scan stopped after taking a barrier entry
        ((deliver("wall", mode=DeliveryMode().with_barrier()),), DeliveryMode(), "r1", "wall"),
        # the stop fell on a submitted message: the first selected entry blocks
        ((deliver("x", "y"),), DeliveryMode.new_run("one"), "r1", "x"),
    ],
    ids=["stopped-at-earlier", "took-one", "took-barrier", "stopped-on-submitted"],
)
def test_a_submit_that_cannot_consume_all_its_messages_is_blocked_and_writes_nothing(
    history: tuple[Command, ...], mode: DeliveryMode, run_id: str, blocker: str
) -> None:
    with pytest.raises(errors.DeliveryBlocked) as raised:
        decided(thread(*history), Submit((user("s1"), user("s2")), mode, run_id))
    assert raised.value.blocking_pending_id == blocker
    assert raised.value.code == "delivery_blocked"


def test_a_submit_of_nothing_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput) as raised:
        decided(Thread("t"), Submit((), DeliveryMode(), "r1"))
    assert raised.value.field == "messages"


def test_a_submit_never_treats_a_used_id_as_an_idempotent_repeat() -> None:
    state = thread(deliver("a"))
    with pytest.raises(errors.MessageIdInUse) as pending:
        decided(state, Submit((user("a"),), DeliveryMode(), "r1"))
    assert pending.value.how == "pending"
    committed = thread(Submit((user("s"),), DeliveryMode(), "r1"), FinishRun("r1"))
    with pytest.raises(errors.MessageIdInUse) as raised:
        decided(committed, Submit((user("s"),), DeliveryMode(), "r2"))
    assert (raised.value.how, raised.value.seq) == ("committed", 1)


def test_a_submit_raises_the_freeze_run_rules() -> None:
    with pytest.raises(errors.ThreadBusy):
        decided(thread(*RUNNING), Submit((user("s"),), DeliveryMode(), "r2"))
    with pytest.raises(errors.RunNotRunning):
        decided(thread(deliver("a")), Submit((user("s"),), DeliveryMode.next_step(), "r1"))


def test_a_submit_stopped_by_its_own_barrier_names_the_skipped_entry_it_may_not_pass() -> None:
    state = thread(deliver("go"), Freeze(DeliveryBoundary.NEW_RUN, "r1"), deliver("q"))
    barrier = DeliveryMode.next_step().with_barrier()
    with pytest.raises(errors.DeliveryBlocked) as blocked:
        decided(state, Submit((user("b"),), barrier, "r1"))
    assert blocked.value.blocking_pending_id == "q"
