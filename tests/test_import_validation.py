"""Import checks every stream before it writes (issue 9, findings 1 and 10; ADR 0011): each bad
line of an exported file is refused with its line number and reason, nothing of the file is
written, the command line exits 1 without a traceback; a store that holds such events anyway
(written past the checks) is reported clearly by show, audit and views verify, never "match"."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import threadbox
from fastapi.testclient import TestClient
from threadbox import DeliveryMode, Mailbox, Message
from threadbox.application import transfer
from threadbox.application.ports import ArchivedEvent, StreamConflict
from threadbox.audit import audit
from threadbox.errors import CorruptHistory, ImportRefused
from threadbox.infrastructure.codec import stored_of
from threadbox.infrastructure.http import create_app
from threadbox.infrastructure.store import RecorderStore

Record = dict[str, Any]
Records = list[Record]


def exported() -> Records:
    """The export of a small store: thread t1 with a finished run, thread t2 with a pending
    message targeted at its open run, as the lines of ``threadbox export`` (log order)."""
    with threadbox.open("memory://") as mb:
        mb.deliver("t1", [Message.user("hello", id="m1")])  # t1 v1, v2
        mb.freeze("t1", "new_run", "r1")  # v3 RunStarted, v4 PendingMessagesFrozen (m1, seq 1)
        mb.deliver("t2", [Message.user("steer", id="s1")], DeliveryMode.next_step())
        mb.commit_output("t1", "r1", [Message.assistant("hi", id="o1")])  # v5
        mb.deliver("t1", [Message.user("later", id="m2")])  # v6
        mb.finish_run("t1", "r1")  # v7
        archive = transfer.archive_of(mb.store)
        return [orjson.loads(line) for line in transfer.export_lines(archive, [])]


def at(records: Records, thread_id: str, version: int) -> Record:
    """The line of the thread's version (``True`` finds a version written as ``true``)."""
    return next(
        r
        for r in records
        if r["thread_id"] == thread_id
        and r["version"] == version
        and type(r["version"]) is type(version)
    )


def line_of(records: Records, thread_id: str, version: int) -> int:
    return records.index(at(records, thread_id, version)) + 1


def forged(records: Records, thread_id: str, type_name: str, **fields: Any) -> Records:
    """``records`` and one more event at the thread's next version."""
    last = max(r["version"] for r in records if r["thread_id"] == thread_id)
    timestamp = at(records, thread_id, last)["timestamp"]
    state = {"_v": 1, "thread_id": thread_id, "version": last + 1, "timestamp": timestamp}
    return [
        *records,
        {
            "thread_id": thread_id,
            "version": last + 1,
            "type": type_name,
            "topic": f"threadbox.domain.events:{type_name}",
            "timestamp": timestamp,
            "state": {**state, **fields},
        },
    ]


def set_state(thread_id: str, at_version: int, **fields: Any) -> Callable[[Records], Records]:
    def change(records: Records) -> Records:
        record = at(records, thread_id, at_version)
        record["state"].update(fields)
        if "timestamp" in fields:  # the line repeats the payload's timestamp
            record["timestamp"] = fields["timestamp"]
        return records

    return change


def first_message(thread_id: str, version: int, **fields: Any) -> Callable[[Records], Records]:
    def change(records: Records) -> Records:
        at(records, thread_id, version)["state"]["messages"][0]["message"].update(fields)
        return records

    return change


def without_field(thread_id: str, version: int, name: str) -> Callable[[Records], Records]:
    def change(records: Records) -> Records:
        del at(records, thread_id, version)["state"][name]
        return records

    return change


def renamed(new_id: str) -> Callable[[Records], Records]:
    """Thread t1 under another id (its lines and payloads)."""

    def change(records: Records) -> Records:
        for r in records:
            if r["thread_id"] == "t1":
                r["thread_id"] = r["state"]["thread_id"] = new_id
        return records

    return change


def without_thread_opened(records: Records) -> Records:
    """t1 starting with its delivery at version 1 (ThreadOpened left out, versions renumbered)."""
    kept = [r for r in records if (r["thread_id"], r["version"]) != ("t1", 1)]
    for r in kept:
        if r["thread_id"] == "t1":
            r["version"] = r["state"]["version"] = r["version"] - 1
    return kept


