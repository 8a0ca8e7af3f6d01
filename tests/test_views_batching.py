"""Batched view maintenance: a burst of writes costs the background follower a few transactions,
not one per event, and the views stay exactly once (ADR 0007, "Batched view maintenance").
Transactions and wake-ups are counted, never timed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
