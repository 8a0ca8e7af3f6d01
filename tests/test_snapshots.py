"""Snapshots written with the events that make them due (ADR 0010): one transaction, the state
the events were decided on, older snapshots deleted in it; a write that fails or a writer killed
before its commit leaves neither; a snapshot that cannot be written does not fail the command.
And the events a cold load folds decode the same by the direct JSON path as by the general one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import threadbox
from eventsourcing.persistence import StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message, Settings
from threadbox.application.ports import IdsTaken, StreamConflict
from threadbox.audit import audit
from threadbox.domain import events as ev
from threadbox.domain.thread import Thread, fold
from threadbox.errors import CorruptHistory
from threadbox.infrastructure import codec
from threadbox.infrastructure.codec import encode_event, stream_id
from threadbox.infrastructure.pg_columns import Texts
from threadbox.infrastructure.snapshots import SnapshottingPostgresRecorder

T = "thread-snap"
EVERY = 5
EVERY_5 = Settings(snapshot_interval=EVERY, snapshot_interval_max=EVERY)


def snapshot_rows(mailbox: Mailbox, thread_id: str = T) -> list[StoredEvent]:
    """Every snapshot row of the thread, as the snapshot recorder holds them, newest first."""
    recorder: Any = mailbox.store.snapshots  # type: ignore[attr-defined]
    return list(recorder.select_events(stream_id(thread_id), desc=True))


def stored_versions(mailbox: Mailbox, thread_id: str = T) -> int:
    """How many events the thread's log holds (0: none)."""
    return len(mailbox.store.load(thread_id))


def deliver(mailbox: Mailbox, n: int, thread_id: str = T) -> None:
    mailbox.deliver(thread_id, [Message.user(f"m{n}", id=f"{thread_id}/m{n}")])


def test_each_snapshot_is_of_the_version_before_the_write_that_crosses_a_multiple(
    store_url: str,
) -> None:
    """Deliveries, run starts and ends: after every command the thread has one snapshot, of the
    version just before the latest write that took it past a multiple of the interval
    (computed here from the versions each command reached)."""
    with threadbox.open(store_url, settings=EVERY_5) as mailbox:
        expected: int | None = None
        for n in range(45):
            before = stored_versions(mailbox)
            if n % 9 == 7:
                mailbox.freeze(T, DeliveryBoundary.NEW_RUN, f"run-{n}")
            elif n % 9 == 8:
                mailbox.finish_run(T, f"run-{n - 1}")
            else:
                deliver(mailbox, n)
            after = stored_versions(mailbox)
            if before > 0 and after // EVERY > before // EVERY:
                expected = before
            rows = snapshot_rows(mailbox)
            assert [r.originator_version for r in rows] == ([] if expected is None else [expected])
        assert expected is not None and expected > 40
        snapshot = mailbox.store.load_snapshot(T)
        assert snapshot is not None
        tail = mailbox.store.load(T, after=snapshot.version)
        history = mailbox.store.load(T)
        assert fold(T, tail, snapshot).decision_state() == fold(T, history).decision_state()


def conflicting_write(mailbox: Mailbox) -> tuple[Thread, list[ev.AnyThreadEvent]]:
    """A state at the thread's version and a delivery decided on it, by the domain alone."""
    state = fold(T, mailbox.store.load(T))
    event = ev.MessagesDelivered(
        thread_id=T,
        version=state.version + 1,
        timestamp=datetime.now(UTC),
        messages=[
            ev.DeliveredMessage(message=Message.user("late", id=f"{T}/m0"), mode=DeliveryMode())
        ],
    )
    return state, [event]


def test_a_write_refused_for_a_taken_id_leaves_no_snapshot(mailbox: Mailbox) -> None:
    for n in range(3):
        deliver(mailbox, n)
    state, events = conflicting_write(mailbox)  # reuses m0's id
    with pytest.raises(IdsTaken):
        mailbox.store.append(events, state)
    assert snapshot_rows(mailbox) == []
    assert stored_versions(mailbox) == state.version