def line_version(value: Any) -> Callable[[Records], Records]:
    def change(records: Records) -> Records:
        at(records, "t1", 3)["version"] = value
        return records

    return change


def seq_as_string(records: Records) -> Records:
    at(records, "t1", 4)["state"]["messages"][0]["seq"] = "1"  # pydantic alone would take it
    return records


# Each bad line: how the export is changed, the line it makes bad (thread, version; None for
# the line added last) and words of the reason the refusal gives.
BAD_LINES: dict[str, tuple[Callable[[Records], Records], tuple[str, int] | None, str]] = {
    "a freeze by a run that does not exist": (
        set_state("t1", 4, run_id="ghost"),
        ("t1", 4),
        "PendingMessagesFrozen for run 'ghost', which is not running",
    ),
    "role wizard": (
        first_message("t1", 2, role="wizard"),
        ("t1", 2),
        "does not decode as MessagesDelivered",
    ),
    "messages garbage": (
        set_state("t1", 2, messages="garbage"),
        ("t1", 2),
        "does not decode as MessagesDelivered",
    ),
    "a timestamp that is not one": (
        set_state("t1", 3, timestamp="yesterday"),
        ("t1", 3),
        "does not decode as RunStarted",
    ),
    "a timestamp without a time zone": (
        set_state("t1", 3, timestamp="2026-01-01T00:00:00"),
        ("t1", 3),
        "is not in UTC",
    ),
    "a first event that is not ThreadOpened": (
        without_thread_opened,
        ("t1", 1),
        "a thread's first event, and only it, is ThreadOpened",
    ),
    "a 5,000-character thread id": (
        renamed("x" * 5000),
        ("x" * 5000, 1),
        "thread_id is 5000 characters long; at most 200",
    ),
    "a thread id with a NUL": (
        renamed("t\x001"),
        ("t\x001", 1),
        "thread_id must not contain a control character",
    ),
    "a line version true": (line_version(True), ("t1", True), "version True is not a whole number"),
    "a payload version true": (
        set_state("t1", 3, version=True),
        ("t1", 3),
        "state's version True is not the line's 3",
    ),
    "a payload version that disagrees with its line": (
        set_state("t1", 3, version=9),
        ("t1", 3),
        "state's version 9 is not the line's 3",
    ),
    "a message id that is not one": (
        first_message("t1", 2, id="m\x00"),
        ("t1", 2),
        "does not decode as MessagesDelivered",
    ),
    "a seq as a string": (seq_as_string, ("t1", 4), "field 'messages'"),
    "a field with a default left out": (
        without_field("t1", 7, "by_run_id"),
        ("t1", 7),
        "field 'by_run_id' is missing (it decodes as None)",
    ),
    "a forged retraction of a committed message": (
        lambda records: forged(
            records, "t1", "PendingMessageRetracted", pending_id="m1", revision=1
        ),
        None,
        "PendingMessageRetracted names 'm1', which is not pending",
    ),
    "a forged expiry of a committed message": (
        lambda records: forged(
            records, "t1", "PendingMessagesExpired", run_id="r1", pending_ids=["m1"]
        ),
        None,
        "PendingMessagesExpired names 'm1', which is not pending",
    ),
    "an output by a finished run": (
        lambda records: forged(
            records,
            "t1",
            "RunOutputCommitted",
            run_id="r1",
            messages=[{"seq": 3, "message": Message.assistant("late", id="o2").model_dump()}],
        ),
        None,
        "RunOutputCommitted for run 'r1', which is not running",
    ),
}


