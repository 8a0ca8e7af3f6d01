"""An export of the whole log holds every event committed before it began, also while an older
transaction on the PostgreSQL server keeps them unreadable: it waits, it does not end early."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import threadbox
from conftest import drop_schema, pg_connect, pg_store_url
from threadbox import Mailbox, Message
from threadbox.application import transfer


@pytest.fixture
def pg_mailbox() -> Iterator[Mailbox]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with threadbox.open(pg_store_url(schema)) as mailbox:
        yield mailbox
    drop_schema(schema)


def test_an_export_waits_for_an_older_transaction_instead_of_missing_events(
    pg_mailbox: Mailbox,
) -> None:
    with pg_connect() as older:
        older.autocommit = False
        older.execute("SELECT pg_current_xact_id()")  # a transaction with an id, left open
        for n in range(3):
            pg_mailbox.deliver(f"t{n}", [Message.user("hello", id=f"m{n}")])
        written = sum(len(pg_mailbox.history(f"t{n}")) for n in range(3))
        lines: list[bytes] = []
        done = threading.Event()

        def export() -> None:
            archive = transfer.archive_of(pg_mailbox.store)
            lines.extend(transfer.export_lines(archive, []))
            done.set()

        exporter = threading.Thread(target=export, daemon=True)
        exporter.start()
        time.sleep(0.3)
        assert not done.is_set(), "the export ended while committed events were unreadable"
        older.rollback()  # the older transaction ends: the events become readable
        assert done.wait(30), "the export never finished"
    assert len(lines) == written
