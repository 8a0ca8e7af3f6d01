"""Request ids and logs (API.md §9): every response carries ``X-Request-ID``; with
``THREADBOX_LOG_FORMAT=json`` every log line is one JSON object, the request's lines carrying its
id, method, path, status, duration, thread and problem code."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import threadbox
from fastapi.testclient import TestClient
from pg_private import free_port
from threadbox.infrastructure.http import create_app
from threadbox.infrastructure.logs import JsonFormatter, RequestIdFilter


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``threadbox serve`` with JSON logs, as a process; its URL and the process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    env |= {"THREADBOX_LOG_FORMAT": "json", "THREADBOX_API_TOKEN": "tok"}
    process = subprocess.Popen(
        [sys.executable, "-m", "threadbox", "--url", f"sqlite:///{tmp_path / 's.db'}",
         "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.1)
    yield url, process
    if process.poll() is None:
        process.terminate()
        process.wait(15)


def lines_of(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    process.terminate()
    _, err = process.communicate(timeout=15)
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_logs_have_one_object_per_line_with_the_request_fields(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = served
    auth = {"Authorization": "Bearer tok"}
    body = {"messages": [{"id": "m1", "role": "user", "content": [{"type": "text", "text": "a"}]}]}
    sent = httpx.post(
        f"{url}/v1/threads/t%2F1/messages", json=body, headers=auth | {"X-Request-ID": "req-1"}
    )
    assert (sent.status_code, sent.headers["x-request-id"]) == (201, "req-1")
    missing = httpx.get(f"{url}/v1/threads/nope/pending", headers=auth)
    generated = missing.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    refused = httpx.get(f"{url}/v1/threads/t1/pending", headers={"X-Request-ID": "x" * 500})
    assert refused.status_code == 401 and len(refused.headers["x-request-id"]) == 32
    lines = lines_of(process)  # every line parsed as JSON, or the test fails here
    started = [line for line in lines if line["logger"] == "threadbox.serve"]
    assert started and started[0]["auth"] is True and started[0]["store"].startswith("sqlite:")
    access = {line["request_id"]: line for line in lines if line["logger"] == "threadbox.access"}
    assert access["req-1"] | {"duration_ms": 0, "time": ""} == {
        "time": "",
        "level": "info",
        "logger": "threadbox.access",
        "message": "POST /v1/threads/t%2F1/messages 201",
        "request_id": "req-1",
        "method": "POST",
        "path": "/v1/threads/t%2F1/messages",
        "status": 201,
        "duration_ms": 0,
        "thread_id": "t/1",
    }
    assert access["req-1"]["duration_ms"] > 0
    assert (access[generated]["status"], access[generated]["code"]) == (404, "thread_not_found")
    assert access[refused.headers["x-request-id"]]["code"] == "unauthorized"


def test_a_log_line_written_while_a_request_is_served_carries_its_id() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    keep.addFilter(RequestIdFilter())
    logger = logging.getLogger("threadbox.http")
    logger.addHandler(keep)
    try:
        with threadbox.open("memory://") as mailbox:

            def broken(thread_id: str) -> Any:
                raise RuntimeError("a defect")

            mailbox.pending_page = broken  # type: ignore[method-assign]
            with TestClient(create_app(mailbox), raise_server_exceptions=False) as client:
                failed = client.get("/v1/threads/t1/pending", headers={"X-Request-ID": "r-500"})
    finally:
        logger.removeHandler(keep)
    assert (failed.status_code, failed.json()["code"]) == (500, "internal_error")
    assert failed.headers["x-request-id"] == "r-500"
    [error] = [r for r in records if r.levelno == logging.ERROR]
    assert error.request_id == "r-500"  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(error))
    assert line["request_id"] == "r-500" and "RuntimeError: a defect" in line["exception"]


def test_every_response_has_a_request_id() -> None:
    with threadbox.open("memory://") as mailbox, TestClient(create_app(mailbox)) as client:
        for response in (client.get("/healthz"), client.get("/nowhere"), client.get("/metrics")):
            assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_a_bad_log_format_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    done = subprocess.run(
        [sys.executable, "-m", "threadbox", "--url", f"sqlite:///{tmp_path / 'x.db'}", "serve"],
        env=env | {"THREADBOX_LOG_FORMAT": "yaml"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "THREADBOX_LOG_FORMAT" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x.db").exists()
