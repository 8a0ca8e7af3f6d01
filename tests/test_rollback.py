"""SEMANTICS §8: generated run ids, rollback at an interrupt, and ``RunInterrupted`` for a
command by a run that another writer interrupted (every backend, cold mailboxes included)."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pytest
import threadbox
from fastapi.testclient import TestClient
from threadbox import DeliveryMode, Mailbox, Message, Settings
from threadbox.errors import InvalidInput, RunInterrupted, RunNotRunning
from threadbox.infrastructure.cli import build_cli
from threadbox.infrastructure.http import create_app
from typer.testing import CliRunner


def started(mailbox: Mailbox, thread_id: str = "t", run_id: str = "r1") -> None:
    mailbox.deliver(thread_id, [Message.user("go", id=f"{run_id}-in")])
    mailbox.freeze(thread_id, "new_run", run_id)


def test_new_run_and_interrupt_generate_uuid7_run_ids(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("go")])
    first = mailbox.freeze("t", "new_run")
    assert uuid.UUID(first.run_id).version == 7
    assert mailbox.thread("t").running_run_id == first.run_id
    mailbox.deliver("t", [Message.user("stop")], DeliveryMode.interrupt())
    second = mailbox.freeze("t", "interrupt")
    assert uuid.UUID(second.run_id).version == 7
    assert second.run_id != first.run_id
    assert second.interrupted_run_id == first.run_id
    assert [r.run_id for r in mailbox.runs("t")] == [first.run_id, second.run_id]


@pytest.mark.parametrize("boundary", ["next_step", "on_natural_end", "resume_input"])
def test_other_boundaries_still_need_a_run_id(mailbox: Mailbox, boundary: str) -> None:
    started(mailbox)
    with pytest.raises(InvalidInput) as raised:
        mailbox.freeze("t", boundary)
    assert raised.value.field == "run_id"


def test_rollback_hides_exactly_the_interrupted_runs_outputs_in_the_same_write(
    mailbox: Mailbox,
) -> None:
    mailbox.deliver("t", [Message.user("earlier", id="u0")])
    mailbox.freeze("t", "new_run", "r0")
    mailbox.commit_output("t", "r0", [Message.assistant("kept", id="a0")])  # another run's
    mailbox.finish_run("t", "r0")
    started(mailbox)
    mailbox.commit_output("t", "r1", [Message.assistant("one", id="a1")])
    mailbox.commit_output(
        "t", "r1", [Message.assistant("two", id="a2"), Message.tool("call", "three", id="a3")]
    )
    mailbox.hide("t", "a2", "already hidden by hand")
    mailbox.deliver("t", [Message.user("no, stop", id="u2")], DeliveryMode.interrupt())
    before = mailbox.thread("t").version

    result = mailbox.freeze("t", "interrupt", "r2", rollback=True)

    assert result.hidden == ["a1", "a3"]  # a2 was hidden already: hiding twice is a no-op
    assert result.interrupted_run_id == "r1"
    assert [m.message.id for m in result.committed] == ["u2"]
    history = mailbox.history("t", after_version=before)
    assert [e.type for e in history] == [
        "RunFinished",
        "CommittedMessageHidden",
        "CommittedMessageHidden",
        "RunStarted",
        "PendingMessagesFrozen",
    ]
    assert {e.timestamp for e in history} == {history[0].timestamp}  # one write
    assert [e.data["reason"] for e in history[1:3]] == ["rollback", "rollback"]
    assert result.version == before + 5
    visible = [m.message.id for m in mailbox.committed("t")]
    assert visible == ["u0", "a0", "r1-in", "u2"]  # inputs stay, other runs' outputs stay
    everything = mailbox.committed("t", include_hidden=True)
    assert [m.seq for m in everything] == list(range(1, 8))  # seqs never move
    assert [m.message.text for m in everything if m.message.id == "a1"] == ["one"]
    assert mailbox.views.verify().ok


def test_without_rollback_or_without_an_open_run_nothing_is_hidden(mailbox: Mailbox) -> None:
    started(mailbox)
    mailbox.commit_output("t", "r1", [Message.assistant("out", id="a1")])
    mailbox.deliver("t", [Message.user("stop")], DeliveryMode.interrupt())
    assert mailbox.freeze("t", "interrupt", "r2").hidden == []
    mailbox.finish_run("t", "r2")
    mailbox.deliver("t", [Message.user("again")], DeliveryMode.interrupt())
    result = mailbox.freeze("t", "interrupt", "r3", rollback=True)
    assert (result.hidden, result.interrupted_run_id) == ([], None)
    assert [m.message.id for m in mailbox.committed("t")][1] == "a1"


def test_rollback_is_for_interrupt_freezes_only(mailbox: Mailbox) -> None:
    started(mailbox)
    for boundary in ("next_step", "new_run"):
        with pytest.raises(InvalidInput) as raised:
            mailbox.freeze("t", boundary, "r1", rollback=True)
        assert raised.value.field == "rollback"
    with pytest.raises(InvalidInput) as raised:
        mailbox.freeze("t", "interrupt", "r2", rollback="yes")  # type: ignore[arg-type]
    assert raised.value.field == "rollback"


def test_commands_by_an_interrupted_run_raise_run_interrupted(mailbox: Mailbox) -> None:
    started(mailbox)
    mailbox.deliver("t", [Message.user("stop")], DeliveryMode.interrupt())
    mailbox.freeze("t", "interrupt", "r2")
    calls = [
        lambda: mailbox.commit_output("t", "r1", [Message.assistant("late")]),
        lambda: mailbox.freeze("t", "next_step", "r1"),
        lambda: mailbox.freeze("t", "on_natural_end", "r1"),
        lambda: mailbox.finish_run("t", "r1"),
        lambda: mailbox.suspend_run("t", "r1", "waiting"),
    ]
    for call in calls:
        with pytest.raises(RunInterrupted) as raised:
            call()
        assert (raised.value.run_id, raised.value.by_run_id) == ("r1", "r2")
        assert raised.value.code == "run_interrupted"
        assert isinstance(raised.value, RunNotRunning)
        assert "interrupted by run 'r2'" in str(raised.value)
    # a run that merely is not the running one still gets RunNotRunning
    with pytest.raises(RunNotRunning) as other:
        mailbox.commit_output("t", "nobody", [Message.assistant("x")])
    assert type(other.value) is RunNotRunning
    # a run finished by hand as interrupted was not interrupted by another run
    mailbox.finish_run("t", "r2", "interrupted")
    with pytest.raises(RunNotRunning) as by_hand:
        mailbox.commit_output("t", "r2", [Message.assistant("x")])
    assert type(by_hand.value) is RunNotRunning


def test_run_interrupted_pickles_and_details() -> None:
    error = RunInterrupted("r1", "r2")
    again = pickle.loads(pickle.dumps(error))
    assert (again.run_id, again.by_run_id, str(again)) == ("r1", "r2", str(error))
    assert error.details() == {"run_id": "r1", "by_run_id": "r2"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_cold_mailbox_after_snapshots_still_rolls_back_and_names_the_interrupter(
    store_url: str,
) -> None:
    settings = Settings(snapshot_interval=2, snapshot_interval_max=2)
    with threadbox.open(store_url, settings=settings) as mb:
        started(mb)
        for n in range(5):
            mb.commit_output("t", "r1", [Message.assistant(f"out {n}", id=f"a{n}")])
    with threadbox.open(store_url, settings=settings) as cold:  # starts from the snapshot
        cold.deliver("t", [Message.user("stop")], DeliveryMode.interrupt())
        result = cold.freeze("t", "interrupt", "r2", rollback=True)
        assert result.hidden == [f"a{n}" for n in range(5)]
        for n in range(6):
            cold.commit_output("t", "r2", [Message.assistant(f"more {n}")])
    with threadbox.open(store_url, settings=settings) as colder:
        with pytest.raises(RunInterrupted) as raised:
            colder.commit_output("t", "r1", [Message.assistant("late")])
        assert raised.value.by_run_id == "r2"


def test_http_freeze_generates_run_ids_rolls_back_and_answers_run_interrupted() -> None:
    with threadbox.open("memory://") as mb, TestClient(create_app(mb)) as client:
        url = "/v1/threads/t/freeze"
        mb.deliver("t", [Message.user("go")])
        first = client.post(url, json={"boundary": "new_run"})
        assert first.status_code == 200, first.text
        run_id = first.json()["run_id"]
        assert uuid.UUID(run_id).version == 7 and first.json()["hidden"] == []
        mb.commit_output("t", run_id, [Message.assistant("draft", id="draft")])
        mb.deliver("t", [Message.user("stop")], DeliveryMode.interrupt())
        answer = client.post(url, json={"boundary": "interrupt", "run_id": "r2", "rollback": True})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["hidden"], answer.json()["interrupted_run_id"]) == (["draft"], run_id)
        late = client.post(f"/v1/threads/t/runs/{run_id}/output", json={"messages": [
            {"role": "assistant", "content": [{"type": "text", "text": "late"}]}
        ]})  # fmt: skip
        assert late.status_code == 409
        assert (late.json()["code"], late.json()["by_run_id"]) == ("run_interrupted", "r2")
        wrong = client.post(url, json={"boundary": "next_step", "run_id": "r2", "rollback": True})
        assert (wrong.status_code, wrong.json()["field"]) == (422, "rollback")


def test_cli_freeze_rollback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    with threadbox.open(url) as mb:
        started(mb)
        mb.commit_output("t", "r1", [Message.assistant("draft", id="draft")])
        mb.deliver("t", [Message.user("stop")], DeliveryMode.interrupt())
    cli = build_cli({"THREADBOX_URL": url})
    args = ["freeze", "t", "--boundary", "interrupt", "--rollback", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["hidden"] == ["draft"] and uuid.UUID(answer["run_id"]).version == 7
