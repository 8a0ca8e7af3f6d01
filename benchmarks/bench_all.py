"""The five performance ratios of the project side by side, each measured within this one run.

    python benchmarks/bench_all.py [--url postgresql://postgres@127.0.0.1:5432/test]
                                   [--sqlite sqlite:///./bench.db] [--quick]

(1) 4-process threadbox delivers/s, each process on threads of its own / 4-process raw inserts/s
    without a lock (bench_inserts.py, PostgreSQL);
(2) 4-process / 1-process threadbox delivers/s (bench_inserts.py);
(3) the cold first command on a 20,000-event thread / on a 2-event thread, PostgreSQL and SQLite
    (bench_cold_load.py, when present);
(4) HTTP deliver, 4 keep-alive clients against one ``threadbox serve`` / the library from one
    thread, with the views kept (bench_http.py; and the time the views' lag took to reach 0);
(5) deliver / eventsourcing's bare save (bench_core.py), and views rebuild / reading and decoding
    the log (bench_views.py), PostgreSQL and SQLite.

Each part prints its progress and figures as it goes; a table of the ratios ends the run, and a
JSON file goes to benchmarks/results/. ``--quick`` (under about two minutes) measures shorter
windows and fewer calls: the same ratios, noisier.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import threadbox
from common import DEFAULT_PG, console, own_store, rows_table, write_results

HERE = Path(__file__).resolve().parent


def sizes(quick: bool) -> dict[str, Any]:
    """How much each part measures."""
    if quick:
        return {
            "insert_s": 2.0,
            "cold_n": 15,
            "http_s": 2.0,
            "http_rounds": 2,
            "core_n": 200,
            "view_events": 2000,
            "view_threads": 40,
            "view_baseline": 200,
        }
    return {
        "insert_s": 5.0,
        "cold_n": 100,
        "http_s": 5.0,
        "http_rounds": 3,
        "core_n": 1000,
        "view_events": 20000,
        "view_threads": 200,
        "view_baseline": 1500,
    }


def inserts(url: str, seconds: float) -> dict[str, float]:
    """(1) and (2): bench_inserts' threadbox deliver and raw insert cells."""
    import bench_inserts

    rates = {}
    for kind, processes in (("threadbox", 4), ("raw", 4), ("threadbox", 1)):
        console.print(f"[bold](1, 2)[/] {kind}, {processes} process(es), {seconds:g} s …")
        rates[f"{kind}_{processes}"] = bench_inserts.measure(url, kind, processes, seconds)
        console.print(f"  {rates[f'{kind}_{processes}']:,.0f}/s")
    return rates