def bad_file(case: str) -> tuple[list[bytes], int, str]:
    """The lines of the changed export, the number of the bad line and the reason's words."""
    change, where, reason = BAD_LINES[case]
    records = change(exported())
    number = len(records) if where is None else line_of(records, *where)
    return [orjson.dumps(r) + b"\n" for r in records], number, reason


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_a_bad_line_is_refused_with_its_number_and_reason_and_nothing_is_written(
    mailbox: Mailbox, case: str
) -> None:
    lines, number, reason = bad_file(case)
    archive = transfer.archive_of(mailbox.store)
    with pytest.raises(ImportRefused) as refused:
        transfer.import_streams(
            mailbox.store, mailbox.views, transfer.read_streams(archive, lines, 0)
        )
    assert refused.value.message.startswith("import refused, nothing written: ")
    problem = refused.value.problems[0]  # a renamed thread is wrong on every line: the first
    assert problem.startswith(f"line {number}")
    assert reason in problem
    assert mailbox.store.count_after("") == 0  # nothing of t1, nor of the good thread t2
    assert mailbox.views.verify().ok


def test_the_same_file_without_the_bad_line_imports_and_folds(mailbox: Mailbox) -> None:
    lines = [orjson.dumps(r) + b"\n" for r in exported()]
    archive = transfer.archive_of(mailbox.store)
    written = transfer.import_streams(
        mailbox.store, mailbox.views, transfer.read_streams(archive, lines, 0)
    )
    assert written == len(lines) == mailbox.store.count_after("")
    report = audit(mailbox.store, mailbox.views)
    assert report.ok, report.problems
    assert report.fate("t1", "m1") == "committed"
    assert [p.pending_id for p in mailbox.pending("t2")] == ["s1"]


def test_every_refused_stream_is_named_at_once(mailbox: Mailbox) -> None:
    records = set_state("t2", 2, messages="garbage")(set_state("t1", 4, run_id="ghost")(exported()))
    archive = transfer.archive_of(mailbox.store)
    lines = [orjson.dumps(r) + b"\n" for r in records]
    with pytest.raises(ImportRefused) as refused:
        transfer.import_streams(
            mailbox.store, mailbox.views, transfer.read_streams(archive, lines, 0)
        )
    assert [p.split(" ")[:2] for p in refused.value.problems] == [
        ["line", str(line_of(records, "t1", 4))],
        ["line", str(line_of(records, "t2", 2))],
    ]


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "threadbox", "--url", url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_the_import_command_exits_1_naming_the_line_without_a_traceback(
    tmp_path: Path, case: str
) -> None:
    lines, number, reason = bad_file(case)
    dump = tmp_path / "bad.jsonl"
    dump.write_bytes(b"".join(lines))
    url = f"sqlite:///{tmp_path / 'target.db'}"
    done = run_cli(url, "import", str(dump))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        f"error [import_refused]: import refused, nothing written: line {number}"
    )
    assert reason.split("'")[0] in done.stderr
    assert "Traceback" not in done.stderr
    with threadbox.open(url) as target:
        assert target.store.count_after("") == 0


# ---- a store that holds what no decision wrote (written past the checks) ----------------------


def damage(mailbox: Mailbox, case: str) -> None:
    """Write the changed export as it is, straight into the store's event table, past every
    check and without id rows (as a buggy older import did)."""
    lines, _, _ = bad_file(case)
    events = [
        ArchivedEvent(r["thread_id"], r["version"], r["type"], r["topic"], r["state"])
        for r in map(orjson.loads, lines)
    ]
    store = mailbox.store
    assert isinstance(store, RecorderStore)
    for thread_id in dict.fromkeys(e.thread_id for e in events):
        store.events.insert_events([stored_of(e) for e in events if e.thread_id == thread_id])


UNFOLDABLE = [
    "a freeze by a run that does not exist",
    "messages garbage",
    "role wizard",
    "a forged retraction of a committed message",
    "a forged expiry of a committed message",
]


@pytest.mark.parametrize("case", UNFOLDABLE)
def test_verify_and_audit_report_a_store_that_cannot_be_folded(mailbox: Mailbox, case: str) -> None:
    damage(mailbox, case)
    report = mailbox.views.verify()
    assert not report.ok
    assert report.differences
    found = audit(mailbox.store, mailbox.views)
    assert not found.ok
    assert any(p.startswith("t1: v") for p in found.problems), found.problems


