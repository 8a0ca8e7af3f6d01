"""RFC 9457 problem documents: every threadbox error, and every rejected request, as JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from threadbox import errors
from threadbox.infrastructure.logs import current_request

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:threadbox:problem:"  # a name, not a page: no URL is promised

log = logging.getLogger("threadbox.http")

# The HTTP status of every error threadbox raises on purpose: the one table that both the problem
# handlers and the OpenAPI document read (a route declares which errors it can raise; their
# statuses and codes come from here). An error class missing here is a defect: it answers 500.
STATUS_BY_ERROR: dict[type[errors.ThreadboxError], int] = {
    errors.InvalidInput: 422,
    errors.PayloadTooLarge: 413,
    errors.ThreadNotFound: 404,
    errors.PendingNotFound: 404,
    errors.MessageNotFound: 404,
    errors.RunNotFound: 404,
    errors.NotPending: 409,
    errors.MessageIdInUse: 409,
    errors.PendingQueueFull: 409,
    errors.ReorderMismatch: 409,
    errors.DeliveryBlocked: 409,
    errors.ThreadBusy: 409,
    errors.RunNotRunning: 409,
    errors.RunInterrupted: 409,
    errors.RunNotWaiting: 409,
    errors.RevisionConflict: 412,
    errors.VersionConflict: 412,
    errors.Contention: 503,
    errors.StoreNotFound: 503,  # a server opens (creates) its store at start: not seen in practice
    errors.StoreUnavailable: 503,
    errors.CorruptHistory: 500,  # the store holds what the decisions never wrote
    errors.ProjectionFailed: 500,
    errors.ImportRefused: 422,  # no route imports; listed so that no error is left out
}

# ``NotPending`` is one class whose code says why the entry is no longer pending.
NOT_PENDING_CODES = ("already_consumed", "retracted", "expired")


def codes_of(error: type[errors.ThreadboxError]) -> tuple[str, ...]:
    """The codes an error class answers with."""
    if error is errors.NotPending:
        return NOT_PENDING_CODES
    return (error.code,)


def status_of(error: type[errors.ThreadboxError]) -> int | None:
    """The status of an error class (a subclass answers as its nearest listed ancestor)."""
    for cls in error.__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return None


STATUS_BY_CODE: dict[str, int] = {
    code: status for error, status in STATUS_BY_ERROR.items() for code in codes_of(error)
}

# Seconds a client should wait after a 503 ``contention``: by then the writers that kept
# winning have usually moved on (the mailbox has already retried with backoff).
CONTENTION_RETRY_AFTER = 1
# Seconds a client should wait after a 503 ``store_unavailable``: a restart, a failover or an
# operator freeing disk space takes seconds, and the answer came fast, so do not hammer.
STORE_RETRY_AFTER = 5

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    412: "Precondition failed",
    413: "Content too large",
    422: "Invalid input",
    428: "Precondition required",
    500: "Internal server error",
    503: "Service unavailable",
}


class BodyTooLarge(HTTPException):
    """Raised while a request body streams in, once it passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


class Problem(Exception):
    """A request the HTTP layer itself rejects (bad header, missing If-Match, bad token)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.fields = fields


class ProblemResponse(JSONResponse):
    """A problem document as ASCII JSON: what it echoes of the request (an unknown id, say) may
    hold lone surrogates, which UTF-8 cannot encode but a ``\\ud800`` escape can."""

    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


def problem_response(
    status: int,
    code: str,
    detail: str,
    fields: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    for key, value in (fields or {}).items():
        body.setdefault(key, value)
    request = current_request.get()
    if request is not None:
        request.code = code  # for the access log line
    return ProblemResponse(body, status_code=status, headers=headers)


def error_response(error: errors.ThreadboxError) -> JSONResponse:
    status = status_of(type(error))
    if status is None:
        raise error  # an error without a documented status: let it surface as a 500
    headers = {}
    if isinstance(error, errors.Contention):
        headers["Retry-After"] = str(CONTENTION_RETRY_AFTER)
    if isinstance(error, errors.StoreUnavailable):
        headers["Retry-After"] = str(STORE_RETRY_AFTER)
    return problem_response(status, error.code, error.message, error.details(), headers)


def _field_of(location: tuple[int | str, ...]) -> str:
    # ("body", "messages", 0, "role") -> "messages.0.role"; ("query", "limit") -> "limit"
    parts = [str(p) for p in location[1:]] if len(location) > 1 else [str(p) for p in location]
    return ".".join(parts)


def validation_response(error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return problem_response(
            400, "invalid_input", "request body is not valid JSON", {"field": "body"}
        )
    field = _field_of(tuple(first.get("loc", ())))
    return problem_response(
        422, "invalid_input", f"invalid {field or 'request'}: {first['msg']}", {"field": field}
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_threadbox_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.ThreadboxError)
        return error_response(exc)

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.code, exc.detail, exc.fields, exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {
            400: "invalid_input",
            404: "not_found",
            405: "method_not_allowed",
            408: "request_timeout",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        fields = {"limit": exc.limit} if isinstance(exc, BodyTooLarge) else None
        return problem_response(exc.status_code, code, str(exc.detail), fields, exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        # Starlette answers this one outside every middleware: the request id is added here.
        context = current_request.get()
        headers = {"X-Request-ID": context.request_id} if context else None
        return problem_response(
            500, "internal_error", "the server failed; see its log", None, headers
        )

    app.add_exception_handler(errors.ThreadboxError, on_threadbox_error)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
