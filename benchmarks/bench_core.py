"""Per-operation cost of threadbox against a bare eventsourcing insert, measured in the same run.

    python benchmarks/bench_core.py [--url postgresql://postgres@127.0.0.1:5432/test] [--n 2000]
    python benchmarks/bench_core.py --url sqlite:///./bench.db
    python benchmarks/bench_core.py --long            # plus a 100,000-event thread

Each run uses a store of its own (a PostgreSQL schema or SQLite file), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import threadbox
from common import (
    DEFAULT_PG,
    Timings,
    console,
    own_store,
    progress_bar,
    rows_table,
    timings_table,
    write_results,
)
from eventsourcing.persistence import StoredEvent
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message
from threadbox.domain import commands as c
from threadbox.domain.decide import decide
from threadbox.domain.events import AnyThreadEvent, ThreadEvent
from threadbox.domain.thread import Thread, apply_event
from threadbox.infrastructure.codec import encode_event, stream_id

TEXT = "Please look at the failing build and tell me which test broke it."  # a typical turn


def message() -> Message:
    return Message.user(TEXT)


def library_insert(recorder: Any) -> Any:
    """eventsourcing's own ``insert_events`` of the store's recorder class, bound to it: the
    baseline stays the library's insert (its pipelined transaction on PostgreSQL) although the
    store's recorder writes in one statement of its own (ADR 0024)."""
    for cls in type(recorder).__mro__:
        if cls.__module__.startswith("eventsourcing.") and "insert_events" in vars(cls):
            return vars(cls)["insert_events"].__get__(recorder)
    raise TypeError(f"{type(recorder).__name__} has no eventsourcing insert_events")


def bare_saves(mailbox: Mailbox, n: int, *, one_stream: bool) -> Timings:
    """(a) eventsourcing's own insert of one ~300-byte event: the baseline."""
    name = "bare save, one stream" if one_stream else "bare save, new stream each"
    timings = Timings(name)
    state = os.urandom(150).hex().encode()  # 300 bytes, like a one-message delivery
    stream = uuid.uuid4()
    recorder = mailbox.store.events  # type: ignore[attr-defined]
    insert = library_insert(recorder)
    for version in range(1, n + 1):
        event = StoredEvent(
            originator_id=stream if one_stream else uuid.uuid4(),
            originator_version=version if one_stream else 1,
            topic="bench:Event",
            state=state,
        )
        timings.time(insert, [event])
    return timings


def delivers(mailbox: Mailbox, thread_id: str, n: int, name: str) -> Timings:
    """(b) deliver one message; the queue is drained (untimed) so it stays short."""
    timings = Timings(name)
    for i in range(n):
        timings.time(mailbox.deliver, thread_id, [message()])
        if i % 50 == 49:
            run_id = str(uuid.uuid4())
            mailbox.freeze(thread_id, DeliveryBoundary.NEW_RUN, run_id)
            mailbox.finish_run(thread_id, run_id)
    return timings


def freezes(mailbox: Mailbox, n: int) -> Timings:
    """(c) next_step freezes of a running run, each committing one message (only freeze timed)."""
    timings = Timings("freeze (next_step, 1 message)")
    thread_id = f"freeze-{uuid.uuid4()}"
    run_id = str(uuid.uuid4())
    mailbox.deliver(thread_id, [message()])
    mailbox.freeze(thread_id, DeliveryBoundary.NEW_RUN, run_id)
    for _ in range(n):
        mailbox.deliver(thread_id, [message()], DeliveryMode.next_step())
        result = timings.time(mailbox.freeze, thread_id, DeliveryBoundary.NEXT_STEP, run_id)
        assert len(result.committed) == 1
    return timings


