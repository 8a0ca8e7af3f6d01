"""The decider with plain values: for every command, the right events, results and errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadbox import DeliveryBoundary, DeliveryMode, Message, Termination
from threadbox.domain import errors, results
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
from threadbox.domain.events import (
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
    RunStarted,
    RunSuspended,
)
from threadbox.domain.thread import Thread, fold

B = DeliveryBoundary
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
WRITE_ORDER = [
    "ThreadOpened",
    "MessagesDelivered",
    "RunFinished",
    "PendingMessagesExpired",
    "RunStarted",
    "RunResumed",
    "PendingMessagesFrozen",
]


def user(message_id: str, text: str | None = None) -> Message:
    return Message.user(text if text is not None else f"text of {message_id}", id=message_id)


def deliver(*ids: str, mode: DeliveryMode | None = None) -> Deliver:
    return Deliver(tuple(user(i) for i in ids), mode or DeliveryMode())


# The result each command returns, read from its events (``threadbox.domain.results``).
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


def logged(decision: Decision) -> list[AnyThreadEvent]:
    """The decision's events, as the log holds them."""
    return decision.events


def thread(*commands: Command) -> Thread:
    """The state after each command's events, decided in turn on a fresh thread."""
    state = Thread("t")
    for command in commands:
        fold("t", decide(state, command, T0), state)
    return state


def decided(state: Thread, command: Command) -> Decision:
    before = state.copy()
    events = decide(state, command, NOW)
    assert state == before, "a decision never mutates the state it reads"
    result = RESULTS[type(command)](command, state, events)
    assert state == before, "a result never mutates the state it reads"
    return Decision(events, result)


def types(decision: Decision) -> list[str]:
    return [type(e).__name__ for e in decision.events]


def after(state: Thread, decision: Decision) -> Thread:
    return fold("t", logged(decision), state.copy())


RUNNING = (deliver("a"), Freeze(B.NEW_RUN, "r1"))  # r1 running, "a" committed at seq 1


# ---- deliver ---------------------------------------------------------------------------------


def test_the_first_delivery_opens_the_thread_and_delivers_in_one_write() -> None:
    decision = decided(Thread("t"), deliver("a", "b", mode=DeliveryMode.next_step()))
    assert types(decision) == ["ThreadOpened", "MessagesDelivered"]
    assert [e.version for e in decision.events] == [1, 2]
    assert all(e.thread_id == "t" and e.timestamp == NOW for e in decision.events)
    delivered = decision.events[1]
    assert isinstance(delivered, MessagesDelivered)
    assert [d.message.id for d in delivered.messages] == ["a", "b"]
    assert all(d.mode == DeliveryMode.next_step() for d in delivered.messages)
    assert [(e.pending_id, e.position, e.revision) for e in decision.result] == [
        ("a", 1, 1),
        ("b", 2, 1),
    ]


def test_a_later_delivery_appends_at_the_tail_without_reopening() -> None:
    state = thread(deliver("a"))
    decision = decided(state, deliver("b"))
    assert types(decision) == ["MessagesDelivered"]
    assert decision.events[0].version == 3
    assert [e.position for e in decision.result] == [2]
    assert [p.pending_id for p in after(state, decision).pending] == ["a", "b"]


def test_delivering_nothing_writes_nothing() -> None:
    assert decided(thread(deliver("a")), Deliver((), DeliveryMode())).events == []
    assert decided(Thread("t"), Deliver((), DeliveryMode())).events == []


def test_duplicate_ids_inside_one_delivery_are_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput) as raised:
        decided(Thread("t"), deliver("a", "a"))
    assert raised.value.field == "messages.id"


def test_an_identical_redelivery_returns_the_current_entry_and_delivers_the_rest() -> None:
    state = thread(deliver("a"), Edit("a", user("a", "edited")))
    decision = decided(state, Deliver((user("a"), user("b")), DeliveryMode()))
    assert types(decision) == ["MessagesDelivered"]
    delivered = decision.events[0]
    assert isinstance(delivered, MessagesDelivered)
    assert [d.message.id for d in delivered.messages] == ["b"]
    first, second = decision.result
    assert (first.pending_id, first.revision, first.message.text) == ("a", 2, "edited")
    assert (second.pending_id, second.position) == ("b", 2)


