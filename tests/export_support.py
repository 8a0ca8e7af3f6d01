"""Large exports made by the real decider, for the import's memory test and benchmark.

Threads are worked on in batches, round-robin within a batch (so, as in a real export in commit
order, a thread's lines are spread over the file between other threads' lines): each round of a
thread delivers user messages, sometimes edits, retracts or reorders pending ones, starts a run,
commits outputs (sometimes a tool call and its answer), sometimes hides an output, and ends the
run. Every event is decided on a ``memory://`` mailbox and written with ``export_lines``, so the
file holds only what the mailbox itself wrote. A batch's mailbox is closed before the next one
opens: making the file takes memory for one batch, whatever its size.

Benchmarks import this module too (``benchmarks/bench_import.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import threadbox
from threadbox import Mailbox, Message
from threadbox.application import transfer

BATCH_THREADS = 200


def _round(mailbox: Mailbox, thread_id: str, n: int, rng: random.Random, text: str) -> None:
    """One round of work on a thread: deliveries, pending-zone changes, one run."""
    ids = [f"{thread_id}-u{n}-{k}" for k in range(rng.randint(1, 3))]
    mailbox.deliver(thread_id, [Message.user(f"{i} {text}", id=i) for i in ids])
    if rng.random() < 0.3:
        mailbox.edit(thread_id, ids[0], Message.user(f"{ids[0]} edited {text}", id=ids[0]))
    if len(ids) > 1 and rng.random() < 0.3:
        mailbox.retract(thread_id, ids.pop())
    if len(ids) > 1 and rng.random() < 0.3:
        mailbox.reorder(thread_id, list(reversed(ids)))
    run = f"{thread_id}-r{n}"
    mailbox.freeze(thread_id, "new_run", run)
    outputs = [Message.assistant(f"answer {n} {text}", id=f"{run}-a")]
    if rng.random() < 0.3:
        call = f"{run}-call"
        outputs.append(Message.tool(call, f"tool said {text}", id=f"{run}-t"))
    mailbox.commit_output(thread_id, run, outputs)
    if rng.random() < 0.1:
        mailbox.hide(thread_id, outputs[0].id or "", "redacted")
    mailbox.finish_run(thread_id, run)


def write_export(
    path: Path,
    *,
    threads: int,
    rounds: int,
    text_bytes: int = 300,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write an export of ``threads`` threads of ``rounds`` rounds each to ``path``; returns
    how many events (lines) it holds. ``progress(events)`` after each batch."""
    rng = random.Random(seed)
    text = "lorem ipsum " * (text_bytes // 12)
    events = 0
    with path.open("wb") as sink:
        for first in range(0, threads, BATCH_THREADS):
            names = [f"thread-{n:06d}" for n in range(first, min(first + BATCH_THREADS, threads))]
            with threadbox.open("memory://") as mailbox:
                for n in range(rounds):
                    for thread_id in names:
                        _round(mailbox, thread_id, n, rng, text)
                for line in transfer.export_lines(transfer.archive_of(mailbox.store), []):
                    sink.write(line)
                    events += 1
            if progress is not None:
                progress(events)
    return events
