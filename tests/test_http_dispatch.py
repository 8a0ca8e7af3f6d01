"""One thread hop per request (ADR 0023): a plain endpoint runs on a worker thread, once, in the
request's context; its errors reach the problem handlers; a cancelled request waits for its
call to end; and a slow request header is cut off on httptools' parser as on h11's."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import threadbox
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pg_private import free_port
from threadbox import Mailbox, Message
from threadbox.errors import InvalidInput
from threadbox.infrastructure.http import create_app
from threadbox.infrastructure.http.dispatch import OneHopRoute, Workers, blocking_endpoint
from threadbox.infrastructure.http.problems import install_problem_handlers
from threadbox.infrastructure.http.timeouts import header_timeout_protocol

probe: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")


def test_a_plain_endpoint_runs_off_the_loop_in_one_hop_and_answers_as_before() -> None:
    """The deliver endpoint runs on one worker thread (not the loop's, not anyio's pool) and
    still answers its status, body and ETag; a mailbox error is still a problem document."""
    seen: list[str] = []
    with threadbox.open("memory://") as mailbox:
        original = mailbox.deliver_page

        def recording(*args: Any, **kwargs: Any) -> Any:
            seen.append(threading.current_thread().name)
            return original(*args, **kwargs)

        mailbox.deliver_page = recording  # type: ignore[method-assign]
        client = TestClient(create_app(mailbox))
        body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
        answer = client.post("/v1/threads/t1/messages", json=body)
        assert answer.status_code == 201
        assert answer.json()["version"] == int(answer.headers["etag"].strip('"'))
        assert [e["message"]["content"][0]["text"] for e in answer.json()["entries"]] == ["hi"]
        assert seen and all(name.startswith("threadbox-request-") for name in seen)
        first = {"id": "m1", "role": "user", "content": [{"type": "text", "text": "one"}]}
        assert client.post("/v1/threads/t1/messages", json={"messages": [first]}).is_success
        other = {**first, "content": [{"type": "text", "text": "another"}]}
        refused = client.post("/v1/threads/t1/messages", json={"messages": [other]})
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "message_id_in_use"


def test_the_endpoint_keeps_its_signature_for_openapi() -> None:
    """FastAPI reads the wrapped endpoint's parameters and their (resolved) annotations."""
    with threadbox.open("memory://") as mailbox:
        spec = TestClient(create_app(mailbox)).get("/openapi.json").json()
    deliver = spec["paths"]["/v1/threads/{thread_id}/messages"]["post"]
    assert deliver["operationId"] == "deliver"
    assert [p["name"] for p in deliver["parameters"]] == ["thread_id"]
    assert deliver["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DeliverBody"
    }


def test_the_call_runs_in_the_callers_context_and_its_errors_are_raised() -> None:
    workers = Workers(max_threads=2)

    def read() -> tuple[str, str]:
        return probe.get(), threading.current_thread().name

    def fail() -> None:
        raise InvalidInput("no", "field")

    async def scenario() -> None:
        probe.set("request-7")
        value, thread = await workers.call(read)
        assert value == "request-7" and thread != threading.current_thread().name
        with pytest.raises(InvalidInput):
            await workers.call(fail)

    asyncio.run(scenario())


def test_calls_run_at_once_up_to_the_bound_and_the_rest_wait() -> None:
    """Four blocking calls on a bound of two: two threads, never more than two at once, and
    every call done."""
    workers = Workers(max_threads=2)
    running, most = 0, 0
    lock = threading.Lock()

    def block(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return n

    async def scenario() -> list[int]:
        return list(await asyncio.gather(*(workers.call(block, n) for n in range(4))))

    assert asyncio.run(scenario()) == [0, 1, 2, 3]
    assert most == 2 and workers.threads == 2


def test_a_cancelled_caller_waits_for_its_call_to_end() -> None:
    """As with anyio's pool: cancelling the task does not abandon the blocking call; the task
    ends, cancelled, only once the call has returned."""
    workers = Workers(max_threads=1)
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()

    async def scenario() -> bool:
        task = asyncio.create_task(workers.call(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return finished.is_set()

    assert asyncio.run(scenario())


def test_a_route_class_leaves_a_coroutine_endpoint_on_the_loop() -> None:
    loop_thread: list[str] = []
    router = APIRouter(route_class=OneHopRoute)

    @router.get("/on-loop", operation_id="on_loop")
    async def on_loop() -> dict[str, str]:
        loop_thread.append(threading.current_thread().name)
        return {"thread": "loop"}

    @router.get("/blocking", operation_id="blocking")
    def blocking() -> dict[str, str]:
        return {"thread": threading.current_thread().name}

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    client = TestClient(app)
    assert client.get("/on-loop").json() == {"thread": "loop"}
    assert client.get("/blocking").json()["thread"].startswith("threadbox-request-")
    assert blocking_endpoint(blocking).__name__ == "blocking"


# ---- the header timeout on both parsers --------------------------------------------------------


@contextmanager
def served(mailbox: Mailbox, parser: str, header_timeout: float) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        create_app(mailbox),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=header_timeout_protocol(header_timeout, parser),  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def whole_response(client: socket.socket) -> bytes:
    """One response read to the end of its body (``Content-Length`` framed)."""
    client.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += client.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += client.recv(65536)
    assert len(body) == length  # nothing after it: the next request has not been answered
    return head + b"\r\n\r\n" + body


def closed_by_server(client: socket.socket) -> bool:
    """Whether the server closes the connection, having sent nothing (bounded wait)."""
    client.settimeout(10)
    return client.recv(1024) == b""


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_slow_headers_are_cut_off_and_a_prompt_keep_alive_request_is_not(parser: str) -> None:
    """A connection that sends nothing, one whose first request's headers never end, and one
    that sends a whole request and then half of the next are closed after the header timeout;
    the whole request is answered first."""
    with threadbox.open("memory://") as mailbox, served(mailbox, parser, 0.5) as port:
        mailbox.deliver("t1", [Message.user("hi")])
        silent = socket.create_connection(("127.0.0.1", port))
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /v1/threads/t1/pending HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        then_half = socket.create_connection(("127.0.0.1", port))
        then_half.sendall(b"GET /v1/threads/t1/pending HTTP/1.1\r\nHost: x\r\n\r\n")
        assert whole_response(then_half).startswith(b"HTTP/1.1 200")
        time.sleep(0.6)  # longer than the header timeout: the idle keep-alive stays open
        then_half.sendall(b"GET /v1/threads/t1/pending HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        for client in (silent, half, then_half):
            with client:
                assert closed_by_server(client)
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_headers_that_go_on_and_on_are_a_400_and_usual_ones_are_served(parser: str) -> None:
    """httptools buffers a header of any size: past 16 KiB still incomplete, the request is
    refused (400, connection closed) on either parser, long before the header timeout."""
    with threadbox.open("memory://") as mailbox, served(mailbox, parser, 30) as port:
        with socket.create_connection(("127.0.0.1", port)) as usual:
            big = b"X-Big: " + b"a" * 8000 + b"\r\n"
            usual.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
            assert whole_response(usual).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", port)) as endless:
            endless.settimeout(10)
            endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            answer = b""
            with contextlib.suppress(ConnectionError):  # the server may close while we send
                for _ in range(64):
                    endless.sendall(b"a" * 4096)
                    time.sleep(0.005)
            with contextlib.suppress(ConnectionError):
                while chunk := endless.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 400")
