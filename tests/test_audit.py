"""The audit of a store (``threadbox.audit``, ``threadbox audit``): a clean history passes, a
history written wrong by hand is reported with the thread it is in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import threadbox
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message
from threadbox.audit import audit
from threadbox.domain.events import OutputMessage, RunOutputCommitted
from threadbox.infrastructure.cli import build_cli
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


def commit_by_hand(
    mailbox: Mailbox, thread_id: str, run_id: str, message_id: str, seq: int
) -> None:
    """An output event written past the decisions, as a buggy writer or a bad import would."""
    version = mailbox.thread(thread_id).version
    event = RunOutputCommitted(
        thread_id=thread_id,
        version=version + 1,
        timestamp=datetime.now(UTC),
        run_id=run_id,
        messages=[OutputMessage(seq=seq, message=Message.assistant("forged", id=message_id))],
    )
    mailbox.store.append([event])


def test_a_clean_history_audits_ok(mailbox: Mailbox) -> None:
    write_history(mailbox, "long", rounds=12)  # 73 versions: a snapshot and a tail
    write_history(mailbox, "short", rounds=1)
    assert mailbox.store.load_snapshot("long") is not None

    report = audit(mailbox.store, mailbox.views)

    assert report.ok, report.problems
    assert (report.threads, report.events) == (2, mailbox.store.last_position())
    assert report.fate("long", "long-m3") == "committed"
    assert report.fate("long", "long-x3") == "retracted"
    assert report.fate("long", "long-last") == "pending"
    assert report.fate("long", "never-delivered") is None


@pytest.mark.parametrize(
    ("message_id", "seq", "problem"),
    [("t-m0", 2, "'t-m0' committed twice"), ("fresh", 5, "seq 5 after 1")],
)
def test_a_broken_history_is_reported_with_its_thread(
    mailbox: Mailbox, message_id: str, seq: int, problem: str
) -> None:
    mailbox.deliver("t", [Message.user("hi", id="t-m0")])
    mailbox.freeze("t", B.NEW_RUN, "run-1")  # t-m0 committed at seq 1
    write_history(mailbox, "fine", rounds=1)
    commit_by_hand(mailbox, "t", "run-1", message_id, seq)

    report = audit(mailbox.store, mailbox.views)

    assert not report.ok
    assert [p for p in report.problems if not p.startswith("views:")] == [f"t: v5: {problem}"]


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