@pytest.mark.parametrize("case", ["a freeze by a run that does not exist", "messages garbage"])
def test_a_thread_that_cannot_be_folded_is_a_clear_error(mailbox: Mailbox, case: str) -> None:
    damage(mailbox, case)
    bad = 2 if case == "messages garbage" else 4
    with pytest.raises(CorruptHistory) as corrupt:
        mailbox.pending("t1")  # the thread's state, folded from its log
    assert (corrupt.value.thread_id, corrupt.value.version) == ("t1", bad)
    with pytest.raises(CorruptHistory) as corrupt:
        mailbox.thread("t1", at_version=7)  # the log, as it was then
    assert (corrupt.value.thread_id, corrupt.value.version) == ("t1", bad)
    assert [e.pending_id for e in mailbox.pending("t2")] == ["s1"]  # other threads as before


@pytest.mark.parametrize("case", UNFOLDABLE)
def test_show_audit_and_verify_commands_fail_clearly_on_a_store_that_cannot_be_folded(
    tmp_path: Path, case: str
) -> None:
    url = f"sqlite:///{tmp_path / 'damaged.db'}"
    with threadbox.open(url) as mailbox:
        damage(mailbox, case)
    last = sum(1 for line in bad_file(case)[0] if orjson.loads(line)["thread_id"] == "t1")
    # show folds the thread's log at its last version (its latest state reads the views)
    commands = {**COMMANDS, "show": ["show", "t1", "--at-version", str(last)]}
    outcomes = {name: run_cli(url, *args) for name, args in commands.items()}
    for name, done in outcomes.items():
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (name, done.stderr)
    assert outcomes["show"].stderr.startswith(
        ("error [corrupt_history]: thread 't1'", "error [projection_failed]")
    )
    assert "\nt1: v" in outcomes["audit"].stdout
    assert "views match" not in outcomes["verify"].stdout
    assert outcomes["verify"].stdout.strip()  # the differences


COMMANDS = {"audit": ["audit"], "verify": ["views", "verify"]}


# ---- each stream all or nothing (finding 10) --------------------------------------------------


def many_threads(count: int) -> bytes:
    """An export of ``count`` threads, each a delivery, a run with an output, and its end."""
    with threadbox.open("memory://") as mb:
        for n in range(count):
            thread_id = f"thread-{n}"
            mb.deliver(thread_id, [Message.user(f"q{k}", id=f"q{k}") for k in range(3)])
            mb.freeze(thread_id, "new_run", "run")
            mb.commit_output(thread_id, "run", [Message.assistant("a", id="a")])
            mb.finish_run(thread_id, "run")
        return b"".join(transfer.export_lines(transfer.archive_of(mb.store), []))


def stored_count(archive: transfer.EventArchive, count: int) -> int:
    return sum(1 for n in range(count) if archive.stored_version(f"thread-{n}"))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_import_killed_midway_leaves_whole_streams_and_resumes_with_skip_existing(
    store_url: str, tmp_path: Path
) -> None:
    count = 400
    dump = tmp_path / "many.jsonl"
    dump.write_bytes(many_threads(count))
    command = [sys.executable, "-m", "threadbox", "--url", store_url, "import", str(dump)]
    with threadbox.open(store_url) as target:
        importing = subprocess.Popen(command, stderr=subprocess.PIPE)
        while importing.poll() is None and target.store.count_after("") == 0:
            pass  # until the first stream is written (or the import ended)
        importing.kill()  # kill -9
        importing.wait()
        archive = transfer.archive_of(target.store)
        stored = {archive.stored_version(f"thread-{n}") for n in range(count)}
        full = max(stored)
        assert stored <= {0, full}, "a thread is there whole or not at all"
        assert full == 6  # ThreadOpened, delivery, RunStarted, freeze, output, RunFinished
        print(f"killed with {stored_count(archive, count)} of {count} threads written")
    resumed = run_cli(store_url, "import", "--skip-existing", str(dump))
    assert resumed.returncode == 0, resumed.stderr
    with threadbox.open(store_url) as target:
        archive = transfer.archive_of(target.store)
        assert {archive.stored_version(f"thread-{n}") for n in range(count)} == {full}
        assert audit(target.store, target.views).ok


