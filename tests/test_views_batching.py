"""Batched view maintenance: a burst of writes costs the background follower a few transactions,
not one per event, and the views stay exactly once (ADR 0007, "Batched view maintenance").
Transactions and wake-ups are counted, never timed."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import threadbox
from conftest import PG_URL, pg_connect
from threadbox import Message
from threadbox.application.views import ProjectedViews
from threadbox.infrastructure.pg_wakeup import events_channel
from threadbox.infrastructure.store import StoreLocation
from threadbox.infrastructure.views.listening import ListeningWakeup

BURST = 60


def eventually(check: Callable[[], bool], deadline: float = 20.0) -> None:
    """Wait (bounded) until ``check()`` holds; not a timing assertion."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            pytest.fail("condition not reached")
        time.sleep(0.01)


def test_one_wake_up_consumes_a_whole_burst_of_notifications() -> None:
    channel = "threadbox_test_burst"
    wakeup = ListeningWakeup(PG_URL, channel, fallback=5.0)
    stop = threading.Event()
    try:
        wakeup.wait(stop)  # starts listening
        with pg_connect() as conn:
            for n in range(BURST):  # one transaction each, as BURST deliveries would be
                conn.execute(f"NOTIFY {channel}, '{n}'")
        waits = 0
        while wakeup.notifications < BURST and waits < BURST:
            wakeup.wait(stop)
            waits += 1
        assert wakeup.notifications == BURST
        assert wakeup.wakes <= 2 < BURST  # not one wake-up (and catch-up) per notification
    finally:
        wakeup.close()


def test_a_wake_up_stops_lingering_when_told_to_stop() -> None:
    channel = "threadbox_test_stop"
    wakeup = ListeningWakeup(PG_URL, channel, fallback=5.0, linger=60.0)
    stop = threading.Event()
    try:
        wakeup.wait(stop)
        with pg_connect() as conn:
            conn.execute(f"NOTIFY {channel}")
        stop.set()
        wakeup.wait(stop)  # would linger a minute if the stop were ignored (pytest-timeout)
        assert wakeup.wakes == 1
    finally:
        wakeup.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_follower_applies_a_burst_in_far_fewer_transactions_than_events(
    store_url: str,
) -> None:
    """The follower's first transaction is held until a burst of deliveries (one event each) has
    committed; it then catches up on all of them in one more transaction (a batch per
    ``BATCH`` events), with every message in the views exactly once and verify agreeing."""
    with threadbox.open(store_url) as writer, threadbox.open(store_url) as server:
        views = server.views
        assert isinstance(views, ProjectedViews)
        backend: Any = views.backend
        applied: list[int] = []  # events per transaction the follower committed
        first_seen, burst_written = threading.Event(), threading.Event()
        original = backend.apply

        def counting_apply(changes: Any, from_position: Any, to_position: Any) -> bool:
            first_seen.set()
            burst_written.wait(30)
            done = bool(original(changes, from_position, to_position))
            if done:
                applied.append(writer.store.count_after(from_position, to_position))
            return done

        backend.apply = counting_apply
        writer.deliver("t", [Message.user("first", id="m-first")])
        views.start_following()
        first_seen.wait(30)
        for n in range(BURST):
            writer.deliver("t", [Message.user(f"m{n}", id=f"m{n}")])
        burst_written.set()
        head = writer.store.committed_head()
        eventually(lambda: backend.position() >= head)
        views.stop_following()
        backend.apply = original
        assert sum(applied) == writer.store.count_after("", head)  # each once, none skipped
        assert len(applied) <= 3 < BURST  # transactions counted: far fewer than events
        ids = [entry.message.id for entry in views.pending("t")]
        assert ids == ["m-first", *(f"m{n}" for n in range(BURST))]
        assert views.verify().ok


@pytest.mark.parametrize("backend", ["postgres"])
def test_the_postgres_follower_wakes_on_the_deliveries_notifications(store_url: str) -> None:
    """End to end on PostgreSQL: deliveries notify the follower's channel (the writer already
    coalesces its notifications), the follower wakes on them and applies every delivery."""
    location = StoreLocation.parse(store_url)
    with threadbox.open(store_url) as writer, threadbox.open(store_url) as server:
        views = server.views
        assert isinstance(views, ProjectedViews)
        wakeup = views.wakeup
        assert isinstance(wakeup, ListeningWakeup)
        assert wakeup.channel == events_channel(location.pg_schema)
        views.start_following()
        eventually(lambda: wakeup._conn is not None)  # listening
        for n in range(BURST):
            writer.deliver("t", [Message.user(f"m{n}", id=f"m{n}")])
        eventually(lambda: len(views.backend.pending_rows("t")) == BURST)
        views.stop_following()
        assert 1 <= wakeup.wakes <= wakeup.notifications
        assert views.verify().ok


class StatementLog:
    """Wraps a SQL backend's connections: the statements its catch-up runs, in order."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.statements: list[str] = []
        self._original = backend.dialect.connection

    def __enter__(self) -> StatementLog:
        log, original = self.statements, self._original

        class Recording:
            def __init__(self, conn: Any) -> None:
                self._conn = conn

            def execute(self, statement: Any, *args: Any) -> Any:
                log.append(str(statement))
                return self._conn.execute(statement, *args)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._conn, name)

        @contextlib.contextmanager
        def connection() -> Iterator[Any]:
            with original() as conn:
                yield Recording(conn)

        self.backend.dialect.connection = connection
        return self

    def __exit__(self, *exc: object) -> None:
        self.backend.dialect.connection = self._original


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_batch_of_deliveries_reads_no_queue_and_a_renumbering_one_reads_it_whole(
    store_url: str,
) -> None:
    """Appends number their rows after the queue's highest position, read alone (ADR 0023): a
    batch of deliveries never reads the pending rows of the queues it appends to. A batch that
    renumbers a queue (a retract) reads that queue whole. Either way the views equal a fold of
    the log, positions 1..n in delivery order."""
    with threadbox.open(store_url) as mailbox:
        views = mailbox.views
        assert isinstance(views, ProjectedViews)
        backend: Any = views.backend
        whole_queue = backend.statements.tables["pending"].select_touched
        tops = backend.statements.queue_tops
        mailbox.deliver("t", [Message.user(f"old{n}", id=f"old{n}") for n in range(30)])
        views.catch_up()
        for n in range(5):  # one batch: five deliveries to a queue of 30, and a new thread's
            mailbox.deliver("t", [Message.user(f"new{n}", id=f"new{n}")])
        mailbox.deliver("u", [Message.user("first", id="u1")])
        with StatementLog(backend) as log:
            views.catch_up()
        assert tops in log.statements
        assert whole_queue not in log.statements
        expected = [f"old{n}" for n in range(30)] + [f"new{n}" for n in range(5)]
        assert [e.message.id for e in views.pending("t")] == expected
        assert [e.position for e in views.pending("t")] == list(range(1, 36))
        assert [e.position for e in views.pending("u")] == [1]

        revision = next(e.revision for e in views.pending("t") if e.message.id == "old3")
        mailbox.retract("t", "old3", expected_revision=revision)
        mailbox.deliver("t", [Message.user("last", id="last")])
        with StatementLog(backend) as log:
            views.catch_up()
        assert whole_queue in log.statements
        expected = [i for i in expected if i != "old3"] + ["last"]
        assert [e.message.id for e in views.pending("t")] == expected
        assert [e.position for e in views.pending("t")] == list(range(1, 36))
        assert views.verify().ok
