"""Views throughput on SQLite and PostgreSQL: rebuild vs reading the log, catch-up, and one
event per transaction (the baseline a batched catch-up and a bulk rebuild must beat).

    python benchmarks/bench_views.py [--events 20000] [--backends sqlite,postgres]

Targets (issue 3): rebuild <= 3x read+decode of the log (``store.read``: pydantic events, what
reading the log costs a user; the raw payload read the projections use is shown too); rebuild
>= 20x faster than applying one event per transaction (measured on a prefix, extrapolated).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import threadbox
from psycopg import sql
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message
from threadbox.application import views as engine
from threadbox.application.views import ProjectedViews
from threadbox.errors import ThreadboxError
from threadbox.infrastructure.store import StoreLocation
from threadbox.infrastructure.views.sql import SqlViewBackend
from threadbox.infrastructure.views.sqlite import SqliteDialect
from threadbox.projections.tables import Tables

PG = "postgresql://postgres@127.0.0.1:5432/test"
PG_CONNINFO = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@contextmanager
def store_url(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG}?schema={schema}"
    finally:
        with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def events_written(mb: Mailbox) -> int:
    """About how many events the store holds, cheaply: the id of the newest one, which ends each
    of its positions (a benchmark's shortcut; callers otherwise never parse positions)."""
    head = mb.store.committed_head()
    return int(head[-20:]) if head else 0


def generate(mb: Mailbox, events: int, threads: int, seed: int = 7) -> None:
    """A realistic mix: deliveries while busy, steering, edits, retractions, reorders,
    freezes, outputs, finishes, hides — on many threads."""
    rnd = random.Random(seed)
    running: dict[str, str] = {}
    started = time.perf_counter()
    last_report = 0
    while (position := events_written(mb)) < events:
        tid = f"thread-{rnd.randrange(threads):04d}"
        roll = rnd.random()
        run = running.get(tid)
        try:
            if roll < 0.40:
                mode = rnd.choice([DeliveryMode.new_run(), DeliveryMode.next_step()])
                texts = [f"message {rnd.random():.6f} " * 8 for _ in range(rnd.randint(1, 3))]
                mb.deliver(tid, [Message.user(t) for t in texts], mode)
            elif roll < 0.55:
                pending = mb.pending(tid)
                if pending and roll < 0.48:
                    p = rnd.choice(pending)
                    mb.edit(tid, p.pending_id, Message.user("edited " * 10, id=p.pending_id))
                elif pending and roll < 0.52:
                    mb.retract(tid, rnd.choice(pending).pending_id)
                elif pending:
                    order = [p.pending_id for p in pending]
                    rnd.shuffle(order)
                    mb.reorder(tid, order)
            elif run is None:
                run = uuid.uuid4().hex
                if mb.freeze(tid, DeliveryBoundary.NEW_RUN, run).committed:
                    running[tid] = run
            elif roll < 0.80:
                mb.freeze(tid, DeliveryBoundary.NEXT_STEP, run)
                mb.commit_output(tid, run, [Message.assistant("answer " * 20)])
            elif roll < 0.97:
                mb.finish_run(tid, run)
                del running[tid]
            else:
                committed = mb.committed(tid)
                if committed:
                    mb.hide(tid, str(rnd.choice(committed).message.id), "redacted")
        except ThreadboxError:
            pass  # e.g. a thread not opened yet
        if position - last_report >= events // 10:
            last_report = position
            rate = position / (time.perf_counter() - started)
            print(f"  generating: {position}/{events} events ({rate:.0f}/s)", flush=True)


def timed(work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - started


def measure(kind: str, events: int, threads: int, baseline_events: int) -> dict[str, float]:
    with store_url(kind) as url, threadbox.open(url) as mb:
        print(f"{kind}: generating {events} events on {threads} threads", flush=True)
        generate(mb, events, threads)
        views = mb.views
        assert isinstance(views, ProjectedViews)
        total = mb.store.count_after("")

        def read_log() -> None:
            """What reading and decoding the log costs a user: full pydantic events."""
            position = ""
            while batch := mb.store.read(after=position, limit=5000):
                position = batch[-1].position

        def read_payloads() -> None:
            """What the projections read: the stored JSON payloads, upcast, no pydantic."""
            position = ""
            while batch := list(mb.store.read_payloads(after=position, limit=5000)):
                position = batch[-1][0]

        def empty_views() -> None:
            views.backend.replace_all(Tables(), "", None)

        assert isinstance(views.backend, SqlViewBackend)

        def progress(done: int, all_: int) -> None:
            if done == all_:
                print(f"  rebuild: {done}/{all_}", flush=True)

        read = min(timed(read_log) for _ in range(2))
        print(f"  read+decode: {read:.2f}s", flush=True)
        raw = min(timed(read_payloads) for _ in range(2))
        print(f"  raw read (payloads): {raw:.2f}s", flush=True)
        rebuild = min(timed(lambda: views.rebuild(progress)) for _ in range(2))
        print(f"  rebuild: {rebuild:.2f}s", flush=True)
        empty_views()
        catch_up = timed(ProjectedViews(mb.store, views.backend).catch_up)
        print(f"  catch-up: {catch_up:.2f}s", flush=True)
        report = views.verify()
        verify = timed(views.verify)
        assert report.ok, report.differences[:5]
        print(f"  verify: {verify:.2f}s", flush=True)
        results = {
            "events": total,
            "read": read,
            "raw": raw,
            "rebuild": rebuild,
            "rebuild_rate": total / rebuild,
            "catch_up_rate": total / catch_up,
            "verify": verify,
            "rebuild_ratio": rebuild / read,
        }
        baselines = {"": views.backend}
        if kind == "sqlite":  # also with an fsync per commit, as a durable one-event commit costs
            durable = SqlViewBackend(DurableSqlite(StoreLocation.parse(url).sqlite_path))
            baselines[" (fsync)"] = durable
        for label, backend in baselines.items():
            backend.replace_all(Tables(), "", None)
            per_event = one_event_per_transaction(mb, backend, baseline_events)
            results["single_rate" + label] = 1 / per_event
            results["speedup" + label] = per_event * total / rebuild
            print(f"  one event per transaction{label}: {1 / per_event:.0f} ev/s", flush=True)
        return results


class DurableSqlite(SqliteDialect):
    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        conn.execute("PRAGMA synchronous=FULL")
        return conn


def one_event_per_transaction(mb: Mailbox, backend: SqlViewBackend, events: int) -> float:
    """Seconds per event when each event is its own catch-up transaction."""
    engine.BATCH, batch = 1, engine.BATCH
    try:
        fresh = ProjectedViews(mb.store, backend)
        until = [at for at, *_ in mb.store.read_payloads(after="", limit=events)][-1]
        seconds = timed(lambda: fresh.catch_up(until=until))
    finally:
        engine.BATCH = batch
    return seconds / mb.store.count_after("", until)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--baseline-events", type=int, default=1500)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    results = {
        kind: measure(kind, args.events, args.threads, args.baseline_events)
        for kind in args.backends.split(",")
    }
    print()
    header = (
        f"{'backend':<17}{'events':>8}{'read+decode':>13}{'raw read':>10}{'rebuild':>9}"
        f"{'rebuild ev/s':>14}{'rebuild/read':>14}{'catch-up ev/s':>15}{'verify':>8}"
        f"{'1-per-txn ev/s':>16}"
        f"{'rebuild speedup':>17}"
    )
    print(header)
    print("-" * len(header))
    for kind, r in results.items():
        for label in ("", " (fsync)"):
            if "single_rate" + label not in r:
                continue
            print(
                f"{kind + label:<17}{r['events']:>8.0f}{r['read']:>12.2f}s{r['raw']:>9.2f}s"
                f"{r['rebuild']:>8.2f}s{r['rebuild_rate']:>14.0f}{r['rebuild_ratio']:>13.2f}x"
                f"{r['catch_up_rate']:>15.0f}{r['verify']:>7.2f}s"
                f"{r['single_rate' + label]:>16.0f}{r['speedup' + label]:>16.1f}x"
            )
    print("targets: rebuild/read <= 3x; rebuild speedup vs one event per transaction >= 20x")


if __name__ == "__main__":
    main()
