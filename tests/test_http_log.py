"""The store's whole log over HTTP (``GET /v1/events``, ``GET /v1/events/stream``) against a
real server: pages in commit order, redaction, bad positions, a ticketed browser-style stream,
and a stream that reconnects while another process writes (nothing lost, nothing twice)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import threadbox
from fastapi.testclient import TestClient
from httpx_sse import ServerSentEvent, connect_sse
from live_server import live_server, sse_events
from threadbox import Mailbox, Message
from threadbox.infrastructure.http import StreamSettings, create_app

TOKEN = "log-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE = 30.0
FAST = StreamSettings(poll_interval=0.05, heartbeat=0.5, page=7)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


def internal(text: str, message_id: str) -> Message:
    content = [{"type": "text", "text": text}]
    return Message.model_validate(
        {"id": message_id, "role": "user", "content": content, "visibility": "internal"}
    )


def keys(items: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    return [(i["thread_id"], i["event"]["version"], i["event"]["type"]) for i in items]


def test_the_log_pages_through_every_thread_in_commit_order(mailbox: Mailbox) -> None:
    expected: list[tuple[str, int, str]] = []
    for n, thread in enumerate(["b", "a", "b", "c", "a"]):
        opened = not any(t == thread for t, _, _ in expected)
        mailbox.deliver(thread, [Message.user(str(n), id=f"m{n}")])
        version = sum(1 for t, _, _ in expected if t == thread)
        if opened:
            expected.append((thread, version + 1, "ThreadOpened"))
            version += 1
        expected.append((thread, version + 1, "MessagesDelivered"))
    with TestClient(create_app(mailbox)) as client:
        seen: list[dict[str, Any]] = []
        after = ""
        while True:
            page = client.get("/v1/events", params={"after": after, "limit": 3}).json()
            assert len(page["items"]) <= 3
            seen += page["items"]
            if not page["items"]:
                assert page["next"] == after  # read on from the same place later
                break
            assert page["next"] == page["items"][-1]["position"]
            after = page["next"]
        assert keys(seen) == expected
        assert len({i["position"] for i in seen}) == len(seen)
        whole = client.get("/v1/events", params={"limit": 1000}).json()["items"]
        assert whole == seen
        mailbox.deliver("a", [Message.user("late", id="late")])
        later = client.get("/v1/events", params={"after": after}).json()["items"]
        assert keys(later) == [("a", 4, "MessagesDelivered")]


def test_the_log_leaves_out_internal_and_hidden_content_unless_asked(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [internal("private", "i1"), Message.user("public", id="p1")])
    mailbox.submit("u", [Message.user("typo", id="h1")], None, run_id="r1")
    mailbox.hide("u", "h1", reason="a typo")
    with TestClient(create_app(mailbox)) as client:
        shown = json.dumps(client.get("/v1/events").json())
        whole = json.dumps(client.get("/v1/events?include_internal=true").json())
    assert "public" in shown and "private" not in shown and "a typo" in shown  # the reason
    assert '"text": "typo"' not in shown
    assert '"redacted": "internal"' in shown and '"redacted": "hidden"' in shown
    assert "private" in whole and '"text": "typo"' in whole and "redacted" not in whole


@pytest.mark.parametrize("after", ["zz", "00000000000000000009", "1", " "])
def test_a_position_not_of_this_store_is_refused(mailbox: Mailbox, after: str) -> None:
    mailbox.deliver("t", [Message.user("x")])
    with TestClient(create_app(mailbox)) as client:
        page = client.get("/v1/events", params={"after": after})
        assert (page.status_code, page.json()["field"]) == (422, "after")
        stream = client.get("/v1/events/stream", params={"after": after})
        assert (stream.status_code, stream.json()["field"]) == (422, "after")
        header = client.get("/v1/events/stream", headers={"Last-Event-ID": after + "x"})
        assert (header.status_code, header.json()["field"]) == (400, "last-event-id")


def take(events: Iterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    return [next(events) for _ in range(count)]


def test_a_cross_thread_ticket_opens_the_log_stream(mailbox: Mailbox) -> None:
    mailbox.deliver("a", [Message.user("x", id="m1")])
    with live_server(create_app(mailbox, token=TOKEN, stream_settings=FAST)) as base:
        ticket = httpx.post(f"{base}/v1/stream-tickets", headers=AUTH, json={}).json()["ticket"]
        thread_ticket = httpx.post(
            f"{base}/v1/stream-tickets", headers=AUTH, json={"thread_id": "a"}
        ).json()["ticket"]
        refused = httpx.get(f"{base}/v1/events/stream", params={"ticket": thread_ticket})
        assert refused.status_code == 401
        assert httpx.get(f"{base}/v1/events", params={"ticket": ticket}).status_code == 401
        url = f"{base}/v1/events/stream"
        with (
            httpx.Client(timeout=DEADLINE) as client,
            connect_sse(client, "GET", url, params={"ticket": ticket}) as source,
        ):
            events = sse_events(source)
            first = take(events, 2)
            mailbox.deliver("b", [Message.user("y", id="m2")])
            live = take(events, 2)
    got = [json.loads(e.data) for e in first + live]
    assert keys(got) == [
        ("a", 1, "ThreadOpened"),
        ("a", 2, "MessagesDelivered"),
        ("b", 1, "ThreadOpened"),
        ("b", 2, "MessagesDelivered"),
    ]
    assert [e.id for e in first + live] == [g["position"] for g in got]
    assert [e.event for e in first + live] == [k[2] for k in keys(got)]


WRITER = """
import sys, time, threadbox
from threadbox import Message
url, threads, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
with threadbox.open(url) as mb:
    for n in range(rounds):
        for thread in threads:
            mb.deliver(thread, [Message.user(f"{thread}-{n}", id=f"{thread}-{n}")])
        time.sleep(0.01)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_log_stream_resumes_by_last_event_id_while_another_process_writes(
    store_url: str,
) -> None:
    url = store_url
    threads, rounds = ["x", "y/1", "z"], 25
    expected = {(t, v) for t in threads for v in range(1, rounds + 2)}  # ThreadOpened + rounds
    with threadbox.open(url) as mailbox:
        mailbox.views.start_following()
        app = create_app(mailbox, stream_settings=FAST)
        with live_server(app) as base:
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, url, ",".join(threads), str(rounds)]
            )
            try:
                got: list[tuple[str, str, int]] = []
                last: str | None = None
                connections = 0
                deadline = time.monotonic() + 60
                while len(got) < len(expected):
                    assert time.monotonic() < deadline, f"{len(got)} of {len(expected)}"
                    headers = {} if last is None else {"Last-Event-ID": last}
                    connections += 1
                    with (
                        httpx.Client(timeout=DEADLINE) as client,
                        connect_sse(
                            client, "GET", f"{base}/v1/events/stream", headers=headers
                        ) as source,
                    ):
                        for event in sse_events(source):
                            item = json.loads(event.data)
                            assert event.id == item["position"]
                            got.append((event.id, item["thread_id"], item["event"]["version"]))
                            last = event.id
                            if len(got) % 10 == 0 or len(got) == len(expected):
                                break  # hang up mid-stream; the writer goes on
            finally:
                assert writer.wait(DEADLINE) == 0
        mailbox.views.stop_following()
    assert connections >= 2
    positions = [p for p, _, _ in got]
    assert len(set(positions)) == len(positions)  # nothing twice
    assert {(t, v) for _, t, v in got} == expected  # nothing lost
    for thread in threads:  # within a thread, in version order
        versions = [v for _, t, v in got if t == thread]
        assert versions == sorted(versions)
