"""A real uvicorn server in a thread of the test process, on a free loopback port: for tests that
talk HTTP over the network with real clients (httpx, httpx-sse, a browser)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from httpx_sse import EventSource, ServerSentEvent
from pg_private import free_port


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` until the block ends; its base URL (``http://127.0.0.1:<port>``)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def sse_events(source: EventSource) -> Iterator[ServerSentEvent]:
    """The events of ``source``. httpx-sse also yields a blank event (the last id, no data) for
    the blank line after each heartbeat comment; the SSE spec dispatches none: skip them."""
    return (event for event in source.iter_sse() if event.data)
