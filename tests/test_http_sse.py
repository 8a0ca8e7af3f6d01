"""The SSE change stream against real servers: resume without gap or duplicate, live events,
heartbeats, and (shutdown included) a `threadbox serve` process restarted on SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import threadbox
from fastapi.testclient import TestClient
from live_server import live_server
from pg_private import free_port
from threadbox import Mailbox, Message
from threadbox.infrastructure.http import StreamSettings, create_app

DEADLINE = 15.0  # seconds a test waits for something that should happen at once


@dataclass
class Sse:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)


def sse_messages(response: httpx.Response, comments: list[str] | None = None) -> Iterator[Sse]:
    """Server-sent events as they arrive (comment lines go to ``comments``)."""
    current = Sse()
    for line in response.iter_lines():
        if not line:
            if current.id is not None or current.data:
                yield current
            current = Sse()
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line)
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data.append(value)


def take(events: Iterator[Sse], count: int) -> list[Sse]:
    return [next(events) for _ in range(count)]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


@pytest.fixture
def server(mailbox: Mailbox) -> Iterator[str]:
    """The base URL of a live server of ``mailbox`` with fast polls and heartbeats."""
    settings = StreamSettings(poll_interval=0.05, heartbeat=0.2)
    with live_server(create_app(mailbox, stream_settings=settings)) as url:
        yield url


def stream_url(server: str, thread: str = "t1") -> str:
    return f"{server}/v1/threads/{thread}/events/stream"


def test_the_stream_sends_every_event_with_its_version_and_type_then_live_ones(
    mailbox: Mailbox, server: str
) -> None:
    mailbox.deliver("t1", [Message.user("a", id="m1")])
    with httpx.stream("GET", stream_url(server), timeout=DEADLINE) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_messages(response)
        first = take(events, 2)
        assert [(e.id, e.event) for e in first] == [
            ("1", "ThreadOpened"),
            ("2", "MessagesDelivered"),
        ]
        mailbox.freeze("t1", "new_run", "r1")
        live = take(events, 2)
    assert [(e.id, e.event) for e in live] == [("3", "RunStarted"), ("4", "PendingMessagesFrozen")]
    assert '"version":4' in live[1].data[0]


def test_last_event_id_resumes_exactly_after_that_version(mailbox: Mailbox, server: str) -> None:
    for n in range(4):
        mailbox.deliver("t1", [Message.user(str(n), id=f"m{n}")])
    headers = {"Last-Event-ID": "3"}
    url = stream_url(server) + "?after_version=1"  # the header wins, as on a browser reconnect
    with httpx.stream("GET", url, headers=headers, timeout=DEADLINE) as response:
        assert [e.id for e in take(sse_messages(response), 2)] == ["4", "5"]
    with httpx.stream("GET", url, timeout=DEADLINE) as response:
        assert take(sse_messages(response), 1)[0].id == "2"


def test_a_quiet_stream_stays_alive_with_comments(mailbox: Mailbox, server: str) -> None:
    mailbox.deliver("t1", [Message.user("a")])
    comments: list[str] = []
    with httpx.stream("GET", stream_url(server), timeout=DEADLINE) as response:
        lines = response.iter_lines()
        deadline = time.monotonic() + DEADLINE
        for line in lines:
            if line.startswith(":"):
                comments.append(line)
                break
            assert time.monotonic() < deadline
    assert comments and comments[0].startswith(": ping")


def test_a_bad_last_event_id_is_400_and_one_past_the_threads_version_409_cursor_ahead(
    mailbox: Mailbox,
) -> None:
    with TestClient(create_app(mailbox)) as client:
        mailbox.deliver("t1", [Message.user("a")])  # version 2
        bad = client.get("/v1/threads/t1/events/stream", headers={"Last-Event-ID": "x"})
        assert (bad.status_code, bad.json()["field"]) == (400, "last-event-id")
        for thread, cursor in [("t1", "3"), ("nope", "1")]:
            ahead = client.get(
                f"/v1/threads/{thread}/events/stream", headers={"Last-Event-ID": cursor}
            )
            assert (ahead.status_code, ahead.json()["code"]) == (409, "cursor_ahead")
            assert ahead.headers["content-type"] == "application/problem+json"


# ---- a real `threadbox serve`, restarted ------------------------------------------------------


class ServeProcess:
    def __init__(self, url: str, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k != "THREADBOX_API_TOKEN"}
        env["THREADBOX_URL"] = url
        self.port = port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "threadbox",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, "threadbox serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "threadbox serve did not come up"
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM; uvicorn shuts down gracefully, then re-raises the signal to report it."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(DEADLINE) == -signal.SIGTERM


@pytest.mark.slow
def test_a_client_resumes_across_a_server_restart_without_gap_or_duplicate(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    port = free_port()
    stream = f"http://127.0.0.1:{port}/v1/threads/t1/events/stream"
    seen: list[Sse] = []
    first = ServeProcess(url, port)
    try:
        api = f"http://127.0.0.1:{port}/v1/threads/t1/messages"
        posted = httpx.post(api, json={"messages": [Message.user("a", id="m1").model_dump()]})
        assert posted.status_code == 201
        with httpx.stream("GET", stream, timeout=DEADLINE) as response:
            events = sse_messages(response)
            seen += take(events, 2)
            first.stop()  # SIGTERM with a client connected: the server exits in time
            assert list(events) == []  # and the stream ended rather than hung
    finally:
        if first.process.poll() is None:
            first.stop()
    with threadbox.open(url) as other:  # written while no server and no client were up
        other.deliver("t1", [Message.user("b", id="m2")])
        other.freeze("t1", "new_run", "r1")
    second = ServeProcess(url, port)
    try:
        with httpx.stream(
            "GET", stream, headers={"Last-Event-ID": seen[-1].id or ""}, timeout=DEADLINE
        ) as response:
            events = sse_messages(response)
            seen += take(events, 3)
            with threadbox.open(url) as other:
                other.finish_run("t1", "r1")
            seen += take(events, 1)
    finally:
        second.stop()
    assert [(e.id, e.event) for e in seen] == [
        ("1", "ThreadOpened"),
        ("2", "MessagesDelivered"),
        ("3", "MessagesDelivered"),
        ("4", "RunStarted"),
        ("5", "PendingMessagesFrozen"),
        ("6", "RunFinished"),
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_stream_wakes_on_the_followers_news_not_its_own_slow_poll(store_url: str) -> None:
    """With the views following the log (SQLite: polling; PostgreSQL: LISTEN/NOTIFY), an event
    written by another mailbox reaches an open stream long before the stream's own 60 s poll."""
    with threadbox.open(store_url) as serving, threadbox.open(store_url) as other:
        other.deliver("t1", [Message.user("a", id="m1")])
        serving.views.start_following()
        slow = StreamSettings(poll_interval=60.0, heartbeat=60.0)
        with (
            live_server(create_app(serving, stream_settings=slow)) as running,
            httpx.stream("GET", stream_url(running), timeout=DEADLINE) as response,
        ):
            events = sse_messages(response)
            assert [e.id for e in take(events, 2)] == ["1", "2"]
            other.freeze("t1", "new_run", "r1")
            started = time.monotonic()
            live = take(events, 2)
            waited = time.monotonic() - started
        serving.views.stop_following()
    assert [(e.id, e.event) for e in live] == [("3", "RunStarted"), ("4", "PendingMessagesFrozen")]
    assert waited < DEADLINE  # the 60 s poll could not have delivered them


def test_a_disconnected_client_releases_its_stream(mailbox: Mailbox, server: str) -> None:
    mailbox.deliver("t1", [Message.user("a", id="m1")])
    health = f"{server}/healthz"
    with httpx.stream("GET", stream_url(server), timeout=DEADLINE) as response:
        events = sse_messages(response)  # kept: a dropped reader would close the connection
        take(events, 2)
        assert httpx.get(health).json()["open_streams"] == 1
    deadline = time.monotonic() + DEADLINE
    while httpx.get(health).json()["open_streams"] != 0:
        assert time.monotonic() < deadline, "the stream outlived its client"
        time.sleep(0.05)
