"""CommitOrderRecorder's contract besides the held-transaction scenario: positions as strings, the
in-place upgrade of a table made by eventsourcing's recorder, and what the library still does."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, ProgrammingError
from hypothesis import given
from hypothesis import strategies as st
from pg_recorder_support import (
    TABLE,
    WAIT,
    Key,
    event,
    opened,
    own_location,
    recorder_env,
    settled,
    stored_rows,
)
from psycopg import sql
from threadbox.domain.errors import InvalidInput
from threadbox.infrastructure.pg_recorder import (
    BIGINT_MAX,
    XID8_MAX,
    CommitOrderRecorder,
    LogPosition,
)
from threadbox.infrastructure.store import StoreLocation, creating_tables, ensure_pg_schema


@pytest.fixture
def location() -> Iterator[StoreLocation]:
    with own_location() as found:
        yield found


@pytest.fixture
def recorder(location: StoreLocation) -> Iterator[CommitOrderRecorder]:
    with opened(recorder_env(location)) as made:
        yield made


@pytest.fixture
def quiet_location(private_database: str) -> StoreLocation:
    """A schema in a database no other session writes to, for the tests that listen: a NOTIFY
    channel is per database and named after the table, so on a shared database every other
    store's inserts (another suite, a benchmark) are heard too."""
    found = StoreLocation.parse(f"{private_database}?schema=quiet&pool_size=2&max_overflow=12")
    ensure_pg_schema(found)
    return found  # the database is dropped by private_database


def read_all(recorder: CommitOrderRecorder, start: LogPosition, limit: int) -> list[Key]:
    """Everything after ``start`` in commit order, ``limit`` events a read."""
    keys: list[Key] = []
    while batch := settled(recorder).select_after(start, limit):
        keys += [(n.originator_id, n.originator_version) for _, n in batch]
        start = batch[-1][0]
    return keys


# ---- positions ---------------------------------------------------------------------------------

positions = st.builds(LogPosition, st.integers(0, XID8_MAX), st.integers(0, BIGINT_MAX))


@given(positions, positions)
def test_encoded_positions_compare_as_the_positions_do_and_decode_back(
    a: LogPosition, b: LogPosition
) -> None:
    pair_a, pair_b = (a.transaction_id, a.notification_id), (b.transaction_id, b.notification_id)
    assert (a.encode() < b.encode()) == (pair_a < pair_b)
    assert (a.encode() == b.encode()) == (pair_a == pair_b)
    assert LogPosition.decode(a.encode()) == a


def test_the_start_is_the_empty_string_and_comes_before_every_position() -> None:
    assert LogPosition.decode("") == LogPosition.START == LogPosition(0, 0)
    assert LogPosition.START.encode() == ""
    assert LogPosition(0, 1).encode() > "" and LogPosition(0, 1) > LogPosition.START


def test_an_id_tracked_before_the_upgrade_comes_before_every_later_transaction() -> None:
    old = LogPosition.before_upgrade(10**12)
    assert old == LogPosition(0, 10**12)
    assert old.encode() < LogPosition(1, 1).encode()


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "12.34",
        "1" * 41,
        f"{'0' * 19}1.{'0' * 19}",  # 19 digits
        f"{'٣' * 20}.{'٣' * 20}",  # digits, but not ASCII ones
        f"{'0' * 20}.{'0' * 20}",  # the start, not written as ''
        f"{XID8_MAX + 1:020d}.{1:020d}",
        f"{1:020d}.{BIGINT_MAX + 1:020d}",
        f" {1:020d}.{1:020d}",
    ],
)
def test_a_string_that_is_not_a_position_is_refused_naming_the_position(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        LogPosition.decode(text)
    assert refused.value.field == "position"


def test_a_read_needs_a_limit_of_at_least_one(recorder: CommitOrderRecorder) -> None:
    with pytest.raises(ValueError, match="limit"):
        recorder.select_after(LogPosition.START, 0)


# ---- reads and writes --------------------------------------------------------------------------


def test_an_empty_log_has_no_head_and_nothing_to_read(recorder: CommitOrderRecorder) -> None:
    assert recorder.head() is None and recorder.committed_head() is None
    assert recorder.select_after(LogPosition.START, 10) == []


def test_the_events_of_one_write_share_its_transaction_and_upto_bounds_a_read(
    recorder: CommitOrderRecorder,
) -> None:
    stream = uuid.uuid4()
    ids = recorder.insert_events([event(stream, v) for v in (1, 2, 3)])
    recorder.insert_events([event(stream, 4)])
    read = settled(recorder).select_after(LogPosition.START, 10)
    assert [n.id for _, n in read[:3]] == ids and [n.originator_version for _, n in read] == [
        1,
        2,
        3,
        4,
    ]
    first, second = {at.transaction_id for at, _ in read[:3]}, read[3][0].transaction_id
    assert len(first) == 1 and first.pop() < second
    upto = recorder.select_after(read[0][0], 10, upto=read[2][0])
    assert [n.originator_version for _, n in upto] == [2, 3]


def test_transaction_ids_order_as_numbers_not_as_text(
    location: StoreLocation, recorder: CommitOrderRecorder
) -> None:
    """Rows of old, ended transactions 9 and 10 (set by hand): 9 first, though "10" < "9"."""
    keys = {9: (uuid.uuid4(), 1), 10: (uuid.uuid4(), 1), 100: (uuid.uuid4(), 1)}
    table = sql.SQL("{}.{}").format(sql.Identifier(location.pg_schema), sql.Identifier(TABLE))
    with psycopg.connect(location.pg_conninfo) as conn:
        for tx in (100, 10, 9):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state, "
                    "transaction_id) VALUES (%s, 1, 'test:Event', '', %s::text::xid8)"
                ).format(table),
                (keys[tx][0], str(tx)),
            )
    read = recorder.select_after(LogPosition.START, 10)
    assert [at.transaction_id for at, _ in read] == [9, 10, 100]
    assert recorder.select_after(read[0][0], 10)[0][1].originator_id == keys[10][0]
    assert recorder.head() == read[-1][0] == recorder.committed_head()


