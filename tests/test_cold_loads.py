"""Cold loads and the id table (ADR 0010): snapshots hold what decisions need now, the id table
holds every id a thread used, and a mailbox restored from a snapshot decides as one that folded
the whole log — on every backend."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import threadbox
from conftest import pg_connect
from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from psycopg import sql
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message
from threadbox.application import transfer
from threadbox.application.repository import ThreadRepository
from threadbox.application.views import ProjectedViews
from threadbox.audit import audit
from threadbox.domain import claims
from threadbox.domain.events import DeliveredMessage, MessagesDelivered
from threadbox.domain.thread import Thread, fold
from threadbox.errors import (
    AlreadyConsumed,
    ImportRefused,
    InvalidInput,
    MessageIdInUse,
    NotPending,
    ReorderMismatch,
)
from threadbox.infrastructure.codec import (
    SNAPSHOT_TOPIC,
    decode_snapshot,
    encode_event,
    stream_id,
)
from threadbox.infrastructure.id_table import TABLE, ClaimingPOPORecorder
from threadbox.infrastructure.store import StoreLocation
from threadbox.infrastructure.views.memory import MemoryViewBackend

B = DeliveryBoundary
T = "thread-cold"


def rounds(mailbox: Mailbox, start: int, count: int, thread_id: str = T) -> None:
    """``count`` rounds of four events: deliver, start a run, freeze, finish it."""
    for n in range(start, start + count):
        mailbox.deliver(thread_id, [Message.user(f"r{n}", id=f"r{n}")])
        mailbox.freeze(thread_id, B.NEW_RUN, f"run-{n}")
        mailbox.finish_run(thread_id, f"run-{n}")


def cold(mailbox: Mailbox, store_url: str) -> Mailbox:
    """A new mailbox on the same store, with nothing cached (memory: over the same store)."""
    if store_url == "memory://":
        return Mailbox(mailbox.store, ProjectedViews(mailbox.store, MemoryViewBackend()))
    return threadbox.open(store_url)


@pytest.fixture
def early_history(mailbox: Mailbox) -> Mailbox:
    """ "old" committed at seq 1 by run-0, "out" output at seq 2, "gone" retracted; then 30
    rounds, so the latest snapshot is long after all of them."""
    mailbox.deliver(T, [Message.user("old", id="old")])
    mailbox.freeze(T, B.NEW_RUN, "run-0")
    mailbox.commit_output(T, "run-0", [Message.assistant("out", id="out")])
    mailbox.finish_run(T, "run-0")
    mailbox.deliver(T, [Message.user("gone", id="gone")])
    mailbox.retract(T, "gone")
    rounds(mailbox, 1, 30)
    snapshot = mailbox.store.load_snapshot(T)
    assert snapshot is not None and snapshot.version > 100
    assert set(snapshot.used) == {p.pending_id for p in snapshot.pending} and not snapshot.hidden
    assert "old" not in snapshot.used and not snapshot.earlier_run_ids and not snapshot.ids_complete
    return mailbox


def stored_count(mailbox: Mailbox) -> int:
    return len(mailbox.store.load(T))


def test_an_id_used_before_the_snapshot_is_refused_by_a_cold_mailbox_and_nothing_is_written(
    early_history: Mailbox, store_url: str
) -> None:
    before = stored_count(early_history)
    with cold(early_history, store_url) as other:
        for message_id, how, seq in [("old", "committed", 1), ("out", "committed", 2)]:
            with pytest.raises(MessageIdInUse) as refused:
                other.deliver(T, [Message.user("again", id=message_id)])
            assert (refused.value.how, refused.value.seq) == (how, seq)
        with pytest.raises(MessageIdInUse) as refused:
            other.deliver(T, [Message.user("fresh", id="fresh"), Message.user("x", id="gone")])
        assert (refused.value.message_id, refused.value.how) == ("gone", "retracted")
        with pytest.raises(MessageIdInUse):
            other.submit(T, [Message.user("again", id="old")], DeliveryMode(), "run-new")
        with pytest.raises(InvalidInput, match="run-3"):
            other.freeze(T, B.NEW_RUN, "run-3")  # nothing pending: the run rules still apply
        with pytest.raises(AlreadyConsumed) as consumed:
            other.edit(T, "old", Message.user("changed"))
        assert consumed.value.seq == 1
        with pytest.raises(NotPending) as not_pending:
            other.retract(T, "gone")
        assert not_pending.value.how == "retracted"
        assert stored_count(other) == before
        assert other.pending(T) == []
        other.deliver(T, [Message.user("now", id="now")])
        with pytest.raises(ReorderMismatch) as mismatch:
            other.reorder(T, ["now", "old", "never"])
        assert (mismatch.value.not_pending, mismatch.value.unknown) == (["old"], ["never"])


def test_ids_used_before_the_snapshot_are_refused_in_outputs_and_run_starts(
    early_history: Mailbox, store_url: str
) -> None:
    with cold(early_history, store_url) as other:
        other.deliver(T, [Message.user("now", id="now")])
        other.freeze(T, B.NEW_RUN, "run-live")
        before = stored_count(other)
        with pytest.raises(MessageIdInUse) as refused:
            other.commit_output(T, "run-live", [Message.assistant("x", id="old")])
        assert (refused.value.how, refused.value.seq) == ("committed", 1)
        with pytest.raises(InvalidInput, match="run-5"):
            other.freeze(T, B.INTERRUPT, "run-5")
        assert stored_count(other) == before
        other.commit_output(T, "run-live", [Message.assistant("y", id="y")])
        assert other.thread(T).committed_count == 34


def test_hiding_a_message_committed_before_the_snapshot_works_once(
    early_history: Mailbox, store_url: str
) -> None:
    with cold(early_history, store_url) as other:
        other.hide(T, "old", "redacted")
        version = other.thread(T).version
        other.hide(T, "old", "again")
    with cold(early_history, store_url) as third:
        third.hide(T, "old", "once more")  # a third mailbox learns the hiding from the table
        assert third.thread(T).version == version
        shown = [c.message.id for c in third.committed(T)]
        assert "old" not in shown and "out" in shown


def test_an_identical_redelivery_of_a_pending_message_stays_a_no_op_after_a_cold_load(
    mailbox: Mailbox, store_url: str
) -> None:
    mailbox.deliver(T, [Message.user("kept", id="kept")], DeliveryMode.next_step())
    for n in range(70):
        mailbox.deliver(T, [Message.user("x", id=f"x{n}")])
        mailbox.retract(T, f"x{n}")
    snapshot = mailbox.store.load_snapshot(T)
    assert snapshot is not None and snapshot.version > 100
    before = stored_count(mailbox)
    with cold(mailbox, store_url) as other:
        entries = other.deliver(T, [Message.user("kept", id="kept")], DeliveryMode.next_step())
        assert [e.pending_id for e in entries] == ["kept"]
        assert stored_count(other) == before
        with pytest.raises(MessageIdInUse) as refused:
            other.deliver(T, [Message.user("other text", id="kept")], DeliveryMode.next_step())
        assert refused.value.how == "pending"


def snapshot_body(mailbox: Mailbox) -> dict[str, Any]:
    found = mailbox.store.snapshots.select_events(stream_id(T), desc=True, limit=1)  # type: ignore[attr-defined]
    body: dict[str, Any] = orjson.loads(found[0].state)
    return body


def test_the_snapshot_holds_no_ids_and_does_not_grow_with_the_thread(mailbox: Mailbox) -> None:
    rounds(mailbox, 0, 30)
    early = snapshot_body(mailbox)
    rounds(mailbox, 30, 120)
    late = snapshot_body(mailbox)
    assert set(late) == {"format", "thread_id", "version", "pending", "last_seq", "open_run"}
    assert late["version"] > 4 * early["version"]
    assert abs(len(orjson.dumps(late)) - len(orjson.dumps(early))) < 10


def format_2_snapshot(state: Thread) -> StoredEvent:
    """A snapshot as stored before the id table: every used id, by fate."""
    committed = sorted((seq, i) for i, (how, seq) in state.used.items() if how == "committed")
    body = {
        "format": 2,
        "thread_id": state.thread_id,
        "version": state.version,
        "pending": [
            {
                "message": p.message.model_dump(mode="json"),
                "mode": p.mode.model_dump(mode="json"),
                "revision": p.revision,
                "delivered_at": p.delivered_at.isoformat(),
                "updated_at": p.updated_at.isoformat(),
                "original": None,
            }
            for p in state.pending
        ],
        "committed_ids": [i for _, i in committed],
        "retracted_ids": [i for i, (how, _) in state.used.items() if how == "retracted"],
        "expired_ids": [i for i, (how, _) in state.used.items() if how == "expired"],
        "hidden": sorted(state.hidden),
        "last_seq": state.last_seq,
        "open_run": None,
        "earlier_run_ids": sorted(state.runs),
    }
    return StoredEvent(
        stream_id(state.thread_id), state.version, SNAPSHOT_TOPIC, orjson.dumps(body)
    )


def test_a_format_2_snapshot_loads_without_its_ids(mailbox: Mailbox) -> None:
    mailbox.deliver(T, [Message.user("a", id="a")])
    mailbox.freeze(T, B.NEW_RUN, "run-a")
    mailbox.finish_run(T, "run-a")
    mailbox.deliver(T, [Message.user("b", id="b")])
    full = fold(T, mailbox.store.load(T))
    restored = decode_snapshot(format_2_snapshot(full))
    assert restored is not None
    assert (restored.version, restored.last_seq, restored.open_run_id) == (6, 1, None)
    assert [p.pending_id for p in restored.pending] == ["b"]
    assert restored.used == {"b": ("pending", None)} and not restored.earlier_run_ids
    assert restored.decision_state() == full.decision_state()


# ---- upgrade in place ----------------------------------------------------------------------


def make_old(store_url: str, backend: str, state: Thread, snapshots: str) -> None:
    """Turn the store into one written before the id table: no table, a format-2 snapshot
    (in the table ``snapshots``)."""
    location = StoreLocation.parse(store_url)
    snapshot = format_2_snapshot(state)
    if backend == "sqlite":
        with sqlite3.connect(location.sqlite_path) as conn:
            conn.execute(f"DROP TABLE {TABLE}")
            conn.execute(f"DELETE FROM {snapshots}")
            conn.execute(
                f"INSERT INTO {snapshots} VALUES (?, ?, ?, ?)",
                (
                    stream_id(state.thread_id).hex,
                    snapshot.originator_version,
                    snapshot.topic,
                    snapshot.state,
                ),
            )
        return
    with pg_connect() as conn:
        schema = sql.Identifier(location.pg_schema)
        conn.execute(sql.SQL("DROP TABLE {}.{}").format(schema, sql.Identifier(TABLE)))
        conn.execute(sql.SQL("DELETE FROM {}.{}").format(schema, sql.Identifier(snapshots)))
        conn.execute(
            sql.SQL("INSERT INTO {}.{} VALUES (%s, %s, %s, %s)").format(
                schema, sql.Identifier(snapshots)
            ),
            (snapshot.originator_id, snapshot.originator_version, snapshot.topic, snapshot.state),
        )


def id_rows(store_url: str, backend: str) -> set[tuple[str, str, int]]:
    location = StoreLocation.parse(store_url)
    if backend == "sqlite":
        with sqlite3.connect(location.sqlite_path) as conn:
            rows = conn.execute(f"SELECT kind, id, version FROM {TABLE}").fetchall()
    else:
        with pg_connect() as conn:
            rows = conn.execute(
                sql.SQL("SELECT kind, id, version FROM {}.{}").format(
                    sql.Identifier(location.pg_schema), sql.Identifier(TABLE)
                )
            ).fetchall()
    return {(k, i, int(v)) for k, i, v in rows}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_written_before_the_id_table_is_upgraded_in_place(
    early_history: Mailbox, store_url: str, backend: str
) -> None:
    early_history.hide(T, "out", "tidy")
    full = fold(T, early_history.store.load(T))
    snapshots = early_history.store.snapshots.events_table_name  # type: ignore[attr-defined]
    early_history.close()
    make_old(store_url, backend, full, snapshots)

    with threadbox.open(store_url) as upgraded:
        expected = {
            ("m", "old", 2),
            ("r", "run-0", 3),
            ("m", "out", 5),
            ("m", "gone", 7),
            ("h", "out", full.version),
        }
        expected |= {("m", f"r{n}", 9 + 4 * (n - 1)) for n in range(1, 31)}
        expected |= {("r", f"run-{n}", 10 + 4 * (n - 1)) for n in range(1, 31)}
        assert id_rows(store_url, backend) == expected
        assert upgraded.store.load_snapshot(T) is not None  # the old format, upcast
        with pytest.raises(MessageIdInUse) as refused:
            upgraded.deliver(T, [Message.user("again", id="old")])
        assert (refused.value.how, refused.value.seq) == ("committed", 1)
        upgraded.hide(T, "out", "no-op")
        assert upgraded.thread(T).version == full.version
    with threadbox.open(store_url):
        assert len(id_rows(store_url, backend)) == len(expected)  # filled once


# ---- concurrent writers ----------------------------------------------------------------------


def deliver_once(url: str, message_id: str, text: str, start: Any) -> str:
    """One process: a new mailbox delivers ``message_id`` once all are ready; what happened."""
    with threadbox.open(url) as mailbox:
        mailbox.thread(T)  # loaded (cold: snapshot + tail) before the race
        start.wait(timeout=60)
        try:
            mailbox.deliver(T, [Message.user(text, id=message_id)])
        except MessageIdInUse as refused:
            return refused.how
        return "delivered"


def race(store_url: str, message_id: str, writers: int = 4) -> list[str]:
    if store_url == "memory://":
        raise AssertionError("memory stores race in threads, not processes")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(writers) as pool:
        start = manager.Barrier(writers)
        jobs = [(store_url, message_id, f"text {n}", start) for n in range(writers)]
        return sorted(pool.starmap(deliver_once, jobs, chunksize=1))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_processes_delivering_the_same_id_at_once_one_wins(
    early_history: Mailbox, store_url: str
) -> None:
    assert race(store_url, "same") == ["delivered", "pending", "pending", "pending"]
    assert race(store_url, "old") == ["committed"] * 4
    delivered = [
        m.message.id
        for e in early_history.store.load(T)
        if isinstance(e, MessagesDelivered)
        for m in e.messages
    ]
    assert delivered.count("same") == 1 and delivered.count("old") == 1


def test_mailboxes_in_threads_delivering_the_same_id_at_once_one_wins(
    early_history: Mailbox, store_url: str
) -> None:
    import threading

    start = threading.Barrier(4)
    outcomes: list[str] = []

    def one(n: int, other: Mailbox) -> None:
        start.wait(timeout=60)
        try:
            other.deliver(T, [Message.user(f"text {n}", id="same")])
            outcomes.append("delivered")
        except MessageIdInUse as refused:
            outcomes.append(refused.how)

    mailboxes = [cold(early_history, store_url) for _ in range(4)]
    try:
        for m in mailboxes:
            m.thread(T)
        workers = [threading.Thread(target=one, args=(n, m)) for n, m in enumerate(mailboxes)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
    finally:
        for m in mailboxes:
            if store_url != "memory://":
                m.close()
    assert sorted(outcomes) == ["delivered", "pending", "pending", "pending"]


# ---- import, and what a cold state learns --------------------------------------------------


def test_imported_events_write_their_ids_and_a_reused_id_is_refused(
    early_history: Mailbox, tmp_path: Any
) -> None:
    lines = list(transfer.export_lines(transfer.archive_of(early_history.store), [T]))
    with threadbox.open(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        archive = transfer.archive_of(copy.store)
        streams = transfer.read_streams(archive, lines, 0)
        assert transfer.import_streams(copy.store, copy.views, streams) == len(lines)
        with pytest.raises(MessageIdInUse) as refused:
            copy.deliver(T, [Message.user("again", id="old")])
        assert refused.value.seq == 1
        # A file that continues the thread but reuses an id: refused, nothing written.
        forged = orjson.loads(lines[1])  # the first delivery, of "old"
        version = copy.thread(T).version
        forged["version"] = forged["state"]["version"] = version + 1
        streams = transfer.read_streams(archive, [orjson.dumps(forged)], 0)
        with pytest.raises(ImportRefused, match="MessagesDelivered reuses message id 'old'"):
            transfer.import_streams(copy.store, copy.views, streams)
        assert copy.thread(T).version == version


def test_what_a_cold_state_learns_agrees_with_the_fold_of_the_whole_log(
    early_history: Mailbox,
) -> None:
    early_history.hide(T, "out", "tidy")
    early_history.deliver(T, [Message.user("late", id="late")], DeliveryMode.next_step())
    full = fold(T, early_history.store.load(T))
    snapshot = early_history.store.load_snapshot(T)
    assert snapshot is not None
    state = fold(T, early_history.store.load(T, after=snapshot.version), snapshot)
    repository = ThreadRepository(early_history.store, early_history.settings, lambda: None)  # type: ignore[arg-type,return-value]
    keys = {claims.ClaimKey(claims.MESSAGE, i) for i in full.used}
    keys |= {claims.ClaimKey(claims.HIDDEN, i) for i in full.used}
    keys |= {claims.ClaimKey(claims.RUN, r) for r in full.runs}
    keys.add(claims.ClaimKey(claims.MESSAGE, "never"))
    assert repository._learn(state, keys)
    assert state.used == full.used and state.hidden == full.hidden == {"out"}
    assert state.earlier_run_ids | set(state.runs) == set(full.runs)


def test_the_audit_reports_an_id_of_the_log_missing_from_the_id_table(mailbox: Mailbox) -> None:
    mailbox.deliver(T, [Message.user("a", id="a")])
    mailbox.deliver("fine", [Message.user("b", id="b")])
    ghost = MessagesDelivered(
        thread_id=T,
        version=3,
        timestamp=datetime.now(UTC),
        messages=[DeliveredMessage(message=Message.user("g", id="ghost"), mode=DeliveryMode())],
    )
    # written past the store's one insert, as a process of an older version would
    mailbox.store.events.insert_events([encode_event(ghost)])  # type: ignore[attr-defined]
    report = audit(mailbox.store, mailbox.views)
    assert report.problems == [f"{T}: id table: 1 ids of the log missing: ['m:ghost']"]


def test_the_memory_recorder_reads_a_stream_by_version_as_the_library_does() -> None:
    ours, library = ClaimingPOPORecorder(), POPOApplicationRecorder()
    stream, gappy = uuid.uuid4(), uuid.uuid4()
    events = [StoredEvent(stream, v, "t", b"{}") for v in range(1, 8)]
    events += [StoredEvent(gappy, v, "t", b"{}") for v in (1, 2, 5)]
    for recorder in (ours, library):
        recorder.insert_events(events)
    for sid in (stream, gappy, uuid.uuid4()):
        for gt, lte, desc, limit in itertools.product(
            (None, 0, 2, 7), (None, 0, 3, 9), (False, True), (None, 0, 1, 3)
        ):
            read = {
                "by version": ours.select_events(sid, gt=gt, lte=lte, desc=desc, limit=limit),
                "scan": library.select_events(sid, gt=gt, lte=lte, desc=desc, limit=limit),
            }
            assert read["by version"] == read["scan"], (gt, lte, desc, limit)
