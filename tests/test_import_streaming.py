"""Import in flat memory (issue 13 §7, ADR 0022): the file is read once into an index of where
each thread's lines are, and each thread is checked, then written, from its lines read again.
What that design adds, tested here: a file that changes between the reads is refused (before
anything is written, or at the thread it reached), an input that cannot seek is spooled (to disk
past ``SPOOL_IN_MEMORY``), stdin works, a file of bad lines keeps the first problems and counts
the rest, and the views' check on an ``Outline`` of the rows fails exactly when full rows do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import threadbox
from export_support import write_export
from threadbox import Mailbox, Message
from threadbox.application import transfer
from threadbox.errors import ImportRefused
from threadbox.infrastructure.cli import build_cli
from threadbox.projections import changes_for
from threadbox.projections.changes import Change, Delete, Extend, Increment, Insert, Update
from threadbox.projections.tables import Outline, Tables
from typer.testing import CliRunner


def small_export() -> bytes:
    """Three threads, t1 before t2 before t3 in the file, their lines interleaved."""
    with threadbox.open("memory://") as mb:
        for n in range(3):
            for t in ("t1", "t2", "t3"):
                mb.deliver(t, [Message.user(f"hello {n}", id=f"{t}-m{n}")])
        mb.freeze("t2", "new_run", "r1")
        mb.commit_output("t2", "r1", [Message.assistant("hi", id="o1")])
        return b"".join(transfer.export_lines(transfer.archive_of(mb.store), []))


def threads_of(data: bytes) -> dict[str, int]:
    """How many events each thread has in an export."""
    counts: dict[str, int] = {}
    for line in data.splitlines():
        thread_id = orjson.loads(line)["thread_id"]
        counts[thread_id] = counts.get(thread_id, 0) + 1
    return counts


def change_line(path: Path, thread_id: str) -> int:
    """Change one character of the thread's last line, keeping its length; its number."""
    lines = path.read_bytes().splitlines(keepends=True)
    number = max(n for n, line in enumerate(lines) if orjson.loads(line)["thread_id"] == thread_id)
    assert b"hello" in lines[number] or b'"hi"' in lines[number]
    lines[number] = lines[number].replace(b"hello", b"jello").replace(b'"hi"', b'"ho"')
    path.write_bytes(b"".join(lines))
    return number + 1