@pytest.mark.parametrize(
    ("history", "how", "seq"),
    [
        ((deliver("a"),), "pending", None),
        ((deliver("x", "a"), Freeze(B.NEW_RUN, "r1")), "committed", 2),
        ((deliver("a"), Retract("a")), "retracted", None),
        (
            (
                deliver("x"),
                Freeze(B.NEW_RUN, "r1"),
                deliver("a", mode=DeliveryMode.next_step().targeted_to_run("r1", False)),
                FinishRun("r1"),
            ),
            "expired",
            None,
        ),
    ],
)
def test_a_used_message_id_cannot_name_another_message_and_the_error_says_how(
    history: tuple[Command, ...], how: str, seq: int | None
) -> None:
    with pytest.raises(errors.MessageIdInUse) as raised:
        decided(thread(*history), Deliver((user("a", "another message"),), DeliveryMode()))
    assert (raised.value.message_id, raised.value.how, raised.value.seq) == ("a", how, seq)
    assert raised.value.code == "message_id_in_use"


def test_redelivering_a_pending_id_with_another_mode_is_message_id_in_use() -> None:
    with pytest.raises(errors.MessageIdInUse):
        decided(thread(deliver("a")), deliver("a", mode=DeliveryMode.next_step()))


@pytest.mark.parametrize(
    "mode",
    [
        DeliveryMode(boundary=B.RESUME_INPUT),
        DeliveryMode(boundary=B.RESUME_INPUT, target_run_id="r1", fallback_to_new_run=True),
    ],
)
def test_a_resume_input_mode_needs_a_target_and_no_fallback(mode: DeliveryMode) -> None:
    state = thread(*RUNNING, SuspendRun("r1", "asks the user"))
    for command in (Deliver((user("b"),), mode), Submit((user("b"),), mode, "r1")):
        with pytest.raises(errors.InvalidInput) as raised:
            decided(state, command)
        assert raised.value.field == "mode"


def test_a_targeted_delivery_without_fallback_must_name_the_open_run() -> None:
    running = thread(*RUNNING)
    waiting = thread(*RUNNING, SuspendRun("r1", "asks"))
    steer_r2 = DeliveryMode.next_step().targeted_to_run("r2", False)
    with pytest.raises(errors.RunNotRunning):
        decided(running, deliver("b", mode=steer_r2))
    with pytest.raises(errors.RunNotRunning):
        decided(waiting, deliver("b", mode=DeliveryMode.next_step().targeted_to_run("r1", False)))
    with pytest.raises(errors.RunNotWaiting):
        decided(running, deliver("b", mode=DeliveryMode.resume_input("r1")))
    assert types(decided(waiting, deliver("b", mode=DeliveryMode.resume_input("r1")))) == [
        "MessagesDelivered"
    ]
    with_fallback = DeliveryMode.next_step().targeted_to_run("some-other-run", True)
    assert types(decided(running, deliver("b", mode=with_fallback))) == ["MessagesDelivered"]


# ---- edit and retract ------------------------------------------------------------------------


def test_an_edit_replaces_the_content_and_keeps_position_and_mode() -> None:
    state = thread(deliver("a", "b"))
    decision = decided(state, Edit("b", user("b", "better"), expected_revision=1))
    assert types(decision) == ["PendingMessageEdited"]
    event = decision.events[0]
    assert isinstance(event, PendingMessageEdited)
    assert (event.pending_id, event.revision, event.message.text) == ("b", 2, "better")
    entry = decision.result
    assert (entry.position, entry.revision, entry.mode, entry.updated_at) == (
        2,
        2,
        DeliveryMode(),
        NOW,
    )
    assert results.pending_entry(after(state, decision), 1) == entry


def test_an_edit_may_omit_the_message_id_but_not_change_it() -> None:
    state = thread(deliver("a"))
    no_id = Message.user("new text")
    assert decided(state, Edit("a", no_id)).result.message.id == "a"
    with pytest.raises(errors.InvalidInput) as raised:
        decided(state, Edit("a", user("z", "new text")))
    assert raised.value.field == "message.id"


def test_an_edit_to_identical_content_writes_nothing() -> None:
    state = thread(deliver("a"))
    assert decided(state, Edit("a", user("a"))).events == []


