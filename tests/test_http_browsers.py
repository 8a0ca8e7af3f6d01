"""Browsers against a real server (uvicorn on a free port, httpx): CORS preflights for allowed
and refused origins, stream tickets (and every misuse of one), the stream of a thread with no
events yet, and a ticket never written to the access log."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import threadbox
import uvicorn
from httpx_sse import connect_sse
from live_server import live_server, sse_events
from pg_private import free_port
from threadbox import Mailbox, Message
from threadbox.errors import InvalidInput
from threadbox.infrastructure.cli import build_cli
from threadbox.infrastructure.http import StreamSettings, create_app
from threadbox.infrastructure.http.tickets import Tickets, redact
from typer.testing import CliRunner

TOKEN = "browser-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGE_ORIGIN = "http://localhost:5173"
DEADLINE = 15.0
FAST = StreamSettings(poll_interval=0.05, heartbeat=0.5)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


@pytest.fixture
def base(mailbox: Mailbox) -> Iterator[str]:
    app = create_app(mailbox, token=TOKEN, cors_origins=PAGE_ORIGIN, stream_settings=FAST)
    with live_server(app) as url:
        yield url


def preflight(base: str, origin: str, path: str = "/v1/threads/t1/pending") -> httpx.Response:
    return httpx.options(
        base + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, if-match, last-event-id",
        },
    )


def listed(header: str) -> set[str]:
    return {item.strip().lower() for item in header.split(",")}


def test_a_preflight_from_an_allowed_origin_needs_no_token_and_allows_the_api_headers(
    base: str,
) -> None:
    answer = preflight(base, PAGE_ORIGIN)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
    allowed = listed(answer.headers["access-control-allow-headers"])
    assert {"authorization", "if-match", "if-none-match", "last-event-id"} <= allowed
    assert "PATCH" in answer.headers["access-control-allow-methods"]
    # The request itself: answered with the origin and the exposed headers.
    read = httpx.get(f"{base}/v1/threads", headers=AUTH | {"Origin": PAGE_ORIGIN})
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == PAGE_ORIGIN
    exposed = listed(read.headers["access-control-expose-headers"])
    assert {"etag", "retry-after", "x-request-id"} <= exposed
    # A refusal of the guard is readable by the page too.
    refused = httpx.get(f"{base}/v1/threads", headers={"Origin": PAGE_ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == PAGE_ORIGIN


def test_a_preflight_from_another_origin_is_refused_without_cors_headers(base: str) -> None:
    answer = preflight(base, "http://evil.example")
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers
    read = httpx.get(f"{base}/v1/threads", headers=AUTH | {"Origin": "http://evil.example"})
    assert read.status_code == 200  # the server answers; the browser hides it from the page
    assert "access-control-allow-origin" not in read.headers


def test_without_cors_origins_a_preflight_is_just_an_unauthorized_request(
    mailbox: Mailbox,
) -> None:
    with live_server(create_app(mailbox, token=TOKEN)) as url:
        answer = preflight(url, PAGE_ORIGIN)
    assert answer.status_code == 401
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    "setting", ["localhost:5173", "http://a.example/path", "ftp://a.example", "http://"]
)
def test_a_malformed_cors_origin_refuses_to_build_the_app(mailbox: Mailbox, setting: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        create_app(mailbox, cors_origins=f"http://ok.example, {setting}")
    assert refused.value.field == "cors_origins"
    assert setting in refused.value.text


def ticket_for(base: str, thread_id: str | None) -> dict[str, Any]:
    body = {} if thread_id is None else {"thread_id": thread_id}
    answer = httpx.post(f"{base}/v1/stream-tickets", headers=AUTH, json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_ticket_opens_its_threads_stream_without_the_token(base: str, mailbox: Mailbox) -> None:
    before = time.time()
    issued = ticket_for(base, "org/7")
    expires = issued["expires_at"]
    assert before + 55 <= _unix(expires) <= time.time() + 61
    mailbox.deliver("org/7", [Message.user("hello", id="m1")])
    url = f"{base}/v1/threads/org%2F7/events/stream"
    with (
        httpx.Client(timeout=DEADLINE) as client,
        connect_sse(client, "GET", url, params={"ticket": issued["ticket"]}) as source,
    ):
        assert source.response.status_code == 200
        events = sse_events(source)
        assert [next(events).event for _ in range(2)] == ["ThreadOpened", "MessagesDelivered"]
        mailbox.deliver("org/7", [Message.user("later", id="m2")])
        live = next(events)
    assert (live.id, live.event) == ("3", "MessagesDelivered")
    assert '"m2"' in live.data


def _unix(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_every_misuse_of_a_ticket_is_401_and_reads_nothing(base: str, mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("secret", id="m1")])
    good = ticket_for(base, "t1")["ticket"]
    everywhere = ticket_for(base, None)["ticket"]
    signer = Tickets(TOKEN)
    body, mac = good.split(".")
    flipped = ("A" if body[5] != "A" else "B").join([body[:5], body[6:]])
    stream = "/v1/threads/t1/events/stream"
    cases = {
        "expired": (stream, signer.sign("t1", int(time.time()) - 1)),
        "tampered claim": (stream, f"{flipped}.{mac}"),
        "tampered signature": (stream, f"{body}.{mac[:-2]}AA"),
        "other token": (stream, Tickets("another-token").sign("t1", int(time.time()) + 60)),
        "other thread": ("/v1/threads/t2/events/stream", good),
        "thread ticket, cross-thread stream": ("/v1/events/stream", good),
        "cross-thread ticket, thread stream": (stream, everywhere),
        "not a stream route": ("/v1/threads/t1/pending", good),
        "not a stream route (events)": ("/v1/threads/t1/events", good),
        "garbage": (stream, "not-a-ticket"),
        "empty": (stream, ""),
        "non-ascii": (stream, "é.é"),
    }
    for name, (path, ticket) in cases.items():
        answer = httpx.get(base + path, params={"ticket": ticket}, timeout=DEADLINE)
        assert answer.status_code == 401, (name, answer.status_code, answer.text[:200])
        assert answer.headers["content-type"] == "application/problem+json", name
        assert answer.json()["code"] == "unauthorized", name
        assert good not in answer.text
    twice = httpx.get(f"{base}{stream}?ticket={good}&ticket={good}", timeout=DEADLINE)
    assert twice.status_code == 401
    head = mailbox.store.committed_head()
    post = httpx.post(
        f"{base}/v1/threads/t1/messages",
        params={"ticket": good},
        json={"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
    )
    assert post.status_code == 401
    assert mailbox.store.committed_head() == head


def test_a_server_without_a_token_issues_no_tickets(mailbox: Mailbox) -> None:
    with live_server(create_app(mailbox)) as url:
        answer = httpx.post(f"{url}/v1/stream-tickets", json={"thread_id": "t1"})
    assert answer.status_code == 409
    assert answer.json()["code"] == "tickets_disabled"


def test_a_stream_of_a_thread_with_no_events_answers_200_then_sends_its_first_delivery(
    base: str, mailbox: Mailbox
) -> None:
    url = f"{base}/v1/threads/fresh/events/stream"
    with (
        httpx.Client(timeout=DEADLINE, headers=AUTH) as client,
        connect_sse(client, "GET", url) as source,
    ):
        assert source.response.status_code == 200
        events = sse_events(source)
        mailbox.deliver("fresh", [Message.user("first", id="m1")])
        got = [next(events) for _ in range(2)]
    assert [(e.id, e.event) for e in got] == [("1", "ThreadOpened"), ("2", "MessagesDelivered")]


def test_the_access_log_never_holds_a_ticket(
    mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(mailbox, token=TOKEN, stream_settings=FAST)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="info")
    )
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while not server.started:
            assert runner.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        ticket = ticket_for(base, "t1")["ticket"]
        answer = httpx.get(f"{base}/v1/threads/t1/pending", params={"ticket": ticket, "x": "1"})
        assert answer.status_code == 401
    finally:
        server.should_exit = True
        runner.join(10)
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/v1/threads/t1/pending?ticket=[redacted]&x=1" in line for line in lines), lines
    assert all(ticket not in line for line in lines)
    assert redact("/s?a=1&ticket=abc.def&b=2") == "/s?a=1&ticket=[redacted]&b=2"


@pytest.mark.parametrize("flag", [True, False])
def test_serve_refuses_a_malformed_cors_origin_before_opening_the_store(
    tmp_path: Path, flag: bool
) -> None:
    env = {"THREADBOX_URL": f"sqlite:///{tmp_path / 'tb.db'}"}
    args = ["serve"]
    if flag:
        args += ["--cors-origins", "http://ok.example,localhost:3000"]
    else:
        env["THREADBOX_CORS_ORIGINS"] = "http://ok.example,localhost:3000"
    result = CliRunner().invoke(build_cli(env), args)
    assert result.exit_code == 2
    named = "--cors-origins" if flag else "THREADBOX_CORS_ORIGINS"
    assert named in result.stderr and "localhost:3000" in result.stderr
    assert not (tmp_path / "tb.db").exists()


def test_serve_answers_preflights_for_the_origins_of_its_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    env |= {
        "THREADBOX_URL": f"sqlite:///{tmp_path / 'tb.db'}",
        "THREADBOX_API_TOKEN": TOKEN,
        "THREADBOX_CORS_ORIGINS": f" {PAGE_ORIGIN} , https://app.example ",
    }
    command = [sys.executable, "-m", "threadbox", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert process.poll() is None, "threadbox serve exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "threadbox serve did not come up"
            time.sleep(0.05)
        for origin in (PAGE_ORIGIN, "https://app.example"):
            answer = preflight(base, origin)
            assert answer.status_code == 200
            assert answer.headers["access-control-allow-origin"] == origin
        assert "access-control-allow-origin" not in preflight(base, "http://other").headers
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(DEADLINE)
