"""Wakes the views' background catch-up on PostgreSQL NOTIFY: the store notifies its schema's
channel after its writes commit (``threadbox.infrastructure.pg_wakeup``)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql


class ListeningWakeup:
    """LISTEN on the events channel; the first wait only starts listening, so no insert made
    after it can be missed by the catch-up that follows."""

    def __init__(self, conninfo: str, channel: str, fallback: float) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.fallback = fallback
        self._conn: psycopg.Connection[Any] | None = None

    def wait(self, stop: threading.Event) -> None:
        """Return on a notification, or after ``fallback`` seconds."""
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
        """Close the listening connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