def test_a_retract_removes_the_entry_and_later_entries_move_up() -> None:
    state = thread(deliver("a", "b", "c"), Edit("c", user("c", "edited")))
    decision = decided(state, Retract("b", expected_revision=1))
    assert types(decision) == ["PendingMessageRetracted"]
    event = decision.events[0]
    assert isinstance(event, PendingMessageRetracted)
    assert (event.pending_id, event.revision) == ("b", 1)
    assert decision.result.pending_id == "b"
    entries = results.pending_entries(after(state, decision))
    assert [(e.pending_id, e.position, e.revision) for e in entries] == [("a", 1, 1), ("c", 2, 2)]


def _edit(pending_id: str, expected: int | None = None) -> Command:
    return Edit(pending_id, user(pending_id, "changed"), expected)


def _retract(pending_id: str, expected: int | None = None) -> Command:
    return Retract(pending_id, expected)


@pytest.mark.parametrize("command", [_edit, _retract], ids=["edit", "retract"])
def test_edit_and_retract_refuse_what_is_not_pending(command: Any) -> None:
    with pytest.raises(errors.ThreadNotFound):
        decided(Thread("t"), command("a"))
    state = thread(
        deliver("c1", "c2"),
        Freeze(B.NEW_RUN, "r1"),
        deliver("gone", "late", "a"),
        Retract("gone"),
        deliver("x", mode=DeliveryMode.next_step().targeted_to_run("r1", False)),
        FinishRun("r1"),
    )
    with pytest.raises(errors.PendingNotFound) as not_found:
        decided(state, command("never"))
    assert not_found.value.code == "pending_not_found"
    with pytest.raises(errors.AlreadyConsumed) as consumed:
        decided(state, command("c2"))
    assert (consumed.value.code, consumed.value.seq) == ("already_consumed", 2)
    with pytest.raises(errors.NotPending) as retracted:
        decided(state, command("gone"))
    assert (retracted.value.code, retracted.value.seq) == ("retracted", None)
    with pytest.raises(errors.NotPending) as expired:
        decided(state, command("x"))
    assert expired.value.code == "expired"


@pytest.mark.parametrize("command", [_edit, _retract], ids=["edit", "retract"])
def test_edit_and_retract_check_the_expected_revision(command: Any) -> None:
    state = thread(deliver("a"), Edit("a", user("a", "v2")))
    with pytest.raises(errors.RevisionConflict) as raised:
        decided(state, command("a", 1))
    assert (raised.value.expected, raised.value.actual) == (1, 2)
    assert decided(state, command("a", 2)).events != []


# ---- reorder ---------------------------------------------------------------------------------


def test_a_reorder_sets_the_new_order_and_keeps_revisions() -> None:
    state = thread(deliver("a", "b", "c"), Edit("a", user("a", "v2")))
    decision = decided(state, Reorder(("c", "a", "b"), expected_version=state.version))
    assert types(decision) == ["PendingQueueReordered"]
    event = decision.events[0]
    assert isinstance(event, PendingQueueReordered)
    assert event.order == ["c", "a", "b"]
    expected = [("c", 1, 1), ("a", 2, 2), ("b", 3, 1)]
    assert [(e.pending_id, e.position, e.revision) for e in decision.result] == expected
    entries = results.pending_entries(after(state, decision))
    assert [(e.pending_id, e.position, e.revision) for e in entries] == expected


def test_a_reorder_to_the_same_order_writes_nothing() -> None:
    state = thread(deliver("a", "b"))
    decision = decided(state, Reorder(("a", "b")))
    assert decision.events == []
    assert [e.pending_id for e in decision.result] == ["a", "b"]


def test_a_reorder_that_is_not_a_permutation_lists_every_mismatch() -> None:
    state = thread(deliver("c1"), Freeze(B.NEW_RUN, "r1"), deliver("a", "b", "c", "d"))
    with pytest.raises(errors.ReorderMismatch) as raised:
        decided(state, Reorder(("a", "a", "b", "zz", "c1")))
    e = raised.value
    assert (e.missing, e.unknown, e.duplicates, e.not_pending) == (
        ["c", "d"],
        ["zz"],
        ["a"],
        ["c1"],
    )
    assert e.code == "reorder_mismatch"


