"""Load on PostgreSQL: N processes x M threads running a realistic mix, then an audit of the store.

    python benchmarks/load.py [--processes 4] [--threads 20] [--seconds 20] [--url ...]
    python benchmarks/load.py --scaling            # 1, 2 and 4 processes, with the bare insert rate
    python benchmarks/load.py --restart-postgres   # on a private server, restarted mid-load

In each process half the threads are agent runtimes, each driving the runs of conversations of its
own (freeze at every boundary, commit output, suspend and resume, finish, interrupt); the others
are users delivering, editing, retracting and reordering on any conversation, so writers of one
thread meet across processes. Each process reports its successful commands with their latency and
the message ids it saw delivered or committed; the audit then checks the invariants
(docs/semantics.md §7) and that none of them is missing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import threadbox
from common import (
    DEFAULT_PG,
    Timings,
    console,
    own_store,
    rows_table,
    write_results,
)
from eventsourcing.persistence import StoredEvent
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message, Termination
from threadbox.audit import AuditReport, ThreadAudit, audit
from threadbox.errors import Contention, ThreadboxError

B = DeliveryBoundary
MODES = [
    (DeliveryMode.new_run(), 40),
    (DeliveryMode.next_step(), 30),
    (DeliveryMode.on_natural_end(), 15),
    (DeliveryMode.interrupt(), 15),
]


REJECTED: Any = object()  # what Tally.call returns when the command was refused


def listed(result: Any) -> list[Any]:
    return [] if result is REJECTED else list(result)


@dataclass
class Tally:
    """What one process saw: successful commands, rejections, ids delivered and committed."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    delivered: list[tuple[str, str]] = field(default_factory=list)
    committed: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, op: str, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``command(*args, **kwargs)``, timed; REJECTED when it was refused or gave up."""
        start = time.perf_counter()
        try:
            result = command(*args, **kwargs)
        except Contention:
            with self.lock:
                self.failed["contention"] += 1
            return REJECTED
        except ThreadboxError as e:
            with self.lock:
                self.rejected[f"{op}: {e.code}"] += 1
            return REJECTED
        elapsed = time.perf_counter() - start
        with self.lock:
            self.latencies.setdefault(op, []).append(elapsed)
        return result


def conversation(n: int) -> str:
    return f"conversation-{n:04d}"


def user(
    mb: Mailbox, tally: Tally, conversations: int, deadline: float, rng: random.Random
) -> None:
    while time.time() < deadline:
        tid = conversation(rng.randrange(conversations))
        roll = rng.random()
        if roll < 0.5:
            mode = rng.choices([m for m, _ in MODES], [w for _, w in MODES])[0]
            messages = [Message.user(f"user turn {rng.random()}") for _ in range(rng.randint(1, 2))]
            entries = tally.call("deliver", mb.deliver, tid, messages, mode)
            for entry in listed(entries):
                tally.delivered.append((tid, entry.pending_id))
            continue
        pending = listed(tally.call("pending", mb.pending, tid))
        if not pending:
            continue
        entry = rng.choice(pending)
        if roll < 0.7:
            edited = Message.user(f"edited {rng.random()}", id=entry.pending_id)
            tally.call(
                "edit",
                mb.edit,
                tid,
                entry.pending_id,
                edited,
                expected_revision=entry.revision,
            )
        elif roll < 0.82:
            tally.call(
                "retract",
                mb.retract,
                tid,
                entry.pending_id,
                expected_revision=entry.revision,
            )
        else:
            order = [e.pending_id for e in pending]
            rng.shuffle(order)
            tally.call("reorder", mb.reorder, tid, order)


@dataclass
class Driven:
    """A conversation as its runtime knows it: the runtime alone drives its runs."""

    thread_id: str
    run_id: str | None = None
    waiting: bool = False


def commit_at(mb: Mailbox, tally: Tally, tid: str, boundary: B, run_id: str) -> list[str]:
    """Freeze; the ids it committed (none when nothing was selected or it was rejected)."""
    result = tally.call(f"freeze {boundary.value}", mb.freeze, tid, boundary, run_id)
    if result is REJECTED:
        return []
    tally.committed.extend((tid, m.message.id) for m in result.committed)
    return [m.message.id for m in result.committed]


def runtime(
    mb: Mailbox, tally: Tally, owned: list[str], deadline: float, rng: random.Random
) -> None:
    driven = [Driven(tid) for tid in owned]
    while time.time() < deadline:
        d = rng.choice(driven)
        tid = d.thread_id

        def freeze(boundary: B, run_id: str, tid: str = tid) -> list[str]:
            return commit_at(mb, tally, tid, boundary, run_id)

        if d.run_id is None:
            if freeze(B.NEW_RUN, run := str(uuid.uuid4())):
                d.run_id = run
            continue
        if d.waiting:
            if freeze(B.RESUME_INPUT, d.run_id):
                d.waiting = False
            elif (
                tally.call("finish_run", mb.finish_run, tid, d.run_id, Termination.CANCELLED)
                is not REJECTED
            ):
                d.run_id, d.waiting = None, False
            continue
        roll = rng.random()
        run_id = d.run_id
        if roll < 0.35:
            freeze(B.NEXT_STEP, run_id)
        elif roll < 0.6:
            reply = [Message.assistant(f"step {rng.random()}")]
            out = tally.call("commit_output", mb.commit_output, tid, run_id, reply)
            tally.committed.extend((tid, m.message.id) for m in listed(out))
        elif roll < 0.72:
            if freeze(B.INTERRUPT, run := str(uuid.uuid4())):
                d.run_id = run
        elif roll < 0.8:
            if (
                tally.call("suspend_run", mb.suspend_run, tid, run_id, "needs approval")
                is not REJECTED
            ):
                d.waiting = True
                answer = [Message.user("approved")]
                entries = tally.call(
                    "deliver", mb.deliver, tid, answer, DeliveryMode.resume_input(run_id)
                )
                tally.delivered.extend((tid, e.pending_id) for e in listed(entries))
        elif not freeze(B.ON_NATURAL_END, run_id) and (
            tally.call("finish_run", mb.finish_run, tid, run_id) is not REJECTED
        ):
            d.run_id = None


def run_process(
    url: str,
    index: int,
    processes: int,
    threads: int,
    conversations: int,
    start_at: float,
    seconds: float,
) -> dict[str, Any]:
    """One writer process: ``threads`` threads, half runtimes, until the deadline."""
    runtimes = max(1, threads // 2)
    tally = Tally()
    with threadbox.open(url) as mb:
        workers = []
        for t in range(threads):
            rng = random.Random(index * 1000 + t)
            if t < runtimes:
                slot, slots = index * runtimes + t, processes * runtimes
                owned = [conversation(n) for n in range(conversations) if n % slots == slot]
                target: Any = runtime
                args: tuple[Any, ...] = (mb, tally, owned, start_at + seconds, rng)
            else:
                target, args = user, (mb, tally, conversations, start_at + seconds, rng)
            workers.append(threading.Thread(target=target, args=args))
        time.sleep(max(0.0, start_at - time.time()))  # every process starts together
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return {
            "latencies": tally.latencies,
            "rejected": dict(tally.rejected),
            "failed": dict(tally.failed),
            "delivered": tally.delivered,
            "committed": tally.committed,
            "conflicts": mb.conflicts,
        }


def bare_process(url: str, index: int, threads: int, start_at: float, seconds: float) -> int:
    """Bare eventsourcing inserts of one event, each thread on a stream of its own."""
    with threadbox.open(url) as mb:
        recorder = mb.store.events  # type: ignore[attr-defined]
        counts = [0] * threads

        def insert(slot: int) -> None:
            stream = uuid.uuid4()
            state = b"x" * 300
            while time.time() < start_at + seconds:
                counts[slot] += 1
                recorder.insert_events([StoredEvent(stream, counts[slot], "bench:Event", state)])

        workers = [threading.Thread(target=insert, args=(t,)) for t in range(threads)]
        time.sleep(max(0.0, start_at - time.time()))
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(counts)


def pool_url(url: str, threads: int) -> str:
    """At most 8 connections a process: 4 processes stay well under max_connections."""
    size = min(4, threads)
    return f"{url}{'&' if '?' in url else '?'}pool_size={size}&max_overflow={min(4, threads)}"


def load(
    url: str,
    processes: int,
    threads: int,
    seconds: float,
    restart: Callable[[], None] | None = None,
) -> dict[str, Any]:
    conversations = max(2, processes * max(1, threads // 2) * 2)
    with own_store(url, "load") as store_url:
        threadbox.open(store_url).close()  # tables made once, not raced by the writers
        start_at = time.time() + 3
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            jobs = [
                (
                    pool_url(store_url, threads),
                    p,
                    processes,
                    threads,
                    conversations,
                    start_at,
                    seconds,
                )
                for p in range(processes)
            ]
            pending = pool.starmap_async(run_process, jobs)
            if restart:
                time.sleep(max(0.0, start_at + seconds / 2 - time.time()))
                console.print("restarting PostgreSQL (the private server)")
                restart()
            with console.status(f"{processes} x {threads} writers for {seconds:.0f} s"):
                reports = pending.get()
        with console.status("auditing"), threadbox.open(store_url) as mb:
            store_audit = audit(mb.store, mb.views)
            log_events = mb.store.count_after("")
    with own_store(url, "bare") as bare_url:  # bare events are not threadbox events
        threadbox.open(bare_url).close()
        bare = bare_rate(bare_url, processes, threads, seconds)
    return summarise(reports, store_audit, log_events, bare, processes, threads, seconds)


def bare_rate(url: str, processes: int, threads: int, seconds: float) -> float:
    start_at = time.time() + 3
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool, console.status(f"bare inserts, {processes} processes"):
        jobs = [(pool_url(url, threads), p, threads, start_at, seconds) for p in range(processes)]
        return sum(pool.starmap(bare_process, jobs)) / seconds


def summarise(
    reports: list[dict[str, Any]],
    audit: AuditReport,
    log_events: int,
    bare: float,
    processes: int,
    threads: int,
    seconds: float,
) -> dict[str, Any]:
    everything = Timings("all commands")
    by_op: dict[str, Timings] = {}
    rejected: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    missing: list[str] = []
    for report in reports:
        for op, samples in report["latencies"].items():
            by_op.setdefault(op, Timings(op)).samples.extend(samples)
            everything.samples.extend(samples)
        rejected.update(report["rejected"])
        failed.update(report["failed"])
        for tid, mid in report["delivered"]:
            if audit.fate(tid, mid) is None:
                missing.append(f"delivered {tid}/{mid}")
        for tid, mid in report["committed"]:
            found = audit.audited.get(tid)
            if found is None or (
                mid not in {m for m, f in found.fates.items() if f == "committed"}
                and not _output(found, mid)
            ):
                missing.append(f"committed {tid}/{mid}")
    conflicts = sum(r["conflicts"] for r in reports)
    commands = len(everything.samples) + sum(rejected.values())
    rows = [
        [op, len(t.samples), t.median * 1000, t.percentile(95) * 1000, t.percentile(99) * 1000]
        for op, t in sorted(by_op.items())
    ]
    rows.append(
        [
            "all",
            len(everything.samples),
            everything.median * 1000,
            everything.percentile(95) * 1000,
            everything.percentile(99) * 1000,
        ]
    )
    console.print(
        rows_table(
            f"{processes} x {threads}, {seconds:.0f} s: successful calls",
            ["operation", "n", "p50 ms", "p95 ms", "p99 ms"],
            rows,
        )
    )
    if rejected:
        console.print(
            rows_table(
                "rejected (domain answers, nothing written)",
                ["error", "n"],
                [[k, v] for k, v in rejected.most_common()],
            )
        )
    facts = [
        ["calls/s (successful + rejected)", commands / seconds],
        ["events written/s", log_events / seconds],
        ["bare inserts/s, same processes x threads", bare],
        ["storage conflicts retried (Mailbox.conflicts)", conflicts],
        ["Contention raised", failed["contention"]],
        ["threads audited", audit.threads],
        ["audit problems", len(audit.problems)],
        ["views.verify().ok", audit.views_ok],
        ["reported ids missing from the log", len(missing)],
    ]
    console.print(rows_table("load", ["what", "value"], facts))
    for problem in (audit.problems + missing)[:20]:
        console.print(f"[red]{problem}")
    return {
        "processes": processes,
        "threads": threads,
        "seconds": seconds,
        "calls_per_s": commands / seconds,
        "events_per_s": log_events / seconds,
        "bare_inserts_per_s": bare,
        "latency": {op: t.summary() for op, t in by_op.items()} | {"all": everything.summary()},
        "rejected": dict(rejected),
        "conflicts": conflicts,
        "contention": failed["contention"],
        "audit_ok": audit.ok,
        "audit_problems": audit.problems[:50],
        "missing": missing[:50],
    }


def _output(found: ThreadAudit, message_id: str) -> bool:
    return any(message_id in run.output_message_ids for run in found.state.runs.values())


@contextmanager
def private_postgres() -> Iterator[Any]:
    """The tests' private PostgreSQL server (``tests/pg_private.py``): started from the installed
    binaries in a temp dir, deleted afterwards. The only server this benchmark restarts."""
    sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_private import private_server

    with private_server() as server:
        console.print(f"private PostgreSQL server at {server.url()}")
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_PG)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--scaling", action="store_true", help="1, 2 and 4 processes")
    parser.add_argument(
        "--restart-postgres",
        action="store_true",
        help="run on a PostgreSQL server of its own (instead of --url) and restart it mid-load",
    )
    args = parser.parse_args()
    if args.scaling:
        runs = [load(args.url, p, args.threads, args.seconds, None) for p in (1, 2, 4)]
        first = runs[0]
        rows = [
            [
                r["processes"],
                r["calls_per_s"],
                r["calls_per_s"] / first["calls_per_s"],
                r["events_per_s"],
                r["bare_inserts_per_s"],
                r["bare_inserts_per_s"] / first["bare_inserts_per_s"],
                r["latency"]["all"]["p95_ms"],
                r["conflicts"],
                r["contention"],
                "ok" if r["audit_ok"] and not r["missing"] else "FAILED",
            ]
            for r in runs
        ]
        header = [
            "processes",
            "calls/s",
            "x 1 proc",
            "events/s",
            "bare inserts/s",
            "x 1 proc",
            "p95 ms",
            "conflicts",
            "Contention",
            "audit",
        ]
        console.print(rows_table(f"scaling, {args.threads} threads a process", header, rows))
        write_results("load-scaling", {"url": args.url, "runs": runs})
    elif args.restart_postgres:
        with private_postgres() as server:
            result = load(server.url(), args.processes, args.threads, args.seconds, server.restart)
        write_results("load-restart", {"url": "private server", **result})
    else:
        result = load(args.url, args.processes, args.threads, args.seconds)
        write_results("load", {"url": args.url, **result})


if __name__ == "__main__":
    main()