def test_a_file_changed_after_it_was_read_is_refused_and_nothing_is_written(
    mailbox: Mailbox, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(small_export())
    archive = transfer.archive_of(mailbox.store)
    with dump.open("rb") as handle:
        streams = transfer.read_streams(archive, handle, dump.stat().st_size)
        number = change_line(dump, "t3")
        with pytest.raises(ImportRefused) as refused:
            transfer.import_streams(mailbox.store, mailbox.views, streams)
    assert refused.value.message.startswith("import refused, nothing written: the file changed")
    assert refused.value.problems == [f"line {number} changed since the file was read"]
    assert mailbox.store.count_after("") == 0


def test_a_file_changed_while_writing_stops_at_that_thread_leaving_the_others_whole(
    mailbox: Mailbox, tmp_path: Path
) -> None:
    data = small_export()
    counts = threads_of(data)
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(data)
    archive = transfer.archive_of(mailbox.store)
    changed: list[int] = []

    def progress(done: int, total: int) -> None:
        if done == total // 2 and not changed:  # every thread checked, none written yet
            changed.append(change_line(dump, "t2"))

    with dump.open("rb") as handle:
        streams = transfer.read_streams(archive, handle, 0)
        with pytest.raises(ImportRefused) as refused:
            transfer.import_streams(mailbox.store, mailbox.views, streams, progress)
    assert refused.value.message == (
        f"the file changed while it was imported (line {changed[0]} changed since the file was "
        f"read); nothing of thread 't2' was written (1 threads, {counts['t1']} events, were "
        "imported before it)"
    )
    assert [archive.stored_version(t) for t in ("t1", "t2", "t3")] == [counts["t1"], 0, 0]


def test_an_input_that_cannot_seek_is_spooled_to_disk_and_imports_whole(
    mailbox: Mailbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = tmp_path / "dump.jsonl"
    events = write_export(dump, threads=5, rounds=3)
    monkeypatch.setattr(transfer, "SPOOL_IN_MEMORY", 1000)  # a few lines, then on disk
    archive = transfer.archive_of(mailbox.store)
    lines = iter(dump.read_bytes().splitlines(keepends=True))  # an iterator: no seek
    with transfer.read_streams(archive, lines, 0) as streams:
        assert streams._file._rolled  # type: ignore[attr-defined]  # on disk
        assert transfer.import_streams(mailbox.store, mailbox.views, streams) == events
    exported = b"".join(transfer.export_lines(archive, []))
    assert sorted(exported.splitlines()) == sorted(dump.read_bytes().splitlines())


def test_stdin_imports(tmp_path: Path) -> None:
    data = small_export()
    url = f"sqlite:///{tmp_path / 'target.db'}"
    result = CliRunner().invoke(build_cli({"THREADBOX_URL": url}), ["import", "-"], input=data)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"imported {len(data.splitlines())} events of 3 threads\n"
    with threadbox.open(url) as copy:
        archive = transfer.archive_of(copy.store)
        copied = b"".join(transfer.export_lines(archive, []))  # in the order written: by thread
        assert sorted(copied.splitlines()) == sorted(data.splitlines())


def test_a_file_of_bad_lines_keeps_the_first_problems_and_counts_the_rest(
    mailbox: Mailbox,
) -> None:
    bad = transfer.MOST_KEPT + 500
    lines = [b"not json\n"] * bad
    with pytest.raises(ImportRefused) as refused:
        transfer.read_streams(transfer.archive_of(mailbox.store), lines, 0)
    assert len(refused.value.problems) == transfer.MOST_KEPT
    assert refused.value.problems[-1].startswith(f"line {transfer.MOST_KEPT} is not")
    assert refused.value.message.endswith(f"(and {bad - transfer.MOST_PROBLEMS} more)")


# ---- the views' check on an outline of the rows --------------------------------------------


def outcome(tables: Tables, changes: list[Change]) -> list[str]:
    """The error (its type) each change raises, applied in turn; "ok" where none."""
    found = []
    for change in changes:
        try:
            tables.apply(change)
        except Exception as e:
            found.append(type(e).__name__)
        else:
            found.append("ok")
    return found


def history_changes(tmp_path: Path) -> list[Change]:
    """Every view change of a realistic export (the decider's), in log order."""
    dump = tmp_path / "mix.jsonl"
    write_export(dump, threads=4, rounds=6)
    changes: list[Change] = []
    for position, line in enumerate(dump.read_bytes().splitlines(), start=1):
        record = orjson.loads(line)
        changes.extend(changes_for(record["type"], record["state"], position))
    return changes


def test_an_outline_applies_a_real_history_as_full_rows_do(tmp_path: Path) -> None:
    changes = history_changes(tmp_path)
    assert outcome(Outline(), changes) == outcome(Tables(), changes) == ["ok"] * len(changes)


BAD: dict[str, Any] = {
    "update of a missing row": Update("committed", ("t", 999), {"visible": False}),
    "delete of a missing row": Delete("pending", ("t", "nope")),
    "increment of a text column": Increment("threads", ("t",), "updated_at", 1),
    "increment of a missing column": Increment("threads", ("t",), "no_such_column", 1),
    "increment of a list column": Increment("runs", ("t", "r"), "trigger_message_ids", 1),
    "extend of a text column": Extend("runs", ("t", "r"), "status", ["x"]),
    "extend of a null column": Extend("runs", ("t", "r"), "detail", ["x"]),
    "extend by a non-list": Extend("runs", ("t", "r"), "output_message_ids", None),  # type: ignore[arg-type]
    "insert without its key": Insert("committed", {"thread_id": "t", "message": "{}"}),
    "update of a missing run": Update("runs", ("t", "ghost"), {"status": "done"}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_an_outline_fails_where_full_rows_fail_with_the_same_error(
    tmp_path: Path, case: str
) -> None:
    thread = Insert("threads", {"thread_id": "t", "updated_at": "2025-01-01", "pending_count": 0})
    run = Insert(
        "runs",
        {"thread_id": "t", "run_id": "r", "status": "running", "detail": None}
        | {"trigger_message_ids": ["a"], "output_message_ids": []},
    )
    changes = [thread, run, BAD[case]]
    expected = outcome(Tables(), changes)
    assert expected[:2] == ["ok", "ok"] and expected[2] != "ok"
    assert outcome(Outline(), changes) == expected
