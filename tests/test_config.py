"""Configuration (API.md §9): every setting from its ``THREADBOX_*`` variable or a flag (the flag
wins), checked once with a clear error, printed by ``threadbox config`` with secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from threadbox.infrastructure.cli import build_cli
from typer.testing import CliRunner


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_cli(env), list(args))
    return result.exit_code, result.stdout, result.stderr


# Each setting, a value other than its default as its variable gives it, and as Python reads it.
SETTINGS = {
    "url": ("postgresql://u@db.internal:6543/tb", "postgresql://u@db.internal:6543/tb"),
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9000", 9000),
    "insecure": ("true", True),
    "max_message_bytes": ("4096", 4096),
    "max_pending": ("50", 50),
    "log_format": ("JSON", "json"),
    "log_level": ("debug", "debug"),
    "header_timeout": ("2.5", 2.5),
    "body_timeout": ("30", 30.0),
    "keep_alive_timeout": ("1", 1.0),
    "limit_concurrency": ("64", 64),
    "cors_origins": ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
}  # fmt: skip


def test_every_setting_is_read_from_its_environment_variable() -> None:
    env = {f"THREADBOX_{name.upper()}": raw for name, (raw, _) in SETTINGS.items()}
    env["THREADBOX_API_TOKEN"] = "s3cret-token"
    code, out, _ = run(env, "config", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert {name: shown[name] for name in SETTINGS} == {n: v for n, (_, v) in SETTINGS.items()}
    assert shown["api_token"] == "***" and "s3cret" not in out


def test_a_flag_wins_over_the_environment_and_the_source_is_shown() -> None:
    env = {"THREADBOX_MAX_PENDING": "50", "THREADBOX_URL": "postgresql://u:pw@h/db"}
    code, out, _ = run(env, "--max-pending", "7", "config")
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "7" in rows["max_pending"] and "flag" in rows["max_pending"]
    assert "env" in rows["url"] and "pw" not in out
    assert json.loads(run(env, "config", "--json")[1])["url"] == "postgresql://u:***@h/db"
    assert "default" in rows["port"] and "8787" in rows["port"]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("THREADBOX_PORT", "99999", "THREADBOX_PORT"),
        ("THREADBOX_PORT", "http", "THREADBOX_PORT"),
        ("THREADBOX_MAX_PENDING", "0", "THREADBOX_MAX_PENDING"),
        ("THREADBOX_LOG_FORMAT", "yaml", "THREADBOX_LOG_FORMAT"),
        ("THREADBOX_BODY_TIMEOUT", "-1", "THREADBOX_BODY_TIMEOUT"),
        ("THREADBOX_API_TOKEN", "", "THREADBOX_API_TOKEN"),
        ("THREADBOX_API_TOKEN", " padded ", "THREADBOX_API_TOKEN"),
    ],
)
def test_a_bad_value_is_invalid_input_naming_its_variable_and_nothing_is_created(
    variable: str, value: str, named: str, tmp_path: Path
) -> None:
    env = {"THREADBOX_URL": f"sqlite:///{tmp_path / 'x.db'}", variable: value}
    code, _, err = run(env, "deliver", "t1", "hello", "--json")
    assert code == 2
    problem = json.loads(err)
    assert (problem["code"], problem["field"]) == ("invalid_input", named)
    assert named in problem["message"]
    assert list(tmp_path.iterdir()) == []


def test_the_library_limits_apply_to_every_command(tmp_path: Path) -> None:
    env = {"THREADBOX_URL": f"sqlite:///{tmp_path / 'x.db'}", "THREADBOX_MAX_MESSAGE_BYTES": "300"}
    assert run(env, "deliver", "t1", "short")[0] == 0
    code, _, err = run(env, "deliver", "t1", "x" * 400, "--json")
    assert (code, json.loads(err)["code"]) == (2, "payload_too_large")
    assert json.loads(err)["limit"] == 300
