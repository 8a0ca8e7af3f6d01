"""``GET /metrics``: the mailbox's Prometheus metrics, behind the token like every route but
``/healthz`` (API.md §9)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from threadbox.metrics import exposition

from .commands import MailboxDep
from .paths import IdRoute

router = APIRouter(route_class=IdRoute)


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    description="The server's metrics in Prometheus' text format: `threadbox_commands_total` "
    "(by command and outcome), `threadbox_command_seconds` (by command), "
    "`threadbox_conflicts_retried_total`, `threadbox_snapshot_failures_total`, "
    "`threadbox_view_lag_events`, `threadbox_open_streams`, `threadbox_store_up`. "
    "docs/operations.md says what each tells.",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(mailbox: MailboxDep) -> Response:
    body, content_type = exposition(mailbox)
    return Response(body, media_type=content_type)
