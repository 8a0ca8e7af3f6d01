"""The views (docs/semantics.md §6) on memory, SQLite and PostgreSQL: equal to the fold of the log,
exactly once under concurrent catch-ups, verified, repaired by a rebuild, followed in the
background."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import threadbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadbox import DeliveryBoundary, Mailbox, Message, Termination
from threadbox.application import views as engine
from threadbox.application.following import FollowerFailed
from threadbox.application.views import ProjectedViews, ProjectionFailed
from threadbox.errors import ThreadboxError
from threadbox.infrastructure.store import StoreLocation
from threadbox.infrastructure.views.memory import MemoryViewBackend

B = DeliveryBoundary
SQL_BACKENDS = ["sqlite", "postgres"]


@contextmanager
def raw_sql(url: str) -> Iterator[Callable[[str], None]]:
    """Run SQL on the store's database by hand, as an operator (or a bug) would."""
    location = StoreLocation.parse(url)
    if location.kind == "sqlite":
        conn = sqlite3.connect(location.sqlite_path, isolation_level=None)
        try:
            yield lambda text: conn.execute(text) and None
        finally:
            conn.close()
    else:
        options = f"-c search_path={location.pg_schema}"
        with psycopg.connect(location.pg_conninfo, autocommit=True, options=options) as pg:
            yield lambda text: pg.execute(text) and None


