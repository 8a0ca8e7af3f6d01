"""Bearer-token access: with a token configured, every route but ``/healthz`` needs it.

The rules that are easy to get wrong live here, once (ADR 0015): a configured token must be
usable (not empty, no whitespace around or inside it, visible ASCII only: what a client can send
in a header), so a mistyped setting refuses to start instead of disabling auth or locking everyone
out; the scheme name is case-insensitive (RFC 7235 §2.1, RFC 6750); a request with two
``Authorization`` headers is ambiguous and answers 400. A request without ``Authorization`` to a
stream route may carry a stream ticket instead (``?ticket=``, ADR 0018: ``tickets.py``); a ticket
on any other route, expired, tampered with or for another stream answers 401.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send
from threadbox.errors import InvalidInput

from .problems import problem_response
from .tickets import Tickets, stream_scope, tickets_in

OPEN_PATHS = frozenset({"/healthz"})
TOKEN_SETTING = "THREADBOX_API_TOKEN"


def checked_token(token: str) -> str:
    """``token`` if it can guard the API; else ``InvalidInput`` saying what is wrong with it
    (never the token itself)."""
    if token == "":
        raise InvalidInput(
            f"{TOKEN_SETTING} is set but empty: set a token, or unset it to serve without auth",
            TOKEN_SETTING,
        )
    if token != token.strip():
        raise InvalidInput(
            f"{TOKEN_SETTING} has whitespace around it (a copied newline?): remove it; clients "
            "could never send it",
            TOKEN_SETTING,
        )
    if not all("!" <= c <= "~" for c in token):
        raise InvalidInput(
            f"{TOKEN_SETTING} holds a space, a control or a non-ASCII character: use visible "
            "ASCII only (what an Authorization header can carry)",
            TOKEN_SETTING,
        )
    return token


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` reaches this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class BearerTokenGuard:
    """ASGI middleware: checks ``Authorization: Bearer <token>`` before anything is parsed."""

    def __init__(self, app: ASGIApp, token: str, tickets: Tickets | None = None) -> None:
        self.app = app
        self._expected = checked_token(token).encode()
        self._tickets = tickets or Tickets(token)

    def _ticket_refusal(self, scope: Scope) -> str | None:
        """Why the request's ``?ticket=`` does not let it through (``None``: it does)."""
        given = tickets_in(scope.get("query_string", b""))
        if not given:
            return "a bearer token is required"
        if len(given) > 1:
            return "send one ticket, not several"
        raw = scope.get("raw_path") or scope["path"].encode()
        is_stream, thread_id = stream_scope(scope["method"], raw.split(b"?", 1)[0])
        if not is_stream:
            return "a stream ticket opens the GET stream routes alone: send the bearer token"
        return self._tickets.refusal(given[0], thread_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(given) > 1:
            response = problem_response(
                400,
                "invalid_input",
                "send one Authorization header, not several",
                {"field": "authorization"},
            )
            await response(scope, receive, send)
            return
        scheme, _, credentials = (given[0] if given else b"").strip(b" ").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(
            credentials.lstrip(b" "), self._expected
        ):
            await self.app(scope, receive, send)
            return
        if not given:
            refusal = self._ticket_refusal(scope)
            if refusal is None:
                await self.app(scope, receive, send)
                return
            detail = refusal
        elif scheme.lower() != b"bearer":
            detail = "the Authorization header must use the Bearer scheme"
        else:
            detail = "the bearer token is wrong"
        response = problem_response(
            401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="threadbox"'}
        )
        await response(scope, receive, send)
