"""The command line's error paths, each run as a real ``threadbox`` process: one line (or one
JSON object with ``--json``) on stderr, never a traceback, and the exit codes of docs/cli.md
(0 done, 1 refused by threadbox or the store, 2 a usage error or invalid input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import drop_schema, pg_connect, pg_store_url
from psycopg import sql


def threadbox(*args: str, url: str | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run ``python -m threadbox ARGS`` with ``THREADBOX_URL`` set to ``url`` (when given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    env["COLUMNS"] = "80"
    if url is not None:
        env["THREADBOX_URL"] = url
    done = subprocess.run(
        [sys.executable, "-m", "threadbox", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


# Every command that reads a store, or changes what is already in one: none may create a store.
NEEDS_A_STORE = [
    ("show", "t1"),
    ("history", "t1"),
    ("audit",),
    ("export",),
    ("views", "status"),
    ("views", "catch-up"),
    ("views", "rebuild"),
    ("views", "verify"),
    ("edit", "t1", "m1", "--text", "x"),
    ("retract", "t1", "m1"),
    ("reorder", "t1", "m1"),
    ("freeze", "t1", "--run", "r1"),
    ("finish-run", "t1", "--run", "r1"),
]


@pytest.mark.parametrize("command", NEEDS_A_STORE, ids=" ".join)
def test_a_command_on_a_missing_sqlite_store_creates_nothing(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    missing = tmp_path / "absent" / "x.db"
    code, out, err = threadbox(*command, url=f"sqlite:///{missing}", cwd=tmp_path)
    assert (code, out) == (1, "")
    assert err == f"error [store_not_found]: no threadbox store at sqlite:///{missing}\n"
    assert list(tmp_path.iterdir()) == []  # neither the file nor its folder


def test_the_default_store_is_not_created_by_show_in_an_empty_folder(tmp_path: Path) -> None:
    code, _, err = threadbox("show", "demo", cwd=tmp_path)
    assert code == 1
    assert err.startswith("error [store_not_found]: no threadbox store at sqlite:///./threadbox.db")
    assert not (tmp_path / "threadbox.db").exists()


def test_a_missing_postgresql_schema_is_reported_and_not_created() -> None:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        code, _, err = threadbox("show", "t1", "--json", url=pg_store_url(schema))
        assert code == 1
        assert json.loads(err)["code"] == "store_not_found"
        with pg_connect() as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
            ).fetchall()
        assert found == []
    finally:
        drop_schema(schema)


def test_a_postgresql_schema_without_threadbox_tables_is_not_a_store() -> None:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with pg_connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        code, _, err = threadbox("views", "status", url=pg_store_url(schema))
        assert code == 1
        assert err.startswith("error [store_not_found]")
    finally:
        drop_schema(schema)


def test_a_password_in_the_url_is_masked_in_the_error(tmp_path: Path) -> None:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_store_url(schema).replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    code, _, err = threadbox("history", "t1", url=url)
    assert code == 1
    assert "hunter2" not in err and "postgres:***@" in err


def test_json_errors_are_one_json_object_on_stderr(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert threadbox("deliver", "t1", "hello", url=url)[0] == 0
    code, out, err = threadbox("retract", "t1", "nope", "--json", url=url)
    assert (code, out) == (1, "")
    assert json.loads(err) == {
        "code": "pending_not_found",
        "message": "no pending message 'nope' in thread 't1'",
        "thread_id": "t1",
        "pending_id": "nope",
    }
    code, _, err = threadbox("deliver", "t1", "--json", url=url)  # no message: invalid input
    assert code == 2
    assert json.loads(err)["code"] == "invalid_input"
    code, _, err = threadbox("deliver", "t1", "x", "--boundary", "someday", "--json", url=url)
    assert code == 2
    problem = json.loads(err)
    assert problem["code"] == "usage_error" and "--boundary" in problem["message"]


def test_exit_codes_separate_refusals_from_usage_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert threadbox("deliver", "t1", "a", url=url)[0] == 0
    assert threadbox("freeze", "t1", "--run", "r1", url=url)[0] == 0
    code, _, err = threadbox("finish-run", "t1", "--run", "r9", url=url)  # not the open run
    assert code == 1 and err.startswith("error [")
    assert threadbox("freeze", "t1", "--no-such-option", url=url)[0] == 2
    assert threadbox("no-such-command", url=url)[0] == 2
    code, _, err = threadbox("edit", "t1", "m1", "--revision", "one", url=url)
    assert code == 2 and "'--revision'" in err


def test_deliver_takes_its_texts_positionally_and_with_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert threadbox("deliver", "t1", "first", "second", "--text", "third", url=url)[0] == 0
    code, out, _ = threadbox("show", "t1", "--json", url=url)
    assert code == 0
    texts = [e["message"]["content"][0]["text"] for e in json.loads(out)["thread"]["pending"]]
    assert texts == ["first", "second", "third"]


def test_version_is_the_installed_distributions() -> None:
    code, out, _ = threadbox("--version")
    assert (code, out) == (0, f"threadbox {version('threadbox')}\n")


@pytest.mark.parametrize("command", [(), ("deliver",), ("freeze",), ("views", "verify")], ids=str)
def test_help_fits_80_columns_and_names_every_choice(command: tuple[str, ...]) -> None:
    code, out, _ = threadbox(*command, "--help")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "<bool>" not in out and "<list[str]>" not in out.split("Options:")[-1]
    if command == ("deliver",):
        for boundary in ("interrupt", "next_step", "on_natural_end", "resume_input", "new_run"):
            assert boundary in out
