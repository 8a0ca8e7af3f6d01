"""The app factory: a FastAPI app over a ``Mailbox``, configured by arguments only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from threadbox import Mailbox
from threadbox.infrastructure.metrics import PrometheusMetrics

from . import ag_ui, browsers, commands, log_routes, metrics, reads, stream
from .auth import BearerTokenGuard, checked_token
from .limits import BodyLimit, Utf8Target, body_limit_for
from .log_changes import LogChanges
from .openapi import TAGS, install_openapi
from .paths import EncodedSlashes
from .problems import install_problem_handlers
from .request_log import RequestLog
from .stream import StreamSettings
from .tickets import Tickets, install_redaction
from .timeouts import BodyReadTimeout, ServerLimits

DESCRIPTION = """Every thread has a **pending zone** (delivered, not yet read by the model:
editable, retractable, reorderable) and an append-only **committed zone** (what the model read,
and its outputs). A **freeze** at a run boundary moves pending messages into the committed zone.

Errors are `application/problem+json` (RFC 9457) with a stable `code`. Writes to a pending entry
need `If-Match: "<revision>"`, a reorder `If-Match: "<version>"` (428 without, 412 when stale).
With `THREADBOX_API_TOKEN` set, every route but `/healthz` needs `Authorization: Bearer <token>`;
a browser's `EventSource` opens a stream with `?ticket=` from `POST /v1/stream-tickets` instead.
CORS answers the origins in `THREADBOX_CORS_ORIGINS` (none by default).
"""


def create_app(
    mailbox: Mailbox,
    *,
    token: str | None = None,
    max_body_bytes: int | None = None,
    stream_settings: StreamSettings | None = None,
    close_on_shutdown: bool = False,
    body_timeout: float = ServerLimits.body_timeout,
    cors_origins: str | Iterable[str] | None = None,
) -> FastAPI:
    """The HTTP API (docs/http-api.md) over ``mailbox``; ``token`` set -> bearer auth on every route
    but ``/healthz`` (an unusable token, empty say, raises ``InvalidInput``); a request body not
    whole ``body_timeout`` seconds after it is first read answers 408; ``cors_origins`` (a list,
    or the comma-separated ``THREADBOX_CORS_ORIGINS`` string) are the origins CORS allows (none
    by default; a malformed one raises ``InvalidInput``). The caller owns the
    mailbox, unless ``close_on_shutdown`` hands it over:
    then the server's shutdown closes it (uvicorn re-raises SIGTERM after its shutdown, so
    code after ``uvicorn.run`` would not get to)."""

    origins = browsers.cors_origins(cors_origins)  # checked now, before anything starts
    changes = LogChanges()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        changes.bind(asyncio.get_running_loop())
        mailbox.views.add_listener(changes.notify)
        try:
            yield
        finally:
            mailbox.views.remove_listener(changes.notify)
            if close_on_shutdown:
                mailbox.close()

    app = FastAPI(
        lifespan=lifespan,
        title="threadbox",
        version="0.1.0",
        summary="An event-sourced mailbox for AI-agent conversations.",
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )
    app.state.mailbox = mailbox
    app.state.stream_settings = stream_settings or StreamSettings()
    app.state.changes = changes
    app.state.tickets = None if token is None else Tickets(checked_token(token))
    install_redaction()  # the access log never holds a ticket
    install_problem_handlers(app)
    install_openapi(app)
    app.include_router(commands.router)
    app.include_router(stream.router)
    app.include_router(log_routes.router)
    app.include_router(ag_ui.router)
    app.include_router(reads.router)
    app.include_router(metrics.router)
    app.include_router(browsers.router)
    if isinstance(mailbox.metrics, PrometheusMetrics):
        mailbox.metrics.watch_streams(lambda: changes.open_streams)
    limit = max_body_bytes or body_limit_for(mailbox.settings.max_message_bytes)
    app.add_middleware(BodyLimit, limit=limit)
    app.add_middleware(BodyReadTimeout, timeout=body_timeout)
    app.add_middleware(EncodedSlashes)
    app.add_middleware(Utf8Target)  # added after: runs before EncodedSlashes
    if token is not None:
        app.add_middleware(BearerTokenGuard, token=token, tickets=app.state.tickets)
    browsers.install_cors(app, origins)  # after the guard: preflights need no token
    app.add_middleware(RequestLog)  # added last: runs first, so a 401 has its id and log line
    return app
