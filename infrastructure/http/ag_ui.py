"""AG-UI over HTTP (docs/ag-ui.md; ADR 0014): a thread as an AG-UI event stream, and an AG-UI
``RunAgentInput`` delivered to a thread, streamed until the run that read it ends.

Both streams reuse the thread stream's machinery (``recorded_batches``: LogChanges wakeups,
``Mailbox.history`` reads, sse-starlette). Each SSE event's ``data:`` is one AG-UI event, with
the protocol's camelCase names; the last AG-UI event of each thread version carries ``id:`` =
that version, so a reconnecting ``EventSource`` resumes after the last version it saw whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Annotated, Any

import ag_ui.core as ag
import anyio
from fastapi import APIRouter, Body, Header, Request
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from threadbox import Mailbox, RecordedEvent
from threadbox.errors import (
    Contention,
    InvalidInput,
    MessageIdInUse,
    PayloadTooLarge,
    PendingQueueFull,
    RunNotRunning,
    RunNotWaiting,
    ThreadNotFound,
)

from .ag_ui_events import ThreadTranslator, thread_event
from .ag_ui_input import Awaited, Known, delivery_mode, plan, posted_messages, renamed
from .commands import MailboxDep
from .log_changes import LogChanges
from .openapi import declared_response, problem_responses, sse_response
from .paths import IdRoute
from .problems import Problem
from .stream import (
    TICKET_PARAMETER,
    StreamSettings,
    event_source,
    reader,
    recorded_batches,
    resume_point,
)

router = APIRouter(prefix="/v1/threads/{thread_id:id}/ag-ui", route_class=IdRoute)

# Lines end with LF alone: @ag-ui/client's parser splits events on a blank line of "\n\n" only,
# and reads CRLF-framed events (the SSE default of sse-starlette) as one.
LINE_END = "\n"

LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]

AG_UI_STREAM = sse_response(
    "A server-sent event stream: each event's `data:` is one AG-UI event as JSON "
    "(camelCase, as the `ag-ui-protocol` models serialise it); the last AG-UI event of each "
    "thread version carries `id:` = that version. Comment lines keep a quiet stream alive."
)


def inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` written in place of their references (and no
    discriminator mappings, which name them): the document's own ``Message``, ``TextPart`` and
    the like keep their names, which AG-UI's schemas of the same names would otherwise take."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return resolve(definitions[node["$ref"].removeprefix("#/$defs/")])
        return {k: resolve(v) for k, v in node.items() if k not in ("$defs", "discriminator")}

    resolved: dict[str, Any] = resolve(schema)
    return resolved


RUN_AGENT_INPUT = inlined(ag.RunAgentInput.model_json_schema(by_alias=True))


def run_agent_input(body: Any) -> ag.RunAgentInput:
    """The body as an AG-UI ``RunAgentInput``, or ``InvalidInput`` naming the field (camelCase,
    as the body spells it)."""
    try:
        return ag.RunAgentInput.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"invalid {field}: {first['msg']}", field) from None


def frames(events: Sequence[ag.BaseEvent], version: int) -> list[ServerSentEvent]:
    """One SSE event per AG-UI event; the last one carries ``id:`` = ``version``."""
    last = len(events) - 1
    return [
        ServerSentEvent(
            data=event.model_dump_json(by_alias=True),
            id=str(version) if n == last else None,
            sep=LINE_END,
        )
        for n, event in enumerate(events)
    ]


def translated(
    translator: ThreadTranslator, batch: list[RecordedEvent], awaited: Awaited | None
) -> tuple[list[ServerSentEvent], bool]:
    """A batch of thread events as SSE events, and whether the stream ends after them (when
    ``awaited`` is over: the rest of the batch is left unsent)."""
    sent: list[ServerSentEvent] = []
    for recorded in batch:
        events = translator.translate(thread_event(translator.thread_id, recorded))
        over = awaited is not None and awaited.over(translator.thread)
        if awaited is not None and over:
            events += awaited.ending(events, translator.thread)
        sent += frames(events, recorded.version)
        if over:
            return sent, True
    return sent, False


async def ag_ui_stream(
    mailbox: Mailbox,
    translator: ThreadTranslator,
    opening: list[ServerSentEvent],
    first: list[RecordedEvent],
    seen: int,
    request: Request,
    shutdown: anyio.Event,
    awaited: Awaited | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """``opening``, then the thread's events after the translator's version, translated."""
    for frame in opening:
        yield frame
    if awaited is not None and awaited.over(translator.thread):
        return
    settings: StreamSettings = request.app.state.stream_settings
    changes: LogChanges = request.app.state.changes
    batches = recorded_batches(
        reader(mailbox, translator.thread_id, settings, include_internal=True),  # translated
        first,
        seen,
        translator.thread.version,
        settings,
        changes,
        shutdown,
    )
    async with aclosing(batches):
        async for batch in batches:
            sent, over = await run_in_threadpool(translated, translator, batch, awaited)
            for frame in sent:
                yield frame
            if over:
                return


def opened(
    read: Callable[[int], list[RecordedEvent]],
    translator: ThreadTranslator,
    resume: int | None,
    page: int,
) -> tuple[list[ServerSentEvent], list[RecordedEvent]]:
    """The two snapshots at version ``resume`` (None: the thread's last), folded from the log a
    page at a time; and the page read past it (its events after ``resume`` come next)."""
    thread_id = translator.thread_id
    after = 0
    while True:
        batch = read(after)  # an unknown thread: ThreadNotFound, a plain 404
        before = [r for r in batch if resume is None or r.version <= resume]
        translator.advance(thread_event(thread_id, r) for r in before)
        if len(before) < len(batch):
            return frames(translator.snapshots(), translator.thread.version), batch
        if len(batch) < page:  # the end of the log
            break
        after = batch[-1].version
    head = translator.thread.version
    if resume is not None and resume > head:
        raise Problem(
            409,
            "cursor_ahead",
            f"Last-Event-ID {resume} is ahead of thread {thread_id!r}, which is at version {head}",
        )
    return frames(translator.snapshots(), head), []


INCLUDE_INTERNAL = (
    "Messages with `visibility: internal` are left out unless `include_internal=true`; hidden "
    "messages are not in `MESSAGES_SNAPSHOT`."
)


@router.get(
    "",
    response_class=EventSourceResponse,
    operation_id="stream_ag_ui",
    summary="Watch a thread as AG-UI events (SSE)",
    description="The thread as an AG-UI event stream: first `STATE_SNAPSHOT` (state "
    "`{pending, runs, version}`) and `MESSAGES_SNAPSHOT` (the visible committed messages), "
    "then, for every later event of the thread, in version order and live, a `STATE_DELTA` "
    "(an RFC 6902 patch of that state) and what the event means: `RUN_STARTED`, "
    "`RUN_FINISHED` / `RUN_ERROR`, `TEXT_MESSAGE_*` and `TOOL_CALL_*` for committed messages, "
    "`CUSTOM` (`threadbox.<EventType>`) for the rest. Without `Last-Event-ID` the snapshots "
    "are of the thread now; with it (a reconnecting `EventSource` sends it) they are of that "
    "version, and every later event follows, so nothing is missed. An unknown thread is a "
    "plain 404; a `Last-Event-ID` that is not a whole number is 400, one beyond the thread's "
    "version 409 `cursor_ahead`. A browser's `EventSource` passes `?ticket=` (from "
    "`POST /v1/stream-tickets`) instead of the bearer token. " + INCLUDE_INTERNAL,
    tags=["ag-ui"],
    responses={
        200: AG_UI_STREAM,
        **problem_responses(ThreadNotFound, InvalidInput),
        409: declared_response(409, ["cursor_ahead"]),
    },
    openapi_extra={"parameters": [TICKET_PARAMETER]},
)
async def watch(
    thread_id: str,
    request: Request,
    mailbox: MailboxDep,
    include_internal: bool = False,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """The thread as AG-UI events, from the snapshots at ``Last-Event-ID`` (else now) on."""
    resume = None if not (last_event_id or "").strip() else resume_point(last_event_id, 0)
    changes: LogChanges = request.app.state.changes
    seen = changes.generation  # noted before the read: a change during it wakes the stream
    translator = ThreadTranslator(thread_id, include_internal=include_internal)
    settings: StreamSettings = request.app.state.stream_settings
    read = reader(mailbox, thread_id, settings, include_internal=True)  # the translator filters
    opening, rest = await run_in_threadpool(opened, read, translator, resume, settings.page)
    shutdown = anyio.Event()  # set by sse-starlette when the server is stopping
    stream = ag_ui_stream(mailbox, translator, opening, rest, seen, request, shutdown)
    return event_source(stream, request.app.state.stream_settings, shutdown, LINE_END)


def delivered(
    mailbox: Mailbox, thread_id: str, body: ag.RunAgentInput, include_internal: bool
) -> tuple[ThreadTranslator, Awaited]:
    """Deliver what the thread has not seen of the input; the thread folded up to there, and
    the messages the stream waits for. Nothing is written when anything is refused."""
    posted = posted_messages(body, thread_id)
    mode = delivery_mode(body)
    try:
        history = mailbox.history(thread_id)
    except ThreadNotFound:
        history = []  # a new thread: the delivery creates it
    events = [thread_event(thread_id, r) for r in history]
    translator = ThreadTranslator(thread_id, include_internal=include_internal)
    translator.advance(events)
    delivery = plan(posted, Known(events), translator.thread)
    if delivery.new:
        try:
            mailbox.deliver(thread_id, [p.message for p in delivery.new], mode)
        except (InvalidInput, PayloadTooLarge) as refused:
            raise renamed(refused, delivery.new) from None
    return translator, Awaited(thread_id, delivery.awaited)


def caught_up(
    mailbox: Mailbox, translator: ThreadTranslator, awaited: Awaited
) -> list[ServerSentEvent]:
    """Fold what was written since ``delivered`` read the thread; the snapshots there (and the
    stream's end, when the awaited runs are over already)."""
    newer = mailbox.history(translator.thread_id, after_version=translator.thread.version)
    translator.advance(thread_event(translator.thread_id, r) for r in newer)
    events: list[Any] = translator.snapshots()
    if awaited.over(translator.thread):
        events += awaited.ending(events, translator.thread)
    return frames(events, translator.thread.version)


@router.post(
    "",
    response_class=EventSourceResponse,
    operation_id="run_ag_ui",
    summary="Deliver an AG-UI run input and stream until its run ends (SSE)",
    description="The body is an AG-UI `RunAgentInput` whose `threadId` is this thread. Its "
    "messages the thread has not seen (by id) are delivered in one write, with the mode "
    "`forwardedProps.threadbox.mode` (a `DeliveryMode`; default `new_run`); a message the "
    "thread has is not delivered again, and must be the same message (else 409 "
    "`message_id_in_use`), so posting the same input twice delivers once. `user`, `tool`, "
    "`assistant` and `system` messages map to threadbox messages of that role, `developer` to "
    "`system`; `activity` and `reasoning` messages are the front end's own and are not "
    "delivered. Then the thread streams as `GET …/ag-ui` does, from the two snapshots, until "
    "the last of the input's trailing messages (those after its last run output) has left "
    "the pending zone and every run that read one has finished: the last event is that "
    "run's `RUN_FINISHED` or `RUN_ERROR` (`RUN_ERROR` `input_not_read` when no run read "
    "them). A malformed input is 422 naming the field, and nothing is written. " + INCLUDE_INTERNAL,
    tags=["ag-ui"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RUN_AGENT_INPUT}},
        }
    },
    responses={
        200: AG_UI_STREAM,
        **problem_responses(
            MessageIdInUse,
            PendingQueueFull,
            RunNotRunning,
            RunNotWaiting,
            PayloadTooLarge,
            InvalidInput,
            Contention,
            body=True,
        ),
    },
)
async def run(
    thread_id: str,
    body: Annotated[Any, Body()],
    request: Request,
    mailbox: MailboxDep,
    include_internal: bool = False,
) -> EventSourceResponse:
    """Deliver the input's unseen messages; stream until the run that read them has ended."""
    run_input = run_agent_input(body)
    translator, awaited = await run_in_threadpool(
        delivered, mailbox, thread_id, run_input, include_internal
    )
    changes: LogChanges = request.app.state.changes
    seen = changes.generation  # noted before the read, as the thread stream does
    opening = await run_in_threadpool(caught_up, mailbox, translator, awaited)
    shutdown = anyio.Event()  # set by sse-starlette when the server is stopping
    stream = ag_ui_stream(mailbox, translator, opening, [], seen, request, shutdown, awaited)
    return event_source(stream, request.app.state.stream_settings, shutdown, LINE_END)
