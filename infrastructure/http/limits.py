"""Request bodies over the limit are refused with 413 before they are parsed or buffered whole;
request targets that are not UTF-8 once percent-decoded are refused with 400."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import BodyTooLarge, problem_response

# A request may carry a few messages of the mailbox's largest size, plus the JSON around them;
# bigger batches go in several requests (the mailbox still checks each message).
BODY_FACTOR = 4
BODY_OVERHEAD = 64 * 1024


def last_header(scope: Scope, name: bytes) -> bytes | None:
    """The value of the last ``name`` header of the request (None: there is none)."""
    found = None
    for key, value in scope["headers"]:
        if key == name:
            found = value
    return found


def body_limit_for(max_message_bytes: int) -> int:
    return max_message_bytes * BODY_FACTOR + BODY_OVERHEAD


class BodyLimit:
    """ASGI middleware: checks ``Content-Length``, and counts the bytes of streamed bodies."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = last_header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(scope, receive, send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.limit:
                await self._refuse(scope, receive, send, 413, BodyTooLarge(self.limit).detail)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as too_large:
            if started:
                raise
            await self._refuse(scope, receive, send, 413, too_large.detail)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str
    ) -> None:
        code = "payload_too_large" if status == 413 else "invalid_input"
        fields = {"limit": self.limit} if status == 413 else {"field": "content-length"}
        response = problem_response(status, code, detail, fields, headers={"Connection": "close"})
        await response(scope, receive, send)


class Utf8Target:
    """ASGI middleware: 400 when the raw path or query string is not UTF-8 once percent-decoded.
    ASGI servers replace such bytes with U+FFFD, which would silently write to (or read) a
    thread, pending entry or run whose id the client never sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for part, raw in (("path", scope.get("raw_path")), ("query", scope["query_string"])):
                try:
                    (unquote_to_bytes(raw) if raw and b"%" in raw else raw or b"").decode("utf-8")
                except UnicodeDecodeError:
                    detail = f"the {part} is not UTF-8 once percent-decoded"
                    response = problem_response(400, "invalid_input", detail, {"field": part})
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
