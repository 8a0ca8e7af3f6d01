"""What a web page needs to use the API (ADR 0018): CORS for the origins an operator lists
(``THREADBOX_CORS_ORIGINS``), and ``POST /v1/stream-tickets`` for ``EventSource``, which cannot
send an ``Authorization`` header."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from threadbox.application.inputs import identifier
from threadbox.errors import InvalidInput

from .dispatch import OneHopRoute
from .openapi import declared_response, problem_responses
from .problems import Problem
from .tickets import LIFETIME, Tickets

ALLOWED_HEADERS = ["Authorization", "If-Match", "If-None-Match", "Last-Event-ID", "Content-Type"]
EXPOSED_HEADERS = ["ETag", "Retry-After", "X-Request-ID"]
ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
PREFLIGHT_MAX_AGE = 600  # seconds a browser may cache a preflight answer
_ORIGIN = re.compile(r"https?://[^/?#\s@]+")


def cors_origins(setting: str | Iterable[str] | None) -> list[str]:
    """The allowed origins: a comma-separated string (what ``THREADBOX_CORS_ORIGINS`` holds) or
    a list; each ``scheme://host[:port]`` with no path (``*`` allows any origin). Blank items are
    left out; a malformed one raises ``InvalidInput`` (field ``cors_origins``) naming it."""
    if setting is None:
        return []
    items = setting.split(",") if isinstance(setting, str) else list(setting)
    origins: list[str] = []
    for item in items:
        origin = item.strip()
        if not origin:
            continue
        if origin != "*" and _ORIGIN.fullmatch(origin) is None:
            raise InvalidInput(
                f"{origin[:80]!r} is not an origin: write scheme://host[:port] (http or "
                "https, no path), or * for any",
                "cors_origins",
            )
        origins.append(origin.rstrip("/"))
    return origins


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Answer preflights and add CORS headers for ``origins`` (nothing when empty). Add it last:
    it runs first, so a preflight is answered before the bearer guard (no token needed) and the
    guard's 401 carries the CORS headers a page needs to read it."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,  # the API uses bearer tokens, never cookies
        max_age=PREFLIGHT_MAX_AGE,
    )


class TicketRequest(BaseModel):
    """What a ticket opens: one thread's streams, or (no ``thread_id``) the cross-thread one."""

    model_config = ConfigDict(extra="forbid")

    thread_id: str | None = Field(
        None,
        description="the thread whose streams (`…/events/stream`, `GET …/ag-ui`) the ticket "
        "opens; null or absent: the cross-thread stream `/v1/events/stream`",
    )


class StreamTicket(BaseModel):
    """A signed stream ticket and its expiry."""

    ticket: str = Field(description="pass as `?ticket=` to the stream route it opens")
    expires_at: datetime = Field(description=f"UTC; {LIFETIME} s after it was issued")


router = APIRouter(route_class=OneHopRoute)


@router.post(
    "/v1/stream-tickets",
    response_model=StreamTicket,
    operation_id="create_stream_ticket",
    summary="Get a ticket that opens a stream without the bearer token",
    description="For browsers: `EventSource` cannot send `Authorization`, so a page asks this "
    "route (with the token) for a ticket and opens the stream with `?ticket=<ticket>`. A "
    f"ticket is signed with a key derived from the API token, valid {LIFETIME} s, and opens "
    "one scope: the streams of `thread_id` (`GET …/events/stream`, `GET …/ag-ui`), or with no "
    "`thread_id` the cross-thread stream `GET /v1/events/stream`; on any other route, "
    "expired, tampered with or for another scope it answers 401. A ticket is needed only to "
    f"open the stream: a stream open longer than {LIFETIME} s stays open (a reconnect needs a new "
    "ticket). The thread need not exist yet. A server without a token has no tickets (its "
    "streams need none): 409 `tickets_disabled`.",
    tags=["events"],
    responses=problem_responses(InvalidInput, body=True)
    | {409: declared_response(409, ["tickets_disabled"])},
)
def create_stream_ticket(
    request: Request, body: Annotated[TicketRequest | None, Body()] = None
) -> StreamTicket:
    thread_id = None if body is None else body.thread_id
    if thread_id is not None:
        thread_id = identifier(thread_id, "thread_id")
    tickets: Tickets | None = request.app.state.tickets
    if tickets is None:
        raise Problem(
            409,
            "tickets_disabled",
            "this server has no API token, so its streams need no ticket: open them directly",
        )
    issued = tickets.issue(thread_id)
    return StreamTicket(ticket=issued.ticket, expires_at=issued.expires_at)
