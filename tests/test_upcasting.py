"""A `RunFinished` stored at class_version 1 (no ``detail``) reads as version 3 everywhere:
the fold, the history, the views and verify (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from eventsourcing.persistence import StoredEvent
from threadbox import Mailbox, Message, RunStatus, Termination
from threadbox.infrastructure.codec import EVENT_TOPIC_PREFIX, stream_id
from threadbox.infrastructure.store import RecorderStore

FINISHED_AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def store_v1_run_finished(mailbox: Mailbox, thread_id: str, run_id: str) -> int:
    """Append, as an old release wrote it, the end of ``run_id``; its version."""
    store = mailbox.store
    assert isinstance(store, RecorderStore)
    version = mailbox.thread(thread_id).version + 1
    payload = {
        "thread_id": thread_id,
        "version": version,
        "timestamp": FINISHED_AT.isoformat(),
        "run_id": run_id,
        "termination": "cancelled",
        "_v": 1,
    }
    record = StoredEvent(
        originator_id=stream_id(thread_id),
        originator_version=version,
        topic=EVENT_TOPIC_PREFIX + "RunFinished",
        state=orjson.dumps(payload),
    )
    store.events.insert_events([record])
    return version


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_version_1_run_finished_reads_as_version_3_in_fold_history_and_views(
    mailbox: Mailbox,
) -> None:
    mailbox.submit("t", [Message.user("go", id="go")], None, "r")
    mailbox.views.catch_up()  # the views have seen the run start; the old event comes next
    version = store_v1_run_finished(mailbox, "t", "r")

    state = mailbox.thread("t")
    assert (state.version, state.running_run_id) == (version, None)
    assert (state.runs[0].status, state.runs[0].termination) == (RunStatus.DONE, "cancelled")
    assert state.runs[0].detail is None

    last = mailbox.history("t")[-1]
    assert (last.version, last.type, last.timestamp) == (version, "RunFinished", FINISHED_AT)
    assert last.data == {
        "run_id": "r",
        "termination": "cancelled",
        "detail": None,
        "by_run_id": None,  # version 3: up from 1 through both upcasters
    }

    mailbox.views.catch_up()
    run = mailbox.run("r")
    assert (run.status, run.termination, run.detail) == ("done", Termination.CANCELLED, None)
    assert run.finished_at == FINISHED_AT
    assert mailbox.runs("t") == state.runs
    report = mailbox.views.verify()
    assert report.ok, report.differences
    mailbox.views.rebuild()
    assert mailbox.run("r") == run

    # The thread goes on after the old event: a new run can start.
    mailbox.submit("t", [Message.user("again")], None, "r2")
    assert mailbox.run("r2").status == "running"
