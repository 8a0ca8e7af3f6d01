"""What the benchmarks share: a store of their own, per-call timings, tables, results, the audit.

The audit folds every thread of a store and checks the invariants of SEMANTICS §7; the fault
tests use it too (they put this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from threadbox import Mailbox
from threadbox.domain.events import (
    AnyThreadEvent,
    MessagesDelivered,
    PendingMessageRetracted,
    PendingMessagesExpired,
    PendingMessagesFrozen,
    RunOutputCommitted,
)
from threadbox.domain.records import RunStatus
from threadbox.domain.thread import Thread, evolve, fold
from threadbox.infrastructure.store import StoreLocation

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
T = TypeVar("T")
console = Console(width=None if sys.stdout.isatty() else 130)


# ---- a store of its own ------------------------------------------------------------------------


@contextmanager
def own_store(url: str, prefix: str = "bench") -> Iterator[str]:
    """A fresh store beside ``url``: a new PostgreSQL schema or SQLite file, removed at the end."""
    tag = f"{prefix}_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(url)
    if parts.scheme.startswith("postgres"):
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        query["schema"] = tag
        yield urlunsplit(parts._replace(query=urlencode(query)))
        drop_schema(StoreLocation.parse(url).pg_conninfo, tag)
    elif parts.scheme == "sqlite":
        base = Path(StoreLocation.parse(url).sqlite_path)
        path = base.with_name(f"{base.stem}-{tag}{base.suffix or '.db'}")
        yield f"sqlite:///{path.resolve()}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        yield url


def drop_schema(conninfo: str, schema: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# ---- timings -----------------------------------------------------------------------------------


@dataclass
class Timings:
    """Per-call durations of one operation, in seconds."""

    name: str
    samples: list[float] = field(default_factory=list)

    def time(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)``, its duration recorded."""
        start = time.perf_counter()
        result = call(*args, **kwargs)
        self.samples.append(time.perf_counter() - start)
        return result

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    def summary(self) -> dict[str, float]:
        return {
            "n": len(self.samples),
            "median_ms": self.median * 1000,
            "p95_ms": self.percentile(95) * 1000,
            "p99_ms": self.percentile(99) * 1000,
            "mean_ms": self.mean * 1000,
        }


def timings_table(title: str, timings: list[Timings], baseline: Timings) -> Table:
    table = Table(title=title)
    for column in ("operation", "n", "median ms", "p95 ms", "mean ms", "median / baseline"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for t in timings:
        table.add_row(
            t.name,
            str(len(t.samples)),
            f"{t.median * 1000:.3f}",
            f"{t.percentile(95) * 1000:.3f}",
            f"{t.mean * 1000:.3f}",
            f"{t.median / baseline.median:.2f}",
        )
    return table


def rows_table(title: str, header: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for n, column in enumerate(header):
        table.add_column(column, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    return table


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar; the callable sets how much is done."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


# ---- results -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    body = {"benchmark": name, "at": stamp, "machine": machine(), **results}
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    console.print(f"results written to {path}")
    return path


# ---- the audit (SEMANTICS §7) --------------------------------------------------------------------


@dataclass
class ThreadAudit:
    thread_id: str
    state: Thread
    fates: dict[str, str]  # delivered message id -> pending | committed | retracted | expired
    problems: list[str]


def audit_events(thread_id: str, events: list[AnyThreadEvent]) -> ThreadAudit:
    """Fold one thread's events and check invariants 1-4 at every version."""
    state = Thread(thread_id)
    fates: dict[str, str] = {}
    committed: set[str] = set()
    problems: list[str] = []
    seq = 0

    def fate(message_id: str, new: str) -> None:
        if fates.get(message_id) != "pending":
            problems.append(f"v{state.version}: {message_id!r} {fates.get(message_id)} -> {new}")
        fates[message_id] = new

    def commit(message_id: str, at_seq: int) -> None:
        nonlocal seq
        if message_id in committed:
            problems.append(f"v{state.version}: {message_id!r} committed twice")
        if at_seq != seq + 1:
            problems.append(f"v{state.version}: seq {at_seq} after {seq}")
        committed.add(message_id)
        seq = at_seq

    for event in events:
        try:
            evolve(state, event)
        except Exception as e:
            problems.append(f"v{state.version + 1}: does not fold: {e!r}")
            break
        match event:
            case MessagesDelivered(messages=delivered):
                for d in delivered:
                    assert d.message.id is not None
                    if d.message.id in fates:
                        problems.append(f"v{event.version}: {d.message.id!r} delivered twice")
                    fates[d.message.id] = "pending"
            case PendingMessageRetracted(pending_id=pending_id):
                fate(pending_id, "retracted")
            case PendingMessagesExpired(pending_ids=pending_ids):
                for pending_id in pending_ids:
                    fate(pending_id, "expired")
            case PendingMessagesFrozen(messages=frozen):
                for m in frozen:
                    assert m.message.id is not None
                    fate(m.message.id, "committed")
                    commit(m.message.id, m.seq)
            case RunOutputCommitted(messages=outputs):
                for o in outputs:
                    assert o.message.id is not None
                    commit(o.message.id, o.seq)
            case _:
                pass
        open_runs = [r.run_id for r in state.runs.values() if r.status is not RunStatus.DONE]
        if len(open_runs) > 1:
            problems.append(f"v{event.version}: {len(open_runs)} open runs {open_runs}")
    pending_ids = [p.pending_id for p in state.pending]
    if sorted(pending_ids) != sorted(i for i, f in fates.items() if f == "pending"):
        problems.append("pending zone does not match the delivered messages still pending")
    if len(set(pending_ids)) != len(pending_ids) or set(pending_ids) & committed:
        problems.append("a pending id is repeated or also committed")
    if state.last_seq != seq:
        problems.append(f"last seq {state.last_seq} != {seq}")
    return ThreadAudit(thread_id, state, fates, problems)


@dataclass
class StoreAudit:
    threads: dict[str, ThreadAudit]
    events: int
    problems: list[str]
    verify_ok: bool

    @property
    def ok(self) -> bool:
        return self.verify_ok and not self.problems

    def fate(self, thread_id: str, message_id: str) -> str | None:
        found = self.threads.get(thread_id)
        return found.fates.get(message_id) if found else None


def audit_store(mailbox: Mailbox, sample: int = 20) -> StoreAudit:
    """Every thread of the store folded and checked; a sample also at past versions and via
    snapshot + tail; and the views verified against the log (invariant 5)."""
    logs: dict[str, list[AnyThreadEvent]] = {}
    position = 0
    while batch := mailbox.store.read(after=position, limit=5000):
        for item in batch:
            logs.setdefault(item.event.thread_id, []).append(item.event)
        position = batch[-1].position
    threads = {tid: audit_events(tid, events) for tid, events in logs.items()}
    problems = [f"{tid}: {p}" for tid, a in threads.items() for p in a.problems]
    fresh = Mailbox(mailbox.store, mailbox.views)  # loads snapshot + tail, no cache
    for tid in sorted(logs)[:sample]:
        events = logs[tid]
        for v in {1, len(events) // 2 or 1, len(events)}:
            if mailbox.thread(tid, at_version=v) != fold(tid, events[:v]).to_state():
                problems.append(f"{tid}: state at v{v} differs from the fold of 1..{v}")
        if fresh.pending(tid) != threads[tid].state.entries():
            problems.append(f"{tid}: snapshot + tail differs from the full fold")
    report = mailbox.views.verify()
    problems.extend(report.differences[:20])
    return StoreAudit(threads, position, problems, report.ok)
