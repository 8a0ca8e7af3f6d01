"""Wake-ups on PostgreSQL after commit, coalesced per process (ADR 0009).

eventsourcing's recorder sends ``NOTIFY`` inside every writing transaction; PostgreSQL then holds
a server-wide lock through each such commit, so notifying writers commit one at a time. The store
writes with ``QuietRecorder`` instead (``CommitOrderRecorder`` without that ``NOTIFY``), and a
``CommitNotifier`` sends one ``NOTIFY`` on the schema's channel after the commits, from a thread
and connection of its own: the commits made while one is being sent, or within ``NOTIFY_INTERVAL``
of the last one sent, share the next one (a commit after a quiet spell is announced at once). A
listener that misses one (connection lost) still polls (``ListeningWakeup``'s fallback).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from psycopg import sql

from .pg_recorder import CommitOrderRecorder

log = logging.getLogger("threadbox.store")

# Seconds between two NOTIFYs of one process at least: under load each NOTIFY (a transaction of
# the server's, and ~0.05 ms of the writer's CPU) covers the commits of this span, not one or two;
# a follower hears of a commit at most this much later than it would otherwise. The views'
# follower lingers 20 ms after a wake-up anyway (ADR 0007).
NOTIFY_INTERVAL = 0.005

QUIET_RECORDER_TOPIC = "threadbox.infrastructure.pg_wakeup:QuietRecorder"
"""eventsourcing's ``APPLICATION_RECORDER_TOPIC`` for ``QuietRecorder`` itself (the store builds
its subclass with the id table, ``id_table.ClaimingPostgresRecorder``)."""


def events_channel(schema: str) -> str:
    """The channel a schema's writers notify after commit (one per schema, so that followers of
    other schemas of the database are not woken)."""
    return f"threadbox_events.{schema}"


class QuietRecorder(CommitOrderRecorder):
    """``CommitOrderRecorder`` without the ``NOTIFY`` in the writing transaction (the store's
    ``CommitNotifier`` sends it after commit)."""

    def _notify_channel(self, curs: Any) -> None:
        return None


class CommitNotifier:
    """After ``committed()``, one ``NOTIFY`` on ``channel`` from a daemon thread, shared by every
    commit made until it is sent, and sent at most every ``interval`` seconds. ``close()`` sends
    what is due, then stops."""

    def __init__(self, conninfo: str, channel: str, interval: float = NOTIFY_INTERVAL) -> None:
        self.conninfo = conninfo
        self.statement = sql.SQL("NOTIFY {}").format(sql.Identifier(channel)).as_bytes()
        self.interval = interval
        self._due = threading.Event()
        self._stop = threading.Event()  # set by close: ends a pause early
        self._closing = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.sent = 0  # NOTIFYs sent

    def committed(self) -> None:
        """A write committed: notify soon (without waiting for it). A NOTIFY already due, not
        yet sent, covers this commit too: it is sent after the flag is cleared, which is after
        this check."""
        if self._due.is_set():
            return
        if self._thread is None:
            with self._lock:
                if self._closing:
                    return
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="threadbox-notify", daemon=True
                    )
                    self._thread.start()
        self._due.set()

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while True:
                self._due.wait()  # quiet: the next commit wakes the thread, and is sent at once
                # Busy: the commits of each interval share the next NOTIFY, and the thread wakes
                # by itself (a commit that finds the flag set wakes nothing). A commit made
                # while a NOTIFY is on its way sets the flag again: it gets the next one, at
                # close too.
                while self._due.is_set():
                    self._due.clear()
                    conn = self._notify(conn)
                    if not self._closing:
                        self._stop.wait(self.interval)
                if self._closing:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _notify(self, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any] | None:
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(self.conninfo, autocommit=True)
            conn.execute(self.statement)
            self.sent += 1
            return conn
        except psycopg.Error:
            # Followers still poll: they learn of the commit within their fallback interval.
            self.failures += 1
            log.warning("could not NOTIFY after commit; followers will poll", exc_info=True)
            if conn is not None:
                conn.close()
            return None

    def close(self, timeout: float = 5.0) -> None:
        """Send the notification still due, then stop the thread."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._stop.set()
        self._due.set()
        if thread is not None:
            thread.join(timeout)
