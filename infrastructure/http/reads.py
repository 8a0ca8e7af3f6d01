"""The read routes: pending (with its ETag), thread state, committed, runs, checkpoints, events,
thread summaries and health. Plain ``def`` endpoints: they run in FastAPI's threadpool."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from threadbox import CommittedMessage, RunRecord, ThreadState, Visibility

from .bodies import (
    CheckpointsPage,
    CommittedPage,
    EventsPage,
    Health,
    PendingPage,
    RunsPage,
    ThreadsPage,
)
from .commands import MailboxDep
from .preconditions import etag
from .problems import problem_response

router = APIRouter()

Count = Annotated[int | None, Query(ge=1, le=10_000)]
Position = Annotated[int, Query(ge=0)]


@router.get("/v1/threads/{thread_id:id}/pending", response_model=PendingPage)
def pending(thread_id: str, mailbox: MailboxDep, response: Response) -> PendingPage:
    entries, version = mailbox.pending_page(thread_id)  # read together: a consistent ETag
    response.headers["ETag"] = etag(version)
    return PendingPage(entries=entries, version=version)


@router.get("/v1/threads/{thread_id:id}", response_model=ThreadState)
def thread(
    thread_id: str,
    mailbox: MailboxDep,
    response: Response,
    at_version: Annotated[int | None, Query(ge=1)] = None,
) -> ThreadState:
    state = mailbox.thread(thread_id, at_version=at_version)
    response.headers["ETag"] = etag(state.version)
    return state


def _visible_to_readers(messages: list[CommittedMessage]) -> list[CommittedMessage]:
    return [m for m in messages if m.message.visibility is not Visibility.INTERNAL]


@router.get("/v1/threads/{thread_id:id}/committed", response_model=CommittedPage)
def committed(
    thread_id: str,
    mailbox: MailboxDep,
    after_seq: Position = 0,
    limit: Count = None,
    include_hidden: bool = False,
    include_internal: bool = False,
) -> CommittedPage:

    def page(after: int) -> list[CommittedMessage]:
        return mailbox.committed(
            thread_id, after_seq=after, limit=limit, include_hidden=include_hidden
        )

    if include_internal:
        return CommittedPage(messages=page(after_seq))
    # Internal messages are dropped after paging: read on until the page is full or the end.
    found: list[CommittedMessage] = []
    after = after_seq
    while True:
        batch = page(after)
        found.extend(_visible_to_readers(batch))
        if limit is None or not batch or len(found) >= limit:
            return CommittedPage(messages=found[:limit])
        after = batch[-1].seq


@router.get("/v1/threads/{thread_id:id}/runs", response_model=RunsPage)
def runs(thread_id: str, mailbox: MailboxDep) -> RunsPage:
    return RunsPage(runs=mailbox.runs(thread_id))


@router.get("/v1/runs/{run_id:id}", response_model=RunRecord)
def run(run_id: str, mailbox: MailboxDep) -> RunRecord:
    return mailbox.run(run_id)


@router.get("/v1/threads/{thread_id:id}/checkpoints", response_model=CheckpointsPage)
def checkpoints(thread_id: str, mailbox: MailboxDep) -> CheckpointsPage:
    return CheckpointsPage(checkpoints=mailbox.checkpoints(thread_id))


@router.get("/v1/threads/{thread_id:id}/events", response_model=EventsPage)
def events(
    thread_id: str, mailbox: MailboxDep, after_version: Position = 0, limit: Count = None
) -> EventsPage:
    return EventsPage(events=mailbox.history(thread_id, after_version=after_version, limit=limit))


@router.get("/v1/threads", response_model=ThreadsPage)
def threads(
    mailbox: MailboxDep,
    has_pending: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: str | None = None,
) -> ThreadsPage:
    summaries = mailbox.threads(has_pending=has_pending, limit=limit, after=after)
    last = summaries[-1].thread_id if len(summaries) == limit else None
    return ThreadsPage(threads=summaries, next_after=last)


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(mailbox: MailboxDep, request: Request) -> Response:
    try:
        mailbox.store.ping()
    except Exception as unreachable:  # any failure to reach the store means "not healthy"
        return problem_response(
            503, "store_unreachable", f"the store cannot be reached: {unreachable}"
        )
    health = Health(
        status="ok",
        store=mailbox.store.kind,
        snapshot_failures=mailbox.snapshot_failures,
        open_streams=request.app.state.changes.open_streams,
    )
    return JSONResponse(health.model_dump())
