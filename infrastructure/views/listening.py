"""Wakes the views' background catch-up on PostgreSQL NOTIFY: the store notifies its schema's
channel after its writes commit (``threadbox.infrastructure.pg_wakeup``).

A burst of writes is one wake-up, not one per write: after the first notification the wakeup
lingers a moment (``linger``) and then drains every notification that arrived meanwhile, so the
catch-up that follows applies the whole burst in one transaction (ADR 0007, "Batched view
maintenance"). Views lag writes by about ``linger`` under load; a read that must see a write
still catches up itself (``Views.catch_up``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import sql
from threadbox.domain.errors import StoreUnavailable

from ..faults import translating

LINGER = 0.02  # seconds a wake-up waits for the rest of a burst before the catch-up runs


class _Listener:
    """A connection of its own that LISTENs on the events channel, made when it has none."""

    def __init__(self, conninfo: str, channel: str, fallback: float) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.fallback = fallback
        self._conn: psycopg.Connection[Any] | None = None

    def _listening(self) -> bool:
        """Connect and LISTEN unless already listening; whether it had to."""
        if self._conn is not None and not self._conn.closed:
            return False
        self._conn = psycopg.connect(self.conninfo, autocommit=True)
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return True

    def close(self) -> None:
        """Close the listening connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ListeningWakeup(_Listener):
    """LISTEN on the events channel; the first wait only starts listening, so no insert made
    after it can be missed by the catch-up that follows."""

    def __init__(
        self, conninfo: str, channel: str, fallback: float, linger: float = LINGER
    ) -> None:
        super().__init__(conninfo, channel, fallback)
        self.linger = linger
        self.wakes = 0  # waits that returned on a notification
        self.notifications = 0  # notifications received (several per wake under load)

    def wait(self, stop: threading.Event) -> None:
        """Return on a notification (then after ``linger``, with every notification that came
        meanwhile consumed), after ``fallback`` seconds, or once ``stop`` is set."""
        if self._listening():
            return
        try:
            received = self._receive(self.fallback, 1)
            if received:
                self.wakes += 1
                if self.linger > 0 and not stop.wait(self.linger):
                    self._receive(0, None)  # the rest of the burst: one catch-up for all of it
        except psycopg.Error:
            self.close()  # reconnect and listen again on the next wait
            raise

    def _receive(self, timeout: float, stop_after: int | None) -> int:
        """Consume notifications (at most ``stop_after``, waiting up to ``timeout``)."""
        assert self._conn is not None
        received = sum(1 for _ in self._conn.notifies(timeout=timeout, stop_after=stop_after))
        self.notifications += received
        return received


class ListeningDoorbell(_Listener):
    """A subscriber's ``Doorbell`` on PostgreSQL: LISTEN on the events channel from its own
    connection; a notification missed (connection lost) is made up by a poll every
    ``fallback`` seconds."""

    def __init__(self, conninfo: str, channel: str, fallback: float) -> None:
        super().__init__(conninfo, channel, fallback)
        self._rang = time.monotonic()  # when the caller was last told to read

    @translating
    def listen(self) -> None:
        """Connect and LISTEN (once); ``StoreUnavailable`` when the server cannot be reached."""
        if self._listening():
            self._rang = time.monotonic()

    def wait(self, timeout: float) -> bool:
        """``True`` on a notification, or once ``fallback`` seconds have passed since the last
        ``True``; ``False`` after ``timeout`` seconds without either."""
        due = self.fallback - (time.monotonic() - self._rang)
        if self._conn is None or self._conn.closed:
            try:
                self.listen()
            except StoreUnavailable:
                time.sleep(max(0.0, min(timeout, self.fallback)))
                return True  # the server is away: the caller reads (and raises) next
            return True  # listening anew: the caller reads again, so nothing is missed
        conn = self._conn
        rang = False
        try:
            for _ in conn.notifies(timeout=max(0.0, min(timeout, due)), stop_after=1):
                rang = True
        except psycopg.Error:
            self.close()
            rang = True
        if rang or time.monotonic() - self._rang >= self.fallback:
            self._rang = time.monotonic()
            return True
        return False