def test_a_write_overtaken_by_another_writer_leaves_no_snapshot(mailbox: Mailbox) -> None:
    for n in range(3):
        deliver(mailbox, n)
    state = fold(T, mailbox.store.load(T, upto=2))  # stale: version 2 of 4
    event = ev.MessagesDelivered(
        thread_id=T,
        version=3,
        timestamp=datetime.now(UTC),
        messages=[ev.DeliveredMessage(message=Message.user("x", id="new"), mode=DeliveryMode())],
    )
    with pytest.raises(StreamConflict):
        mailbox.store.append([event], state)
    assert snapshot_rows(mailbox) == []
    assert mailbox.store.load_snapshot(T) is None


def test_a_snapshot_of_a_stored_version_replaces_it_and_older_ones_go(mailbox: Mailbox) -> None:
    for n in range(6):
        deliver(mailbox, n)
    early = fold(T, mailbox.store.load(T, upto=3))
    mailbox.store.save_snapshot(early)
    mailbox.store.save_snapshot(early)  # the same version again: no error, still one row
    assert [r.originator_version for r in snapshot_rows(mailbox)] == [3]
    later = fold(T, mailbox.store.load(T))
    mailbox.store.save_snapshot(later)
    assert [r.originator_version for r in snapshot_rows(mailbox)] == [later.version]


def failing_statement(cursor: Any, *args: Any) -> None:
    """A snapshot statement the database refuses, in the events' transaction."""
    cursor.execute("INSERT INTO no_such_table VALUES (1)")


