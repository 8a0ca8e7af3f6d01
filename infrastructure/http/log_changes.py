"""Wakes the open event streams when new events reach the views.

The views follower (``threadbox serve``) wakes on PostgreSQL's NOTIFY, or polls SQLite: one
watcher of the log per process, instead of one query loop per connected client.
"""

from __future__ import annotations

import asyncio


class LogChanges:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self.generation = 0  # bumped on every change: a stream notes it before reading the log
        self.open_streams = 0  # event streams being served now (on the event loop: no lock)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, position: str) -> None:
        """From any thread: the views moved to ``position``."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self.generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once a change after generation ``seen`` happened, or after ``timeout``."""
        if self.generation != seen:
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return
