"""Prometheus metrics of a mailbox (API.md §9): what it ran, how long it took, how it ended, and
the health figures an on-call engineer reads — retried conflicts, snapshot failures, view lag,
open streams. Each mailbox has its own ``CollectorRegistry`` (never the process-global one), so
two mailboxes in one process never collide; ``threadbox.metrics`` hands it to embedders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from threadbox.application.mailbox import Mailbox

log = logging.getLogger("threadbox.metrics")

# Command latencies here range from a fraction of a millisecond (SQLite) to seconds (contention).
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class PrometheusMetrics:
    """The ``CommandMetrics`` port on prometheus-client, plus the figures read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        """Everything this mailbox exposes; mount it, or serve ``exposition()``."""
        self._commands = Counter(
            "threadbox_commands",
            "Commands run, by command and outcome (ok, unchanged, an error code, store_error).",
            ["command", "outcome"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "threadbox_command_seconds",
            "How long commands took, retries included, by command.",
            ["command"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._readings = Readings()
        self.registry.register(self._readings)

    def command_done(self, command: str, outcome: str, seconds: float) -> None:
        """Count the command under its outcome and observe its duration."""
        found = self._children.get((command, outcome))
        if found is None:  # the labelled series, looked up once (every command reports here)
            found = self._children.setdefault(
                (command, outcome),
                (
                    self._commands.labels(command=command, outcome=outcome),
                    self._seconds.labels(command=command),
                ),
            )
        count, duration = found
        count.inc()
        duration.observe(seconds)

    def watch(self, mailbox: Mailbox) -> None:
        """Read the mailbox's conflict and snapshot counters and its views' lag at each scrape."""
        self._readings.mailbox = mailbox

    def watch_streams(self, open_streams: Callable[[], int]) -> None:
        """Read the number of event streams being served at each scrape (the HTTP app's)."""
        self._readings.open_streams = open_streams


class Readings(Collector):
    """Figures read when scraped, from the objects that keep them (no second bookkeeping)."""

    def __init__(self) -> None:
        self.mailbox: Mailbox | None = None
        self.open_streams: Callable[[], int] | None = None

    def describe(self) -> list[Metric]:
        """Nothing up front: the figures exist once there is something to read them from."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The figures as they are now."""
        if self.open_streams is not None:
            yield GaugeMetricFamily(
                "threadbox_open_streams",
                "Event streams (SSE, AG-UI) being served now.",
                value=self.open_streams(),
            )
        mailbox = self.mailbox
        if mailbox is None:
            return
        yield CounterMetricFamily(
            "threadbox_conflicts_retried",
            "Writes that lost a race with another writer of the same thread and were retried.",
            value=mailbox.conflicts,
        )
        yield CounterMetricFamily(
            "threadbox_snapshot_failures",
            "Snapshot writes that failed (the commands succeeded; cold loads replay more).",
            value=mailbox.snapshot_failures,
        )
        try:
            status = mailbox.views.status()
        except Exception:  # a scrape must answer even when the store does not
            log.warning("view lag not read: the store did not answer", exc_info=True)
            yield GaugeMetricFamily(
                "threadbox_store_up", "1 when the store answered this scrape, else 0.", value=0
            )
            return
        yield GaugeMetricFamily(
            "threadbox_store_up", "1 when the store answered this scrape, else 0.", value=1
        )
        yield GaugeMetricFamily(
            "threadbox_view_lag_events",
            "Events of the log the views have not applied yet (long transactions delay them).",
            value=status.lag,
        )
        if status.oldest_transaction_seconds is not None:
            yield GaugeMetricFamily(
                "threadbox_oldest_transaction_age_seconds",
                "PostgreSQL: the age of the oldest running transaction, which holds back what "
                "followers may read (the lag waits on it).",
                value=status.oldest_transaction_seconds,
            )
