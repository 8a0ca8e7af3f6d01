"""The read routes: pending (with its ETag), thread state, committed, runs, checkpoints, events,
thread summaries and health. Plain ``def`` endpoints: they run in FastAPI's threadpool."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from threadbox import PendingEntry, RunRecord, ThreadState
from threadbox.errors import (
    InvalidInput,
    NotPending,
    PendingNotFound,
    RunNotFound,
    StoreUnavailable,
    ThreadNotFound,
)

from .bodies import (
    CheckpointsPage,
    CommittedReadPage,
    EventsPage,
    Health,
    PendingPage,
    RunsPage,
    ThreadsPage,
)
from .commands import MailboxDep
from .openapi import declared_response, problem_responses
from .paths import IdRoute
from .preconditions import not_modified
from .problems import STORE_RETRY_AFTER, problem_response
from .stream import REDACTED

router = APIRouter(route_class=IdRoute)

PAGE = 100  # the page size of a list route when the request names none
MAX_PAGE = 1000  # the largest page a list route sends
Count = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"page size: {PAGE} by default, {MAX_PAGE} at most")
]
Position = Annotated[int, Query(ge=0)]
T = TypeVar("T")
PAGED = (
    f" A page holds at most `limit` items ({PAGE} by default, {MAX_PAGE} at most); `next` is "
    "the cursor of the next page, null on the last."
)


def paged(items: list[T], limit: int) -> tuple[list[T], bool]:
    """A page read with ``limit + 1`` items: its first ``limit``, and whether more follow."""
    return items[:limit], len(items) > limit


THREAD_READ = problem_responses(ThreadNotFound, InvalidInput)
CONDITIONAL_READ = problem_responses(ThreadNotFound, InvalidInput, if_none_match=True)
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match")]


@router.get(
    "/v1/threads/{thread_id:id}/pending",
    response_model=PendingPage,
    operation_id="list_pending",
    summary="Read the pending zone",
    description="The pending entries in queue order (position 1 is consumed first), each with "
    "its revision and mode, and the thread version they were read at. The `ETag` is that "
    "version: send it as `If-Match` to reorder; an entry's `revision` (the `ETag` of "
    "`GET …/pending/{pending_id}`) goes in `If-Match` to edit or retract it. "
    "`If-None-Match` with the current `ETag` answers 304.",
    tags=["pending"],
    responses=CONDITIONAL_READ,
)
def pending(
    thread_id: str, mailbox: MailboxDep, response: Response, if_none_match: IfNoneMatch = None
) -> PendingPage | Response:
    entries, version = mailbox.pending_page(thread_id)  # read together: a consistent ETag
    unchanged = not_modified(if_none_match, version, response)
    return unchanged or PendingPage(entries=entries, version=version)


@router.get(
    "/v1/threads/{thread_id:id}/pending/{pending_id:id}",
    response_model=PendingEntry,
    operation_id="get_pending",
    summary="Read one pending entry",
    description="The entry, with its position, revision and mode. The `ETag` is its revision: "
    "what `If-Match` on `PATCH` and `DELETE …/pending/{pending_id}` expects. 409 with "
    "`already_consumed`, `retracted` or `expired` when it has left the pending zone. "
    "`If-None-Match` with the current `ETag` answers 304.",
    tags=["pending"],
    responses=problem_responses(
        ThreadNotFound, PendingNotFound, NotPending, InvalidInput, if_none_match=True
    ),
)
def pending_entry(
    thread_id: str,
    pending_id: str,
    mailbox: MailboxDep,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> PendingEntry | Response:
    entry = mailbox.pending_entry(thread_id, pending_id)
    return not_modified(if_none_match, entry.revision, response) or entry


@router.get(
    "/v1/threads/{thread_id:id}",
    response_model=ThreadState,
    operation_id="get_thread",
    summary="Read a thread's state",
    description="The thread folded from its event log: version, pending entries, committed "
    "count, running and waiting run, and every run. `?at_version=N` answers the thread as it "
    "was at version N (422 beyond the thread's version). The `ETag` is the version; "
    "`If-None-Match` with it answers 304. The current state is read from the views; "
    "`at_version` folds the log up to that version.",
    tags=["threads"],
    responses=CONDITIONAL_READ,
)
def thread(
    thread_id: str,
    mailbox: MailboxDep,
    response: Response,
    at_version: Annotated[int | None, Query(ge=1)] = None,
    if_none_match: IfNoneMatch = None,
) -> ThreadState | Response:
    state = mailbox.thread(thread_id, at_version=at_version)
    return not_modified(if_none_match, state.version, response) or state


@router.get(
    "/v1/threads/{thread_id:id}/committed",
    response_model=CommittedReadPage,
    operation_id="list_committed",
    summary="Read the committed zone",
    description="Committed messages in seq order after `after_seq` (exclusive). Hidden "
    "messages are left out unless `include_hidden=true`; messages with `visibility: internal` "
    "are left out unless `include_internal=true` (a page is still filled up to `limit` with "
    "the others)." + PAGED,
    tags=["committed"],
    responses=THREAD_READ,
)
def committed(
    thread_id: str,
    mailbox: MailboxDep,
    after_seq: Position = 0,
    limit: Count = PAGE,
    include_hidden: bool = False,
    include_internal: bool = False,
) -> CommittedReadPage:
    messages, more = paged(
        mailbox.committed(
            thread_id,
            after_seq=after_seq,
            limit=limit + 1,
            include_hidden=include_hidden,
            include_internal=include_internal,
        ),
        limit,
    )
    return CommittedReadPage(messages=messages, next=messages[-1].seq if more else None)


@router.get(
    "/v1/threads/{thread_id:id}/runs",
    response_model=RunsPage,
    operation_id="list_runs",
    summary="List a thread's runs",
    description="The thread's runs in the order they started, after the first `after` of "
    "them: status, termination, the messages that triggered it, its input seq ranges and "
    "output ids." + PAGED,
    tags=["runs"],
    responses=THREAD_READ,
)
def runs(thread_id: str, mailbox: MailboxDep, after: Position = 0, limit: Count = PAGE) -> RunsPage:
    found, more = paged(mailbox.runs(thread_id, after=after, limit=limit + 1), limit)
    return RunsPage(runs=found, next=after + len(found) if more else None)


@router.get(
    "/v1/runs/{run_id:id}",
    response_model=RunRecord,
    operation_id="get_run",
    summary="Read a run by id",
    description="The most recently started run with this id, in any thread (run ids are "
    "meant to be globally unique: use UUIDs).",
    tags=["runs"],
    responses=problem_responses(RunNotFound, InvalidInput),
)
def run(run_id: str, mailbox: MailboxDep) -> RunRecord:
    return mailbox.run(run_id)


@router.get(
    "/v1/threads/{thread_id:id}/checkpoints",
    response_model=CheckpointsPage,
    operation_id="list_checkpoints",
    summary="List a thread's checkpoints",
    description="One row per commit into the committed zone: a freeze (`kind: input`, with "
    "its boundary) or an output commit (`kind: output`), with its seq range, message ids and "
    "the thread version of the event that committed them; in version order, after "
    "`after_version` (exclusive)." + PAGED,
    tags=["committed"],
    responses=THREAD_READ,
)
def checkpoints(
    thread_id: str, mailbox: MailboxDep, after_version: Position = 0, limit: Count = PAGE
) -> CheckpointsPage:
    found, more = paged(
        mailbox.checkpoints(thread_id, after_version=after_version, limit=limit + 1), limit
    )
    return CheckpointsPage(checkpoints=found, next=found[-1].version if more else None)


@router.get(
    "/v1/threads/{thread_id:id}/events",
    response_model=EventsPage,
    operation_id="list_events",
    summary="Read a thread's audit trail",
    description="The thread's events after `after_version` (exclusive), in version order: "
    "version, type, timestamp and the typed payload of each. " + REDACTED + PAGED,
    tags=["events"],
    responses=THREAD_READ,
)
def events(
    thread_id: str,
    mailbox: MailboxDep,
    after_version: Position = 0,
    limit: Count = PAGE,
    include_internal: bool = False,
) -> EventsPage:
    found, more = paged(
        mailbox.history(
            thread_id,
            after_version=after_version,
            limit=limit + 1,
            include_internal=include_internal,
        ),
        limit,
    )
    return EventsPage(events=found, next=found[-1].version if more else None)


@router.get(
    "/v1/threads",
    response_model=ThreadsPage,
    operation_id="list_threads",
    summary="List thread summaries",
    description="Threads ordered by thread id after the exclusive cursor `after`, at most "
    "`limit`; `has_pending=true` keeps the threads with pending work (the recovery scan), "
    "`false` those without. `next_after` (and `next`, the same) is the cursor of the next "
    "page, null on the last.",
    tags=["threads"],
    responses=problem_responses(InvalidInput),
)
def threads(
    mailbox: MailboxDep,
    has_pending: bool | None = None,
    limit: Count = PAGE,
    after: str | None = None,
) -> ThreadsPage:
    summaries, more = paged(
        mailbox.threads(has_pending=has_pending, limit=limit + 1, after=after), limit
    )
    last = summaries[-1].thread_id if more else None
    return ThreadsPage(threads=summaries, next_after=last, next=last)


HEALTH_RESPONSES = problem_responses() | {503: declared_response(503, ["store_unavailable"])}


@router.get(
    "/healthz",
    response_model=Health,
    operation_id="healthz",
    summary="Liveness, and whether the store can be read and written",
    description="200 when the store answers a read and a write probe (one that changes "
    "nothing), with its kind, the snapshot writes that failed since start and the event streams "
    "open now; 503 `store_unavailable` with `Retry-After` when it cannot be read "
    "(`readable: false`) or cannot be written (`readable: true, writable: false`: a read-only "
    "file, mount or server, or a write that failed for want of the store in the last 30 s). "
    "Needs no token.",
    tags=["health"],
    responses=HEALTH_RESPONSES,
)
def healthz(mailbox: MailboxDep, request: Request) -> Response:
    readable = False
    try:
        mailbox.store.ping()
        readable = True
        mailbox.store.ping_write()
    except Exception as failed:  # any failure to read or write the store means "not healthy"
        reason = failed.reason if isinstance(failed, StoreUnavailable) else str(failed)
        what = "written" if readable else "reached"
        return problem_response(
            503,
            "store_unavailable",
            f"the store cannot be {what}: {reason}",
            {"readable": readable, "writable": False},
            headers={"Retry-After": str(STORE_RETRY_AFTER)},
        )
    health = Health(
        status="ok",
        store=mailbox.store.kind,
        writable=True,
        snapshot_failures=mailbox.snapshot_failures,
        open_streams=request.app.state.changes.open_streams,
    )
    return JSONResponse(health.model_dump())


@router.head(
    "/healthz",
    operation_id="healthz_head",
    summary="Liveness, headers only",
    description="`GET /healthz` without its body: the same status (200, or 503 with "
    "`Retry-After`), for probes that send HEAD. Needs no token.",
    tags=["health"],
    responses=HEALTH_RESPONSES,
)
def healthz_head(mailbox: MailboxDep, request: Request) -> Response:
    answer = healthz(mailbox, request)
    return Response(status_code=answer.status_code, headers=dict(answer.headers))
