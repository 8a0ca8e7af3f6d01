"""What the benchmarks share: a store of their own, per-call timings, tables, results.

The audit of a store (docs/semantics.md §7) is in the library: ``threadbox.audit``.
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