def test_a_reorder_checks_the_thread_and_its_version() -> None:
    with pytest.raises(errors.ThreadNotFound):
        decided(Thread("t"), Reorder(()))
    state = thread(deliver("a", "b"))
    with pytest.raises(errors.VersionConflict) as raised:
        decided(state, Reorder(("b", "a"), expected_version=1))
    assert (raised.value.expected, raised.value.actual) == (1, 2)


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


# ---- runs, outputs, hiding -------------------------------------------------------------------


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


# ---- properties: event order and idempotency -------------------------------------------------

IDS = [f"m{n}" for n in range(6)]
RUNS = ["r1", "r2", "r3"]
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
    pending = [p.pending_id for p in state.pending]
    kind = draw(
        st.sampled_from(
            [
                *("deliver", "edit", "retract", "reorder", "freeze"),
                *("submit", "suspend", "finish", "output", "hide"),
            ]
        )
    )
    text = draw(st.sampled_from(["x", "y"]))
    if kind == "deliver":
        ids = draw(st.lists(st.sampled_from(IDS), max_size=3, unique=True))
        return Deliver(tuple(user(i, text) for i in ids), draw(st.sampled_from(MODES)))
    if kind in ("edit", "retract") and pending:
        target = draw(st.sampled_from(pending))
        return Edit(target, user(target, text)) if kind == "edit" else Retract(target)
    if kind == "reorder":
        return Reorder(tuple(draw(st.permutations(pending))))
    if kind == "submit":
        ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=2, unique=True))
        mode = draw(st.sampled_from(MODES))
        return Submit(tuple(user(i, text) for i in ids), mode, draw(st.sampled_from(RUNS)))
    run_id = draw(st.sampled_from(RUNS))
    if kind == "suspend":
        return SuspendRun(run_id, "waits")
    if kind == "finish":
        return FinishRun(run_id)
    if kind == "output":
        return CommitOutput(run_id, (Message.assistant(text, id=draw(st.sampled_from(IDS))),))
    if kind == "hide":
        return Hide(draw(st.sampled_from(IDS)), "hidden")
    return Freeze(draw(st.sampled_from(list(B))), run_id)


def _is_repeatable(command: Command) -> bool:
    """Commands whose repeat, right after they took effect, must change nothing."""
    return isinstance(command, Deliver | Edit | Reorder | Hide)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_write_keeps_the_fixed_event_order_and_a_repeat_changes_nothing(
    data: st.DataObject,
) -> None:
    state = Thread("t")
    writes = 0
    for _ in range(data.draw(st.integers(min_value=1, max_value=25))):
        command = data.draw(commands(state))
        try:
            decision = decided(state, command)
        except errors.ThreadboxError:
            continue
        names = types(decision)
        writes += bool(names)
        in_order = [n for n in WRITE_ORDER if n in names]
        if len(names) > 1:
            assert names == in_order, f"events of one write out of order: {names}"
        assert [e.version for e in decision.events] == list(
            range(state.version + 1, state.version + 1 + len(names))
        )
        if isinstance(command, Freeze) and not decision.result.committed:
            assert names == [], "a freeze that selects nothing writes nothing"
        fold("t", logged(decision), state)
        if _is_repeatable(command):
            assert decided(state, command).events == [], f"repeating {command} changed something"
    assume(writes > 0)  # an example whose every command was refused checks nothing


def test_a_retried_identical_delivery_stays_a_no_op_after_its_target_run_was_suspended() -> None:
    steer = deliver("s", mode=DeliveryMode.next_step().targeted_to_run("r1", False))
    state = thread(deliver("go"), Freeze(DeliveryBoundary.NEW_RUN, "r1"), steer)
    state = thread_after(state, SuspendRun("r1", "needs input"))
    repeat = decided(state, steer)
    assert repeat.events == []
    assert [e.pending_id for e in repeat.result] == ["s"]


def test_a_submit_stopped_by_its_own_barrier_names_the_skipped_entry_it_may_not_pass() -> None:
    state = thread(deliver("go"), Freeze(DeliveryBoundary.NEW_RUN, "r1"), deliver("q"))
    barrier = DeliveryMode.next_step().with_barrier()
    with pytest.raises(errors.DeliveryBlocked) as blocked:
        decided(state, Submit((user("b"),), barrier, "r1"))
    assert blocked.value.blocking_pending_id == "q"


def thread_after(state: Thread, command: Command) -> Thread:
    return after(state, decided(state, command))
