"""The store's commit order on PostgreSQL without a table lock (ADR 0009).

A follower reading with ``select_after`` gets every committed event exactly once, in version order
per stream, while a transaction that began earlier commits after later ones (held open by a test
trigger), and never sees the rows of a transaction that aborts. A reader in notification-id order,
without the bound, loses the late event: that is why the design exists.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_recorder_support import (
    TABLE,
    WAIT,
    Key,
    assert_versions_in_order,
    event,
    opened,
    own_location,
    recorder_env,
    settled,
    stored_rows,
)
from psycopg import sql
from threadbox.infrastructure.pg_recorder import CommitOrderRecorder, LogPosition
from threadbox.infrastructure.store import CLAIMING_RECORDERS, StoreLocation

PARK, PARK_THEN_ABORT = "test:Park", "test:ParkThenAbort"  # topics the test trigger holds
PARK_LOCK_CLASS = 4242  # first key of the advisory lock the trigger waits on


@pytest.fixture
def location() -> Iterator[StoreLocation]:
    with own_location() as found:
        yield found


@pytest.fixture(params=["pipelined insert", "insert function", "store's one statement"])
def env(request: pytest.FixtureRequest, location: StoreLocation) -> dict[str, str]:
    """Both of eventsourcing's insert paths: its pipelined statements, or its database function
    (one round trip, POSTGRES_ENABLE_DB_FUNCTIONS); and the store's own recorder, which writes
    events and ids in one statement on an autocommit connection (ADR 0024)."""
    if request.param == "store's one statement":
        return recorder_env(location, CLAIMING_RECORDERS["postgres"])
    settings = recorder_env(location)
    settings["POSTGRES_ENABLE_DB_FUNCTIONS"] = "y" if request.param == "insert function" else "n"
    return settings


@pytest.fixture
def recorder(env: dict[str, str]) -> Iterator[CommitOrderRecorder]:
    with opened(env) as made:
        assert isinstance(made, CommitOrderRecorder)
        yield made


def write_in_process(env: dict[str, str], stream: str, count: int) -> list[Key]:
    """Another OS process: starts a recorder on the table, writes one event per transaction."""
    # A start or insert that waited for the held writer's locks fails here instead of hanging.
    os.environ["PGOPTIONS"] = "-c lock_timeout=30s"
    keys = [(uuid.UUID(stream), version) for version in range(1, count + 1)]
    with opened(env) as recorder:
        for key in keys:
            recorder.insert_events([event(*key)])
    return keys


# ---- a follower, and a transaction held open -----------------------------------------------------


class Follower:
    """Reads the commit order in a loop on a thread of its own, as the views will."""

    def __init__(self, recorder: CommitOrderRecorder, start: LogPosition, limit: int) -> None:
        self.recorder, self.position, self.limit = recorder, start, limit
        self.seen: list[tuple[LogPosition, Key]] = []
        self.target: LogPosition | None = None
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        try:
            while True:
                batch = self.recorder.select_after(self.position, self.limit)
                with self.lock:
                    self.seen += [(at, (n.originator_id, n.originator_version)) for at, n in batch]
                    self.position = batch[-1][0] if batch else self.position
                    if self.target is not None and self.position >= self.target:
                        return
                if not batch:
                    time.sleep(0.005)
        except BaseException as error:
            self.error = error

    def progress(self) -> tuple[LogPosition, list[Key]]:
        with self.lock:
            return self.position, [key for _, key in self.seen]

    def finish(self, target: LogPosition | None) -> list[tuple[LogPosition, Key]]:
        """Everything it read once it has reached ``target``."""
        with self.lock:
            self.target = target or LogPosition.START
        self.thread.join(WAIT)
        if self.error is not None:
            raise self.error
        assert not self.thread.is_alive(), f"the follower did not reach {target}"
        return self.seen


@dataclass
class HeldWrite:
    """An ``insert_events`` call on a thread of its own, and how it ended."""

    ids: list[int] = field(default_factory=list)
    error: BaseException | None = None


class ParkedWriters:
    """A test trigger parks the transaction of an insert of a PARK event after its rows are
    written (transaction id and notification ids taken) until ``release``; PARK_THEN_ABORT then
    also aborts it."""

    def __init__(self, location: StoreLocation) -> None:
        self.key = random.randrange(1, 2**31)
        self.conn = psycopg.connect(location.pg_conninfo, autocommit=True)
        self.table = sql.SQL("{}.{}").format(
            sql.Identifier(location.pg_schema), sql.Identifier(TABLE)
        )
        function = sql.Identifier(location.pg_schema, "park_marked")
        self.conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.topic IN ('{PARK}', '{PARK_THEN_ABORT}') THEN "
                f"  PERFORM pg_advisory_xact_lock({PARK_LOCK_CLASS}, {self.key}); "
                f"  IF NEW.topic = '{PARK_THEN_ABORT}' THEN "
                "    RAISE EXCEPTION 'aborted by the test'; END IF; "
                "END IF; RETURN NULL; END $$"
            ).format(function)
        )
        self.conn.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER park_marked AFTER INSERT ON {} "
                "FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(self.table, function)
        )
        self.conn.execute("SELECT pg_advisory_lock(%s, %s)", (PARK_LOCK_CLASS, self.key))
        self.threads: list[threading.Thread] = []

    def write(self, recorder: CommitOrderRecorder, events: list[StoredEvent]) -> HeldWrite:
        held = HeldWrite()

        def insert() -> None:
            try:
                held.ids = list(recorder.insert_events(events) or [])
            except BaseException as error:
                held.error = error

        self.threads.append(threading.Thread(target=insert, daemon=True))
        self.threads[-1].start()
        return held

    def parked(self, count: int) -> list[int]:
        """The backend pids of ``count`` parked transactions, once they are all parked."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pids = [
                pid
                for (pid,) in self.conn.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND classid = %s::int4::oid AND objid = %s::int4::oid AND objsubid = 2",
                    (PARK_LOCK_CLASS, self.key),
                )
            ]
            if len(pids) == count:
                return pids
            waiting = self.conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = {}::regclass"
                ).format(sql.Literal(self.table.as_string(self.conn)))
            ).fetchone()
            assert waiting == (0,), "an insert waits for a lock on the events table"
            time.sleep(0.01)
        raise AssertionError(f"{count} writers did not park")

    def transaction_id(self, pid: int) -> int:
        """The 64-bit id of a backend's transaction (pg_stat_activity shows its low 32 bits)."""
        found = self.conn.execute(
            "SELECT backend_xid::text, pg_snapshot_xmax(pg_current_snapshot())::text"
            " FROM pg_stat_activity WHERE pid = %s",
            (pid,),
        ).fetchone()
        assert found is not None and found[0] is not None
        low, near = int(found[0]), int(found[1])
        full = (near >> 32 << 32) | low
        if full - near > 2**31:  # 32-bit ids wrap: take the 64-bit id nearest the snapshot's
            full -= 2**32
        elif near - full > 2**31:
            full += 2**32
        return full

    def table_locks(self, pid: int) -> set[str]:
        statement = sql.SQL(
            "SELECT mode FROM pg_locks WHERE pid = %s AND relation = {}::regclass"
        ).format(sql.Literal(self.table.as_string(self.conn)))
        return {mode for (mode,) in self.conn.execute(statement, (pid,))}

    def release(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (PARK_LOCK_CLASS, self.key))
        for thread in self.threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "a parked writer did not finish"
        self.conn.close()


