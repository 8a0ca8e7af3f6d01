"""Import at scale in flat memory (issue 13 §7): ``threadbox import`` of an export of more than
50,000 events, made by the real decider, peaks at about what importing a tiny export does.

The peak is the import's own ``ru_maxrss`` (see ``LAUNCHER``). The large file comes through a
pipe, which cannot seek, so the import spools it first (past ``SPOOL_IN_MEMORY`` bytes, on
disk); the tiny one is read in place from its path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import threadbox
from export_support import write_export
from threadbox.application import transfer

pytestmark = pytest.mark.slow


# Linux counts in a child's peak the memory of the process it was forked from (the fork's copy
# of it, until exec): forked from this test, the import would peak at least at this test's size.
# So a small launcher starts the import and reports its peak (``os.wait4`` on its pid).
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
sys.stderr.write(f"\\npeak {usage.ru_maxrss}\\n")  # Linux: kilobytes
sys.exit(os.waitstatus_to_exitcode(status))
"""


def import_peak(url: str, dump: Path, *, pipe: bool) -> tuple[int, str]:
    """``threadbox import`` of ``dump`` (from a pipe, or its path) in a process of its own: its
    peak resident memory in bytes, and what it printed."""
    source = "-" if pipe else str(dump)
    command = [sys.executable, "-m", "threadbox", "--url", url, "import", source]
    with dump.open("rb") as file:
        feeder = subprocess.Popen(["cat"], stdin=file, stdout=subprocess.PIPE) if pipe else None
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *command],
            stdin=feeder.stdout if feeder is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    if feeder is not None:
        assert feeder.stdout is not None
        feeder.stdout.close()
        assert feeder.wait() == 0
    errors = done.stderr.decode()
    assert done.returncode == 0, errors[-2000:]
    peak = int(errors.rsplit("peak ", 1)[1])
    return peak * 1024, done.stdout.decode()


def test_an_import_of_more_than_50k_events_from_a_pipe_peaks_as_a_tiny_one_does(
    tmp_path: Path,
) -> None:
    large, tiny = tmp_path / "large.jsonl", tmp_path / "tiny.jsonl"
    events = write_export(large, threads=1000, rounds=9)
    write_export(tiny, threads=2, rounds=2)
    size = large.stat().st_size
    assert events == sum(1 for _ in large.open("rb")) >= 50_000
    baseline, _ = import_peak(f"sqlite:///{tmp_path / 'tiny.db'}", tiny, pipe=False)
    target = f"sqlite:///{tmp_path / 'large.db'}"
    peak, printed = import_peak(target, large, pipe=True)
    assert printed == f"imported {events} events of 1000 threads\n"
    with threadbox.open(target) as copy:
        archive = transfer.archive_of(copy.store)
        assert copy.store.count_after("") == events
        assert copy.views.status().lag == 0
        last = {}
        for line in large.open("rb"):
            event = transfer.parse_line(archive, line)
            last[event.thread_id] = event.version
        assert all(archive.stored_version(t) == v for t, v in last.items())
    # Held in memory as before (every event parsed), the file took about three times its size;
    # here the growth over the tiny import must stay under half its size (it is the index of
    # the lines, 40 bytes each, and one thread at a time).
    growth = peak - baseline
    print(
        f"{events} events, {size / 1e6:.1f} MB: peak {peak / 1e6:.1f} MB, tiny {baseline / 1e6:.1f}"
    )
    assert growth < size / 2, f"peak {peak / 1e6:.1f} MB, {growth / 1e6:.1f} MB over the baseline"
