"""Background catch-up: a daemon thread that keeps the views following the log.

It waits on a ``Wakeup``: PostgreSQL's NOTIFY (``threadbox.infrastructure.views.listening``),
or polling on SQLite and memory. A failing catch-up is logged, kept visible in ``status()`` and
raised by ``stop()``; it is retried at the same event, never skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .ports import Position, Wakeup

log = logging.getLogger("threadbox.views")


class PollingWakeup:
    """Wakes every ``interval`` seconds (SQLite and memory have no notifications)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def wait(self, stop: threading.Event) -> None:
        """Return after ``interval`` seconds, or at once when ``stop`` is set."""
        stop.wait(self.interval)

    def close(self) -> None:
        """Nothing to release."""
        return None


class FollowerFailed(RuntimeError):
    """The background catch-up's latest attempt failed; the cause is chained."""


@dataclass(frozen=True)
class FollowerStatus:
    """Is the follower running, where is it, how often has it failed, and its last error."""

    running: bool
    position: Position
    failures: int
    last_error: BaseException | None


class Follower:
    """A daemon thread: catch up, wait for news, again, until stopped."""

    def __init__(
        self, catch_up: Callable[[], Position], wakeup: Wakeup, retry_interval: float = 1.0
    ) -> None:
        self._catch_up = catch_up
        self._wakeup = wakeup
        self._retry = retry_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="threadbox-views", daemon=True)
        self._position: Position = ""
        self._failures = 0
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start following."""
        self._thread.start()

    def status(self) -> FollowerStatus:
        """What the follower is doing now."""
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
                log.exception("views catch-up failed after position %r; retrying", self._position)
                self._stop.wait(self._retry)


class PollingDoorbell:
    """A ``Doorbell`` that rings every ``interval`` seconds (SQLite and memory have no
    notifications): a subscriber reads again at most ``interval`` after a commit."""

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def listen(self) -> None:
        """Nothing to start."""
        return None

    def wait(self, timeout: float) -> bool:
        """Sleep ``interval`` seconds, or ``timeout`` if that is shorter (then read again)."""
        time.sleep(max(0.0, min(self.interval, timeout)))
        return True

    def close(self) -> None:
        """Nothing to release."""
        return None