def build_thread(
    mailbox: Mailbox, thread_id: str, events: int, batch: int, every_snapshot: bool = True
) -> tuple[float, str]:
    """A thread of ``events`` events made by the real decider, saved ``batch`` events a write,
    with the snapshots the mailbox would have saved (or only the last one: each snapshot holds
    the whole state, so 500 of a 100,000-event thread would be gigabytes). Returns the seconds
    taken and its run."""
    start = time.perf_counter()
    state = Thread(thread_id)
    run_id = str(uuid.uuid4())
    interval = mailbox.settings.snapshot_interval
    commands: list[Any] = [c.Deliver((message().with_id(str(uuid.uuid4())),), DeliveryMode())]
    commands.append(c.Freeze(DeliveryBoundary.NEW_RUN, run_id))
    step = 0
    with progress_bar(f"building a {events:,}-event thread", events) as advance:
        while state.version < events:
            written: list[AnyThreadEvent] = []
            before = state.version
            while len(written) < batch and state.version < events:
                if commands:
                    command = commands.pop(0)
                elif step % 2 == 0:
                    m = message().with_id(str(uuid.uuid4()))
                    command = c.Deliver((m,), DeliveryMode.next_step())
                else:
                    command = c.Freeze(DeliveryBoundary.NEXT_STEP, run_id)
                step += 1
                decided = decide(state, command, datetime.now(UTC))
                for event in decided:
                    apply_event(state, event)
                written.extend(decided)
            mailbox.store.append(written)
            crossed = state.version // interval > before // interval
            if crossed and (every_snapshot or state.version >= events):
                mailbox.store.save_snapshot(state)
            advance(state.version)
    return time.perf_counter() - start, run_id


def long_vs_new(mailbox: Mailbox, long_id: str, run_id: str, n: int, cold_n: int) -> list[Timings]:
    """(d) deliver on the long thread vs on a new one, warm (cached state) and cold (a fresh
    Mailbox on the same store: snapshot + tail). Each delivery is then consumed (untimed) by a
    next_step freeze, so neither queue grows."""
    new_id, new_run = f"new-{uuid.uuid4()}", str(uuid.uuid4())
    mailbox.deliver(new_id, [message()])
    mailbox.freeze(new_id, DeliveryBoundary.NEW_RUN, new_run)
    step = DeliveryMode.next_step()
    warm_long = Timings("deliver, long thread, warm")
    warm_new = Timings("deliver, new thread, warm")
    for _ in range(n):
        for thread_id, run, timings in ((long_id, run_id, warm_long), (new_id, new_run, warm_new)):
            timings.time(mailbox.deliver, thread_id, [message()], step)
            mailbox.freeze(thread_id, DeliveryBoundary.NEXT_STEP, run)
    cold_long = Timings("deliver, long thread, cold")
    cold_new = Timings("deliver, new thread, cold")
    for _ in range(cold_n):
        fresh = Mailbox(mailbox.store, mailbox.views, mailbox.settings)
        cold_long.time(fresh.deliver, long_id, [message()], step)
        mailbox.freeze(long_id, DeliveryBoundary.NEXT_STEP, run_id)
        fresh = Mailbox(mailbox.store, mailbox.views, mailbox.settings)
        cold_new.time(fresh.deliver, f"new-{uuid.uuid4()}", [message()], step)
    return [warm_long, warm_new, cold_long, cold_new]


def reads(mailbox: Mailbox, thread_id: str, n: int, label: str) -> list[Timings]:
    last = mailbox.thread(thread_id).committed_count
    mailbox.committed(thread_id, after_seq=max(0, last - 50), limit=50)  # views caught up
    pending = Timings(f"pending(), {label}")
    tail = Timings(f"committed(last 50), {label}")
    for _ in range(n):
        pending.time(mailbox.pending, thread_id)
        tail.time(mailbox.committed, thread_id, after_seq=max(0, last - 50), limit=50)
    return [pending, tail]


