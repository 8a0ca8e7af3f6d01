"""The write routes: deliver, submit, edit, retract, reorder, freeze, run lifecycle, hide.

Endpoints are plain ``def``: FastAPI runs them in its threadpool, off the event loop, because
every mailbox call blocks on the store.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request, Response, status
from threadbox import FreezeResult, Mailbox, PendingEntry, RunRecord
from threadbox.errors import RunNotFound

from .bodies import (
    CommittedPage,
    DeliverBody,
    EditBody,
    FinishBody,
    FinishReply,
    FreezeBody,
    HideBody,
    OrderBody,
    OutputBody,
    PendingPage,
    SubmitBody,
    SuspendBody,
)
from .preconditions import etag, required_match


def mailbox_of(request: Request) -> Mailbox:
    mailbox: Mailbox = request.app.state.mailbox
    return mailbox


MailboxDep = Annotated[Mailbox, Depends(mailbox_of)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]

router = APIRouter(prefix="/v1/threads/{thread_id:id}")


@router.post("/messages", status_code=status.HTTP_201_CREATED, response_model=PendingPage)
def deliver(
    thread_id: str, body: DeliverBody, mailbox: MailboxDep, response: Response
) -> PendingPage:
    entries, version = mailbox.deliver_page(thread_id, body.messages, body.mode)
    response.headers["ETag"] = etag(version)
    return PendingPage(entries=entries, version=version)


@router.post("/submit", response_model=FreezeResult)
def submit(thread_id: str, body: SubmitBody, mailbox: MailboxDep) -> FreezeResult:
    return mailbox.submit(thread_id, body.messages, body.mode, body.run_id)


@router.patch("/pending/{pending_id:id}", response_model=PendingEntry)
def edit(
    thread_id: str,
    pending_id: str,
    body: EditBody,
    mailbox: MailboxDep,
    response: Response,
    if_match: IfMatch = None,
) -> PendingEntry:
    revision = required_match(if_match, "revision")
    entry = mailbox.edit(thread_id, pending_id, body.message, expected_revision=revision)
    response.headers["ETag"] = etag(entry.revision)
    return entry


@router.delete("/pending/{pending_id:id}", response_model=PendingEntry)
def retract(
    thread_id: str, pending_id: str, mailbox: MailboxDep, if_match: IfMatch = None
) -> PendingEntry:
    revision = required_match(if_match, "revision")
    return mailbox.retract(thread_id, pending_id, expected_revision=revision)


@router.put("/pending/order", response_model=PendingPage)
def reorder(
    thread_id: str,
    body: OrderBody,
    mailbox: MailboxDep,
    response: Response,
    if_match: IfMatch = None,
) -> PendingPage:
    version = required_match(if_match, "version")
    entries, after = mailbox.reorder_page(thread_id, body.order, expected_version=version)
    response.headers["ETag"] = etag(after)
    return PendingPage(entries=entries, version=after)


@router.post("/freeze", response_model=FreezeResult)
def freeze(thread_id: str, body: FreezeBody, mailbox: MailboxDep) -> FreezeResult:
    return mailbox.freeze(
        thread_id, body.boundary, body.run_id, expected_version=body.expected_version
    )


@router.post("/runs/{run_id:id}/suspend", response_model=RunRecord)
def suspend_run(
    thread_id: str,
    run_id: str,
    mailbox: MailboxDep,
    body: Annotated[SuspendBody | None, Body()] = None,
) -> RunRecord:
    mailbox.suspend_run(thread_id, run_id, (body or SuspendBody()).reason)
    for run in mailbox.runs(thread_id):
        if run.run_id == run_id:
            return run
    raise RunNotFound(run_id)  # the views lost a run this very request suspended: a defect


@router.post("/runs/{run_id:id}/finish", response_model=FinishReply)
def finish_run(
    thread_id: str,
    run_id: str,
    mailbox: MailboxDep,
    body: Annotated[FinishBody | None, Body()] = None,
) -> FinishReply:
    body = body or FinishBody()
    expired = mailbox.finish_run(thread_id, run_id, body.termination, body.detail)
    return FinishReply(expired=expired)


@router.post(
    "/runs/{run_id:id}/output", status_code=status.HTTP_201_CREATED, response_model=CommittedPage
)
def commit_output(
    thread_id: str, run_id: str, body: OutputBody, mailbox: MailboxDep
) -> CommittedPage:
    return CommittedPage(messages=mailbox.commit_output(thread_id, run_id, body.messages))


@router.post("/committed/{message_id:id}/hide", status_code=status.HTTP_204_NO_CONTENT)
def hide(
    thread_id: str,
    message_id: str,
    mailbox: MailboxDep,
    body: Annotated[HideBody | None, Body()] = None,
) -> Response:
    mailbox.hide(thread_id, message_id, (body or HideBody()).reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
