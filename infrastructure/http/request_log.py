"""``X-Request-ID`` and the access log: every request gets an id (the client's, when it sent a
usable one), echoed in the response and carried by every log line written while it is served;
when it ends, one ``threadbox.access`` line with its method, path, status, duration, thread and
problem code."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadbox.infrastructure.logs import RequestContext, current_request

from .limits import last_header

access = logging.getLogger("threadbox.access")

# A client's id is echoed only when it is short, visible ASCII: it ends up in logs and headers.
_USABLE_ID = re.compile(r"[\x21-\x7e]{1,128}")
_THREAD_PATH = re.compile(r"^/v1/threads/([^/]+)")


class RequestIds:
    """Ids for requests that came without one: 32 hex digits, a random prefix drawn once per
    process (again in a forked child) and a counter, so ids are unique across the processes
    serving a store. (A UUID4 per request costs a system call and an object.)"""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A new id."""
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_ids = RequestIds()


class RequestLog:
    """ASGI middleware (the outermost): the request id, its echo, and the access log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given_id = (last_header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = given_id if _USABLE_ID.fullmatch(given_id) else _ids.next()
        raw = scope.get("raw_path")  # as sent: an id's encoded slash stays one segment
        path = raw.decode("latin-1").partition("?")[0] if raw else scope.get("path", "")
        thread = _THREAD_PATH.match(path)
        context = RequestContext(
            request_id=request_id,
            method=scope.get("method", ""),
            path=path,
            thread_id=unquote(thread.group(1)) if thread else None,
        )
        token = current_request.set(context)
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            context.code = context.code or "internal_error"
            self._log(context, status, started)
            raise  # Starlette's outermost handler answers 500, with the id (the context stays)
        self._log(context, status, started)
        current_request.reset(token)

    @staticmethod
    def _log(context: RequestContext, status: int, started: float) -> None:
        if not access.isEnabledFor(logging.INFO):
            return
        access.info(
            "%s %s %d",
            context.method,
            context.path,
            status,
            extra={
                "request_id": context.request_id,
                "method": context.method,
                "path": context.path,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "thread_id": context.thread_id,
                "code": context.code,
            },
        )
