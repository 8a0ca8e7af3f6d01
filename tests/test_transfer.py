"""Export and import as an application use case (``threadbox.application.transfer``) on every
backend: a copy has the same history, a file that does not continue a thread is refused before
anything is written, and a line that is not an exported event is named."""

from __future__ import annotations

import orjson
import pytest
import threadbox
from threadbox import Mailbox, Message
from threadbox.application import transfer
from threadbox.errors import ImportRefused


def write_some(mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("a", id="m1")])
    mailbox.submit("t2", [Message.user("b", id="m2")], {"boundary": "new_run"}, "r1")
    mailbox.edit("t1", "m1", Message.user("a2", id="m1"))


def test_an_import_of_an_export_has_the_same_history(mailbox: Mailbox) -> None:
    write_some(mailbox)
    lines = list(transfer.export_lines(transfer.archive_of(mailbox.store), []))
    assert len(lines) == len(mailbox.history("t1")) + len(mailbox.history("t2"))
    with threadbox.open("memory://") as copy:
        archive = transfer.archive_of(copy.store)
        streams = transfer.read_streams(archive, lines, 0)
        assert transfer.import_streams(copy.store, copy.views, streams) == len(lines)
        for thread_id in ("t1", "t2"):
            assert copy.history(thread_id) == mailbox.history(thread_id)
        assert [m.message.id for m in copy.committed("t2")] == ["m2"]  # views caught up


def test_a_file_that_does_not_continue_a_thread_writes_nothing(mailbox: Mailbox) -> None:
    write_some(mailbox)
    archive = transfer.archive_of(mailbox.store)
    streams = transfer.read_streams(archive, transfer.export_lines(archive, ["t2"]), 0)
    before = mailbox.store.committed_head()
    with pytest.raises(ImportRefused, match="does not overwrite"):
        transfer.import_streams(mailbox.store, mailbox.views, streams)
    assert mailbox.store.committed_head() == before


def test_a_line_that_is_not_an_exported_event_is_named(mailbox: Mailbox) -> None:
    write_some(mailbox)
    archive = transfer.archive_of(mailbox.store)
    good = next(transfer.export_lines(archive, ["t1"]))
    record = orjson.loads(good)
    bad_topic = orjson.dumps({**record, "topic": "elsewhere:Event"})
    for lines, number in (([good, b"{"], 2), ([good, b"\n", bad_topic], 3)):
        with pytest.raises(ImportRefused, match=f"line {number} is not an exported event"):
            transfer.read_streams(archive, lines, 0)