def write_concurrently(
    recorder: CommitOrderRecorder, env: dict[str, str], threads: int, count: int
) -> list[Key]:
    """``threads`` threads and one other OS process, each writing ``count`` events to a stream
    of its own, one per transaction; the keys they wrote."""
    streams = [uuid.uuid4() for _ in range(threads + 1)]
    keys = [[(stream, v) for v in range(1, count + 1)] for stream in streams]
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        in_process = pool.apply_async(write_in_process, (env, streams[-1].hex, count))

        def write(own: list[Key]) -> None:
            for key in own:
                recorder.insert_events([event(*key)])

        workers = [threading.Thread(target=write, args=(own,)) for own in keys[:-1]]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert in_process.get(WAIT) == keys[-1]
    return [key for own in keys for key in own]


# ---- the held-transaction scenario ---------------------------------------------------------------


def test_a_follower_gets_every_event_once_while_an_earlier_transaction_commits_last(
    location: StoreLocation, env: dict[str, str], recorder: CommitOrderRecorder
) -> None:
    before = [(stream, v) for stream in (uuid.uuid4() for _ in range(3)) for v in (1, 2)]
    for key in before:
        recorder.insert_events([event(*key)])
    follower = Follower(recorder, LogPosition.START, limit=7)
    parked_stream, aborted_stream = uuid.uuid4(), uuid.uuid4()
    writers = ParkedWriters(location)
    try:
        parked = writers.write(recorder, [event(parked_stream, 1, PARK), event(parked_stream, 2)])
        aborted = writers.write(recorder, [event(aborted_stream, 1, PARK_THEN_ABORT)])
        pids = writers.parked(2)
        for pid in pids:
            assert writers.table_locks(pid) == {"RowExclusiveLock"}, "an insert locked the table"
        held = min(writers.transaction_id(pid) for pid in pids)

        later = write_concurrently(recorder, env, threads=4, count=25)

        rows = stored_rows(location)
        assert min(rows[key][0] for key in later) > held, "the later writers began later"
        bound = LogPosition(held, 0)
        head, committed = recorder.head(), recorder.committed_head()
        assert head is None or head < bound, "the head passed a transaction still running"
        assert committed is not None and committed > bound
        position, seen = follower.progress()
        assert position < bound, "the follower passed a transaction still running"
        assert set(seen) <= set(before)
    finally:
        writers.release()

    assert parked.error is None and len(parked.ids) == 2
    assert isinstance(aborted.error, PersistenceError)
    expected = {*before, (parked_stream, 1), (parked_stream, 2), *later}
    assert set(stored_rows(location)) == expected, "the table holds exactly the committed writes"
    read = follower.finish(recorder.committed_head())
    positions, keys = [at for at, _ in read], [key for _, key in read]
    assert positions == sorted(set(positions)), "positions strictly increase"
    assert len(keys) == len(set(keys)), "an event came twice"
    assert set(keys) == expected, "an event is missing, or an aborted one showed"
    assert_versions_in_order(keys)


