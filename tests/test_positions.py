"""Positions at the application boundary: opaque strings in commit order, the views' lag in
events, and the wake-up PostgreSQL writers send after commit (ADR 0009)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import threadbox
from conftest import drop_schema, pg_store_url
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql
from threadbox import Mailbox, Message
from threadbox.domain.errors import InvalidInput
from threadbox.infrastructure.pg_wakeup import events_channel
from threadbox.infrastructure.positions import decode_id, encode_id
from threadbox.infrastructure.store import StoreLocation

WAIT = 120.0  # liveness bound for a notification, not a speed assertion


@given(st.integers(0, 10**19), st.integers(0, 10**19))
def test_id_positions_compare_as_the_ids_do_and_decode_back(a: int, b: int) -> None:
    assert (encode_id(a) < encode_id(b)) == (a < b)
    assert (decode_id(encode_id(a)), decode_id(encode_id(b))) == (a, b)


@pytest.mark.parametrize(
    "text", ["7", "0" * 20, "x" * 20, "1" * 21, "00000000000000000001.00000000000000000002"]
)
def test_a_string_that_is_no_position_of_an_id_ordered_store_is_refused_naming_it(
    text: str,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_id(text)
    assert refused.value.field == "position"


def write(mailbox: Mailbox) -> int:
    """A few commands on two threads; how many events they wrote (from the threads' histories),
    once all of them are readable (on PostgreSQL any transaction on the shared server, another
    test's or client's, holds back what is readable while it runs)."""
    mailbox.deliver("a", [Message.user("one"), Message.user("two")])
    mailbox.deliver("b", [Message.user("three")])
    mailbox.freeze("a", "new_run", "r1")
    written = len(mailbox.history("a")) + len(mailbox.history("b"))
    deadline = time.monotonic() + WAIT
    while len(mailbox.store.read(after="", limit=written + 1)) < written:
        assert time.monotonic() < deadline, "the committed events never became readable"
        time.sleep(0.01)
    return written


def test_positions_of_the_log_strictly_increase_from_the_start(mailbox: Mailbox) -> None:
    events = write(mailbox)
    read = mailbox.store.read(after="", limit=100)
    positions = [item.position for item in read]
    assert len(positions) == events
    assert positions[0] > "" and positions == sorted(set(positions))
    assert mailbox.store.committed_head() == positions[-1]
    assert mailbox.store.count_after(positions[1]) == events - 2
    assert mailbox.store.count_after("", positions[1]) == 2
    assert mailbox.store.read(after=positions[-1], limit=10) == []


def test_the_views_lag_counts_the_committed_events_they_have_not_applied(
    mailbox: Mailbox,
) -> None:
    events = write(mailbox)  # commands write the log; the views catch up when read
    before = mailbox.views.status()
    assert (before.position, before.lag) == ("", events)
    assert before.log_position == mailbox.store.committed_head()
    mailbox.views.catch_up()
    after = mailbox.views.status()
    assert (after.position, after.lag) == (mailbox.store.committed_head(), 0)
    assert (after.oldest_transaction_seconds is None) == (mailbox.store.kind != "postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield pg_store_url(schema)
    drop_schema(schema)


def test_postgresql_writers_notify_their_schemas_channel_after_commit_not_inside(
    pg_url: str,
) -> None:
    location = StoreLocation.parse(pg_url)
    channel = events_channel(location.pg_schema)
    one_connection = f"{pg_url}&pool_size=1&max_overflow=0"
    with (
        threadbox.open(one_connection) as mailbox,
        psycopg.connect(location.pg_conninfo, autocommit=True) as listener,
    ):
        for name in (channel, "stored_events"):  # the library's recorders notify the latter
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
        mailbox.deliver("a", [Message.user("one")])
        with mailbox.store.events.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            writer = conn.info.backend_pid
        heard = []
        for note in listener.notifies(timeout=WAIT):
            heard.append((note.channel, note.pid))
            if note.channel == channel:
                break
        assert heard and heard[-1][0] == channel, "no wake-up after the write"
        assert heard[-1][1] != writer, "the wake-up came from the writing connection"
        # A NOTIFY inside the writing transaction would have been delivered at its commit,
        # before the one sent after it (other schemas' tests may notify the library's channel).
        assert ("stored_events", writer) not in heard
