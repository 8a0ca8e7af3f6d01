"""Peak memory and time of ``threadbox import`` (issue 13 §7): a large export made by the real
decider (``tests/export_support.py``), imported by the command line into a store of its own, from
a path and from stdin, under ``/usr/bin/time -v``; a tiny export is the baseline.

    python benchmarks/bench_import.py [--mb 100] [--url sqlite:///./bench.db] [--file F]
                                      [--keep FILE] [--no-stdin] [--compare PYTHON]

Reports, per import: events, peak resident memory (``Maximum resident set size``), wall time and
CPU time (user + system), each also per baseline. ``--file`` imports an existing export instead of
making one; ``--keep`` keeps the made export at that path (to import it again). ``--compare``
names the Python of another checkout (its venv's ``bin/python``, e.g. of the commit before a
change): the large file is then imported from its path by both, in turns, ``--rounds`` times
each, and the medians compared (CPU time is the fairer measure on a shared machine).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import console, own_store, progress_bar, rows_table, write_results

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from export_support import write_export  # a module of the tests

BYTES_PER_ROUND = 4_000  # about: one round of the mix, encoded (text_bytes=150)
THREADS = 2000


def timed_import(
    url: str, dump: Path, *, stdin: bool, python: str = sys.executable
) -> dict[str, Any]:
    """``threadbox import`` of ``dump`` into ``url`` under ``/usr/bin/time -v``."""
    source = "-" if stdin else str(dump)
    command = ["/usr/bin/time", "-v", python, "-m", "threadbox", "--url", url]
    feeder = subprocess.Popen(["cat", str(dump)], stdout=subprocess.PIPE) if stdin else None
    done = subprocess.run(  # stdin a pipe, which cannot seek: the import spools it
        [*command, "import", source],
        stdin=feeder.stdout if feeder is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if feeder is not None:
        assert feeder.stdout is not None
        feeder.stdout.close()
        feeder.wait()
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
    found = {
        name: re.search(pattern, done.stderr)
        for name, pattern in {
            "rss": r"Maximum resident set size \(kbytes\): (\d+)",
            "user": r"User time \(seconds\): ([\d.]+)",
            "system": r"System time \(seconds\): ([\d.]+)",
            "wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
        }.items()
    }
    missing = [name for name, match in found.items() if match is None]
    if missing:
        raise SystemExit(f"/usr/bin/time -v did not report {missing}: {done.stderr[-2000:]}")
    wall = 0.0
    for part in found["wall"][1].split(":"):  # type: ignore[index]
        wall = wall * 60 + float(part)
    return {
        "events": int(done.stdout.split()[1]),
        "peak_mb": int(found["rss"][1]) / 1024,  # type: ignore[index]
        "wall_s": wall,
        "cpu_s": float(found["user"][1]) + float(found["system"][1]),  # type: ignore[index]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=100.0, help="size of the export to make")
    parser.add_argument("--url", default="sqlite:///./bench.db", help="beside which to import")
    parser.add_argument("--file", type=Path, help="import this export instead of making one")
    parser.add_argument("--keep", type=Path, help="keep the made export at this path")
    parser.add_argument("--no-stdin", action="store_true", help="skip the import from stdin")
    parser.add_argument("--compare", help="the Python of another checkout, to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="imports each, with --compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tiny = Path(folder) / "tiny.jsonl"
        write_export(tiny, threads=2, rounds=2)
        dump = args.file or args.keep or Path(folder) / "large.jsonl"
        if args.file is None:
            rounds = max(1, round(args.mb * 1e6 / BYTES_PER_ROUND / THREADS))
            expected = THREADS * rounds * 6  # about 6 events a round
            with progress_bar("making the export (events)", expected) as advance:
                write_export(dump, threads=THREADS, rounds=rounds, progress=advance)
        size = dump.stat().st_size / 1e6
        console.print(f"export: {size:.1f} MB, {sum(1 for _ in dump.open('rb'))} lines")
        runs = [("tiny (baseline)", tiny, False, sys.executable)]
        if args.compare:
            for _ in range(args.rounds):
                runs.append(("large, path, --compare", dump, False, args.compare))
                runs.append(("large, path, this checkout", dump, False, sys.executable))
        else:
            runs.append(("large, from the path", dump, False, sys.executable))
        if not args.no_stdin:
            runs.append(("large, from stdin (a pipe)", dump, True, sys.executable))
        measured: dict[str, list[dict[str, Any]]] = {}
        for name, path, stdin, python in runs:
            with own_store(args.url, "import") as url:
                console.print(f"importing: {name} …")
                found = timed_import(url, path, stdin=stdin, python=python)
                measured.setdefault(name, []).append(found)
    median = {
        name: {k: statistics.median(m[k] for m in found) for k in found[0]}
        for name, found in measured.items()
    }
    base = median["tiny (baseline)"]
    compared = median.get("large, path, --compare")
    rows = [
        [
            name,
            int(m["events"]),
            m["peak_mb"],
            m["peak_mb"] / base["peak_mb"],
            m["wall_s"],
            m["cpu_s"],
            "" if compared is None else f"{m['cpu_s'] / compared['cpu_s']:.2f}",
        ]
        for name, m in median.items()
    ]
    header = ["import", "events", "peak MB", "peak / baseline", "wall s", "CPU s", "CPU / compare"]
    console.print(rows_table(f"threadbox import of a {size:.0f} MB export", header, rows))
    write_results("import", {"export_mb": size, "imports": measured, "medians": median})


if __name__ == "__main__":
    main()
