"""The contract of ``Mailbox`` (docs/python-api.md), run on every backend through the
``mailbox`` fixture."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import threadbox
from threadbox import (
    DeliveryBoundary,
    DeliveryMode,
    Mailbox,
    Message,
    RunStatus,
    Termination,
)
from threadbox.application.views import ProjectedViews
from threadbox.domain import results
from threadbox.domain.thread import fold
from threadbox.errors import (
    AlreadyConsumed,
    DeliveryBlocked,
    InvalidInput,
    MessageIdInUse,
    MessageNotFound,
    NotPending,
    PendingNotFound,
    ReorderMismatch,
    RevisionConflict,
    RunNotFound,
    RunNotRunning,
    RunNotWaiting,
    ThreadBusy,
    ThreadNotFound,
    VersionConflict,
)
from threadbox.infrastructure.views.memory import MemoryViewBackend

B = DeliveryBoundary
T = "thread-1"


def ids(items: list[threadbox.PendingEntry]) -> list[str]:
    return [e.pending_id for e in items]


def seqs_and_ids(mailbox: Mailbox, thread_id: str = T, **kw: bool) -> list[tuple[int, str]]:
    return [(c.seq, str(c.message.id)) for c in mailbox.committed(thread_id, **kw)]


def run_id() -> str:
    return str(uuid.uuid4())


# ---- the pending zone ------------------------------------------------------------------------


def test_delivery_generates_time_ordered_uuid7_ids_and_reads_back(mailbox: Mailbox) -> None:
    first = mailbox.deliver(T, [Message.user("hello"), Message.user("again")])
    second = mailbox.deliver(T, [{"role": "user", "content": [{"type": "text", "text": "more"}]}])
    generated = ids(first) + ids(second)
    assert all(uuid.UUID(i).version == 7 for i in generated)
    assert generated == sorted(generated)
    assert len(set(generated)) == 3
    pending = mailbox.pending(T)
    assert ids(pending) == generated
    assert [(e.position, e.revision, e.message.text) for e in pending] == [
        (1, 1, "hello"),
        (2, 1, "again"),
        (3, 1, "more"),
    ]
    assert mailbox.thread(T).version == 3


def test_an_identical_redelivery_is_a_no_op_returning_the_current_entry(mailbox: Mailbox) -> None:
    [entry] = mailbox.deliver(T, [Message.user("hi", id="m1")], DeliveryMode.next_step())
    edited = mailbox.edit(T, "m1", Message.user("hi, edited"), expected_revision=1)
    version = mailbox.thread(T).version
    again = mailbox.deliver(T, [Message.user("hi", id="m1")], DeliveryMode.next_step())
    assert again == [edited]
    assert mailbox.thread(T).version == version
    assert entry.revision == 1 and edited.revision == 2
    with pytest.raises(MessageIdInUse) as raised:
        mailbox.deliver(T, [Message.user("other", id="m1")])
    assert (raised.value.code, raised.value.how) == ("message_id_in_use", "pending")


def test_edit_and_retract_respect_the_revision_guard(mailbox: Mailbox) -> None:
    mailbox.deliver(T, [Message.user("a", id="a"), Message.user("b", id="b")])
    mailbox.deliver(T, [Message.user("c", id="c")])
    edited = mailbox.edit(T, "b", Message.user("b2", id="b"), expected_revision=1)
    assert (edited.position, edited.revision, edited.message.text) == (2, 2, "b2")
    with pytest.raises(RevisionConflict) as conflict:
        mailbox.retract(T, "b", expected_revision=1)
    assert (conflict.value.code, conflict.value.expected, conflict.value.actual) == (
        "revision_conflict",
        1,
        2,
    )
    retracted = mailbox.retract(T, "b", expected_revision=2)
    assert retracted.pending_id == "b"
    assert [(e.pending_id, e.position) for e in mailbox.pending(T)] == [("a", 1), ("c", 2)]
    with pytest.raises(NotPending) as gone:
        mailbox.edit(T, "b", Message.user("b3"))
    assert gone.value.code == "retracted"
    with pytest.raises(PendingNotFound) as unknown:
        mailbox.retract(T, "zz")
    assert unknown.value.code == "pending_not_found"


def test_an_edit_to_identical_content_writes_nothing(mailbox: Mailbox) -> None:
    mailbox.deliver(T, [Message.user("a", id="a")])
    before = mailbox.store.committed_head()
    entry = mailbox.edit(T, "a", Message.user("a"), expected_revision=1)
    assert entry.revision == 1
    assert mailbox.store.committed_head() == before


def test_reorder_with_its_version_guard_and_mismatch_lists(mailbox: Mailbox) -> None:
    mailbox.deliver(T, [Message.user(x, id=x) for x in "abc"])
    version = mailbox.thread(T).version
    with pytest.raises(VersionConflict) as stale:
        mailbox.reorder(T, ["c", "b", "a"], expected_version=version - 1)
    assert stale.value.code == "version_conflict"
    with pytest.raises(ReorderMismatch) as mismatch:
        mailbox.reorder(T, ["c", "c", "x"])
    assert (mismatch.value.missing, mismatch.value.unknown, mismatch.value.duplicates) == (
        ["a", "b"],
        ["x"],
        ["c"],
    )
    entries = mailbox.reorder(T, ["c", "a", "b"], expected_version=version)
    assert [(e.pending_id, e.position, e.revision) for e in entries] == [
        ("c", 1, 1),
        ("a", 2, 1),
        ("b", 3, 1),
    ]
    assert ids(mailbox.pending(T)) == ["c", "a", "b"]
    same = mailbox.thread(T).version
    mailbox.reorder(T, ["c", "a", "b"])
    assert mailbox.thread(T).version == same


def test_commands_and_reads_on_an_unknown_thread_are_thread_not_found(mailbox: Mailbox) -> None:
    for call in (
        lambda: mailbox.edit("nope", "a", Message.user("x")),
        lambda: mailbox.retract("nope", "a"),
        lambda: mailbox.reorder("nope", []),
        lambda: mailbox.freeze("nope", B.NEW_RUN, "r1"),
        lambda: mailbox.finish_run("nope", "r1"),
        lambda: mailbox.pending("nope"),
        lambda: mailbox.committed("nope"),
        lambda: mailbox.runs("nope"),
        lambda: mailbox.checkpoints("nope"),
        lambda: mailbox.thread("nope"),
        lambda: mailbox.history("nope"),
    ):
        with pytest.raises(ThreadNotFound) as raised:
            call()
        assert raised.value.code == "thread_not_found"
    with pytest.raises(RunNotFound) as no_run:
        mailbox.run("no-such-run")
    assert no_run.value.code == "run_not_found"


# ---- freezes and runs ------------------------------------------------------------------------


def test_a_freeze_moves_the_selection_into_the_committed_zone(mailbox: Mailbox) -> None:
    r1 = run_id()
    mailbox.deliver(T, [Message.user("a", id="a"), Message.user("b", id="b")])
    mailbox.deliver(T, [Message.user("steer", id="s")], DeliveryMode.next_step())
    result = mailbox.freeze(T, "new_run", r1, expected_version=mailbox.thread(T).version)
    assert (result.run_id, result.boundary, result.interrupted_run_id) == (r1, B.NEW_RUN, None)
    assert [(c.seq, c.message.id, c.kind, c.boundary) for c in result.committed] == [
        (1, "a", "input", B.NEW_RUN),
        (2, "b", "input", B.NEW_RUN),
        (3, "s", "input", B.NEW_RUN),
    ]
    assert result.version == mailbox.thread(T).version
    assert mailbox.committed(T) == result.committed
    assert mailbox.pending(T) == []
    with pytest.raises(AlreadyConsumed) as consumed:
        mailbox.retract(T, "b")
    assert (consumed.value.code, consumed.value.seq) == ("already_consumed", 2)
    [run] = mailbox.runs(T)
    assert (run.run_id, run.status, run.trigger_message_ids, run.input_ranges) == (
        r1,
        RunStatus.RUNNING,
        ["a", "b", "s"],
        [(1, 3)],
    )
    assert mailbox.run(r1) == run
    [checkpoint] = mailbox.checkpoints(T)
    assert (checkpoint.kind, checkpoint.boundary, checkpoint.first_seq, checkpoint.last_seq) == (
        "input",
        B.NEW_RUN,
        1,
        3,
    )
    assert (checkpoint.message_ids, checkpoint.version) == (["a", "b", "s"], result.version)


def test_a_freeze_with_nothing_selected_writes_nothing(mailbox: Mailbox) -> None:
    mailbox.deliver(T, [Message.user("later", id="l")])
    r1, r2 = run_id(), run_id()
    mailbox.freeze(T, B.NEW_RUN, r1)
    mailbox.deliver(T, [Message.user("queued", id="q")])
    before = mailbox.store.committed_head()
    result = mailbox.freeze(T, B.NEXT_STEP, r1)
    assert result.committed == []
    assert mailbox.store.committed_head() == before
    with pytest.raises(ThreadBusy) as busy:
        mailbox.freeze(T, B.NEW_RUN, r2)
    assert (busy.value.code, busy.value.open_run_id) == ("thread_busy", r1)
    with pytest.raises(RunNotRunning) as not_running:
        mailbox.freeze(T, B.NEXT_STEP, r2)
    assert not_running.value.code == "run_not_running"


def test_a_run_lifecycle_of_steering_output_suspension_resume_and_finish(mailbox: Mailbox) -> None:
    r1 = run_id()
    mailbox.submit(T, [Message.user("question", id="q")], DeliveryMode(), r1)
    mailbox.deliver(T, [Message.user("steer", id="s")], DeliveryMode.next_step())
    assert [c.message.id for c in mailbox.freeze(T, B.NEXT_STEP, r1).committed] == ["s"]
    outputs = mailbox.commit_output(
        T, r1, [Message.assistant("thinking", id="o1"), Message.tool("call-1", "42", id="o2")]
    )
    assert [(c.seq, c.kind, c.boundary, c.run_id) for c in outputs] == [
        (3, "output", None, r1),
        (4, "output", None, r1),
    ]
    mailbox.suspend_run(T, r1, "needs approval")
    assert mailbox.run(r1).status is RunStatus.WAITING
    assert mailbox.thread(T).waiting_run_id == r1
    with pytest.raises(RunNotWaiting) as not_waiting:
        mailbox.freeze(T, B.RESUME_INPUT, run_id())
    assert not_waiting.value.code == "run_not_waiting"
    mailbox.deliver(T, [Message.user("approved", id="ok")], DeliveryMode.resume_input(r1))
    resumed = mailbox.freeze(T, B.RESUME_INPUT, r1)
    assert [(c.seq, c.message.id) for c in resumed.committed] == [(5, "ok")]
    assert mailbox.thread(T).running_run_id == r1
    mailbox.deliver(
        T, [Message.user("only r1", id="x")], DeliveryMode.next_step().targeted_to_run(r1, False)
    )
    assert mailbox.finish_run(T, r1, "natural_end") == ["x"]
    run = mailbox.run(r1)
    assert (run.status, run.termination, run.freeze_count) == (
        RunStatus.DONE,
        Termination.NATURAL_END,
        3,
    )
    assert (run.trigger_message_ids, run.output_message_ids) == (["q", "s", "ok"], ["o1", "o2"])
    assert run.input_ranges == [(1, 1), (2, 2), (5, 5)]
    assert run.finished_at is not None
    assert mailbox.pending(T) == []
    with pytest.raises(NotPending) as expired:
        mailbox.edit(T, "x", Message.user("y"))
    assert expired.value.code == "expired"
    with pytest.raises(RunNotRunning):
        mailbox.finish_run(T, r1)
    kinds = [(c.kind, c.first_seq, c.last_seq) for c in mailbox.checkpoints(T)]
    assert kinds == [("input", 1, 1), ("input", 2, 2), ("output", 3, 4), ("input", 5, 5)]
    assert mailbox.views.verify().ok


def test_an_interrupt_ends_the_open_run_and_starts_a_new_one(mailbox: Mailbox) -> None:
    r1, r2 = run_id(), run_id()
    mailbox.submit(T, [Message.user("go", id="go")], DeliveryMode(), r1)
    steer_r1 = DeliveryMode.on_natural_end().targeted_to_run(r1, False)
    mailbox.deliver(T, [Message.user("for r1", id="t1")], steer_r1)
    mailbox.deliver(T, [Message.user("queued", id="q")])
    result = mailbox.submit(T, [Message.user("stop!", id="stop")], DeliveryMode.interrupt(), r2)
    assert (result.interrupted_run_id, result.expired) == (r1, ["t1"])
    assert [c.message.id for c in result.committed] == ["stop"]
    assert mailbox.run(r1).termination is Termination.INTERRUPTED
    assert mailbox.run(r2).status is RunStatus.RUNNING
    assert ids(mailbox.pending(T)) == ["q"]


def test_a_blocked_submit_names_the_blocker_and_writes_nothing(mailbox: Mailbox) -> None:
    r1 = run_id()
    mailbox.submit(T, [Message.user("go", id="go")], DeliveryMode(), r1)
    mailbox.deliver(T, [Message.user("at end", id="end")], DeliveryMode.on_natural_end())
    before = mailbox.store.committed_head()
    with pytest.raises(DeliveryBlocked) as blocked:
        mailbox.submit(T, [Message.user("steer", id="s")], DeliveryMode.next_step(), r1)
    assert (blocked.value.code, blocked.value.blocking_pending_id) == ("delivery_blocked", "end")
    assert mailbox.store.committed_head() == before
    assert ids(mailbox.pending(T)) == ["end"]
    with pytest.raises(MessageIdInUse) as in_use:
        mailbox.submit(T, [Message.user("go", id="go")], DeliveryMode.next_step(), r1)
    assert (in_use.value.how, in_use.value.seq) == ("committed", 1)


def test_hidden_messages_leave_the_default_committed_read(mailbox: Mailbox) -> None:
    r1 = run_id()
    mailbox.submit(T, [Message.user(x, id=x) for x in "abc"], DeliveryMode(), r1)
    mailbox.hide(T, "b", "contains a secret")
    mailbox.hide(T, "b", "contains a secret")
    assert seqs_and_ids(mailbox) == [(1, "a"), (3, "c")]
    everything = mailbox.committed(T, include_hidden=True)
    assert [(c.seq, c.visible) for c in everything] == [(1, True), (2, False), (3, True)]
    assert everything[1].message.text == "b", "hiding never changes committed content"
    assert seqs_and_ids(mailbox, include_hidden=True) == [(1, "a"), (2, "b"), (3, "c")]
    assert [c.seq for c in mailbox.committed(T, after_seq=1, limit=1, include_hidden=True)] == [2]
    with pytest.raises(MessageNotFound) as missing:
        mailbox.hide(T, "zz", "x")
    assert missing.value.code == "message_not_found"
    assert [e.type for e in mailbox.history(T)].count("CommittedMessageHidden") == 1


def test_internal_messages_are_returned_by_the_python_api(mailbox: Mailbox) -> None:
    note = Message(
        id="n", role="system", content=[{"type": "text", "text": "x"}], visibility="internal"
    )
    mailbox.submit(T, [note], DeliveryMode(), run_id())
    [committed] = mailbox.committed(T)
    assert committed.message.visibility == "internal"


# ---- the log: time travel, history, recovery scan --------------------------------------------


def test_thread_at_a_version_is_the_thread_as_it_was(mailbox: Mailbox) -> None:
    mailbox.deliver(T, [Message.user("a", id="a")])
    v_delivered = mailbox.thread(T).version
    mailbox.edit(T, "a", Message.user("a2"))
    r1 = run_id()
    mailbox.freeze(T, B.NEW_RUN, r1)
    then = mailbox.thread(T, at_version=v_delivered)
    assert (then.version, ids(then.pending), then.pending[0].message.text) == (2, ["a"], "a")
    assert (then.committed_count, then.running_run_id, then.runs) == (0, None, [])
    now = mailbox.thread(T)
    assert (now.pending, now.committed_count, now.running_run_id) == ([], 1, r1)
    with pytest.raises(InvalidInput) as beyond:
        mailbox.thread(T, at_version=now.version + 1)
    assert beyond.value.field == "at_version"


def test_history_is_the_audit_trail_of_every_event(mailbox: Mailbox) -> None:
    r1 = run_id()
    mailbox.submit(T, [Message.user("a", id="a")], DeliveryMode(), r1)
    mailbox.finish_run(T, r1, "error", "tool crashed")
    history = mailbox.history(T)
    assert [(e.version, e.type) for e in history] == [
        (1, "ThreadOpened"),
        (2, "MessagesDelivered"),
        (3, "RunStarted"),
        (4, "PendingMessagesFrozen"),
        (5, "RunFinished"),
    ]
    assert history[4].data["termination"] == "error"
    assert history[4].data["detail"] == "tool crashed"
    assert [e.version for e in mailbox.history(T, after_version=3)] == [4, 5]


def test_threads_with_pending_work_are_listed_in_order_with_a_cursor(mailbox: Mailbox) -> None:
    for thread_id in ("t-c", "t-a", "t-b", "t-d"):
        mailbox.deliver(thread_id, [Message.user("x")])
    mailbox.freeze("t-d", B.NEW_RUN, run_id())
    assert mailbox.threads_with_pending() == ["t-a", "t-b", "t-c"]
    assert mailbox.threads_with_pending(limit=1, after="t-a") == ["t-b"]
    assert mailbox.views.verify().ok


# ---- snapshots -------------------------------------------------------------------------------


@pytest.fixture
def reopened(mailbox: Mailbox, store_url: str, backend: str) -> Iterator[Mailbox]:
    """A second, new Mailbox on the same store (for memory://, over the same store object)."""
    if backend == "memory":
        yield Mailbox(mailbox.store, ProjectedViews(mailbox.store, MemoryViewBackend()))
    else:
        with threadbox.open(store_url) as other:
            yield other


def test_a_long_thread_is_correct_in_a_new_mailbox_from_snapshot_and_tail(
    mailbox: Mailbox, reopened: Mailbox
) -> None:
    for n in range(150):  # ThreadOpened, then 4 events each: deliver, start, freeze, finish
        mailbox.deliver(T, [Message.user(f"m{n}", id=f"m{n}")])
        result = mailbox.freeze(T, B.NEW_RUN, f"run-{n}")
        assert [c.seq for c in result.committed] == [n + 1]
        mailbox.finish_run(T, f"run-{n}")
    assert mailbox.thread(T).version == 601
    snapshot = reopened.store.load_snapshot(T)
    assert snapshot is not None and 400 < snapshot.version <= 601
    tail = reopened.store.load(T, after=snapshot.version)
    restored, full = fold(T, tail, snapshot), fold(T, reopened.store.load(T))
    assert restored.decision_state() == full.decision_state()
    with pytest.raises(ValueError, match="run history"):
        results.thread_state(restored)  # a snapshot keeps run ids, not finished runs' details

    with pytest.raises(MessageIdInUse) as in_use:
        reopened.deliver(T, [Message.user("again", id="m7")])
    assert in_use.value.seq == 8
    with pytest.raises(InvalidInput):
        reopened.freeze(T, B.NEW_RUN, "run-3")
    reopened.deliver(T, [Message.user("new", id="new")])
    result = reopened.freeze(T, B.NEW_RUN, "run-final")
    assert [(c.seq, c.message.id) for c in result.committed] == [(151, "new")]
    state = reopened.thread(T)
    assert (state.version, state.committed_count, state.running_run_id) == (604, 151, "run-final")
    assert len(reopened.committed(T)) == 151
    assert reopened.views.verify().ok


def test_a_new_mailbox_that_never_wrote_reads_what_another_one_wrote(
    mailbox: Mailbox, reopened: Mailbox
) -> None:
    r1 = run_id()
    mailbox.submit(T, [Message.user("a", id="a")], DeliveryMode(), r1)
    assert [c.message.id for c in reopened.committed(T)] == ["a"]
    assert [r.run_id for r in reopened.runs(T)] == [r1]
    assert reopened.run(r1).status is RunStatus.RUNNING
    assert [c.last_seq for c in reopened.checkpoints(T)] == [1]


def test_thread_summaries_come_from_the_threads_view_filtered_by_pending_work(
    mailbox: Mailbox,
) -> None:
    mailbox.deliver("busy", [Message.user("waiting", id="w")])
    mailbox.submit("idle", [Message.user("read", id="r")], DeliveryMode(), "run-idle")
    busy, idle = mailbox.threads()
    assert (busy.thread_id, busy.version, busy.pending_count, busy.committed_count) == (
        "busy",
        2,
        1,
        0,
    )
    assert (idle.thread_id, idle.pending_count, idle.committed_count) == ("idle", 0, 1)
    assert (idle.running_run_id, idle.latest_run_id) == ("run-idle", "run-idle")
    assert [t.thread_id for t in mailbox.threads(has_pending=True)] == ["busy"]
    assert [t.thread_id for t in mailbox.threads(has_pending=False)] == ["idle"]
    assert [t.thread_id for t in mailbox.threads(after="busy", limit=1)] == ["idle"]


def test_a_thread_id_may_be_any_1_to_200_characters_without_control_characters(
    mailbox: Mailbox,
) -> None:
    for thread_id in (" ", "org/7", "é漢 " * 50):
        mailbox.deliver(thread_id, [Message.user("x", id="x")])
        assert [e.pending_id for e in mailbox.pending(thread_id)] == ["x"]