def test_a_reader_in_notification_id_order_loses_an_event_that_commits_late(
    location: StoreLocation, recorder: CommitOrderRecorder
) -> None:
    """Why the design exists: plain ORDER BY notification_id, no bound, no table lock."""
    first, late, after = (uuid.uuid4(), 1), (uuid.uuid4(), 1), [(uuid.uuid4(), 1) for _ in range(3)]
    recorder.insert_events([event(*first)])
    naive: dict[int, Key] = {}  # notification id -> key, as the reader got them

    def read_by_id() -> None:
        for n in recorder.select_notifications(max(naive, default=0) + 1, 100):
            naive[n.id] = (n.originator_id, n.originator_version)

    writers = ParkedWriters(location)
    try:
        parked = writers.write(recorder, [event(*late, topic=PARK)])
        writers.parked(1)
        for key in after:
            recorder.insert_events([event(*key)])
        read_by_id()  # reads past the parked row's id, which is not yet visible
    finally:
        writers.release()
    read_by_id()
    assert parked.error is None
    assert late in stored_rows(location), "the late event is committed"
    assert set(naive.values()) == {first, *after}, "the id-ordered reader lost the late event"
    # Once every committed event is readable: a transaction anywhere on the shared server
    # (another test's, a background follower's) holds the bound down while it runs.
    in_commit_order = settled(recorder).select_after(LogPosition.START, 100)
    assert [(n.originator_id, n.originator_version) for _, n in in_commit_order] == [
        first,
        late,
        *after,
    ], "the commit-order reader has it, in its transaction's place: before those that began later"


# ---- many writers, conflicts and aborts, at random -----------------------------------------------

Op = tuple[str, int, int]
OPS = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 2), st.integers(1, 3)),  # shared stream, events
    st.tuples(st.just("abort"), st.just(0), st.just(0)),  # a batch that breaks its own key
    st.tuples(st.just("slow"), st.integers(0, 1), st.integers(0, 15)),  # commit?, ms held open
)


def run_writer(recorder: CommitOrderRecorder, shared: list[uuid.UUID], ops: list[Op]) -> list[Key]:
    """One writer's operations; the keys it committed."""
    committed: list[Key] = []
    for kind, a, b in ops:
        if kind == "append":
            stream = shared[a]
            last = recorder.select_events(stream, desc=True, limit=1)
            top = last[0].originator_version if last else 0
            keys = [(stream, top + n) for n in range(1, b + 1)]
            try:
                recorder.insert_events([event(*key) for key in keys])
                committed += keys
            except IntegrityError:
                pass  # another writer took the version first: this transaction aborted
        elif kind == "abort":
            stream = uuid.uuid4()
            with pytest.raises(IntegrityError):
                recorder.insert_events([event(stream, 1), event(stream, 1)])
        else:
            key = (uuid.uuid4(), 1)
            with recorder.datastore.get_connection() as conn:
                with conn.transaction(), conn.cursor() as curs:  # the recorder's insert path
                    recorder._insert_stored_events(curs, [event(*key)])
                    time.sleep(b / 1000)
                    if not a:
                        raise psycopg.Rollback()
                if a:
                    committed.append(key)
    return committed


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plans=st.lists(st.lists(OPS, min_size=1, max_size=8), min_size=2, max_size=5),
    limit=st.integers(1, 10),
)
def test_followers_get_exactly_the_committed_events_of_concurrent_writers_with_aborts(
    location: StoreLocation, recorder: CommitOrderRecorder, plans: list[list[Op]], limit: int
) -> None:
    start = recorder.committed_head() or LogPosition.START
    before = set(stored_rows(location))
    follower = Follower(recorder, start, limit)
    shared = [uuid.uuid4() for _ in range(3)]
    results: list[list[Key]] = [[] for _ in plans]
    errors: list[BaseException] = []

    def write(n: int, ops: list[Op]) -> None:
        try:
            results[n] = run_writer(recorder, shared, ops)
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=write, args=(n, ops)) for n, ops in enumerate(plans)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert not errors, errors
    read = follower.finish(recorder.committed_head())

    committed = {key for keys in results for key in keys}
    keys = [key for _, key in read]
    assert len(keys) == len(set(keys)), "an event came twice"
    assert set(keys) == committed, "the follower's events are not the committed ones"
    written = set(stored_rows(location)) - before
    assert written == committed, "the writers' account differs from the table"
    assert_versions_in_order(keys)
