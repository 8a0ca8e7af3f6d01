"""The OpenAPI document's shared parts: the problem+json responses each route declares, the
``Problem`` schema, the bearer security scheme and the tags.

A route lists the errors it can raise (``problem_responses(ThreadNotFound, ...)``); their statuses
and codes come from ``STATUS_BY_ERROR``, the table the problem handlers answer with, so the
document and the answers cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from threadbox import errors

from .auth import OPEN_PATHS
from .problems import PROBLEM_JSON, TITLES, TYPE_BASE, codes_of, status_of

SECURITY_SCHEME = "bearer"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"

TAGS: list[dict[str, str]] = [
    {"name": "pending", "description": "The pending zone: delivered, not yet read by the model."},
    {"name": "runs", "description": "Freezes at run boundaries and the run lifecycle."},
    {"name": "committed", "description": "The committed zone: what the model read and wrote."},
    {"name": "threads", "description": "Threads as a whole: their state and summaries."},
    {"name": "events", "description": "The audit trail: every event of a thread, and its stream."},
    {"name": "ag-ui", "description": "A thread as an AG-UI event stream, for AG-UI front ends."},
    {"name": "health", "description": "Liveness, store reachability and metrics."},
]


class Problem(BaseModel):
    """An RFC 9457 problem document: every error answer of the API. Besides the five standard
    members it carries the fields of the error it reports (which ones depends on ``code``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description=f"`{TYPE_BASE}<code>`: a name, not a page")
    title: str = Field(description="the status's reason phrase")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what is wrong, naming the field, id or version")
    code: str = Field(description="the stable error code: branch on this")
    field: str | None = Field(None, description="invalid_input: the field that is wrong")
    thread_id: str | None = Field(None, description="thread_not_found, pending_not_found, ...")
    pending_id: str | None = Field(None, description="pending_not_found, already_consumed, ...")
    message_id: str | None = Field(None, description="message_not_found, message_id_in_use")
    run_id: str | None = Field(None, description="run_not_found, run_not_running, ...")
    open_run_id: str | None = Field(None, description="thread_busy: the thread's open run")
    blocking_pending_id: str | None = Field(None, description="delivery_blocked: the blocker")
    seq: int | None = Field(None, description="already_consumed, message_id_in_use: its seq")
    how: str | None = Field(None, description="message_id_in_use: pending, committed, ...")
    expected: int | None = Field(None, description="revision_conflict, version_conflict")
    actual: int | None = Field(None, description="revision_conflict, version_conflict")
    missing: list[str] | None = Field(None, description="reorder_mismatch: ids left out")
    unknown: list[str] | None = Field(None, description="reorder_mismatch: ids never used")
    duplicates: list[str] | None = Field(None, description="reorder_mismatch: ids given twice")
    not_pending: list[str] | None = Field(None, description="reorder_mismatch: used, not pending")
    size: int | None = Field(None, description="payload_too_large: the message's encoded size")
    limit: int | None = Field(None, description="payload_too_large: the limit in bytes")
    attempts: int | None = Field(None, description="contention: attempts made")
    reason: str | None = Field(None, description="store_unavailable: why the store cannot be used")
    readable: bool | None = Field(None, description="store_unavailable (/healthz): reads work")
    writable: bool | None = Field(None, description="store_unavailable (/healthz): writes work")


def declared_response(status: int, codes: list[str]) -> dict[str, Any]:
    """One declared error response: problem+json whose ``code`` is one of ``codes``."""
    schema = {"allOf": [{"$ref": PROBLEM_SCHEMA_REF}], "properties": {"code": {"enum": codes}}}
    return {
        "description": f"{TITLES[status]}: `" + "`, `".join(codes) + "`",
        "content": {PROBLEM_JSON: {"schema": schema}},
    }


def sse_response(description: str) -> dict[str, Any]:
    """A route's 200 answer that is a server-sent event stream, described by ``description``."""
    return {
        "description": description,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }


def problem_responses(
    *raised: type[errors.ThreadboxError],
    if_match: bool = False,
    body: bool = False,
    if_none_match: bool = False,
) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route that can raise ``raised``, plus what the HTTP layer answers
    itself: 400 for a request it cannot read (a target that is not UTF-8, a body that is not
    JSON, a malformed header), 413 for a body over the limit when the route takes one, 428 when
    a required ``If-Match`` is missing and 412 ``precondition_failed`` when it can never match
    (weak tags only), 304 for a GET whose ``If-None-Match`` matches, 503 ``store_unavailable``
    since every route uses the store. (401 is added to every guarded route by
    ``install_openapi``.)"""
    codes: dict[int, list[str]] = {400: ["invalid_input"], 503: ["store_unavailable"]}
    for error in raised:
        status = status_of(error)
        if status is None:
            raise ValueError(f"{error.__name__} has no HTTP status in STATUS_BY_ERROR")
        codes.setdefault(status, []).extend(c for c in codes_of(error) if c not in codes[status])
    if body and "payload_too_large" not in codes.setdefault(413, []):
        codes[413].append("payload_too_large")
    if if_match:
        codes[428] = ["precondition_required"]
        codes.setdefault(412, []).append("precondition_failed")
    declared: dict[int | str, dict[str, Any]] = {
        status: declared_response(status, codes[status]) for status in sorted(codes)
    }
    if if_none_match:
        declared[304] = {
            "description": "Not Modified: `If-None-Match` lists the current `ETag` (or is `*`); "
            "no body, the `ETag` header only"
        }
    return declared


def install_openapi(app: FastAPI) -> None:
    """Complete the generated document: the ``Problem`` schema, and the bearer scheme declared
    with its 401 answer on every route but the open ones (``/healthz``)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        components = document.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components["securitySchemes"] = {
            SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <token>`, required when the server was "
                "started with `THREADBOX_API_TOKEN`; a server without a token accepts any "
                "request.",
            }
        }
        unauthorized = declared_response(401, ["unauthorized"])
        for path, operations in document["paths"].items():
            if path in OPEN_PATHS:
                continue
            for operation in operations.values():
                operation["security"] = [{SECURITY_SCHEME: []}]
                responses = operation["responses"]
                responses["401"] = unauthorized
                operation["responses"] = dict(sorted(responses.items()))
        return document

    app.openapi = openapi  # type: ignore[method-assign]
