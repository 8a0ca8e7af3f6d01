"""Stream tickets (ADR 0018): how a browser's ``EventSource``, which cannot send an
``Authorization`` header, opens a stream route of a server that has a token.

``POST /v1/stream-tickets`` (with the bearer token) answers a ticket: a short JSON claim (the
thread it opens, or the cross-thread stream, and its expiry) and an HMAC-SHA256 over it, both
base64url, joined by a dot. The HMAC key is derived from the API token (``HMAC(token, "threadbox
stream ticket")``), so every worker of a server checks every other's tickets with no shared
state, and changing the token voids every ticket. A ticket is valid for 60 seconds, on the GET
stream routes alone (``/v1/threads/{id}/events/stream``, ``/v1/threads/{id}/ag-ui``,
``/v1/events/stream``), passed as ``?ticket=``; the bearer guard checks it. The access log never
holds one: ``TicketRedaction`` blanks ``ticket=`` in uvicorn's access lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote_to_bytes

LIFETIME = 60  # seconds a ticket opens streams for
KEY_LABEL = b"threadbox stream ticket"
PARAMETER = "ticket"
ACCESS_LOGGER = "uvicorn.access"
ALL_THREADS = None  # the scope of a ticket for the cross-thread stream


def ticket_key(token: str) -> bytes:
    """The key tickets are signed with: derived from the API token, never the token itself."""
    return hmac.new(token.encode(), KEY_LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Ticket:
    """An issued ticket: the string a client passes as ``?ticket=``, and when it expires."""

    ticket: str
    expires_at: datetime


class Tickets:
    """Issues and checks stream tickets with a key derived from ``token``."""

    def __init__(
        self, token: str, *, lifetime: int = LIFETIME, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = ticket_key(token)
        self._lifetime = lifetime
        self._clock = clock

    def sign(self, thread_id: str | None, expires: int) -> str:
        """The ticket for ``thread_id`` (``None``: the cross-thread stream) expiring at the Unix
        time ``expires``."""
        claim = json.dumps({"thread_id": thread_id, "exp": expires}, separators=(",", ":"))
        body = _b64(claim.encode("utf-8", "surrogatepass"))
        mac = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def issue(self, thread_id: str | None) -> Ticket:
        """A ticket for ``thread_id`` (``None``: the cross-thread stream), valid from now."""
        expires = int(self._clock()) + self._lifetime
        return Ticket(self.sign(thread_id, expires), datetime.fromtimestamp(expires, UTC))

    def refusal(self, ticket: str, thread_id: str | None) -> str | None:
        """Why ``ticket`` does not open the stream of ``thread_id`` (``None``: the cross-thread
        stream) now; ``None`` when it does."""
        body, dot, mac = ticket.partition(".")
        try:
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            return "the ticket is malformed"
        if not dot or not body.isascii() or not mac.isascii():
            return "the ticket is malformed"
        expected = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(given, expected):
            return "the ticket's signature is wrong (tampered with, or signed for another token)"
        claim = json.loads(_unb64(body).decode("utf-8", "surrogatepass"))  # we signed it
        if claim["exp"] <= self._clock():
            return "the ticket has expired: ask POST /v1/stream-tickets for a new one"
        if claim["thread_id"] != thread_id:
            opens = "the cross-thread stream" if claim["thread_id"] is None else "another thread"
            return f"the ticket opens {opens}, not this stream"
        return None


def stream_scope(method: str, raw_path: bytes) -> tuple[bool, str | None]:
    """Whether a request goes to a stream route that takes tickets, and which thread it streams
    (``None``: the cross-thread stream). Ids are decoded per segment, as routing does."""
    if method != "GET":
        return False, None
    try:
        parts = [unquote_to_bytes(s).decode("utf-8") for s in raw_path.split(b"/")]
    except UnicodeDecodeError:
        return False, None
    if parts == ["", "v1", "events", "stream"]:
        return True, ALL_THREADS
    if len(parts) == 6 and parts[:3] == ["", "v1", "threads"] and parts[4:] == ["events", "stream"]:
        return True, parts[3]
    if len(parts) == 5 and parts[:3] == ["", "v1", "threads"] and parts[4] == "ag-ui":
        return True, parts[3]
    return False, None


def tickets_in(query_string: bytes) -> list[str]:
    """The ``ticket`` parameters of a query string."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return [value for name, value in pairs if name == PARAMETER]


_TICKET_IN_QUERY = re.compile(r"(?i)((?:^|[?&])ticket=)[^&\s\"]*")


def redact(text: str) -> str:
    """``text`` with the value of every ``ticket=`` query parameter replaced."""
    return _TICKET_IN_QUERY.sub(r"\1[redacted]", text)


class TicketRedaction(logging.Filter):
    """Blanks ``ticket=`` values in a log record's message and arguments (uvicorn's access
    line carries the path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact, and keep the record."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_redaction(logger_name: str = ACCESS_LOGGER) -> None:
    """Add ``TicketRedaction`` to the logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, TicketRedaction) for f in logger.filters):
        logger.addFilter(TicketRedaction())
