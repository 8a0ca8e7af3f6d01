"""The store's whole log over HTTP (API.md §8, ADR 0018): ``GET /v1/events`` a page at a time
and ``GET /v1/events/stream`` live, both keyed by position (``Mailbox.follow``).

A position is opaque: the routes never compare or parse one, they hand it back to ``follow``,
which checks it (a position of another store, or no position at all, is refused). The stream is
woken like a thread's stream (``LogChanges``), and reads the log once per wake, a page at a
time.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from threadbox import LogItem, Mailbox
from threadbox.errors import InvalidInput

from .bodies import LogPage
from .commands import MailboxDep
from .dispatch import OneHopRoute
from .log_changes import LogChanges
from .openapi import problem_responses, sse_response
from .problems import Problem
from .reads import MAX_PAGE, PAGE, Count
from .stream import (
    REDACTED,
    TICKET_PARAMETER,
    StreamSettings,
    event_source,
    follow,
    live_batches,
)

router = APIRouter(route_class=OneHopRoute)

POSITION = (
    "a position from this store's log (an item's `position`, or `next`); empty or absent: the "
    "start. Positions are opaque strings: send back what the server gave"
)


def read_page(mailbox: Mailbox, after: str, limit: int, include_internal: bool) -> list[LogItem]:
    """The log's items after ``after`` that are readable now, at most ``limit``."""
    items = list(mailbox.follow(after, limit=limit, timeout=0))
    return items if include_internal else mailbox.redacted(items)


@router.get(
    "/v1/events",
    response_model=LogPage,
    operation_id="list_log",
    summary="Read the store's log, across threads",
    description="Every event of every thread after the position `after`, in commit order, each "
    "with its position and thread, at most `limit` (" + f"{PAGE} by default, {MAX_PAGE} at "
    "most). Read on from `next`: each event comes once, in commit order, also while other "
    "processes write. A position that is not one of this store's is 422 (field `after`). "
    + REDACTED,
    tags=["events"],
    responses=problem_responses(InvalidInput),
)
def list_log(
    mailbox: MailboxDep,
    after: Annotated[str, Query(max_length=200, description=POSITION)] = "",
    limit: Count = PAGE,
    include_internal: bool = False,
) -> LogPage:
    items = read_page(mailbox, after, limit, include_internal)
    return LogPage(items=items, next=items[-1].position if items else after)


def resume_position(last_event_id: str | None, after: str) -> tuple[str, str]:
    """The position to stream after, and the field it came from: ``Last-Event-ID`` (sent by
    a reconnecting ``EventSource``) wins over ``?after=``."""
    if last_event_id is not None and last_event_id.strip():
        return last_event_id.strip(), "last-event-id"
    return after, "after"


def sse_item(item: LogItem) -> ServerSentEvent:
    """An item as a server-sent event: ``id:`` its position, ``event:`` its event type."""
    return ServerSentEvent(data=item.model_dump_json(), event=item.event.type, id=item.position)


def _after_position(batch: list[LogItem], after: str) -> tuple[list[LogItem], str]:
    return batch, batch[-1].position if batch else after  # each page holds only new items


LOG_STREAM_FORMAT = (
    "A server-sent event stream. Each event has `id:` = the item's position, `event:` = the "
    "event type, and `data:` = one log item as JSON (`{position, thread_id, event}`, as in "
    "`GET /v1/events`). Comment lines keep a quiet stream alive."
)


@router.get(
    "/v1/events/stream",
    response_class=EventSourceResponse,
    operation_id="stream_log",
    summary="Stream the store's log, across threads (SSE)",
    description="Every event of every thread after the resume point, in commit order, each "
    "once, then live ones as any process records them, until the client disconnects or the "
    "server stops. The resume point is the `Last-Event-ID` header (a reconnecting "
    "`EventSource` sends it), else `?after=`, else the start. A resume point that is not a "
    "position of this store is refused before the stream starts (400 for `Last-Event-ID`, "
    "422 for `after`). A browser's `EventSource` passes `?ticket=` (from "
    "`POST /v1/stream-tickets` without `thread_id`) instead of the bearer token. " + REDACTED,
    tags=["events"],
    responses={
        200: sse_response(LOG_STREAM_FORMAT),
        **problem_responses(InvalidInput),
    },
    openapi_extra={"parameters": [TICKET_PARAMETER]},
)
async def stream_log(
    request: Request,
    mailbox: MailboxDep,
    after: Annotated[str, Query(max_length=200, description=POSITION)] = "",
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    include_internal: bool = False,
) -> EventSourceResponse:
    position, source = resume_position(last_event_id, after)
    changes: LogChanges = request.app.state.changes
    seen = changes.generation
    settings: StreamSettings = request.app.state.stream_settings

    def read(after: str) -> list[LogItem]:
        return read_page(mailbox, after, settings.page, include_internal)

    try:  # the first read happens before the response starts: a bad position is a plain 4xx
        first = await run_in_threadpool(read, position)
    except InvalidInput as bad:
        if source == "after":
            raise
        raise Problem(400, "invalid_input", f"Last-Event-ID: {bad.text}", field=source) from None
    shutdown = anyio.Event()  # set by sse-starlette when the server is stopping
    batches = live_batches(
        read, first, seen, position, _after_position, settings, changes, shutdown
    )
    return event_source(follow(batches, sse_item), settings, shutdown)
