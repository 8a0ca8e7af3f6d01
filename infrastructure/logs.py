"""Logging for ``threadbox serve`` (API.md §9): ``text`` lines for a terminal, or ``json`` — one
JSON object per line for a log pipeline. Every line logged while a request is served carries that
request's ``request_id`` (``RequestContext``), whichever logger wrote it."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]

# The attributes a record may carry beyond the standard ones, in the order JSON lines show them.
FIELDS = ("request_id", "method", "path", "status", "duration_ms", "thread_id", "code")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


@dataclass
class RequestContext:
    """What is known of the request being served; the HTTP layer fills in ``code`` when it
    answers with a problem document."""

    request_id: str
    method: str
    path: str
    thread_id: str | None = None
    code: str | None = None


current_request: ContextVar[RequestContext | None] = ContextVar("threadbox_request", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request's id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only adds ``request_id`` when the record has none."""
        if not hasattr(record, "request_id"):
            context = current_request.get()
            record.request_id = context.request_id if context else "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the request's
    fields (``request_id``, ``method``, ``path``, ``status``, ``duration_ms``, ``thread_id``,
    ``code``) when present, any other ``extra`` fields, and ``exception`` with its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in FIELDS and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger [request_id] message``, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")


def configure_logging(log_format: LogFormat, level: str = "info") -> logging.Handler:
    """Send every log record of the process (threadbox's and uvicorn's) to stderr in
    ``log_format``; returns the handler installed on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # threadbox.access logs every request
    return handler
