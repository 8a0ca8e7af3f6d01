"""The store's one write (ADR 0024): a write's events and its id rows commit together or not at
all, on every backend. On PostgreSQL the write is one statement on an autocommit connection, so
these check what its transaction used to guarantee: a version taken writes none of the write's
ids, an id taken writes none of its events, concurrent writers of one thread each win or lose
whole, positions come back in the order of the events.

The expected answers come from what each writer was told (written, or refused) and from the
events it sent, never from the store's own account of the write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import threadbox
from conftest import pg_connect
from psycopg import sql
from threadbox import DeliveryMode, Message
from threadbox.application.ports import IdsTaken, StreamConflict
from threadbox.domain.claims import MESSAGE, ClaimKey
from threadbox.domain.events import DeliveredMessage, MessagesDelivered
from threadbox.infrastructure.codec import stream_id
from threadbox.infrastructure.id_table import TABLE
from threadbox.infrastructure.store import RecorderStore, StoreLocation

WAIT = 120.0  # seconds a wait may last (liveness, not speed)
WRITERS = 4
ROUNDS = 25


@pytest.fixture
def store(store_url: str) -> Iterator[RecorderStore]:
    with threadbox.open(store_url) as mailbox:
        yield mailbox.store  # type: ignore[misc]


def delivered(thread_id: str, version: int, *ids: str) -> MessagesDelivered:
    """An event delivering one message per id, at ``version``."""
    return MessagesDelivered(
        thread_id=thread_id,
        version=version,
        timestamp=datetime.now(UTC),
        messages=[
            DeliveredMessage(message=Message.user(f"text of {i}", id=i), mode=DeliveryMode())
            for i in ids
        ],
    )


def settled(store: RecorderStore) -> RecorderStore:
    """``store`` once every committed event is readable in commit order: on PostgreSQL any other
    transaction of the server (another suite's) holds the readable bound down while it runs."""
    deadline = time.monotonic() + WAIT
    while store.last_position() != store.committed_head():
        assert time.monotonic() < deadline, "the committed events never became readable"
        time.sleep(0.01)
    return store


def keys(*ids: str) -> list[ClaimKey]:
    return [ClaimKey(MESSAGE, i) for i in ids]


def versions(store: RecorderStore, thread_id: str) -> list[int]:
    return [e.version for e in store.load(thread_id)]


def test_a_write_whose_version_is_taken_writes_none_of_its_ids(store: RecorderStore) -> None:
    store.append([delivered("t", 1, "a")])
    with pytest.raises(StreamConflict):
        store.append([delivered("t", 1, "b"), delivered("t", 2, "c")])
    assert versions(store, "t") == [1]
    assert store.claimed("t", keys("a", "b", "c")) == {ClaimKey(MESSAGE, "a"): 1}


def test_a_write_whose_id_is_taken_writes_none_of_its_events_or_other_ids(
    store: RecorderStore,
) -> None:
    store.append([delivered("t", 1, "a")])
    with pytest.raises(IdsTaken):
        store.append([delivered("t", 2, "b"), delivered("t", 3, "c", "a")])
    with pytest.raises(IdsTaken):  # the same id twice in one write
        store.append([delivered("t", 2, "d"), delivered("t", 3, "d")])
    assert versions(store, "t") == [1]
    assert store.claimed("t", keys("a", "b", "c", "d")) == {ClaimKey(MESSAGE, "a"): 1}
    store.append([delivered("t", 2, "b")])  # the ids refused with the write were not kept
    assert store.claimed("t", keys("b", "c", "d")) == {ClaimKey(MESSAGE, "b"): 2}


def test_an_id_is_per_thread(store: RecorderStore) -> None:
    store.append([delivered("t", 1, "a")])
    store.append([delivered("u", 1, "a")])
    assert store.claimed("u", keys("a")) == store.claimed("t", keys("a")) == {keys("a")[0]: 1}


def test_a_write_across_threads_commits_whole_and_its_positions_follow_its_events(
    store: RecorderStore,
) -> None:
    store.append([delivered("t", 1, "a")])
    written = [delivered("u", 1, "x"), delivered("t", 2, "b"), delivered("u", 2, "y")]
    store.append(written)
    log = [n.event for n in settled(store).read(after="", limit=100)]
    assert [(e.thread_id, e.version) for e in log] == [("t", 1)] + [
        (e.thread_id, e.version) for e in written
    ]
    with pytest.raises(StreamConflict):  # v3 of u is new, v2 of t is taken: neither is written
        store.append([delivered("u", 3, "z"), delivered("t", 2, "c")])
    assert versions(store, "u") == [1, 2] and versions(store, "t") == [1, 2]
    assert store.claimed("u", keys("z")) == {} and store.claimed("t", keys("c")) == {}


@pytest.mark.slow
def test_concurrent_writers_of_one_thread_each_win_or_lose_whole(store: RecorderStore) -> None:
    """Each round, every writer appends the same next version with ids of its own: exactly one
    is told it wrote, the others that the version was taken, and the log and the id table hold
    the winners' events and ids and nothing of the losers'."""
    barrier = threading.Barrier(WRITERS)
    won: dict[int, list[int]] = {v: [] for v in range(1, ROUNDS + 1)}
    errors: list[BaseException] = []
    guard = threading.Lock()

    def writer(w: int) -> None:
        try:
            for v in range(1, ROUNDS + 1):
                barrier.wait(timeout=60)
                event = delivered("race", v, f"w{w}-v{v}-a", f"w{w}-v{v}-b")
                try:
                    store.append([event])
                except StreamConflict:
                    continue
                with guard:
                    won[v].append(w)
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(len(winners) == 1 for winners in won.values()), won
    log = store.load("race")
    assert [e.version for e in log] == list(range(1, ROUNDS + 1))
    for event in log:
        assert isinstance(event, MessagesDelivered)
        winner = won[event.version][0]
        assert [d.message.id for d in event.messages] == [
            f"w{winner}-v{event.version}-a",
            f"w{winner}-v{event.version}-b",
        ]
    every_id = [f"w{w}-v{v}-{s}" for w in range(WRITERS) for v in won for s in "ab"]
    expected = {
        ClaimKey(MESSAGE, f"w{won[v][0]}-v{v}-{s}"): v for v in range(1, ROUNDS + 1) for s in "ab"
    }
    assert store.claimed("race", keys(*every_id)) == expected


# ---- PostgreSQL: one statement, one transaction ------------------------------------------------


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_writes_events_and_ids_are_written_by_one_transaction(
    store: RecorderStore, store_url: str
) -> None:
    """The id rows' ``xmin`` (the transaction that wrote them) is the events' ``transaction_id``,
    and each write is a transaction of its own."""
    store.append([delivered("t", 1, "a", "b")])
    store.append([delivered("t", 2, "c"), delivered("u", 1, "d")])
    schema = sql.Identifier(StoreLocation.parse(store_url).pg_schema)
    with pg_connect() as conn:
        events = conn.execute(
            sql.SQL(
                "SELECT originator_id, originator_version, transaction_id::text"
                " FROM {}.stored_events"
            ).format(schema)
        ).fetchall()
        ids = conn.execute(
            sql.SQL("SELECT originator_id, id, version, xmin::text FROM {}.{}").format(
                schema, sql.Identifier(TABLE)
            )
        ).fetchall()
    writer = {(sid, v): int(tx) for sid, v, tx in events}
    t, u = stream_id("t"), stream_id("u")
    assert writer[(t, 2)] == writer[(u, 1)] != writer[(t, 1)]
    # xmin is the 32-bit transaction id; transaction_id is the epoch-qualified 64-bit one
    assert {(sid, i): int(x) for sid, i, _, x in ids} == {
        (t, "a"): writer[(t, 1)] % 2**32,
        (t, "b"): writer[(t, 1)] % 2**32,
        (t, "c"): writer[(t, 2)] % 2**32,
        (u, "d"): writer[(u, 1)] % 2**32,
    }


def terminate_store_connections(store_url: str) -> int:
    """End every other session of the suite's database that is idle (the store's pooled
    connections among them); how many."""
    schema = StoreLocation.parse(store_url).pg_schema
    with pg_connect() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND state = 'idle' "
            "AND query LIKE %s",
            (f'%"{schema}"%',),
        ).fetchall()
    return len(rows)


@pytest.mark.parametrize("backend", ["postgres"])
def test_writes_carry_on_after_their_pooled_connections_are_terminated(
    store: RecorderStore, store_url: str
) -> None:
    """A kept cursor belongs to its connection: a connection that dies takes it along, and the
    next write gets a connection and a cursor that work (the library's retry, as before)."""
    for v in range(1, 9):
        store.append([delivered("t", v, f"m{v}")])  # use several pooled connections
    for round_ in range(3):
        assert terminate_store_connections(store_url) > 0
        for n in range(6):  # more writes than pooled connections: each dead one is met
            v = 9 + round_ * 6 + n
            store.append([delivered("t", v, f"m{v}")])
    assert versions(store, "t") == list(range(1, 27))
    assert len(store.claimed("t", keys(*(f"m{v}" for v in range(1, 27))))) == 26
