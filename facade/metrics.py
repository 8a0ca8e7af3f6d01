"""``threadbox.metrics``: a mailbox's Prometheus metrics, for embedders (API.md §9).

Every mailbox ``threadbox.open`` returns keeps its own registry::

    from prometheus_client import make_asgi_app
    app.mount("/metrics", make_asgi_app(threadbox.metrics.registry(mailbox)))

or, without an ASGI app, ``body, content_type = threadbox.metrics.exposition(mailbox)``.
The names are in docs/operations.md (Metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from threadbox.infrastructure.metrics import PrometheusMetrics

if TYPE_CHECKING:
    from threadbox.application.mailbox import Mailbox


def registry(mailbox: Mailbox) -> CollectorRegistry:
    """The Prometheus registry of ``mailbox`` (one of ``threadbox.open``)."""
    metrics = mailbox.metrics
    if not isinstance(metrics, PrometheusMetrics):
        raise TypeError(
            "this mailbox reports no Prometheus metrics: open it with threadbox.open(url), or "
            "pass metrics=PrometheusMetrics() to Mailbox(...)"
        )
    return metrics.registry


def exposition(mailbox: Mailbox) -> tuple[bytes, str]:
    """The mailbox's metrics in Prometheus' text format, and that format's content type."""
    return generate_latest(registry(mailbox)), CONTENT_TYPE_LATEST


__all__ = ["PrometheusMetrics", "exposition", "registry"]
