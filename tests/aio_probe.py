"""An event-loop lag probe: a task that sleeps 1 ms at a time and records the longest gap
between its ticks while a coroutine runs (what a stall of the loop's thread shows as)."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from long_thread_support import long_thread
from threadbox import Mailbox

TICK = 0.001


@dataclass(frozen=True)
class Lag:
    """What a probe measured (seconds): the longest gap between two ticks; the longest gap
    less the garbage collection inside it (``gc_share``: a collection stops every thread of the
    process, whichever thread made it: not the loop's thread waiting for a call); how long the
    probed work took; the longest collection meanwhile."""

    max_gap: float
    max_gap_without_gc: float
    duration: float
    ticks: int
    max_gc: float

    def __str__(self) -> str:
        return (
            f"max gap {self.max_gap * 1000:.1f} ms ({self.max_gap_without_gc * 1000:.1f} ms "
            f"without GC) over {self.duration * 1000:.0f} ms ({self.ticks} ticks; longest GC "
            f"{self.max_gc * 1000:.1f} ms)"
        )


def overlap(start: float, end: float, intervals: list[tuple[float, float]]) -> float:
    """How much of [start, end] the intervals cover (they do not overlap each other)."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in intervals)


def gc_share(start: float, end: float, collections: list[tuple[float, float]]) -> float:
    """The part of a gap [start, end] due to garbage collection: the collections inside it,
    and after them one GIL switch interval (the thread that collected holds the GIL until the
    interpreter asks it to let go, which the loop's thread then waits for)."""
    inside = overlap(start, end, collections)
    return min(end - start, inside + sys.getswitchinterval()) if inside else 0.0


async def probe(work: Callable[[], Awaitable[Any]]) -> Lag:
    """Run ``work()`` with a 1 ms ticker beside it: the ticker's gaps while it ran."""
    ticks: list[tuple[float, float]] = []
    collections: list[tuple[float, float]] = []
    running = True
    started_gc = 0.0

    def timed(phase: str, info: dict[str, int]) -> None:
        nonlocal started_gc
        if phase == "start":
            started_gc = time.perf_counter()
        else:
            collections.append((started_gc, time.perf_counter()))

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            ticks.append((last, now))
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is ticking
    ticks.clear()
    gc.callbacks.append(timed)
    try:
        started = time.perf_counter()
        await work()
        duration = time.perf_counter() - started
        await asyncio.sleep(0.005)
    finally:
        gc.callbacks.remove(timed)
        running = False
        await task
    gaps = [b - a - TICK for a, b in ticks] or [duration]
    without = [b - a - TICK - gc_share(a, b, collections) for a, b in ticks] or [duration]
    longest_gc = max((b - a for a, b in collections), default=0.0)
    return Lag(max(gaps), max(without), duration, len(ticks), longest_gc)


def write_behind(target: Mailbox, thread_id: str, runs: int) -> int:
    """``runs`` runs on ``thread_id`` appended to ``target``'s store as another process's
    writes would be: straight into the log, the views not caught up (1 + 5 * runs events)."""
    return long_thread(target, thread_id, runs, catch_up=False)
