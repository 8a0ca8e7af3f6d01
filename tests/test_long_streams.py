"""Streams of a long thread hold one page, not the history (issue 9, finding 2): twenty streams
from the start of a 20,001-event thread, on SQLite, grow the server's Python heap by a bounded
amount (traced with tracemalloc) while /healthz answers, and a stream read to its end sends
every version once, in order, its heap flat meanwhile.

The app is driven in-process through ASGI, its clients made of coroutines: one that stops
taking body chunks makes the server's ``send`` wait, as a client that stops reading would,
without the kernel's socket buffers (megabytes a stream, on loopback) in the way."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import threadbox
from fastapi import FastAPI
from long_thread_support import long_thread
from threadbox.infrastructure.http import create_app

STREAMS = 20
RUNS = 4000  # 20,001 events
# Before paging, each stream read the whole log at once: +172 MB a stream, 2.5 GB for twenty.
# Paged, a stream holds one page (200 events) while it waits.
GROWTH_BOUND = 40 * 1024 * 1024

Message = dict[str, Any]


class Client:
    """One ASGI request; its body taken until ``enough(ids)`` says so, then no more (the
    server's next send waits until the client is cancelled)."""

    def __init__(self, path: str, enough: Callable[[list[int]], bool] = lambda ids: False):
        self.path = path
        self.enough = enough
        self.status = 0
        self.body = b""
        self.ids: list[int] = []  # the ``id:`` of each server-sent event taken
        self.done = anyio.Event()  # set once enough was taken (or the response ended)
        self._rest = b""

    async def run(self, app: FastAPI) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test"), (b"accept", b"text/event-stream")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        await app(scope, self._receive, self._send)

    async def _receive(self) -> Message:
        await anyio.sleep_forever()  # the client never disconnects: the test cancels it
        raise AssertionError("unreachable")

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return
        chunk: bytes = message.get("body", b"")
        self.body += chunk if not self.ids and len(self.body) < 4096 else b""
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        self.ids.extend(int(line[4:]) for line in lines if line.startswith(b"id: "))
        if not message.get("more_body", False) or self.enough(self.ids):
            self.done.set()
            await anyio.sleep_forever()  # a client that reads no more


async def request(app: FastAPI, client: Client) -> None:
    """Run ``client`` until it is done, then cancel it."""
    async with anyio.create_task_group() as group:
        group.start_soon(client.run, app)
        await client.done.wait()
        group.cancel_scope.cancel()


def heap() -> int:
    return tracemalloc.get_traced_memory()[0]


async def scenario(app: FastAPI, version: int, report: dict[str, Any]) -> None:
    stream = "/v1/threads/long/events/stream"
    async with app.router.lifespan_context(app), anyio.create_task_group() as group:
        warm = Client(stream, lambda ids: len(ids) >= 300)  # warms the server's caches up
        await request(app, warm)
        report["warm"] = warm.ids
        tracemalloc.start()
        try:
            before = heap()
            streams = [Client(stream, lambda ids: bool(ids)) for _ in range(STREAMS)]
            for client in streams:
                group.start_soon(client.run, app)
            for client in streams:
                await client.done.wait()
            await anyio.sleep(0.5)  # what the streams do while their clients read nothing
            report["firsts"] = [c.ids[0] for c in streams]
            health = Client("/healthz")
            await request(app, health)
            report["health"] = (health.status, orjson.loads(health.body))
            report["grown"] = heap() - before
            tracemalloc.reset_peak()
            whole = Client(stream, lambda ids: ids[-1] >= version if ids else False)
            await request(app, whole)
            report["whole"] = whole.ids
            report["peak"] = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
            group.cancel_scope.cancel()


@pytest.mark.slow
def test_twenty_streams_of_a_long_thread_keep_the_heap_small_and_the_server_healthy(
    tmp_path: Path,
) -> None:
    with threadbox.open(f"sqlite:///{tmp_path / 'long.db'}") as mailbox:
        version = long_thread(mailbox, "long", RUNS)
        assert version == 1 + 5 * RUNS
        report: dict[str, Any] = {}
        anyio.run(scenario, create_app(mailbox), version, report)
    assert report["warm"][:300] == list(range(1, 301))
    assert report["firsts"] == [1] * STREAMS  # every stream starts at the first version
    status, health = report["health"]
    assert (status, health["status"], health["open_streams"]) == (200, "ok", STREAMS)
    grown, peak = report["grown"], report["peak"]
    assert grown < GROWTH_BOUND, f"{STREAMS} streams grew the heap by {grown >> 20} MiB"
    assert report["whole"] == list(range(1, version + 1))  # every version once, in order
    assert peak < GROWTH_BOUND, f"a stream read to its end took the heap to {peak >> 20} MiB"