def cold(urls: list[str], n: int) -> dict[str, Any] | None:
    """(3): bench_cold_load on a 20,000-event thread, each store (None: not in this tree)."""
    path = HERE / "bench_cold_load.py"
    if not path.exists():
        console.print("[bold](3)[/] benchmarks/bench_cold_load.py is not in this tree: skipped")
        return None
    spec = importlib.util.spec_from_file_location("bench_cold_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = {}
    for url in urls:
        kind = "postgres" if url.startswith("postgres") else "sqlite"
        console.print(f"[bold](3)[/] cold first commands, {kind}, 20,000 events, n={n} …")
        found[kind] = module.one_store(url, 20_000, n)["ratio"]
    return found


def http(url: str, seconds: float, rounds: int) -> dict[str, Any]:
    """(4): bench_http, one worker, 4 clients."""
    import bench_http

    console.print(f"[bold](4)[/] HTTP vs library, {rounds} x {seconds:g} s windows each …")
    return bench_http.measure(url, seconds, 4, 1, None, rounds)


def core(url: str, n: int) -> float:
    """(5a): deliver / bare save, medians of ``n`` calls each, interleaved in halves."""
    import bench_core

    console.print(f"[bold](5)[/] deliver vs bare save, {n} calls each …")
    bare_medians, deliver_medians = [], []
    with (
        own_store(url, "bare") as bare_url,
        own_store(url) as own,
        threadbox.open(bare_url) as bare,
        threadbox.open(own) as mailbox,
    ):
        steady = f"steady-{uuid.uuid4()}"
        mailbox.deliver(steady, [bench_core.message()])
        for _ in range(2):
            bare_medians.append(bench_core.bare_saves(bare, n // 2, one_stream=True).median)
            deliver_medians.append(bench_core.delivers(mailbox, steady, n // 2, "d").median)
    ratio = statistics.median(deliver_medians) / statistics.median(bare_medians)
    console.print(f"  deliver / bare save = {ratio:.2f}")
    return ratio


def views(kinds: list[str], events: int, threads: int, baseline: int) -> dict[str, float]:
    """(5b): rebuild / read and decode, per backend (bench_views)."""
    import bench_views

    found = {}
    for kind in kinds:
        console.print(f"[bold](5)[/] views rebuild vs read+decode, {kind}, {events} events …")
        found[kind] = bench_views.measure(kind, events, threads, baseline)["rebuild_ratio"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_PG, help="the PostgreSQL server to measure on")
    parser.add_argument("--sqlite", default="sqlite:///./bench.db", help="beside this file")
    parser.add_argument("--quick", action="store_true", help="shorter windows (~2 minutes)")
    args = parser.parse_args()
    size = sizes(args.quick)
    console.print(
        "The machine's other work moves single rates a lot: each ratio's two sides are measured "
        "back to back (or interleaved) in this run; compare ratios, not rates."
    )
    began = time.monotonic()
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("inserts", lambda: inserts(args.url, size["insert_s"])),
        ("cold", lambda: cold([args.url, args.sqlite], size["cold_n"])),
        ("http", lambda: http(args.url, size["http_s"], size["http_rounds"])),
        ("core", lambda: core(args.url, size["core_n"])),
        (
            "views",
            lambda: views(
                ["postgres", "sqlite"],
                size["view_events"],
                size["view_threads"],
                size["view_baseline"],
            ),
        ),
    ]
    found: dict[str, Any] = {}
    for n, (name, step) in enumerate(steps, 1):
        console.rule(f"part {n}/{len(steps)}: {name}  ({time.monotonic() - began:.0f} s so far)")
        found[name] = step()
    rows = table_rows(found)
    console.rule(f"done in {time.monotonic() - began:.0f} s")
    console.print(rows_table("the five ratios (one run)", ["ratio", "value", "target"], rows))
    write_results(
        "bench_all",
        {
            "quick": args.quick,
            "sizes": size,
            "seconds": time.monotonic() - began,
            **found,
            "table": rows,
        },
    )


def table_rows(found: dict[str, Any]) -> list[list[Any]]:
    """The final table: one row per ratio (a store kind each where it has two)."""
    rates, served = found["inserts"], found["http"]
    rows: list[list[Any]] = [
        [
            "(1) 4-proc threadbox / 4-proc raw insert",
            rates["threadbox_4"] / rates["raw_4"],
            ">= 0.6",
        ],
        ["(2) 4-proc / 1-proc threadbox", rates["threadbox_4"] / rates["threadbox_1"], ">= 2.0"],
    ]
    if found["cold"] is None:
        rows.append(["(3) cold 20,000-event / 2-event thread", "n/a (no bench_cold_load.py)", ""])
    else:
        for kind, ratio in found["cold"].items():
            rows.append([f"(3) cold 20,000-event / 2-event thread, {kind}", ratio, "<= 1.3"])
    rows.append(["(4) HTTP 4 clients / library 1 thread", served["ratio"], ">= 0.8"])
    rows.append(["(4) views lag 0 after the load (s)", served["catch_up_seconds"], "<= 1"])
    rows.append(["(5) deliver / bare save", found["core"], "<= 1.5"])
    for kind, ratio in found["views"].items():
        rows.append([f"(5) rebuild / read+decode, {kind}", ratio, "<= 3"])
    return rows


if __name__ == "__main__":
    main()