def ratio_rows(pairs: Sequence[tuple[str, Timings, Timings, float | None]]) -> list[list[Any]]:
    rows = []
    for name, top, bottom, target in pairs:
        ratio = top.median / bottom.median
        verdict = "" if target is None else ("met" if ratio <= target else "MISSED")
        rows.append(
            [name, ratio, top.mean / bottom.mean, "" if target is None else target, verdict]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_PG)
    parser.add_argument("--n", type=int, default=2000, help="timed calls per operation")
    parser.add_argument("--events", type=int, default=5000, help="events of the long thread")
    parser.add_argument("--long", action="store_true", help="also a 100,000-event thread")
    parser.add_argument("--long-events", type=int, default=100_000)
    args = parser.parse_args()
    n, cold_n = args.n, max(20, args.n // 4)
    results: dict[str, Any] = {"url": args.url, "n": n}
    # The bare saves go to a store of their own: their events are not threadbox events.
    with (
        own_store(args.url, "bare") as bare_url,
        threadbox.open(bare_url) as bare,
        console.status("bare saves"),
    ):
        baseline = bare_saves(bare, n, one_stream=True)
        new_streams = bare_saves(bare, n, one_stream=False)
    with own_store(args.url) as url, threadbox.open(url) as mailbox:
        console.print(f"store: {url}")
        sample = encode_event(_one_delivery(mailbox))
        console.print(f"a one-message MessagesDelivered event is {len(sample.state)} bytes")
        steady = f"steady-{uuid.uuid4()}"
        mailbox.deliver(steady, [message()])
        with console.status("deliver"):
            deliver = delivers(mailbox, steady, n, "deliver (1 message, existing thread)")
        with console.status("freeze"):
            freeze = freezes(mailbox, n)
        long_id = f"long-{uuid.uuid4()}"
        built, run_id = build_thread(mailbox, long_id, args.events, batch=100)
        with console.status("long thread vs new thread"):
            long_new = long_vs_new(mailbox, long_id, run_id, n // 2, cold_n)
        core = [baseline, new_streams, deliver, freeze, *long_new]
        console.print(timings_table(f"per call, {mailbox.store.kind}", core, baseline))
        ratios = [
            ("deliver / bare save", deliver, baseline, 1.5),
            ("freeze / bare save", freeze, baseline, None),
            ("long / new thread, warm", long_new[0], long_new[1], 2.0),
            ("long / new thread, cold", long_new[2], long_new[3], 2.0),
        ]
        header = ["ratio", "of medians", "of means", "target", ""]
        console.print(rows_table("ratios", header, ratio_rows(ratios)))
        results["timings"] = {t.name: t.summary() for t in core}
        results["ratios"] = {name: a.median / b.median for name, a, b, _ in ratios}
        results["long_thread"] = {"events": args.events, "build_seconds": built}
        if args.long:
            results["long"] = long_life(mailbox, args.long_events, n, cold_n)
    write_results(f"bench_core-{mailbox.store.kind}", results)


def _one_delivery(mailbox: Mailbox) -> ThreadEvent:
    state = Thread("size")
    command = c.Deliver((message().with_id(str(uuid.uuid4())),), DeliveryMode())
    return decide(state, command, datetime.now(UTC))[-1]


def long_life(mailbox: Mailbox, events: int, n: int, cold_n: int) -> dict[str, Any]:
    """(5) a 100,000-event thread: a command warm and cold, and reads, vs a new thread."""
    long_id = f"life-{uuid.uuid4()}"
    built, run_id = build_thread(mailbox, long_id, events, batch=1000, every_snapshot=False)
    snapshot = mailbox.store.snapshots.select_events(  # type: ignore[attr-defined]
        stream_id(long_id), desc=True, limit=1
    )[0]
    console.print(f"its snapshot is {len(snapshot.state):,} bytes")
    console.print(f"built {events:,} events in {built:.1f} s")
    fresh = Mailbox(mailbox.store, mailbox.views, mailbox.settings)
    start = time.perf_counter()
    fresh.pending(long_id)
    first_load = time.perf_counter() - start
    start = time.perf_counter()
    mailbox.views.catch_up()
    catch_up = time.perf_counter() - start
    commands = long_vs_new(mailbox, long_id, run_id, n // 2, cold_n)
    new_id = f"new-{uuid.uuid4()}"
    mailbox.deliver(new_id, [message()])
    mailbox.freeze(new_id, DeliveryBoundary.NEW_RUN, str(uuid.uuid4()))
    read = [*reads(mailbox, long_id, n // 2, "long"), *reads(mailbox, new_id, n // 2, "new")]
    console.print(timings_table(f"{events:,}-event thread", commands + read, commands[1]))
    ratios = [
        ("long / new, deliver warm", commands[0], commands[1], 2.0),
        ("long / new, deliver cold", commands[2], commands[3], 2.0),
        ("long / new, pending()", read[0], read[2], 2.0),
        ("long / new, committed(last 50)", read[1], read[3], 2.0),
    ]
    header = ["ratio", "of medians", "of means", "target", ""]
    console.print(rows_table("ratios, long life", header, ratio_rows(ratios)))
    facts = [
        ["build (decider, 1000 events a write)", built],
        ["first load in a fresh Mailbox (snapshot + tail)", first_load],
        ["views catch-up from 0 in this process", catch_up],
    ]
    console.print(rows_table("one-off costs, seconds", ["what", "s"], facts))
    return {
        "events": events,
        "build_seconds": built,
        "snapshot_bytes": len(snapshot.state),
        "first_load_seconds": first_load,
        "views_catch_up_seconds": catch_up,
        "timings": {t.name: t.summary() for t in commands + read},
        "ratios": {name: a.median / b.median for name, a, b, _ in ratios},
    }


if __name__ == "__main__":
    main()