@pytest.mark.parametrize(
    ("backend", "fault"),
    [
        *((backend, "unencodable") for backend in ("memory", "sqlite", "postgres")),
        *((backend, "refused by the database") for backend in ("sqlite", "postgres")),
    ],
)
def test_a_snapshot_that_cannot_be_written_does_not_fail_the_command(
    store_url: str,
    fault: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with threadbox.open(store_url, settings=EVERY_5) as mailbox:
        if fault == "unencodable":

            def broken(state: Thread) -> StoredEvent:
                raise ValueError("a snapshot this code cannot encode")

            monkeypatch.setattr("threadbox.infrastructure.store.encode_snapshot", broken)
        else:  # the whole transaction fails: the events are written again, without it
            for name in ("write_sqlite_snapshot", "write_postgres_snapshot"):
                monkeypatch.setattr(f"threadbox.infrastructure.snapshots.{name}", failing_statement)
            # PostgreSQL writes the snapshot in the events' one statement (ADR 0024): a topic
            # the database refuses (text cannot hold NUL) fails that statement whole.
            params = SnapshottingPostgresRecorder._params

            def refused(self: Any, *args: Any, snapshot: Any = None, **kwargs: Any) -> Any:
                found = params(self, *args, snapshot=snapshot, **kwargs)
                if snapshot is not None:
                    found[-2] = Texts(["a topic with a NUL \x00"])
                return found

            monkeypatch.setattr(SnapshottingPostgresRecorder, "_params", refused)
        for n in range(12):  # past two multiples of the interval
            deliver(mailbox, n)
        assert [e.pending_id for e in mailbox.pending(T)] == [f"{T}/m{n}" for n in range(12)]
        assert stored_versions(mailbox) == 13  # each delivery once: no write twice
        assert mailbox.snapshot_failures == 2  # versions 2 -> 5 .. 9 -> 10: at 4 and 9
        assert "snapshot of thread" in caplog.text


# ---- killed before the commit ------------------------------------------------------------------

KILL_AFTER_SNAPSHOT = """
import os, signal, sys
import threadbox
from threadbox import Message, Settings
from threadbox.infrastructure import snapshots

url, thread_id = sys.argv[1], sys.argv[2]
settings = Settings(snapshot_interval=5, snapshot_interval_max=5)
with threadbox.open(url, settings=settings) as mailbox:
    for n in range(3):  # versions 1..4
        mailbox.deliver(thread_id, [Message.user(f"m{n}", id=f"m{n}")])

    def killing(written):
        def killed(*args):  # after the snapshot's statements, before the transaction's commit
            written(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        return killed

    for name in ("write_sqlite_snapshot", "write_postgres_snapshot"):
        setattr(snapshots, name, killing(getattr(snapshots, name)))

    # PostgreSQL: the snapshot is in the events' one statement, which is the transaction
    # (ADR 0024): no moment lies between them; the latest is once its columns are made.
    params = snapshots.SnapshottingPostgresRecorder._params

    def params_then_killed(self, *args, snapshot=None, **kwargs):
        found = params(self, *args, snapshot=snapshot, **kwargs)
        if snapshot is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return found

    snapshots.SnapshottingPostgresRecorder._params = params_then_killed
    mailbox.deliver(thread_id, [Message.user("m3", id="m3")])  # 4 -> 5: carries a snapshot
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_writer_killed_between_its_snapshot_and_its_commit_leaves_neither(
    store_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(KILL_AFTER_SNAPSHOT)
    child = subprocess.run(
        [sys.executable, str(script), store_url, T], capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    with threadbox.open(store_url, settings=EVERY_5) as mailbox:
        assert stored_versions(mailbox) == 4  # the killed write is not in the log
        assert snapshot_rows(mailbox) == []  # nor its snapshot
        report = audit(mailbox.store, mailbox.views)
        assert report.ok, report.problems[:5]
        # The same delivery again, from a new process: now it is saved, with its snapshot.
        mailbox.deliver(T, [Message.user("m3", id="m3")])
        assert [r.originator_version for r in snapshot_rows(mailbox)] == [4]
        assert [e.pending_id for e in mailbox.pending(T)] == ["m0", "m1", "m2", "m3"]


# ---- decoding a tail -----------------------------------------------------------------------------


def general_decode(stored: StoredEvent) -> ev.AnyThreadEvent:
    """The general path, written out: parse, upcast from ``"_v"``, validate the dict."""
    cls = ev.EVENT_TYPES[stored.topic.rpartition(":")[2]]
    payload = orjson.loads(stored.state)
    return cls.model_validate(cls.upcast(payload, payload.pop("_v")))  # type: ignore[return-value]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
TEXTS = st.text(st.characters(exclude_categories=("Cs",)))  # what a str can hold as UTF-8
MESSAGES = st.builds(
    lambda text, metadata, role: Message(
        role=role, content=[{"type": "text", "text": text}], metadata=metadata
    ),
    TEXTS,
    st.dictionaries(st.text(), JSON_VALUES, max_size=4),
    st.sampled_from(["user", "assistant", "system"]),
)
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(MESSAGES, min_size=1, max_size=3), TIMES, st.integers(1, 10**9))
def test_an_event_decodes_by_the_json_path_as_by_the_general_one(
    messages: list[Message], at: datetime, version: int
) -> None:
    delivered = ev.MessagesDelivered(
        thread_id="t",
        version=version,
        timestamp=at,
        messages=[ev.DeliveredMessage(message=m, mode=DeliveryMode.next_step()) for m in messages],
    )
    frozen = ev.PendingMessagesFrozen(
        thread_id="t",
        version=version + 1,
        timestamp=at + timedelta(microseconds=1) if at.year < 9999 else at,
        run_id="r",
        boundary=DeliveryBoundary.NEXT_STEP,
        first_seq=1,
        last_seq=len(messages),
        messages=[
            ev.FrozenMessage(seq=n + 1, message=m, mode=DeliveryMode.next_step(), revision=0)
            for n, m in enumerate(messages)
        ],
    )
    for event in (delivered, frozen):
        stored = encode_event(event)
        assert codec.decode_event(stored) == general_decode(stored) == event


def test_an_older_payload_version_and_a_bad_payload_take_the_general_path(
    mailbox: Mailbox,
) -> None:
    deliver(mailbox, 0)
    stored = mailbox.store.events.select_events(stream_id(T))  # type: ignore[attr-defined]
    event = stored[1]
    assert event.state.startswith(b'{"_v":1,')
    spaced = StoredEvent(event.originator_id, 2, event.topic, b'{"_v": 1, ' + event.state[8:])
    assert codec.decode_event(spaced) == general_decode(event)
    renamed = event.state.replace(b'"messages"', b'"m"')
    broken = StoredEvent(event.originator_id, 2, event.topic, renamed)
    with pytest.raises(CorruptHistory, match="does not decode as MessagesDelivered"):
        codec.decode_event(broken)
