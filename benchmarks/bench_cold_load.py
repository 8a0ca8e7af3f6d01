"""The first command of a fresh Mailbox on a long thread vs on a 2-event thread (ADR 0010).

    python benchmarks/bench_cold_load.py [--urls sqlite:///./bench.db,postgresql://...] [--n 200]

Per store: a thread of ``--events`` events built by the real decider (bench_core.build_thread),
then, ``--n`` times, a fresh Mailbox on the same store delivers one message to it (cold: its
snapshot and the tail after it), and another fresh Mailbox delivers one to a thread of 2 events.
Each long-thread delivery is consumed (untimed) by a next_step freeze, so the queue stays short;
the snapshots are the ones the mailboxes write. Target: cold long / cold 2-event <= 1.3.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import threadbox
from bench_core import build_thread, message, ratio_rows
from common import DEFAULT_PG, Timings, console, own_store, rows_table, timings_table, write_results
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox
from threadbox.infrastructure.codec import stream_id

TARGET = 1.3


def cold_firsts(mailbox: Mailbox, long_id: str, run_id: str, n: int) -> list[Timings]:
    """A fresh Mailbox's first command, on the long thread and on a 2-event thread."""
    step = DeliveryMode.next_step()
    long, short = Timings("first deliver, long thread"), Timings("first deliver, 2-event thread")
    for _ in range(n):
        fresh = Mailbox(mailbox.store, mailbox.views, mailbox.settings)
        long.time(fresh.deliver, long_id, [message()], step)
        fresh.freeze(long_id, DeliveryBoundary.NEXT_STEP, run_id)
        short_id = f"short-{uuid.uuid4()}"
        mailbox.deliver(short_id, [message()])  # ThreadOpened, MessagesDelivered
        fresh = Mailbox(mailbox.store, mailbox.views, mailbox.settings)
        short.time(fresh.deliver, short_id, [message()], step)
    return [long, short]


def one_store(url: str, events: int, n: int) -> dict[str, Any]:
    with own_store(url) as own, threadbox.open(own) as mailbox:
        long_id = f"long-{uuid.uuid4()}"
        built, run_id = build_thread(mailbox, long_id, events, batch=1000, every_snapshot=False)
        snapshot = mailbox.store.snapshots.select_events(  # type: ignore[attr-defined]
            stream_id(long_id), desc=True, limit=1
        )[0]
        with console.status(f"cold first commands, {mailbox.store.kind}"):
            long, short = cold_firsts(mailbox, long_id, run_id, n)
        kind = mailbox.store.kind
        console.print(timings_table(f"cold first command, {kind}", [long, short], short))
        pairs = [(f"cold long / 2-event thread, {kind}", long, short, TARGET)]
        header = ["ratio", "of medians", "of means", "target", ""]
        console.print(rows_table(f"ratios, {kind}", header, ratio_rows(pairs)))
        console.print(f"{events:,} events built in {built:.1f} s; snapshot {len(snapshot.state)} B")
        return {
            "events": events,
            "snapshot_bytes": len(snapshot.state),
            "timings": {t.name: t.summary() for t in (long, short)},
            "ratio": long.median / short.median,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", default=f"sqlite:///./bench.db,{DEFAULT_PG}")
    parser.add_argument("--n", type=int, default=200, help="timed first commands per thread")
    parser.add_argument("--events", type=int, default=20_000, help="events of the long thread")
    args = parser.parse_args()
    results: dict[str, Any] = {"n": args.n}
    for url in args.urls.split(","):
        results[url.split(":", 1)[0]] = one_store(url, args.events, args.n)
    write_results("bench_cold_load", results)


if __name__ == "__main__":
    main()
