"""The `threadbox` command line on SQLite files: the demo, reading commands, export/import and
error exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import threadbox
from threadbox import Message
from threadbox.infrastructure.cli import build_cli
from typer.testing import CliRunner


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(url: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_cli({"THREADBOX_URL": url}), list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_the_demo_tells_the_story_in_under_60_lines_marking_each_change(url: str) -> None:
    code, out, _ = run(url, "demo")
    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) <= 60
    assert "thread demo-trip" in lines[0]
    steps = [line for line in lines if line[:2].strip().isdigit()]
    assert len(steps) == 11
    after_step_5 = out.split("\n 5 ")[1].split("\n 6 ")[0]
    assert "- retracted oops" in after_step_5  # the retraction shows as a change
    assert "~ edited    budget" in out and "↕ reordered pending: mornings, budget" in out
    assert "run-1 natural_end, run-2 interrupted, run-3 natural_end" in lines[-2]
    assert "Skip the museums" not in out.split("\n 6 ")[1]  # retracted, never committed
    assert "store was deleted" in lines[-1]


def test_the_demo_keeps_its_store_for_show_when_asked(url: str) -> None:
    code, out, _ = run(url, "demo", "--keep")
    assert code == 0
    kept = out.splitlines()[-1].split("--url ")[1].split(" ")[0]
    code, shown, _ = run(kept, "show", "demo-trip", "--json")
    assert code == 0
    committed = json.loads(shown)["committed"]
    assert [c["message"]["id"] for c in committed if c["kind"] == "input"] == [
        "ask",
        "steer",
        "packing",
        "mornings",
        "budget",
        "porto",
    ]
    Path(kept.removeprefix("sqlite:///")).unlink()


def test_the_demo_verbose_shows_both_zones_after_every_step(url: str) -> None:
    code, out, _ = run(url, "demo", "--verbose")
    assert code == 0
    assert out.count("pending") > 11 and out.count("committed") > 11
    assert len(out.splitlines()) > 60


def test_delivered_messages_show_up_in_show_json(url: str) -> None:
    assert run(url, "deliver", "t1", "--text", "hello", "--boundary", "next_step")[0] == 0
    message = json.dumps({"id": "m2", "role": "system", "content": [{"type": "text", "text": "x"}]})
    assert run(url, "deliver", "t1", "--json-file", "-", stdin=message)[0] == 0
    code, out, _ = run(url, "show", "t1", "--json")
    assert code == 0
    shown = json.loads(out)
    assert [e["message"]["role"] for e in shown["thread"]["pending"]] == ["user", "system"]
    assert shown["thread"]["pending"][0]["mode"]["boundary"] == "next_step"
    assert shown["committed"] == []


def test_the_commands_move_messages_through_both_zones(url: str) -> None:
    run(url, "deliver", "t1", "--text", "a", "--text", "b")
    ids = [
        e["pending_id"]
        for e in json.loads(run(url, "show", "t1", "--json")[1])["thread"]["pending"]
    ]
    assert run(url, "edit", "t1", ids[0], "--text", "A", "--revision", "1")[0] == 0
    assert run(url, "reorder", "t1", ids[1], ids[0])[0] == 0
    code, out, _ = run(url, "freeze", "t1", "--run", "r1", "--json")
    assert code == 0
    committed = json.loads(out)["committed"]
    assert [m["message"]["content"][0]["text"] for m in committed] == ["b", "A"]
    assert run(url, "finish-run", "t1", "--run", "r1")[0] == 0
    code, out, _ = run(url, "history", "t1", "--json")
    assert [e["type"] for e in json.loads(out)][-1] == "RunFinished"
    code, out, _ = run(url, "show", "t1", "--at-version", "2", "--json")
    assert json.loads(out)["thread"]["version"] == 2


def test_export_then_import_into_an_empty_store_reproduces_the_history(
    url: str, tmp_path: Path
) -> None:
    with threadbox.open(url) as mailbox:
        mailbox.deliver("t1", [Message.user("a", id="m1")])
        mailbox.submit("t2", [Message.user("b", id="m2")], {"boundary": "new_run"}, "r1")
        mailbox.edit("t1", "m1", Message.user("a2", id="m1"))
        originals = {t: mailbox.history(t) for t in ("t1", "t2")}
    dump = tmp_path / "dump.jsonl"
    assert run(url, "export", "--output", str(dump))[0] == 0
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [(r["thread_id"], r["version"]) for r in lines if r["thread_id"] == "t1"] == [
        ("t1", 1),
        ("t1", 2),
        ("t1", 3),
    ]
    target = f"sqlite:///{tmp_path / 'target.db'}"
    code, out, _ = run(target, "import", str(dump))
    assert code == 0, out
    with threadbox.open(target) as copy:
        assert {t: copy.history(t) for t in ("t1", "t2")} == originals
        assert [m.message.id for m in copy.committed("t2")] == ["m2"]
    again = run(target, "import", str(dump))
    assert again[0] == 1
    assert again[2].startswith("error [import_refused]: import refused, nothing written: line ")
    assert "does not overwrite" in again[2]
    with threadbox.open(target) as copy:
        assert copy.history("t1") == originals["t1"]  # nothing was written twice
    skipped = run(target, "import", "--skip-existing", str(dump))
    assert skipped[:2] == (0, "imported 0 events of 2 threads\n")


def test_export_of_named_threads_writes_only_those(url: str) -> None:
    with threadbox.open(url) as mailbox:
        mailbox.deliver("t1", [Message.user("a")])
        mailbox.deliver("t2", [Message.user("b")])
    code, out, _ = run(url, "export", "t2")
    assert code == 0
    assert {json.loads(line)["thread_id"] for line in out.splitlines()} == {"t2"}
    assert run(url, "export", "nope")[0] == 1


def test_errors_are_one_line_with_their_code_and_a_fitting_exit_status(url: str) -> None:
    run(url, "deliver", "t1", "--text", "a")
    code, out, err = run(url, "edit", "t1", "nope", "--text", "x")
    assert code == 1
    assert err == "error [pending_not_found]: no pending message 'nope' in thread 't1'\n"
    assert "Traceback" not in out + err
    code, _, err = run(url, "deliver", "t1", "--text", "x", "--boundary", "someday")
    assert code == 2  # a usage error: the choices are the domain's boundaries
    assert "Invalid value for '--boundary'" in err and "next_step" in err
    assert run(url, "deliver", "t1")[0] == 2  # no message given
    assert run(url, "freeze", "t1", "--no-such-option")[0] == 2
    assert run(url, "show", "missing")[0] == 1


def test_the_views_commands_report_and_verify(url: str) -> None:
    with threadbox.open(url) as mailbox:
        mailbox.deliver("t1", [Message.user("a")])
        last = mailbox.store.read(after="", limit=10)[-1].position
    code, out, _ = run(url, "views", "status", "--json")
    assert code == 0
    assert json.loads(out)["log_position"] == last
    assert run(url, "views", "catch-up")[0] == 0
    assert run(url, "views", "rebuild")[0] == 0
    code, out, _ = run(url, "views", "verify", "--json")
    assert (code, json.loads(out)["ok"]) == (0, True)


def test_show_at_a_version_shows_the_committed_zone_as_it_was_then(url: str) -> None:
    with threadbox.open(url) as mb:
        mb.submit("t1", [Message.user("secret", id="s")], None, "r1")
        then = mb.thread("t1").version
        mb.hide("t1", "s", "pii")

    def visible(*at: str) -> list[bool]:
        shown = json.loads(run(url, "show", "t1", "--json", *at)[1])
        return [c["visible"] for c in shown["committed"]]

    assert visible("--at-version", str(then)) == [True]
    assert visible() == [False]
