"""The write routes: deliver, submit, edit, retract, reorder, freeze, run lifecycle, hide.

Endpoints are plain ``def``: every mailbox call blocks on the store, so ``IdRoute`` runs each
endpoint on a worker thread, off the event loop, in one hop (``dispatch.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request, Response, status
from threadbox import FreezeResult, Mailbox, PendingEntry, RunRecord
from threadbox.errors import (
    Contention,
    DeliveryBlocked,
    InvalidInput,
    MessageIdInUse,
    MessageNotFound,
    NotPending,
    PayloadTooLarge,
    PendingNotFound,
    PendingQueueFull,
    ReorderMismatch,
    RevisionConflict,
    RunInterrupted,
    RunNotRunning,
    RunNotWaiting,
    ThreadBusy,
    ThreadNotFound,
    VersionConflict,
)

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
from .openapi import problem_responses
from .paths import IdRoute
from .preconditions import etag, expected_number


async def mailbox_of(request: Request) -> Mailbox:
    """The app's mailbox (a coroutine: FastAPI runs a plain dependency in a thread hop)."""
    mailbox: Mailbox = request.app.state.mailbox
    return mailbox


MailboxDep = Annotated[Mailbox, Depends(mailbox_of)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]

router = APIRouter(prefix="/v1/threads/{thread_id:id}", route_class=IdRoute)

# What every write may meet: invalid input, and other writers winning every retry.
WRITE = (InvalidInput, Contention)
RUN_RULES = (ThreadBusy, RunNotRunning, RunInterrupted, RunNotWaiting)


@router.post(
    "/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=PendingPage,
    operation_id="deliver",
    summary="Deliver messages to the pending zone",
    description="Appends the messages at the tail of the thread's pending zone, each at "
    "revision 1, with one delivery `mode` (default: `new_run`, `batch`). Creates the thread "
    "if it is new. A message without an `id` gets a generated UUIDv7. Re-sending a message "
    "identical (content and mode) to the original delivery of an id that is still pending "
    "returns its current entry and delivers the rest. Answers the entries and the thread "
    "version after the write (also as the `ETag`). New messages that would take the pending "
    "zone past the mailbox's cap (`Settings.max_pending`) are 409 `pending_full`, and none is "
    "delivered.",
    tags=["pending"],
    responses=problem_responses(
        MessageIdInUse,
        PendingQueueFull,
        RunNotRunning,
        RunNotWaiting,
        PayloadTooLarge,
        *WRITE,
        body=True,
    ),
)
def deliver(
    thread_id: str, body: DeliverBody, mailbox: MailboxDep, response: Response
) -> PendingPage:
    entries, version = mailbox.deliver_page(thread_id, body.messages, body.mode)
    response.headers["ETag"] = etag(version)
    return PendingPage(entries=entries, version=version)


@router.post(
    "/submit",
    response_model=FreezeResult,
    operation_id="submit",
    summary="Deliver and freeze in one write",
    description="Delivers the messages and freezes at `mode.boundary` for `run_id` in one "
    "atomic write: either every submitted message is committed now (with the eligible "
    "entries queued before them), or nothing is written and the answer is 409 "
    "`delivery_blocked` naming the entry that stopped the selection. The run rules of a "
    "freeze apply. Ids already used in the thread are `message_id_in_use` (no idempotent "
    "repeat). Creates the thread if it is new.",
    tags=["runs"],
    responses=problem_responses(
        MessageIdInUse, DeliveryBlocked, *RUN_RULES, PayloadTooLarge, *WRITE, body=True
    ),
)
def submit(thread_id: str, body: SubmitBody, mailbox: MailboxDep) -> FreezeResult:
    return mailbox.submit(thread_id, body.messages, body.mode, body.run_id)