def eventually(check: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll until ``check`` holds; fail at the deadline."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.01)


def reads(mb: Mailbox, thread_ids: list[str]) -> dict[str, Any]:
    """Everything the views answer about these threads."""
    found: dict[str, Any] = {"with_pending": mb.threads_with_pending(limit=1000)}
    for tid in thread_ids:
        if not mb.views.thread_exists(tid):
            continue
        found[tid] = (
            mb.views.pending(tid),
            mb.committed(tid, include_hidden=True),
            mb.runs(tid),
            mb.checkpoints(tid),
        )
    return found


# ---- random histories -----------------------------------------------------------------------

boundaries = st.sampled_from(list(B))
plain_mode = st.builds(
    lambda boundary, one, barrier: {
        "boundary": boundary,
        "granularity": "one" if one else "batch",
        "barrier": barrier,
    },
    st.sampled_from([B.INTERRUPT, B.NEXT_STEP, B.ON_NATURAL_END, B.NEW_RUN]),
    st.booleans(),
    st.booleans(),
)
targeted_mode = st.builds(
    lambda boundary, target, fallback: {
        "boundary": boundary,
        "target_run_id": target,
        "fallback_to_new_run": fallback and boundary != B.RESUME_INPUT,
    },
    boundaries,
    st.integers(0, 2),
    st.booleans(),
)
mode = st.one_of(plain_mode, plain_mode, targeted_mode)
thread = st.integers(0, 1)
run = st.integers(0, 2)
pick = st.integers(0, 5)
text = st.text(alphabet="abcé 😀", min_size=1, max_size=8)
freeze_boundaries = st.sampled_from([B.NEW_RUN, B.NEW_RUN, B.INTERRUPT, *B])
freeze = st.tuples(st.just("freeze"), thread, freeze_boundaries, run)
output = st.tuples(st.just("output"), thread, run, st.lists(text, min_size=1, max_size=2))
operation = st.one_of(
    st.tuples(st.just("deliver"), thread, st.lists(text, min_size=1, max_size=3), mode),
    freeze,
    freeze,
    output,
    st.tuples(st.just("edit"), thread, pick, text),
    st.tuples(st.just("retract"), thread, pick),
    st.tuples(st.just("reorder"), thread, st.randoms(use_true_random=False)),
    st.tuples(st.just("submit"), thread, st.lists(text, min_size=1, max_size=2), mode, run),
    st.tuples(st.just("suspend"), thread, run),
    st.tuples(st.just("finish"), thread, run, st.sampled_from(list(Termination)), text),
    st.tuples(st.just("hide"), thread, pick),
)


def play(mb: Mailbox, prefix: str, op: tuple[Any, ...]) -> None:
    tid = f"{prefix}-t{op[1]}"

    def run_id(n: int) -> str:
        """0: the thread's open run (if any); else a run id of this example's own."""
        if n == 0 and mb.views.thread_exists(tid):
            state = mb.thread(tid)
            return state.running_run_id or state.waiting_run_id or uuid.uuid4().hex
        return f"{prefix}-r{n}" if n < 2 else uuid.uuid4().hex

    def with_target(m: dict[str, Any]) -> dict[str, Any]:
        target = m.get("target_run_id")
        return {**m, "target_run_id": None if target is None else run_id(target)}

    pending = mb.views.pending(tid) if mb.views.thread_exists(tid) else []
    match op:
        case ("deliver", _, texts, m):
            mb.deliver(tid, [Message.user(t) for t in texts], with_target(m))
        case ("edit", _, n, t) if pending:
            entry = pending[n % len(pending)]
            mb.edit(tid, entry.pending_id, Message.user(t, id=entry.pending_id))
        case ("retract", _, n) if pending:
            mb.retract(tid, pending[n % len(pending)].pending_id)
        case ("reorder", _, rnd) if pending:
            order = [e.pending_id for e in pending]
            rnd.shuffle(order)
            mb.reorder(tid, order)
        case ("freeze", _, boundary, r):
            mb.freeze(tid, boundary, run_id(r))
        case ("submit", _, texts, m, r):
            mb.submit(tid, [Message.user(t) for t in texts], with_target(m), run_id(r))
        case ("suspend", _, r):
            mb.suspend_run(tid, run_id(r), "waiting for input")
        case ("finish", _, r, termination, detail):
            mb.finish_run(tid, run_id(r), termination, detail)
        case ("output", _, r, texts):
            mb.commit_output(tid, run_id(r), [Message.assistant(t) for t in texts])
        case ("hide", _, n) if mb.views.thread_exists(tid):
            committed = mb.committed(tid, include_hidden=True)
            if committed:
                mb.hide(tid, str(committed[n % len(committed)].message.id), "redacted")
        case _:
            pass  # an edit, retract, reorder or hide with nothing to act on


@pytest.fixture(params=["memory", *SQL_BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(operation, min_size=5, max_size=25))
def test_views_equal_the_fold_of_the_log_and_survive_a_rebuild(
    mailbox: Mailbox, history: list[tuple[Any, ...]]
) -> None:
    prefix = uuid.uuid4().hex[:8]  # one store per test: each example works on threads of its own
    opening = [("deliver", n, ["hello", "world"], {}) for n in range(2)]
    for op in [*opening, *history]:
        with contextlib.suppress(ThreadboxError):  # a refused command writes nothing
            play(mailbox, prefix, op)
    mailbox.views.catch_up()
    thread_ids = [f"{prefix}-t{n}" for n in range(2)]
    for tid in thread_ids:
        if not mailbox.views.thread_exists(tid):
            continue
        state = mailbox.thread(tid)
        assert mailbox.views.pending(tid) == state.pending
        committed = mailbox.committed(tid, include_hidden=True)
        assert [c.seq for c in committed] == list(range(1, state.committed_count + 1))
        assert mailbox.runs(tid) == state.runs
    report = mailbox.views.verify()
    assert report.ok, report.differences
    before = reads(mailbox, thread_ids)
    mailbox.views.rebuild()
    assert reads(mailbox, thread_ids) == before


# ---- the reads ------------------------------------------------------------------------------


def test_threads_with_pending_pages_in_thread_order_after_an_exclusive_cursor(
    mailbox: Mailbox,
) -> None:
    for tid in ["d", "b", "a", "é", "c"]:
        mailbox.deliver(tid, [Message.user("hi")])
    mailbox.freeze("c", B.NEW_RUN, str(uuid.uuid4()))  # c has no pending work left
    first = mailbox.threads_with_pending(limit=2)
    second = mailbox.threads_with_pending(limit=2, after=first[-1])
    third = mailbox.threads_with_pending(limit=2, after=second[-1])
    assert (first, second, third) == (["a", "b"], ["d", "é"], [])


def test_run_by_id_is_the_most_recently_started_run_with_that_id(mailbox: Mailbox) -> None:
    mailbox.submit("first", [Message.user("go")], None, "shared-run")
    mailbox.finish_run("first", "shared-run")
    mailbox.submit("second", [Message.user("go")], None, "shared-run")
    found = mailbox.run("shared-run")
    assert (found.thread_id, found.status) == ("second", "running")
    assert mailbox.runs("first")[0].status == "done"


def test_committed_pages_after_a_seq_with_a_limit_and_hides_unless_asked(
    mailbox: Mailbox,
) -> None:
    mailbox.submit("t", [Message.user(f"m{n}", id=f"m{n}") for n in range(1, 6)], None, "r")
    mailbox.hide("t", "m2", "secret")

    def seqs(**kw: Any) -> list[int]:
        return [c.seq for c in mailbox.committed("t", **kw)]

    assert seqs() == [1, 3, 4, 5]
    assert seqs(after_seq=1, limit=2) == [3, 4]
    assert seqs(after_seq=1, limit=2, include_hidden=True) == [2, 3]
    hidden = mailbox.committed("t", include_hidden=True)[1]
    assert (hidden.message.id, hidden.visible) == ("m2", False)


def test_checkpoints_record_each_freeze_and_each_output_commit(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("a", id="a"), Message.user("b", id="b")])
    freeze = mailbox.freeze("t", B.NEW_RUN, "r")
    mailbox.commit_output("t", "r", [Message.assistant("ok", id="ok")])
    rows = [
        (c.run_id, c.kind, c.boundary, c.first_seq, c.last_seq, c.message_ids, c.version)
        for c in mailbox.checkpoints("t")
    ]
    assert rows == [
        ("r", "input", B.NEW_RUN, 1, 2, ["a", "b"], freeze.version),
        ("r", "output", None, 3, 3, ["ok"], freeze.version + 1),
    ]


def test_a_run_detail_with_any_character_reads_back_exactly(mailbox: Mailbox) -> None:
    detail = 'tool crashed:\x00 "quoted" é 😀'
    mailbox.submit("t", [Message.user("go")], None, "r")
    mailbox.finish_run("t", "r", Termination.ERROR, detail)
    assert mailbox.run("r").detail == detail
    assert mailbox.views.verify().ok


# ---- verify, rebuild, exactly once ----------------------------------------------------------


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_verify_finds_rows_deleted_or_altered_by_hand_and_a_rebuild_repairs_them(
    mailbox: Mailbox, store_url: str
) -> None:
    mailbox.deliver("t", [Message.user("a", id="a"), Message.user("b", id="b")])
    mailbox.submit("u", [Message.user("c", id="c")], None, "r")
    assert mailbox.views.verify().ok
    with raw_sql(store_url) as execute:
        execute("DELETE FROM view_pending WHERE pending_id = 'b'")
        execute("UPDATE view_runs SET freeze_count = 7 WHERE run_id = 'r'")
        execute("UPDATE view_threads SET pending_count = 0 WHERE thread_id = 't'")
    report = mailbox.views.verify()
    assert not report.ok
    assert len(report.differences) == 3
    found = "\n".join(report.differences)
    assert "thread 't' view_pending key ('t', 'b'): expected {" in found and "found None" in found
    assert (
        "view_runs key ('u', 'r'): expected {'freeze_count': 1}, found {'freeze_count': 7}" in found
    )
    assert mailbox.threads_with_pending() == []  # the damage is visible to readers
    mailbox.views.rebuild()
    assert mailbox.views.verify().ok
    assert mailbox.threads_with_pending() == ["t"]
    assert [e.pending_id for e in mailbox.views.pending("t")] == ["a", "b"]


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_concurrent_catch_ups_in_separate_mailboxes_apply_every_event_exactly_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "BATCH", 5)  # many small transactions to race on
    with threadbox.open(store_url) as writer:
        for n in range(60):
            writer.deliver(f"t{n % 7}", [Message.user(f"m{n}")])
            if n % 10 == 9:
                writer.freeze(f"t{n % 7}", B.NEW_RUN, f"r{n}")
        readers = [threadbox.open(store_url) for _ in range(3)]
        try:
            threads = [threading.Thread(target=r.views.catch_up) for r in readers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            report = readers[0].views.verify()
            assert report.ok, report.differences
            assert report.events == sum(len(writer.history(f"t{k}")) for k in range(7))
            for k in range(7):
                expected = writer.thread(f"t{k}").pending
                assert all(r.views.pending(f"t{k}") == expected for r in readers)
        finally:
            for r in readers:
                r.close()


# ---- following in the background ------------------------------------------------------------


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_follower_keeps_another_processes_views_up_to_date(store_url: str) -> None:
    with threadbox.open(store_url) as writer, threadbox.open(store_url) as server:
        views = server.views
        assert isinstance(views, ProjectedViews)
        views.start_following()
        writer.deliver("t", [Message.user("one")])
        eventually(lambda: views.backend.position() == writer.store.committed_head())
        writer.deliver("t", [Message.user("two")])
        eventually(lambda: len(views.pending("t")) == 2)
        status = views.following()
        assert status is not None and status.running and status.last_error is None
        views.stop_following()
        assert views.following() is None


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_failing_event_stops_the_follower_at_that_event_and_stop_raises_it(
    mailbox: Mailbox, store_url: str
) -> None:
    mailbox.deliver("t", [Message.user("a", id="a")])
    mailbox.deliver("t", [Message.user("b", id="b")])
    mailbox.views.catch_up()
    with raw_sql(store_url) as execute:
        execute("DELETE FROM view_pending WHERE pending_id = 'a'")
    mailbox.deliver("u", [Message.user("x")])  # fine
    before = mailbox.store.committed_head()  # readable or not yet (another transaction runs)
    mailbox.edit("t", "a", Message.user("a2", id="a"))  # needs the deleted row: fails
    mailbox.deliver("u", [Message.user("y")])  # after the failing event: must not be applied
    views = mailbox.views
    assert isinstance(views, ProjectedViews)
    views.start_following()
    eventually(lambda: (views.following() or pytest.fail("not following")).failures > 0)
    status = views.following()
    assert status is not None and isinstance(status.last_error, ProjectionFailed)
    assert status.last_error.event_type == "PendingMessageEdited"
    assert views.backend.position() == before  # up to the event before the failure, no further
    with pytest.raises(FollowerFailed):
        views.stop_following()
    views.rebuild()
    assert views.verify().ok


def test_a_failing_event_leaves_memory_views_just_before_it_and_a_rebuild_repairs_them() -> None:
    with threadbox.open("memory://") as mb:
        mb.deliver("t", [Message.user("x", id="x")])
        mb.views.catch_up()
        mb.freeze("t", "new_run", "r")  # RunStarted, then PendingMessagesFrozen
        backend = mb.views.backend
        assert isinstance(backend, MemoryViewBackend)
        del backend._tables.rows["pending"]["t"][("x",)]  # damage: the row the freeze deletes
        with pytest.raises(ProjectionFailed) as failed:
            mb.views.catch_up()
        log = mb.store.read(after="", limit=100)
        assert (failed.value.position, failed.value.event_type) == (
            len(log),  # memory numbers its events 1, 2, 3…
            "PendingMessagesFrozen",
        )
        assert mb.views.status().position == log[-2].position  # RunStarted applied, no more
        assert mb.views.runs("t")[0].freeze_count == 0
        mb.views.rebuild()
        assert mb.views.verify().ok
        assert [c.message.id for c in mb.committed("t")] == ["x"]
