"""The SSE change stream of a thread: ``id:`` = version, ``event:`` = event type, resumable.

New events may come from any process: the stream reads the thread's log (an indexed read of the
versions after the last one sent) when the views report a change (``LogChanges``: the follower
wakes on PostgreSQL NOTIFY, or polls SQLite), and every ``poll_interval`` in any case.
sse-starlette sends heartbeat comments, notices disconnected clients and ends the stream on
server shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from threadbox import Mailbox, RecordedEvent
from threadbox.errors import InvalidInput, ThreadNotFound

from .commands import MailboxDep
from .log_changes import LogChanges
from .openapi import declared_response, problem_responses, sse_response
from .paths import IdRoute
from .problems import Problem
from .tickets import LIFETIME

router = APIRouter(route_class=IdRoute)

T = TypeVar("T")  # what a stream sends
A = TypeVar("A")  # where it reads after


@dataclass(frozen=True)
class StreamSettings:
    # Seconds between reads of the log while nothing is new; a change seen by the views (the
    # follower wakes on PostgreSQL NOTIFY, or polls SQLite) wakes the stream at once.
    poll_interval: float = 0.25
    heartbeat: float = 15.0  # seconds between keep-alive comments
    shutdown_grace: float = 2.0  # seconds a stream has to end cleanly when the server stops
    page: int = 200  # events read at a time: a stream holds one page, whatever the history


REDACTED = (
    "Unless `include_internal=true`, the content of internal messages (`visibility: "
    "internal`) and of hidden ones is left out: such a message keeps its id, role and "
    "visibility, its `content` is one empty text part and its `metadata` is "
    '`{"redacted": "internal"}` or `{"redacted": "hidden"}`.'
)


def resume_point(last_event_id: str | None, after_version: int) -> int:
    """``Last-Event-ID`` (sent by a reconnecting client) wins over ``?after_version=``."""
    if last_event_id is None or not last_event_id.strip():
        return after_version
    value = last_event_id.strip()
    if not value.isdigit():
        raise Problem(
            400,
            "invalid_input",
            f"Last-Event-ID must be a thread version (a whole number), not {last_event_id!r}",
            field="last-event-id",
        )
    return int(value)


async def first_of(*waits: Callable[[], Awaitable[None]]) -> None:
    """Return as soon as any of the waits returns (the others are cancelled)."""
    async with anyio.create_task_group() as group:

        async def until(wait: Callable[[], Awaitable[None]]) -> None:
            await wait()
            group.cancel_scope.cancel()

        for wait in waits:
            group.start_soon(until, wait)


def sse_event(event: RecordedEvent) -> ServerSentEvent:
    return ServerSentEvent(data=event.model_dump_json(), event=event.type, id=str(event.version))


def reader(
    mailbox: Mailbox,
    thread_id: str,
    settings: StreamSettings,
    include_internal: bool,
    *,
    missing_ok: bool = False,
) -> Callable[[int], list[RecordedEvent]]:
    """The read a stream makes: the next page of the thread's events after a version. With
    ``missing_ok``, none while the thread has no events yet (its stream waits for the first);
    else ``ThreadNotFound``."""

    def read(after: int) -> list[RecordedEvent]:
        try:
            return mailbox.history(
                thread_id,
                after_version=after,
                limit=settings.page,
                include_internal=include_internal,
            )
        except ThreadNotFound:
            if missing_ok:
                return []
            raise

    return read


def check_cursor(mailbox: Mailbox, thread_id: str, after: int) -> None:
    """409 ``cursor_ahead`` when the thread has no event at version ``after`` (> 0): a client
    that resumes there saw events this store never recorded (another store, or a restore)."""
    if after == 0:
        return
    try:
        there = mailbox.history(thread_id, after_version=after - 1, limit=1)
    except ThreadNotFound:
        there = []
    if not there:
        raise Problem(
            409,
            "cursor_ahead",
            f"the resume point {after} is ahead of thread {thread_id!r}'s version: it has no "
            "event there (a cursor from another store?); resume from 0 or a version it has",
            thread_id=thread_id,
            expected=after,
        )


CURSOR_AHEAD: dict[int | str, dict[str, Any]] = {409: declared_response(409, ["cursor_ahead"])}


async def live_batches(
    read: Callable[[A], list[T]],
    first: list[T],
    seen: int,
    after: A,
    fresh: Callable[[list[T], A], tuple[list[T], A]],
    settings: StreamSettings,
    changes: LogChanges,
    shutdown: anyio.Event,
) -> AsyncGenerator[list[T], None]:
    """Every item ``read`` answers after ``after``, a page at a time (``first`` is the first
    page; the next is read once this one is sent, so a stream holds one page whatever the
    history); then live ones, until the server shuts down (the response then ends with its
    last chunk, not a cut connection). ``fresh(page, after)`` is the page's items not sent yet
    and the point to read after next. ``seen`` is the change generation noted before ``first``
    was read, so a change made while a read runs wakes the next wait at once."""
    batch = first
    changes.open_streams += 1
    try:
        while True:
            new, after = fresh(batch, after)
            if new:
                yield new
            if len(batch) < settings.page:  # the end of the log: wait for news
                with anyio.move_on_after(settings.poll_interval):
                    await first_of(
                        shutdown.wait, partial(changes.wait, seen, settings.poll_interval)
                    )
            if shutdown.is_set():
                return
            seen = changes.generation  # noted before the read, as above
            batch = await run_in_threadpool(read, after)
    finally:  # the client went away, or the server stops: the stream lets go of everything
        changes.open_streams -= 1


def _after_version(batch: list[RecordedEvent], after: int) -> tuple[list[RecordedEvent], int]:
    fresh = [e for e in batch if e.version > after]  # sent once, even if reads overlap
    return fresh, fresh[-1].version if fresh else after


def recorded_batches(
    read: Callable[[int], list[RecordedEvent]],
    first: list[RecordedEvent],
    seen: int,
    after: int,
    settings: StreamSettings,
    changes: LogChanges,
    shutdown: anyio.Event,
) -> AsyncGenerator[list[RecordedEvent], None]:
    """A thread's events after version ``after``, in version order, each exactly once
    (``live_batches``)."""
    return live_batches(read, first, seen, after, _after_version, settings, changes, shutdown)


async def follow(
    batches: AsyncGenerator[list[T], None], event: Callable[[T], ServerSentEvent]
) -> AsyncIterator[ServerSentEvent]:
    """``batches`` (closed when this ends) as server-sent events, one per item."""
    async with aclosing(batches):
        async for batch in batches:
            for item in batch:
                yield event(item)


def event_source(
    content: AsyncIterator[ServerSentEvent],
    settings: StreamSettings,
    shutdown: anyio.Event,
    sep: str | None = None,
) -> EventSourceResponse:
    """The response that serves ``content``: heartbeat comments (lines ending with ``sep``,
    CRLF by default), no caching or proxy buffering, and a clean end when the server stops
    (sse-starlette sets ``shutdown``)."""
    return EventSourceResponse(
        content,
        ping=settings.heartbeat,
        sep=sep,
        shutdown_event=shutdown,
        shutdown_grace_period=settings.shutdown_grace,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


TICKET_PARAMETER = {
    "name": "ticket",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "a stream ticket from `POST /v1/stream-tickets`, instead of the bearer "
    f"token (for `EventSource`, which cannot send headers); valid {LIFETIME} s, for this stream "
    "only",
}

STREAM_FORMAT = (
    "A server-sent event stream. Each event has `id:` = the thread version, `event:` = the "
    "event type, and `data:` = one `RecordedEvent` as JSON (the same objects as "
    "`GET …/events`, typed by the `RecordedEvent` schema). Comment lines keep a quiet "
    "stream alive."
)


@router.get(
    "/v1/threads/{thread_id:id}/events/stream",
    response_class=EventSourceResponse,
    operation_id="stream_events",
    summary="Stream a thread's events (SSE)",
    description="Sends every event after the resume point, in version order, each once, then "
    "live events as they are recorded (by any process), until the client disconnects or the "
    "server stops. The resume point is the `Last-Event-ID` header (a reconnecting "
    "`EventSource` sends it), else `?after_version=`, else 0. A thread with no events yet "
    "answers 200 and waits for its first; a resume point past the thread's version is a "
    "plain 409 `cursor_ahead` before the stream starts, and a `Last-Event-ID` that is not a "
    "whole number is 400. The log is read a page at a time, the next once the last is sent. "
    "A browser's `EventSource` passes `?ticket=` (from `POST /v1/stream-tickets`) instead of "
    "the bearer token. " + REDACTED,
    tags=["events"],
    responses={
        200: sse_response(STREAM_FORMAT),
        **problem_responses(InvalidInput),
        **CURSOR_AHEAD,
    },
    openapi_extra={"parameters": [TICKET_PARAMETER]},
)
async def stream(
    thread_id: str,
    request: Request,
    mailbox: MailboxDep,
    after_version: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    include_internal: bool = False,
) -> EventSourceResponse:
    after = resume_point(last_event_id, after_version)
    changes: LogChanges = request.app.state.changes
    seen = changes.generation
    settings: StreamSettings = request.app.state.stream_settings
    read = reader(mailbox, thread_id, settings, include_internal, missing_ok=True)
    # The first read happens before the response starts, so a bad cursor is a plain 409.
    first = await run_in_threadpool(read, after)
    if not first:
        await run_in_threadpool(check_cursor, mailbox, thread_id, after)
    shutdown = anyio.Event()  # set by sse-starlette when the server is stopping
    return event_source(
        follow(recorded_batches(read, first, seen, after, settings, changes, shutdown), sse_event),
        settings,
        shutdown,
    )