@router.patch(
    "/pending/{pending_id:id}",
    response_model=PendingEntry,
    operation_id="edit_pending",
    summary="Edit a pending message",
    description="Replaces the content of a pending message; its position and mode stay and "
    'its revision goes up by one. Needs `If-Match: "<revision>"` (the entry\'s current '
    "revision: the `ETag` of `GET …/pending/{pending_id}`, or its `revision` in "
    "`GET …/pending`), or `*`, or a list of tags. The body's message may omit its id but not "
    "change it. "
    "An edit to identical content writes nothing. Answers the entry, with its new revision "
    "as the `ETag`.",
    tags=["pending"],
    responses=problem_responses(
        ThreadNotFound,
        PendingNotFound,
        NotPending,
        RevisionConflict,
        PayloadTooLarge,
        *WRITE,
        if_match=True,
        body=True,
    ),
)
def edit(
    thread_id: str,
    pending_id: str,
    body: EditBody,
    mailbox: MailboxDep,
    response: Response,
    if_match: IfMatch = None,
) -> PendingEntry:
    revision = expected_number(
        if_match, "revision", lambda: mailbox.pending_entry(thread_id, pending_id).revision
    )
    entry = mailbox.edit(thread_id, pending_id, body.message, expected_revision=revision)
    response.headers["ETag"] = etag(entry.revision)
    return entry


@router.delete(
    "/pending/{pending_id:id}",
    response_model=PendingEntry,
    operation_id="retract_pending",
    summary="Retract a pending message",
    description="Removes a message from the pending zone before the model reads it; the "
    "entries after it move up, their revisions unchanged. Its id stays used in the thread. "
    'Needs `If-Match: "<revision>"` (the entry\'s `ETag`), or `*`, or a list of tags. '
    "Answers the entry as it was when retracted.",
    tags=["pending"],
    responses=problem_responses(
        ThreadNotFound, PendingNotFound, NotPending, RevisionConflict, *WRITE, if_match=True
    ),
)
def retract(
    thread_id: str, pending_id: str, mailbox: MailboxDep, if_match: IfMatch = None
) -> PendingEntry:
    revision = expected_number(
        if_match, "revision", lambda: mailbox.pending_entry(thread_id, pending_id).revision
    )
    return mailbox.retract(thread_id, pending_id, expected_revision=revision)


@router.put(
    "/pending/order",
    response_model=PendingPage,
    operation_id="reorder_pending",
    summary="Reorder the pending zone",
    description="Puts the pending entries in the order given; `order` must name every "
    "pending id exactly once (else 409 `reorder_mismatch` listing the missing, unknown, "
    "duplicate and no-longer-pending ids). Revisions are unchanged; the same order writes "
    'nothing. Needs `If-Match: "<version>"` (the thread version, the `ETag` of '
    "`GET …/pending`), or `*`, or a list of tags. Answers the entries and the version after "
    "the write.",
    tags=["pending"],
    responses=problem_responses(
        ThreadNotFound, ReorderMismatch, VersionConflict, *WRITE, if_match=True, body=True
    ),
)
def reorder(
    thread_id: str,
    body: OrderBody,
    mailbox: MailboxDep,
    response: Response,
    if_match: IfMatch = None,
) -> PendingPage:
    version = expected_number(if_match, "version", lambda: mailbox.pending_page(thread_id)[1])
    entries, after = mailbox.reorder_page(thread_id, body.order, expected_version=version)
    response.headers["ETag"] = etag(after)
    return PendingPage(entries=entries, version=after)


