"""Bounds on how long a client may take to send a request (ADR 0015), so that clients which open
connections and send half a request cannot hold the server's descriptors.

- Headers: uvicorn times out idle keep-alive connections, but not a connection whose request
  headers never end (nor one that never sends a byte): ``HttpToolsHeaderTimeoutProtocol`` (and
  ``HeaderTimeoutProtocol`` on h11) closes those after ``header_timeout`` seconds, counted from
  the connection's start or from the first byte of each request.
- Body: ``BodyReadTimeout`` (ASGI middleware) answers 408 ``request_timeout`` when a request body
  is not whole ``body_timeout`` seconds after the application first asked for it.
- Connections: uvicorn's ``limit_concurrency`` answers 503 (plain text, before the application)
  once that many connections and requests are open.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import ClassVar

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 16 * 1024  # a request's headers still incomplete past this: 400 (as on h11)


@dataclass(frozen=True)
class ServerLimits:
    """How long a client may take, and how many connections may be open (``threadbox serve``)."""

    header_timeout: float = 10.0  # seconds to send a request's headers
    body_timeout: float = 60.0  # seconds to send a request's body, once the app reads it
    keep_alive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    limit_concurrency: int = 1000  # open connections and requests beyond which requests get 503


class _HeaderClock:
    """The clock a request's headers run against: armed at the connection's start and at the
    first byte of each request, stopped once the headers are in; when it runs out, the
    connection closes (the client is sent nothing)."""

    header_timeout: ClassVar[float] = ServerLimits.header_timeout
    _header_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    logger: logging.Logger

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.debug("closing a connection whose request headers took too long")
            self.transport.close()


class HttpToolsHeaderTimeoutProtocol(_HeaderClock, HttpToolsProtocol):
    """uvicorn's httptools protocol (C parser: what ``threadbox serve`` runs), closing
    connections whose request headers take too long, and answering 400 to headers that go on
    past ``MAX_HEADER_BYTES`` (httptools itself buffers a header of any size; h11 stops at
    uvicorn's 16 KiB)."""

    _in_headers = True  # a connection starts with a request's headers
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's headers."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Parse; count the bytes of a chunk that came wholly inside a request's headers."""
        inside = self._in_headers
        super().data_received(data)
        if not (inside and self._in_headers):
            return  # the headers began or ended in this chunk: one chunk at most uncounted
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            self.send_400_response("Request headers too large.")

    def on_message_begin(self) -> None:
        """A request's first byte: its headers must end in time, and within the size."""
        super().on_message_begin()
        self._in_headers, self._header_bytes = True, 0
        self._arm()

    def on_headers_complete(self) -> None:
        """The headers are in: stop the clock."""
        self._disarm()
        self._in_headers = False
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)


class HeaderTimeoutProtocol(_HeaderClock, H11Protocol):
    """uvicorn's h11 protocol (pure Python), closing connections whose request headers take
    too long."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's headers."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Stop the clock once the headers are in; start it at the first byte of a request."""
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        """A pipelined request may have started already."""
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        waiting = self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE
        if waiting and self.conn.trailing_data[0]:
            self._arm()  # part of a request is in: its headers must end in time
        elif not waiting:
            self._disarm()


PROTOCOLS: dict[str, type[_HeaderClock]] = {
    "httptools": HttpToolsHeaderTimeoutProtocol,
    "h11": HeaderTimeoutProtocol,
}


def header_timeout_protocol(
    header_timeout: float, parser: str = "httptools"
) -> type[HeaderTimeoutProtocol] | type[HttpToolsHeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with this header timeout: on
    httptools' parser (the default: a fraction of h11's CPU per request, ADR 0023) or h11's."""
    base = PROTOCOLS[parser]
    return type(base.__name__, (base,), {"header_timeout": header_timeout})


class RequestTimeout(HTTPException):
    """Raised while a request body streams in, once it is late (answered 408)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            408,
            f"the request body was not received within {timeout:g} s",
            headers={"Connection": "close"},
        )
        self.timeout = timeout


class BodyReadTimeout:
    """ASGI middleware: a request body must be whole ``timeout`` seconds after the application
    first asks for it; later reads (waiting for a disconnect, as event streams do) are not
    bounded."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        whole = False

        async def timed_receive() -> Message:
            nonlocal deadline, whole
            if whole:
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):  # cheaper than an anyio cancel scope
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(self.timeout) from None
            whole = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)
