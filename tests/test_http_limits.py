"""Auth that is hard to get wrong, and clients that cannot hold the server's descriptors
(ADR 0015): a token that is empty or has whitespace refuses to start, a non-loopback host without
a token needs ``--insecure``, the Bearer scheme is case-insensitive, two Authorization headers are
a 400; half-sent headers and bodies time out against a real ``threadbox serve``.
"""

from __future__ import annotations

import os
import signal
import socket
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
from threadbox import Mailbox
from threadbox.errors import InvalidInput
from threadbox.infrastructure.cli import build_cli
from threadbox.infrastructure.http import create_app
from typer.testing import CliRunner

TOKEN = "s3cret-token"
DEADLINE = 60.0  # seconds: a hang guard, never a speed assertion


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


def serve_refusal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``threadbox serve`` in process; it must refuse before it binds anything."""
    result = CliRunner().invoke(build_cli(env), ["serve", *args])
    return result.exit_code, result.stderr


# ---- the token --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "set but empty"),
        (" s3cret", "whitespace around it"),
        ("s3cret\n", "whitespace around it"),
        ("s3 cret", "visible ASCII only"),
        ("sécret", "visible ASCII only"),
    ],
)
def test_an_unusable_token_refuses_to_start_and_says_why(
    tmp_path: Path, token: str, says: str
) -> None:
    env = {"THREADBOX_URL": f"sqlite:///{tmp_path / 'tb.db'}", "THREADBOX_API_TOKEN": token}
    code, err = serve_refusal(env)
    assert code == 2
    assert "THREADBOX_API_TOKEN" in err and says in err
    assert token.strip() == "" or token.strip() not in err  # the message never echoes the token
    with threadbox.open("memory://") as mailbox, pytest.raises(InvalidInput, match=says):
        create_app(mailbox, token=token)
    assert not (tmp_path / "tb.db").exists()  # refused before the store was opened


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_a_non_loopback_host_without_a_token_refuses_to_start(tmp_path: Path, host: str) -> None:
    env = {"THREADBOX_URL": f"sqlite:///{tmp_path / 'tb.db'}"}
    code, err = serve_refusal(env, "--host", host)
    assert code == 2
    assert "--insecure" in err and host in err
    code, err = serve_refusal({**env, "THREADBOX_HOST": host})  # the same from the environment
    assert code == 2 and "--insecure" in err


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(mailbox: Mailbox, scheme: str) -> None:
    with TestClient(create_app(mailbox, token=TOKEN)) as client:
        answer = client.get("/v1/threads", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (None, "required"),
        (f"Basic {TOKEN}", "Bearer scheme"),
        (f"Bearer {TOKEN}x", "wrong"),
        (f"Bearer {TOKEN.upper()}", "wrong"),  # the token itself is case-sensitive
        ("Bearer", "wrong"),
    ],
)
def test_a_missing_or_wrong_credential_is_401(
    mailbox: Mailbox, value: str | None, detail: str
) -> None:
    headers = {} if value is None else {"Authorization": value}
    with TestClient(create_app(mailbox, token=TOKEN)) as client:
        answer = client.get("/v1/threads", headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (401, "unauthorized")
    assert detail in answer.json()["detail"]
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_two_authorization_headers_are_a_400_even_if_one_is_right(mailbox: Mailbox) -> None:
    headers = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer other")]
    with TestClient(create_app(mailbox, token=TOKEN)) as client:
        answer = client.get("/v1/threads", headers=headers)
        twice_right = client.get("/v1/threads", headers=[headers[0], headers[0]])
    for refused in (answer, twice_right):
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_input")
        assert refused.json()["field"] == "authorization"


# ---- a real server: half-open clients ---------------------------------------------------------


class Served:
    """``threadbox serve`` in a child process on a free port."""

    def __init__(self, url: str, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = log
        environment = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
        environment |= {"THREADBOX_URL": url, **(env or {})}
        command = [sys.executable, "-m", "threadbox", "serve", "--port", str(self.port)]
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [*command, "--log-level", "warning", *args], env=environment, stderr=stderr
            )
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, f"serve exited: {self.stderr()}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(DEADLINE)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(
        f"sqlite:///{tmp_path / 'tb.db'}",
        tmp_path / "serve.log",
        *("--header-timeout", "5", "--body-timeout", "3"),
        env={"THREADBOX_API_TOKEN": TOKEN},
    )
    try:
        yield server
    finally:
        server.stop()


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
def test_500_half_open_connections_neither_block_a_request_nor_keep_their_descriptors(
    served: Served,
) -> None:
    baseline = served.descriptors()
    clients: list[socket.socket] = []
    try:
        for n in range(500):
            client = socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE)
            if n % 2:  # half send part of their headers, half nothing at all
                client.sendall(b"GET /v1/threads HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            clients.append(client)
        # They hang on the server's side too (the header timeout has not passed for most).
        wait_until(lambda: served.descriptors() >= baseline + 250, "the server took them")
        answer = httpx.get(
            f"{served.url}/v1/threads",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=DEADLINE,
        )
        assert answer.status_code == 200  # served while 500 clients hang
        for client in clients:  # each is closed by the server, having been sent nothing
            assert client.recv(1024) == b""
        wait_until(lambda: served.descriptors() <= baseline + 5, "descriptors were released")
    finally:
        for client in clients:
            client.close()


@pytest.mark.slow
def test_a_body_that_stops_halfway_is_a_408_and_the_connection_closes(served: Served) -> None:
    body = b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}'
    with socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE) as client:
        client.sendall(
            b"POST /v1/threads/t1/messages HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:20]
        )
        received = b""
        while chunk := client.recv(4096):
            received += chunk
    head, _, problem = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()
    assert b'"code": "request_timeout"' in problem
    pending = httpx.get(
        f"{served.url}/v1/threads/t1/pending", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert pending.status_code == 404  # nothing was delivered


@pytest.mark.slow
def test_insecure_serves_a_non_loopback_host_without_a_token_with_a_loud_warning(
    tmp_path: Path,
) -> None:
    log = tmp_path / "serve.log"
    server = Served(f"sqlite:///{tmp_path / 'tb.db'}", log, "--host", "0.0.0.0", "--insecure")
    try:
        assert httpx.get(f"{server.url}/v1/threads", timeout=DEADLINE).status_code == 200
    finally:
        server.stop()
    warning = server.stderr()
    assert "WITHOUT AUTHENTICATION" in warning and "0.0.0.0" in warning
