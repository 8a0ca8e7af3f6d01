"""Ids in URL paths may hold any character an id may, ``/`` included (SEMANTICS §1).

ASGI servers decode ``%2F`` to ``/`` before routing, which would split such an id into two path
segments. ``EncodedSlashes`` rebuilds the routed path from the raw one with ``%`` and ``/`` kept
encoded inside each segment, and the ``id`` path convertor decodes them in the value a route
receives: ``/v1/threads/org%2F7/pending`` is thread ``org/7``.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_to_bytes

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send


class IdConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return value.replace("%", "%25").replace("/", "%2F")


register_url_convertor("id", IdConvertor())  # before any route with {name:id} is declared


def routed_path(raw_path: bytes) -> str:
    """The path with each segment decoded, except ``%`` and ``/`` inside a segment."""
    segments = (unquote_to_bytes(s).decode("utf-8") for s in raw_path.split(b"/"))
    return "/".join(s.replace("%", "%25").replace("/", "%2F") for s in segments)


class EncodedSlashes:
    """ASGI middleware: route on the raw path, so an id's own ``/`` stays inside its segment.
    (Runs after ``Utf8Target``, which answers 400 for a path that is not UTF-8.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            scope = {**scope, "path": routed_path(raw.split(b"?", 1)[0])}
        await self.app(scope, receive, send)
