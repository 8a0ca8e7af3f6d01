"""The views and the background follower on PostgreSQL's commit order (ADR 0009), the hard way.

A writer's transaction is held open by a test trigger (it waits on an advisory lock the test
holds whenever it inserts an event whose message carries the marker) while later writers, in
threads and in another OS process, commit. The follower must stop before the held event and not
pass it; a read after the later writes waits for it; once it commits, the views and every reader
of the log end with every event exactly once. Also: a store and views made before commit order
go on in place.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import threadbox
from conftest import drop_schema, pg_store_url
from psycopg import sql
from threadbox import Message
from threadbox.application.ports import Position
from threadbox.application.views import ProjectedViews
from threadbox.infrastructure.store import StoreLocation

MARKER = "park-this-write"  # a message text the trigger holds
LOCK_CLASS = 4243  # first key of the advisory lock the trigger waits on
WAIT = 120.0  # liveness bound, not a speed assertion


@pytest.fixture
def url() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield pg_store_url(schema)
    drop_schema(schema)


def eventually(check: Callable[[], bool]) -> None:
    end = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.01)


class Parking:
    """A trigger that parks any transaction inserting an event with ``MARKER`` in it, until
    ``release``."""

    def __init__(self, url: str) -> None:
        location = StoreLocation.parse(url)
        self.key = random.randrange(1, 2**31)
        self.conn = psycopg.connect(location.pg_conninfo, autocommit=True)
        table = sql.Identifier(location.pg_schema, "stored_events")
        function = sql.Identifier(location.pg_schema, "park_marked")
        self.conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF position({} IN convert_from(NEW.state, 'UTF8')) > 0 THEN "
                "  PERFORM pg_advisory_xact_lock({}, {}); "
                "END IF; RETURN NULL; END $$"
            ).format(function, sql.Literal(MARKER), LOCK_CLASS, self.key)
        )
        self.conn.execute(
            sql.SQL(
                "CREATE TRIGGER park_marked AFTER INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(table, function)
        )
        self.conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, self.key))
        self.released = threading.Event()

    def parked(self) -> bool:
        found = self.conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = %s::int4::oid AND objid = %s::int4::oid AND objsubid = 2",
            (LOCK_CLASS, self.key),
        ).fetchone()
        return found == (1,)

    def release(self) -> None:
        self.released.set()
        self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, self.key))
        self.conn.close()


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``work`` on a thread; the list receives its result or its exception."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def deliver_many(url: str, thread_id: str, count: int) -> int:
    """Another OS process: ``count`` deliveries to one thread; its events."""
    with threadbox.open(url) as mailbox:
        for n in range(count):
            mailbox.deliver(thread_id, [Message.user(f"{thread_id} {n}")])
        return len(mailbox.history(thread_id))


def log_keys(mailbox: threadbox.Mailbox, after: Position = "") -> list[tuple[str, int]]:
    """(thread, version) of every event ``read`` returns going on from ``after``, as a follower
    of the log reads them."""
    keys: list[tuple[str, int]] = []
    while batch := mailbox.store.read(after=after, limit=7):
        keys += [(item.event.thread_id, item.event.version) for item in batch]
        after = batch[-1].position
    return keys


def every_event(mailbox: threadbox.Mailbox, thread_ids: list[str]) -> list[tuple[str, int]]:
    """Each thread's history, read per thread (independent of the global order)."""
    return [(t, e.version) for t in thread_ids for e in mailbox.history(t)]


