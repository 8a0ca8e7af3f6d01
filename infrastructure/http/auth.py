"""Bearer-token access: with a token configured, every route but ``/healthz`` needs it."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import problem_response

OPEN_PATHS = frozenset({"/healthz"})


class BearerTokenGuard:
    """ASGI middleware: checks ``Authorization: Bearer <token>`` before anything is parsed."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        detail = "a bearer token is required" if not given else "the bearer token is wrong"
        response = problem_response(
            401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="threadbox"'}
        )
        await response(scope, receive, send)
