"""One-row inserts per second on PostgreSQL with 1, 4 and 8 writer processes, six ways, one run.

    python benchmarks/bench_inserts.py [--url postgresql://postgres@127.0.0.1:5432/test]
                                       [--seconds 5] [--processes 1,4,8] [--rounds 1]
                                       [--kinds locked,commit_order,function,quiet,raw,threadbox]

(a) eventsourcing's PostgresApplicationRecorder, which takes LOCK TABLE … IN EXCLUSIVE MODE per
insert; (b) CommitOrderRecorder (ADR 0009: no lock, the writing transaction's id in each row);
(b1) the same through eventsourcing's insert function (POSTGRES_ENABLE_DB_FUNCTIONS): one round
trip instead of its pipelined statements; (b0) (b) without its NOTIFY (PostgreSQL serialises the
commits of notifying transactions with a server-wide lock held through the commit); (c) a raw
INSERT of the same row, no lock, no NOTIFY: the ceiling; (t) threadbox itself: ``deliver`` of one
~240-character user message per call through ``threadbox.open(url)`` (decide, encode, insert with
``CommitOrderRecorder``, NOTIFY after commit), each process on a thread of its own.

The row is a threadbox event's shape: a uuid stream, a version, a topic and a ~300-byte JSON
state, one row per transaction, each process on a stream of its own. Every cell writes into a
fresh schema, removed at the end; the processes start together (a barrier) and write for the same
time. With --rounds N each cell is measured N times (interleaved) and the median kept.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psycopg
import threadbox
from common import DEFAULT_PG, console, own_store, progress_bar, rows_table, write_results
from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from psycopg import sql
from threadbox import Message
from threadbox.infrastructure.pg_recorder import RECORDER_TOPIC, CommitOrderRecorder
from threadbox.infrastructure.store import StoreLocation, ensure_pg_schema

KINDS = {
    "locked": "(a) locked",
    "commit_order": "(b) commit order",
    "function": "(b1) 1 round trip",
    "quiet": "(b0) no NOTIFY",
    "raw": "(c) raw",
    "threadbox": "(t) threadbox deliver",
}
LEGEND = (
    "(a) eventsourcing's recorder, LOCK TABLE per insert; (b) CommitOrderRecorder; (b1) (b) "
    "through eventsourcing's insert function (POSTGRES_ENABLE_DB_FUNCTIONS: one round trip); "
    "(b0) (b) without NOTIFY; (c) raw INSERT, no lock, no NOTIFY; (t) threadbox's deliver, one "
    "message per call (its rate is calls/s)"
)
TOPICS = {
    "commit_order": RECORDER_TOPIC,
    "function": RECORDER_TOPIC,
    "quiet": "bench_inserts:QuietRecorder",
}


class QuietRecorder(CommitOrderRecorder):
    """(b) without its NOTIFY, which takes a server-wide lock held through each commit: how much
    moving the wake-up out of the writers' transactions could gain at most."""

    def _notify_channel(self, curs: Any) -> None:
        return None


TEXT = "x" * 240
STATE = b'{"_v":1,"thread_id":"bench","messages":[{"text":"' + b"x" * 240 + b'"}]}'
TOPIC = "threadbox.domain.events:MessagesDelivered"
START_TIMEOUT = 300.0  # seconds the writers wait for each other to be ready
NOISE = (
    "The machine has 2 cores, shared with other work (other helpers' tests and PostgreSQL "
    "itself): absolute numbers move between runs; compare the ratios of one run."
)


def env_for(url: str, kind: str, create_table: bool) -> dict[str, str]:
    """eventsourcing's settings for ``url``, one connection per process."""
    env = dict(StoreLocation.parse(url).pg_env)
    env.update({"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"})
    # The writers find the tables made: the library's DDL, run by 8 processes at once, fails.
    env["CREATE_TABLE"] = "yes" if create_table else "no"
    if kind in TOPICS:
        env["APPLICATION_RECORDER_TOPIC"] = TOPICS[kind]
    env["POSTGRES_ENABLE_DB_FUNCTIONS"] = "y" if kind == "function" else "n"
    return env