def test_a_second_write_of_a_stream_version_fails_and_writes_nothing(
    location: StoreLocation, recorder: CommitOrderRecorder
) -> None:
    stream, other = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events([event(stream, 1)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([event(other, 1), event(stream, 1)])
    assert set(stored_rows(location)) == {(stream, 1)}


def test_every_insert_still_notifies_the_tables_channel(quiet_location: StoreLocation) -> None:
    with (
        opened(recorder_env(quiet_location)) as recorder,
        psycopg.connect(quiet_location.pg_conninfo, autocommit=True) as listener,
    ):
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(recorder.channel_name)))
        recorder.insert_events([event(uuid.uuid4(), 1)])
        heard = [n.channel for n in listener.notifies(timeout=WAIT, stop_after=1)]
    assert heard == [recorder.channel_name]


def test_the_librarys_one_round_trip_insert_function_records_notifies_and_conflicts(
    quiet_location: StoreLocation,
) -> None:
    env = recorder_env(quiet_location)
    env["POSTGRES_ENABLE_DB_FUNCTIONS"] = "y"
    stream = uuid.uuid4()
    with (
        opened(env) as made,
        psycopg.connect(quiet_location.pg_conninfo, autocommit=True) as listener,
    ):
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(made.channel_name)))
        made.insert_events([event(stream, 1), event(stream, 2)])
        made.insert_events([event(stream, 3)])
        heard = [n.channel for n in listener.notifies(timeout=WAIT, stop_after=2)]
        with pytest.raises(IntegrityError):
            made.insert_events([event(stream, 3)])
        read = settled(made).select_after(LogPosition.START, 10)
    assert heard == [made.channel_name] * 2
    assert [n.originator_version for _, n in read] == [1, 2, 3]
    first, second = read[0][0].transaction_id, read[2][0].transaction_id
    assert 0 < first == read[1][0].transaction_id < second


def test_notification_id_subscriptions_are_refused_with_the_reason(
    recorder: CommitOrderRecorder,
) -> None:
    with pytest.raises(ProgrammingError, match="select_after"):
        recorder.subscribe(gt=0)


def test_the_oldest_transaction_start_is_no_later_than_a_writer_held_open(
    location: StoreLocation, recorder: CommitOrderRecorder
) -> None:
    with psycopg.connect(location.pg_conninfo) as writer:  # a transaction, left open
        held_since = writer.execute("SELECT now(), pg_current_xact_id()").fetchone()
        oldest = recorder.oldest_transaction_start()
        writer.rollback()
    assert held_since is not None and oldest is not None
    assert oldest <= held_since[0]


# ---- upgrade in place --------------------------------------------------------------------------


def column_and_index(location: StoreLocation) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(location.pg_conninfo) as conn:
        columns = conn.execute(
            "SELECT data_type, column_default FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s AND column_name = 'transaction_id'",
            (location.pg_schema, TABLE),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            (location.pg_schema, f"{TABLE}_transaction_order_idx"),
        ).fetchall()
    return columns, indexes


