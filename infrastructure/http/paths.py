"""Ids in URL paths may hold any character an id may, ``/`` included (docs/semantics.md §1).

ASGI servers decode ``%2F`` to ``/`` before routing, which would split such an id into two path
segments. ``EncodedSlashes`` rebuilds the routed path from the raw one with ``%`` and ``/`` kept
encoded inside each segment, and ``IdRoute`` decodes them in the value a route receives:
``/v1/threads/org%2F7/pending`` is thread ``org/7``. Routes write an id segment
``{name:id}``; ``IdRoute`` reads that mark itself, so nothing is registered in Starlette's
process-wide convertor table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from .dispatch import OneHopRoute

ID_MARK = ":id}"  # {name:id}: a path segment holding an id


class IdRoute(OneHopRoute):
    """A route whose ``{name:id}`` parameters are ids: matched as one segment, ``%`` and ``/``
    decoded in the value the endpoint receives (a plain endpoint runs in one thread hop:
    ``OneHopRoute``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path.replace(ID_MARK, "}"), endpoint, **options)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match as any route does, then decode the ids."""
        match, child = super().matches(scope)
        if match is not Match.NONE and "path_params" in child:
            child["path_params"] = {k: unquote(v) for k, v in child["path_params"].items()}
        return match, child


def routed_path(raw_path: bytes) -> str:
    """The path with each segment decoded, except ``%`` and ``/`` inside a segment."""
    if b"%" not in raw_path:
        return raw_path.decode("utf-8")  # nothing encoded: the path as sent
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
