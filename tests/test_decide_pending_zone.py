"""Decisions on the pending zone (``domain/pending_zone.py``): deliver, edit, retract and
reorder, with plain values — the events, the result and the errors of each."""

from __future__ import annotations

from typing import Any

import pytest
from decide_support import (
    NOW,
    RUNNING,
    B,
    after,
    decided,
    deliver,
    thread,
    thread_after,
    types,
    user,
)
from threadbox import DeliveryBoundary, DeliveryMode, Message
from threadbox.domain import errors, results
from threadbox.domain.commands import (
    Command,
    Deliver,
    Edit,
    FinishRun,
    Freeze,
    Reorder,
    Retract,
    Submit,
    SuspendRun,
)
from threadbox.domain.events import (
    MessagesDelivered,
    PendingMessageEdited,
    PendingMessageRetracted,
    PendingQueueReordered,
)
from threadbox.domain.thread import Thread, apply_event

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


def test_a_retried_identical_delivery_stays_a_no_op_after_its_target_run_was_suspended() -> None:
    steer = deliver("s", mode=DeliveryMode.next_step().targeted_to_run("r1", False))
    state = thread(deliver("go"), Freeze(DeliveryBoundary.NEW_RUN, "r1"), steer)
    state = thread_after(state, SuspendRun("r1", "needs input"))
    repeat = decided(state, steer)
    assert repeat.events == []
    assert [e.pending_id for e in repeat.result] == ["s"]


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
    assert results.pending_entries(after(state, decision))[1] == entry


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


@pytest.mark.parametrize("order", [["c", "a"], ["c", "a", "a"], ["c", "a", "b", "x"]])
def test_a_stored_reorder_that_is_not_a_permutation_does_not_fold(order: list[str]) -> None:
    """A history written past the decisions: the fold refuses it instead of dropping an entry."""
    state = thread(deliver("a", "b", "c"))
    decision = decided(state, Reorder(("c", "a", "b"), expected_version=state.version))
    forged = decision.events[0].model_copy(update={"order": order})
    with pytest.raises(errors.CorruptHistory) as raised:
        apply_event(state, forged)
    assert "PendingQueueReordered does not apply" in str(raised.value)


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
