"""An event-loop lag probe: a task that sleeps 1 ms at a time and records the longest gap
between its ticks while a coroutine runs (what a stall of the loop's thread shows as)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import threadbox
from threadbox import Mailbox, Message

TICK = 0.001


@dataclass(frozen=True)
class Lag:
    """The longest gap between two ticks, and how long the probed work took (seconds)."""

    max_gap: float
    duration: float
    ticks: int


async def probe(work: Callable[[], Awaitable[Any]]) -> Lag:
    """Run ``work()`` with a 1 ms ticker beside it: the ticker's longest gap while it ran."""
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            gaps.append(now - last - TICK)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is ticking
    gaps.clear()
    started = time.perf_counter()
    await work()
    duration = time.perf_counter() - started
    await asyncio.sleep(0.005)
    running = False
    await task
    return Lag(max(gaps, default=duration), duration, len(gaps))


def write_behind(target: Mailbox, thread_id: str, runs: int) -> int:
    """``runs`` runs on ``thread_id`` appended to ``target``'s store as another process's
    writes would be: straight into the log, the views not caught up (1 + 5 * runs events)."""
    with threadbox.open("memory://") as source:
        for i in range(runs):
            run = f"r{i}"
            source.submit(thread_id, [Message.user(f"question {i}", id=f"u{i}")], None, run)
            source.commit_output(thread_id, run, [Message.assistant(f"answer {i}", id=f"a{i}")])
            source.finish_run(thread_id, run)
        archived = source.store.archived(thread_id)  # type: ignore[attr-defined]
    for start in range(0, len(archived), 1000):
        target.store.append_archived(archived[start : start + 1000])  # type: ignore[attr-defined]
    return len(archived)