def one_connection(url: str) -> str:
    """``url`` with a pool of one connection, as the other writers have."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(pool_size="1", max_overflow="1")
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def recorder_for(url: str, kind: str, create_table: bool = False) -> Iterator[Any]:
    factory = InfrastructureFactory.construct(env_for(url, kind, create_table))
    try:
        yield factory.application_recorder()
    finally:
        factory.close()


def write_for(url: str, kind: str, seconds: float, start: Any) -> int:
    """One process: one-row transactions on a stream of its own for ``seconds``; how many."""
    with ExitStack() as stack:
        if kind == "threadbox":
            mailbox = stack.enter_context(threadbox.open(one_connection(url)))
            thread_id = f"bench-{uuid.uuid4().hex}"

            def insert(stream: uuid.UUID, version: int) -> None:
                mailbox.deliver(thread_id, [Message.user(TEXT)])

        elif kind == "raw":
            location = StoreLocation.parse(url)
            conn = stack.enter_context(psycopg.connect(location.pg_conninfo, autocommit=True))
            statement = sql.SQL(
                "INSERT INTO {}.stored_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s)"
            ).format(sql.Identifier(location.pg_schema))

            def insert(stream: uuid.UUID, version: int) -> None:
                conn.execute(statement, (stream, version, TOPIC, STATE), prepare=True)

        else:
            recorder = stack.enter_context(recorder_for(url, kind))

            def insert(stream: uuid.UUID, version: int) -> None:
                recorder.insert_events([StoredEvent(stream, version, TOPIC, STATE)])

        stream = uuid.uuid4()
        insert(stream, 1)  # connection and prepared statements warm before the clock starts
        count = 1
        start.wait(timeout=START_TIMEOUT)  # a writer that failed to start breaks it for all
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            count += 1
            insert(stream, count)
    return count - 1


def measure(url: str, kind: str, processes: int, seconds: float) -> float:
    """Inserts per second of ``processes`` writers of ``kind`` in a fresh schema."""
    with own_store(url, f"ins_{kind}") as cell_url:
        ensure_pg_schema(StoreLocation.parse(cell_url))
        # Tables made once, before the writers start; (c) writes into the library's table.
        if kind == "threadbox":
            threadbox.open(cell_url).close()
        else:
            maker = kind if kind in TOPICS else "locked"
            with recorder_for(cell_url, maker, create_table=True):
                pass
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, context.Pool(processes) as pool:
            start = manager.Barrier(processes)
            jobs = [(cell_url, kind, seconds, start)] * processes
            return sum(pool.starmap(write_for, jobs, chunksize=1)) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_PG)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window of each cell")
    parser.add_argument("--processes", default="1,4,8", help="writer process counts")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per cell (median)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="which writers to measure")
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}: choose among {list(KINDS)}")
    if not urlsplit(args.url).scheme.startswith("postgres"):
        parser.error("a PostgreSQL URL is needed: the benchmark is about its table lock")
    console.print(NOISE)
    rates: dict[str, dict[int, list[float]]] = {k: {p: [] for p in counts} for k in kinds}
    cells = [(r, p, k) for r in range(args.rounds) for p in counts for k in kinds]
    began = time.monotonic()
    with progress_bar(f"cells of {args.seconds:g} s", len(cells)) as done:
        for n, (_, processes, kind) in enumerate(cells):
            rate = measure(args.url, kind, processes, args.seconds)
            rates[kind][processes].append(rate)
            console.print(f"  {KINDS[kind]}, {processes} process(es): {rate:,.0f} inserts/s")
            done(n + 1)
    median = {k: {p: statistics.median(v) for p, v in by.items()} for k, by in rates.items()}
    report(median, counts)
    write_results(
        "bench_inserts",
        {
            "url": urlunsplit(urlsplit(args.url)._replace(query=urlencode({}))),
            "seconds": args.seconds,
            "rounds": args.rounds,
            "wall_seconds": time.monotonic() - began,
            "inserts_per_s": {k: {str(p): r for p, r in by.items()} for k, by in median.items()},
            "all_rounds": {k: {str(p): r for p, r in by.items()} for k, by in rates.items()},
            "legend": LEGEND,
            "note": NOISE,
        },
    )


RATIOS = [  # (numerator, denominator): ratios of one run, shown when both were measured
    ("commit_order", "raw"),
    ("commit_order", "locked"),
    ("function", "raw"),
    ("quiet", "raw"),
    ("threadbox", "raw"),
]


def report(median: dict[str, dict[int, float]], counts: list[int]) -> None:
    kinds = list(median)
    ratios = [(n, d) for n, d in RATIOS if n in median and d in median]
    tag = {k: KINDS[k].split(" ")[0] for k in KINDS}
    header = ["processes", *(KINDS[k] for k in kinds), *(f"{tag[n]}/{tag[d]}" for n, d in ratios)]
    rows = [
        [p, *(median[k][p] for k in kinds), *(median[n][p] / median[d][p] for n, d in ratios)]
        for p in counts
    ]
    console.print(rows_table("one-row inserts (threadbox: deliver calls) per second", header, rows))
    console.print(LEGEND)
    first = counts[0]
    scaling = [
        [f"{p} / {first} processes", *(median[k][p] / median[k][first] for k in kinds)]
        for p in counts[1:]
    ]
    if scaling:
        console.print(rows_table("scaling", ["", *(KINDS[k] for k in kinds)], scaling))
    console.print(NOISE)


if __name__ == "__main__":
    main()