def test_skip_existing_leaves_out_identical_events_and_refuses_different_ones(
    mailbox: Mailbox,
) -> None:
    records = exported()
    archive = transfer.archive_of(mailbox.store)
    part = [r for r in records if r["thread_id"] == "t2" or r["version"] <= 3]
    imported = transfer.import_streams(
        mailbox.store, mailbox.views, transfer.read_streams(archive, lines_from(part), 0)
    )
    assert imported == len(part)
    rest = transfer.import_streams(
        mailbox.store,
        mailbox.views,
        transfer.read_streams(archive, lines_from(records), 0),
        skip_existing=True,
    )
    assert rest == len(records) - len(part)
    assert audit(mailbox.store, mailbox.views).ok
    copy = orjson.loads(orjson.dumps(records))
    changed = first_message("t1", 2, content=[{"type": "text", "text": "other"}])(copy)
    before = mailbox.store.committed_head()
    with pytest.raises(ImportRefused) as refused:
        transfer.import_streams(
            mailbox.store,
            mailbox.views,
            transfer.read_streams(archive, lines_from(changed), 0),
            skip_existing=True,
        )
    assert refused.value.problems == [
        f"line {line_of(copy, 't1', 2)}: thread 't1' version 2 differs from the store's copy"
    ]
    assert mailbox.store.committed_head() == before


def lines_from(records: Records) -> list[bytes]:
    return [orjson.dumps(r) + b"\n" for r in records]


# ---- views verify: a position is a position, a count a count (finding 12a) -------------------


def test_verify_reports_the_log_position_and_the_event_count_apart(mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("a", id="a")])
    opened = mailbox.store.load("t1", upto=1)
    with pytest.raises(StreamConflict):
        mailbox.store.append(opened)  # on PostgreSQL the failed insert uses up positions
    mailbox.deliver("t1", [Message.user("b", id="b")])
    report = mailbox.views.verify()  # caught up: every event up to its position is readable
    events = mailbox.store.read(after="", limit=100)
    assert report.ok, report.differences
    assert report.events == len(events) == 3
    assert report.position == events[-1].position == mailbox.store.last_position()


def test_http_answers_a_thread_that_cannot_be_folded_with_a_problem(mailbox: Mailbox) -> None:
    damage(mailbox, "a freeze by a run that does not exist")
    with TestClient(create_app(mailbox), raise_server_exceptions=False) as client:
        found = client.get("/v1/threads/t1/pending")  # the thread's state, from its log
    assert found.status_code == 500
    assert found.headers["content-type"].startswith("application/problem+json")
    assert found.json()["code"] == "corrupt_history"
    assert "t1" in found.json()["detail"]


def test_import_progress_counts_the_events_checked_then_written(mailbox: Mailbox) -> None:
    records = exported()
    archive = transfer.archive_of(mailbox.store)
    seen: list[tuple[int, int]] = []
    streams = transfer.read_streams(archive, lines_from(records), 0)
    transfer.import_streams(mailbox.store, mailbox.views, streams, lambda d, t: seen.append((d, t)))
    n = len(records)
    assert {total for _, total in seen} == {2 * n}
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[1] == (n, 2 * n)  # both threads checked (t1, then t2) before any is written
    assert seen[-1] == (2 * n, 2 * n)


def test_a_message_over_the_size_limit_is_refused_as_a_delivery_would_be(
    mailbox: Mailbox,
) -> None:
    long = {"content": [{"type": "text", "text": "x" * 300}]}
    records = first_message("t1", 4, **long)(first_message("t1", 2, **long)(exported()))
    archive = transfer.archive_of(mailbox.store)
    streams = transfer.read_streams(archive, lines_from(records), 0)
    with pytest.raises(ImportRefused) as refused:
        transfer.import_streams(mailbox.store, mailbox.views, streams, max_message_bytes=300)
    [problem] = refused.value.problems
    assert problem.startswith(f"line {line_of(records, 't1', 2)} ")
    size = len(orjson.dumps(at(records, "t1", 2)["state"]["messages"][0]["message"]))
    assert problem.endswith(f"message 'm1' is {size} bytes encoded; the limit is 300")
    assert mailbox.store.count_after("") == 0
    assert transfer.import_streams(
        mailbox.store, mailbox.views, streams, max_message_bytes=size
    ) == len(records)
