"""Background catch-up: a daemon thread that keeps the views following the log.

It wakes on PostgreSQL's NOTIFY (the event recorder notifies on every insert), with a timeout
as a fallback, or polls on SQLite and memory. A failing catch-up is logged, kept visible in
``status()`` and raised by ``stop()``; it is retried at the same event, never skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

log = logging.getLogger("threadbox.views")


class Wakeup(Protocol):
    def wait(self, stop: threading.Event) -> None:
        """Return when new events may be in the log, when ``stop`` is set, or after a while."""

    def close(self) -> None: ...


class PollingWakeup:
    def __init__(self, interval: float) -> None:
        self.interval = interval

    def wait(self, stop: threading.Event) -> None:
        stop.wait(self.interval)

    def close(self) -> None:
        return None


class ListeningWakeup:
    """LISTEN on the events channel; the first wait only starts listening, so no insert made
    after it can be missed by the catch-up that follows."""

    def __init__(self, conninfo: str, channel: str, fallback: float) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.fallback = fallback
        self._conn: psycopg.Connection[Any] | None = None

    def wait(self, stop: threading.Event) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, autocommit=True)
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            return
        try:
            for _ in self._conn.notifies(timeout=self.fallback, stop_after=1):
                pass
        except psycopg.Error:
            self.close()  # reconnect and listen again on the next wait
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class FollowerFailed(RuntimeError):
    """The background catch-up's latest attempt failed; the cause is chained."""


@dataclass(frozen=True)
class FollowerStatus:
    running: bool
    position: int
    failures: int
    last_error: BaseException | None


class Follower:
    def __init__(
        self, catch_up: Callable[[], int], wakeup: Wakeup, retry_interval: float = 1.0
    ) -> None:
        self._catch_up = catch_up
        self._wakeup = wakeup
        self._retry = retry_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="threadbox-views", daemon=True)
        self._position = 0
        self._failures = 0
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def status(self) -> FollowerStatus:
        return FollowerStatus(self._thread.is_alive(), self._position, self._failures, self._error)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; raise ``FollowerFailed`` if the latest catch-up had failed."""
        self._stop.set()
        self._thread.join(timeout)
        self._wakeup.close()
        if self._error is not None:
            raise FollowerFailed(f"views catch-up failed: {self._error}") from self._error

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._position = self._catch_up()
                self._error = None
                self._wakeup.wait(self._stop)
            except Exception as error:
                self._error = error
                self._failures += 1
                log.exception("views catch-up failed at position %d; retrying", self._position)
                self._stop.wait(self._retry)