def test_a_table_made_by_the_library_recorder_is_upgraded_in_place_and_read_once_in_order(
    location: StoreLocation,
) -> None:
    streams = [uuid.uuid4(), uuid.uuid4()]
    old_keys = [(s, v) for v in (1, 2, 3) for s in streams]
    with opened(recorder_env(location, topic=None)) as old:
        for key in old_keys:
            old.insert_events([event(*key)])
        tracked = max(n.id for n in old.select_notifications(1, 4))  # an old view, 4 events in
        with opened(recorder_env(location)) as new:
            columns, indexes = column_and_index(location)
            assert columns == [("xid8", "pg_current_xact_id()")]
            assert len(indexes) == 1 and "(transaction_id, notification_id)" in indexes[0][0]
            new_keys = [(streams[0], 4), (uuid.uuid4(), 1)]
            new.insert_events([event(*new_keys[0])])
            old.insert_events([event(*new_keys[1])])  # old code still running: a real id too
            rows = stored_rows(location)
            assert [rows[key][0] for key in old_keys] == [0] * len(old_keys)
            assert all(rows[key][0] > 0 for key in new_keys)

            everything = read_all(new, LogPosition.START, limit=2)
            by_id = sorted(old_keys, key=lambda key: rows[key][1])
            assert everything == by_id + new_keys, "old rows first, by id, then the new ones"
            resumed = read_all(new, LogPosition.before_upgrade(tracked), limit=3)
            assert resumed == by_id[4:] + new_keys, "the old view goes on exactly after its id"


def test_starting_again_on_an_upgraded_table_neither_alters_it_nor_waits_for_writers(
    location: StoreLocation, recorder: CommitOrderRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = column_and_index(location)
    table = sql.SQL("{}.{}").format(sql.Identifier(location.pg_schema), sql.Identifier(TABLE))
    # A writer's transaction held open (its own connection: the pool's end idle ones after 5 s).
    with psycopg.connect(location.pg_conninfo) as writer:
        writer.execute(
            sql.SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state)"
                " VALUES (%s, 1, 'test:Event', '')"
            ).format(table),
            (uuid.uuid4(),),
        )
        monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=10s")  # waiting on a lock would fail
        with opened(recorder_env(location)) as again:
            assert again.select_after(LogPosition.START, 10) == []
        writer.rollback()
    assert column_and_index(location) == before


def test_a_table_written_on_another_server_is_refused_with_the_way_out(
    location: StoreLocation, recorder: CommitOrderRecorder
) -> None:
    """A dump restored on a server whose transaction counter is behind the ids it carries."""
    with psycopg.connect(location.pg_conninfo) as conn:
        found = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
        assert found is not None
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.{} (originator_id, originator_version, topic, state, "
                "transaction_id) VALUES (%s, 1, 'test:Event', '', %s::text::xid8)"
            ).format(sql.Identifier(location.pg_schema), sql.Identifier(TABLE)),
            (uuid.uuid4(), str(int(found[0]) + 10**9)),
        )
    with (
        pytest.raises(ProgrammingError, match=r"another server.*SET transaction_id = '0'"),
        opened(recorder_env(location)),
    ):
        pass


def start_and_write(env: dict[str, str], start: Any) -> Key:
    """One process: waits for the others, starts a recorder on an old table, writes one event."""
    key = (uuid.uuid4(), 1)
    start.wait(timeout=WAIT)
    with opened(env) as recorder:
        recorder.insert_events([event(*key)])
    return key


def test_processes_starting_together_on_an_old_table_upgrade_it_once(
    location: StoreLocation,
) -> None:
    old_keys = [(uuid.uuid4(), 1) for _ in range(5)]
    with opened(recorder_env(location, topic=None)) as old:
        for key in old_keys:
            old.insert_events([event(*key)])
    processes = 4
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        start = manager.Barrier(processes)
        env = recorder_env(location)
        new_keys = pool.starmap(start_and_write, [(env, start)] * processes, chunksize=1)

    columns, indexes = column_and_index(location)
    assert columns == [("xid8", "pg_current_xact_id()")] and len(indexes) == 1
    with opened(recorder_env(location)) as recorder:
        everything = read_all(recorder, LogPosition.START, limit=3)
    assert everything[:5] == old_keys and sorted(everything[5:]) == sorted(new_keys)


def test_a_recorder_starts_inside_the_stores_table_creation_lock(location: StoreLocation) -> None:
    """The store holds its advisory lock around table creation; the recorder takes its own."""
    key = (uuid.uuid4(), 1)
    with creating_tables(location), opened(recorder_env(location)) as made:
        made.insert_events([event(*key)])
    assert set(stored_rows(location)) == {key}