@router.post(
    "/freeze",
    response_model=FreezeResult,
    operation_id="freeze",
    summary="Freeze at a run boundary",
    description="Moves the pending entries that `boundary` selects into the committed zone "
    "for `run_id`, with the next seqs, in one write. The run rules are checked first, even "
    "when nothing would be selected: `interrupt` starts `run_id` (a new id) after finishing "
    "the open run as interrupted; `new_run` starts `run_id` (a new id) when no run is open, "
    "or resumes the waiting run by its own id; `next_step` and `on_natural_end` need the "
    "running run; `resume_input` resumes the waiting run. An empty selection changes nothing "
    "and answers `committed: []`. Without `run_id`, a `new_run` or `interrupt` freeze starts a "
    "run with a generated id (UUIDv7, in the answer's `run_id`). `rollback: true` (interrupt "
    "only) also hides, in the same write, every output the interrupted run committed: their "
    "ids are in the answer's `hidden`. A command by a run that an interrupt ended is 409 "
    "`run_interrupted`, naming the run that interrupted it (`by_run_id`). "
    "`expected_version`, when given, must be the thread's version (else 412).",
    tags=["runs"],
    responses=problem_responses(ThreadNotFound, *RUN_RULES, VersionConflict, *WRITE, body=True),
)
def freeze(thread_id: str, body: FreezeBody, mailbox: MailboxDep) -> FreezeResult:
    return mailbox.freeze(
        thread_id,
        body.boundary,
        body.run_id,
        expected_version=body.expected_version,
        rollback=body.rollback,
    )


@router.post(
    "/runs/{run_id:id}/suspend",
    response_model=RunRecord,
    operation_id="suspend_run",
    summary="Suspend the running run",
    description="The running run starts waiting (for `resume_input` messages, or a `new_run` "
    "freeze by the same run id). The body's `reason` is optional. Answers the run's record.",
    tags=["runs"],
    responses=problem_responses(ThreadNotFound, RunNotRunning, RunInterrupted, *WRITE, body=True),
)
def suspend_run(
    thread_id: str,
    run_id: str,
    mailbox: MailboxDep,
    body: Annotated[SuspendBody | None, Body()] = None,
) -> RunRecord:
    return mailbox.suspend_run(thread_id, run_id, (body or SuspendBody()).reason)


@router.post(
    "/runs/{run_id:id}/finish",
    response_model=FinishReply,
    operation_id="finish_run",
    summary="Finish the open run",
    description="Ends the thread's open run (running or waiting) with a `termination` "
    "(`natural_end` by default, `cancelled`, `interrupted`, `error`) and an optional "
    "`detail`. In the same write, pending entries targeted at this run without fallback "
    "expire; their ids are in `expired`, so the caller can re-deliver them.",
    tags=["runs"],
    responses=problem_responses(ThreadNotFound, RunNotRunning, RunInterrupted, *WRITE, body=True),
)
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
    "/runs/{run_id:id}/output",
    status_code=status.HTTP_201_CREATED,
    response_model=CommittedPage,
    operation_id="commit_output",
    summary="Commit the running run's output",
    description="Appends the run's own messages (`assistant`, `tool` or `system`; `user` is "
    "invalid) to the committed zone with the next seqs. The run must be running. An empty "
    "list writes nothing. Answers the committed messages.",
    tags=["committed"],
    responses=problem_responses(
        ThreadNotFound,
        RunNotRunning,
        RunInterrupted,
        MessageIdInUse,
        PayloadTooLarge,
        *WRITE,
        body=True,
    ),
)
def commit_output(
    thread_id: str, run_id: str, body: OutputBody, mailbox: MailboxDep
) -> CommittedPage:
    return CommittedPage(messages=mailbox.commit_output(thread_id, run_id, body.messages))


@router.post(
    "/committed/{message_id:id}/hide",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="hide_committed",
    summary="Hide a committed message",
    description="Sets a visibility tombstone on a committed message: default reads omit it, "
    "its content and seq stay. Hiding twice changes nothing. The body's `reason` is optional.",
    tags=["committed"],
    responses=problem_responses(ThreadNotFound, MessageNotFound, *WRITE, body=True),
)
def hide(
    thread_id: str,
    message_id: str,
    mailbox: MailboxDep,
    body: Annotated[HideBody | None, Body()] = None,
) -> Response:
    mailbox.hide(thread_id, message_id, (body or HideBody()).reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
