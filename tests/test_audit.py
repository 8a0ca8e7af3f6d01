"""The audit of a store (``threadbox.audit``, ``threadbox audit``): a clean history passes; a
history written wrong by hand — a breach of each invariant I-1 to I-4 that the views can still
apply — is reported with the thread it is in, after what no decision could have written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import threadbox
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message
from threadbox.audit import audit
from threadbox.domain.events import (
    DeliveredMessage,
    MessagesDelivered,
    OutputMessage,
    RunOutputCommitted,
    RunStarted,
    ThreadEvent,
)
from threadbox.infrastructure.cli import build_cli
from threadbox.infrastructure.codec import encode_event
from typer.testing import CliRunner

B = DeliveryBoundary


def write_history(mailbox: Mailbox, thread_id: str, rounds: int) -> None:
    """Deliveries, a retraction, freezes, outputs and finished runs: enough for snapshots."""
    for n in range(rounds):
        mailbox.deliver(thread_id, [Message.user(f"hi {n}", id=f"{thread_id}-m{n}")])
        mailbox.deliver(thread_id, [Message.user("oops", id=f"{thread_id}-x{n}")])
        mailbox.retract(thread_id, f"{thread_id}-x{n}")
        mailbox.freeze(thread_id, B.NEW_RUN, f"{thread_id}-run{n}")
        mailbox.commit_output(thread_id, f"{thread_id}-run{n}", [Message.assistant(f"re {n}")])
        mailbox.finish_run(thread_id, f"{thread_id}-run{n}")
    mailbox.deliver(thread_id, [Message.user("left pending", id=f"{thread_id}-last")])


def forge(mailbox: Mailbox, thread_id: str, event_type: type[ThreadEvent], **fields: Any) -> None:
    """An event written past the decisions and the id table (which refuses an id used twice,
    ADR 0010), as a buggy writer or a bad import would."""
    version = mailbox.thread(thread_id).version
    event = event_type(
        thread_id=thread_id, version=version + 1, timestamp=datetime.now(UTC), **fields
    )
    mailbox.store.events.insert_events([encode_event(event)])  # type: ignore[attr-defined]


def output(message_id: str, seq: int, run_id: str = "run-1") -> dict[str, Any]:
    """The fields of an output forged at ``seq``."""
    forged = OutputMessage(seq=seq, message=Message.assistant("forged", id=message_id))
    return {"run_id": run_id, "messages": [forged]}


def commit_by_hand(
    mailbox: Mailbox, thread_id: str, run_id: str, message_id: str, seq: int
) -> None:
    forge(mailbox, thread_id, RunOutputCommitted, **output(message_id, seq, run_id))


def test_a_clean_history_audits_ok(mailbox: Mailbox) -> None:
    write_history(mailbox, "long", rounds=12)  # 73 versions: a snapshot and a tail
    write_history(mailbox, "short", rounds=1)
    assert mailbox.store.load_snapshot("long") is not None

    report = audit(mailbox.store, mailbox.views)

    assert report.ok, report.problems
    events = len(mailbox.history("long")) + len(mailbox.history("short"))
    assert (report.threads, report.events) == (2, events)
    assert report.fate("long", "long-m3") == "committed"
    assert report.fate("long", "long-x3") == "retracted"
    assert report.fate("long", "long-last") == "pending"
    assert report.fate("long", "never-delivered") is None


def delivery(message_id: str) -> dict[str, Any]:
    again = DeliveredMessage(message=Message.user("again", id=message_id), mode=DeliveryMode())
    return {"messages": [again]}


# A breach of each invariant, forged in thread "t" after "t-m0" was committed at seq 1 by
# "run-1", still running (the forged event is version 5); and what the audit reports.
BREACHES = {
    "I-1 committed twice": (
        RunOutputCommitted,
        output("t-m0", 2),
        ["v5: RunOutputCommitted reuses message id 't-m0'", "v5: 't-m0' committed twice"],
    ),
    "I-1 a gap in the seqs": (
        RunOutputCommitted,
        output("fresh", 5),
        ["v5: RunOutputCommitted seqs [5], expected [2]", "v5: seq 5 after 1"],
    ),
    "I-2 and I-3 delivered again once committed": (
        MessagesDelivered,
        delivery("t-m0"),
        [
            "v5: MessagesDelivered reuses message id 't-m0'",
            "v5: 't-m0' delivered twice",
            "a pending id is repeated or also committed",
        ],
    ),
    "I-4 two open runs": (
        RunStarted,
        {"run_id": "run-2", "boundary": B.NEW_RUN},
        ["v5: RunStarted while run 'run-1' is open", "v5: 2 open runs ['run-1', 'run-2']"],
    ),
}


@pytest.mark.parametrize(("event_type", "fields", "found"), BREACHES.values(), ids=list(BREACHES))
def test_a_broken_history_is_reported_with_its_thread(
    mailbox: Mailbox, event_type: type[ThreadEvent], fields: dict[str, Any], found: list[str]
) -> None:
    mailbox.deliver("t", [Message.user("hi", id="t-m0")])
    mailbox.freeze("t", B.NEW_RUN, "run-1")  # t-m0 committed at seq 1
    write_history(mailbox, "fine", rounds=1)
    forge(mailbox, "t", event_type, **fields)

    report = audit(mailbox.store, mailbox.views)

    assert not report.ok
    problems = [p for p in report.problems if not p.startswith("views:")]
    assert problems == [f"t: {p}" for p in found]


def cli(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli({"THREADBOX_URL": url}), list(args))
    return result.exit_code, result.stdout


def test_the_audit_command_prints_the_report_and_fails_on_a_problem(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with threadbox.open(url) as mailbox:
        write_history(mailbox, "t", rounds=2)
    code, out = cli(url, "audit", "--json")
    assert code == 0, out
    assert json.loads(out) == {
        "ok": True,
        "threads": 1,
        "events": 16,
        "views_ok": True,
        "problems": [],
    }
    assert cli(url, "audit")[0] == 0

    with threadbox.open(url) as mailbox:
        mailbox.deliver("t", [Message.user("again")], DeliveryMode.new_run())
        mailbox.freeze("t", B.NEW_RUN, "run-x")
        commit_by_hand(mailbox, "t", "run-x", "t-m1", 99)
    code, out = cli(url, "audit", "--json")
    assert code == 1
    assert any(
        p.startswith("t: v") and "'t-m1' committed twice" in p for p in json.loads(out)["problems"]
    )
    code, out = cli(url, "audit")
    assert code == 1
    assert "committed twice" in out
