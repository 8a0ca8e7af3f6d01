"""Commands on a big pending queue: reorder, batch freeze and fold at 2.5k, 5k and 10k pending.

    python benchmarks/bench_queue_sizes.py [--url memory://] [--sizes 2500,5000,10000] [--repeat 3]
    python benchmarks/bench_queue_sizes.py --url sqlite:///./bench.db

Per size n, in a store of its own (so that no size runs on a heap or a database the others
grew), on a thread holding n pending messages (delivered 100 a call, untimed):
a reorder of the whole queue (reversed), a `new_run` freeze of the whole batch, the fold of
the thread's log (n deliveries in n/100 events, the reorder, the freeze: `fold` of the decoded
events, the store's read untimed) and the views' catch-up over those events. Each operation is
repeated on a fresh thread (``--repeat``) and its median kept. The baseline, measured in the same
run, is a plain deliver of one message to a short thread; every time is shown as a multiple of
it, and the ratio 10k / 2.5k of each operation says how it grows (linear: ~4; quadratic: ~16).
Each run uses a store of its own, removed at the end.
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import threadbox
from common import Timings, console, own_store, rows_table, write_results
from threadbox import DeliveryBoundary, Mailbox, Message, Settings
from threadbox.domain.thread import fold

BATCH = 100  # messages per untimed delivery while the queue is built
T = TypeVar("T")


def message(n: int) -> Message:
    return Message.user(f"queued message {n}: please also check the second report")


def plain_delivers(mailbox: Mailbox, calls: int) -> Timings:
    """The baseline: deliver one message to a thread kept short (drained every 50, untimed)."""
    timings = Timings("deliver (1 message)")
    thread_id = f"base-{uuid.uuid4()}"
    for i in range(calls):
        timings.time(mailbox.deliver, thread_id, [message(i)])
        if i % 50 == 49:
            run_id = str(uuid.uuid4())
            mailbox.freeze(thread_id, DeliveryBoundary.NEW_RUN, run_id)
            mailbox.finish_run(thread_id, run_id)
    return timings


def queue_of(mailbox: Mailbox, n: int) -> str:
    """A new thread holding ``n`` pending messages."""
    thread_id = f"q{n}-{uuid.uuid4()}"
    for start in range(0, n, BATCH):
        mailbox.deliver(thread_id, [message(k) for k in range(start, min(n, start + BATCH))])
    return thread_id


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """``call()`` and its seconds, after a collection (no garbage of the set-up is timed)."""
    gc.collect()
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def one_size(url: str, n: int) -> dict[str, float]:
    """Seconds of each operation on a queue of ``n``, once, in a store of its own."""
    settings = Settings(max_pending=n)
    with own_store(url, "queue") as own, threadbox.open(own, settings=settings) as mailbox:
        thread_id = queue_of(mailbox, n)
        mailbox.views.catch_up()
        order = [e.pending_id for e in reversed(mailbox.pending(thread_id))]
        _, reorder = timed(lambda: mailbox.reorder(thread_id, order))
        run_id = f"run-{uuid.uuid4()}"
        result, freeze = timed(lambda: mailbox.freeze(thread_id, DeliveryBoundary.NEW_RUN, run_id))
        assert len(result.committed) == n
        _, views = timed(mailbox.views.catch_up)
        events = mailbox.store.load(thread_id)
        folded, folding = timed(lambda: fold(thread_id, events))
        assert folded.last_seq == n and len(folded.pending) == 0
    return {"reorder": reorder, "batch freeze": freeze, "fold": folding, "views catch-up": views}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="memory://")
    parser.add_argument("--sizes", default="2500,5000,10000")
    parser.add_argument("--repeat", type=int, default=3, help="fresh threads per size")
    parser.add_argument("--baseline-calls", type=int, default=300)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {"url": args.url, "sizes": sizes, "repeat": args.repeat}
    with own_store(args.url, "base") as url, threadbox.open(url) as mailbox:
        console.print(f"stores beside: {args.url}")
        with console.status("baseline: plain deliver"):
            baseline = plain_delivers(mailbox, args.baseline_calls)
    base = baseline.median
    fastest: dict[int, dict[str, float]] = {}  # the fastest run's, per operation
    for n in sizes:
        with console.status(f"{n:,} pending, {args.repeat} times"):
            runs = [one_size(args.url, n) for _ in range(args.repeat)]
        fastest[n] = {op: min(r[op] for r in runs) for op in runs[0]}
    operations = list(fastest[sizes[0]])
    header = ["operation", *(f"{n:,} ms" for n in sizes), *(f"{n:,} / base" for n in sizes)]
    rows: list[list[Any]] = [
        [op, *(fastest[n][op] * 1000 for n in sizes), *(fastest[n][op] / base for n in sizes)]
        for op in operations
    ]
    title = f"on {args.url.split(':')[0]}, fastest of {args.repeat}; baseline deliver median "
    title += f"{base * 1000:.3f} ms"
    console.print(rows_table(title, header, rows))
    small, large = sizes[0], sizes[-1]
    growth = [[op, fastest[large][op] / fastest[small][op], large / small] for op in operations]
    console.print(
        rows_table(
            f"growth {large:,} / {small:,} (linear: ~{large / small:.0f})",
            ["operation", "time ratio", "size ratio"],
            growth,
        )
    )
    results["baseline_median_ms"] = base * 1000
    results["fastest_ms"] = {str(n): {op: v * 1000 for op, v in fastest[n].items()} for n in sizes}
    results["growth"] = {op: ratio for op, ratio, _ in growth}
    write_results("bench_queue_sizes", results)


if __name__ == "__main__":
    main()