def test_views_and_follower_get_every_event_once_while_an_earlier_writer_commits_last(
    url: str,
) -> None:
    with threadbox.open(url) as writer, threadbox.open(url) as server:
        views = server.views
        assert isinstance(views, ProjectedViews)
        for n in range(3):
            writer.deliver("before", [Message.user(f"before {n}")])
        parking = Parking(url)
        try:
            views.start_following()
            held, held_outcome = in_thread(
                lambda: writer.deliver("held", [Message.user(MARKER, id="held-1")])
            )
            eventually(parking.parked)

            context = multiprocessing.get_context("spawn")
            with context.Pool(1) as pool:
                other = pool.apply_async(deliver_many, (url, "later-process", 8))
                workers = [
                    in_thread(lambda t=t: [writer.deliver(t, [Message.user(t)]) for _ in range(6)])
                    for t in ("later-a", "later-b", "later-c")
                ]
                for worker, outcome in workers:
                    worker.join(WAIT)
                    assert outcome and not isinstance(outcome[0], BaseException), outcome
                assert other.get(WAIT) == 9  # ThreadOpened and 8 deliveries
            later = every_event(writer, ["later-a", "later-b", "later-c", "later-process"])
            before = every_event(writer, ["before"])

            # The held writer keeps everything after it unreadable: the follower stops short.
            last_before = writer.store.read(after="", limit=len(before))[-1].position
            eventually(lambda: views.backend.position() == last_before)
            assert log_keys(writer) == before
            assert not views.thread_exists("later-a")
            assert views.status().lag == len(later), "the lag counts the committed, unread events"

            # A read after those writes waits for them, so until the held writer ends.
            def read_after_the_writes() -> tuple[bool, list[threadbox.PendingEntry]]:
                found = server.pending("later-process")
                return parking.released.is_set(), found  # noted once the read has returned

            reader, read = in_thread(read_after_the_writes)
        finally:
            parking.release()
        held.join(WAIT)
        assert held_outcome and not isinstance(held_outcome[0], BaseException), held_outcome
        reader.join(WAIT)
        assert read and isinstance(read[0], tuple), read
        released_first, pending = read[0]
        assert released_first, "the read returned before the writes it must see were readable"
        assert [p.message.text for p in pending] == [f"later-process {n}" for n in range(8)]

        everything = before + every_event(writer, ["held"]) + later
        eventually(lambda: views.status().lag == 0)
        keys = log_keys(writer)
        assert len(keys) == len(set(keys)), "the log gave an event twice"
        assert set(keys) == set(everything), "the log lost an event, or made one up"
        report = views.verify()
        assert report.ok, report.differences
        assert report.events == len(everything)
        views.stop_following()
        assert views.backend.position() == writer.store.committed_head()


def test_an_old_store_and_its_views_go_on_in_place_from_where_they_were(url: str) -> None:
    with threadbox.open(url) as mailbox:
        for n in range(5):
            mailbox.deliver(f"t{n % 2}", [Message.user(f"m{n}")])
        mailbox.views.catch_up()
        tracked = mailbox.store.read(after="", limit=100)[-1].position
        old = log_keys(mailbox)
    location = StoreLocation.parse(url)
    options = f"-c search_path={location.pg_schema}"
    with psycopg.connect(location.pg_conninfo, autocommit=True, options=options) as conn:
        # As the tables were before commit order: no transaction column, tracking by id alone.
        conn.execute("ALTER TABLE stored_events DROP COLUMN transaction_id")
        conn.execute("ALTER TABLE view_tracking DROP COLUMN transaction_id")
        (old_position,) = conn.execute("SELECT position FROM view_tracking").fetchone() or (0,)
    assert old_position == int(tracked.split(".")[1])
    with threadbox.open(url) as mailbox:
        assert mailbox.views.status().lag == 0, "the views went on from where they were"
        mailbox.deliver("t0", [Message.user("after the upgrade")])
        mailbox.deliver("t9", [Message.user("a new thread")])
        assert [p.message.text for p in mailbox.pending("t9")] == ["a new thread"]
        report = mailbox.views.verify()
        assert report.ok, report.differences
        assert report.events == len(every_event(mailbox, ["t0", "t1", "t9"]))
        keys = log_keys(mailbox)
        assert sorted(keys) == sorted(every_event(mailbox, ["t0", "t1", "t9"]))
        assert keys[: len(old)] == old, "rows written before the upgrade come first, in order"
