"""Reads of a long thread, before and after bounded reads (issue 9, findings 2 and 9), in one
run on one SQLite store: each "before" is the read as it was (the whole log, the fold from
version 1, the committed zone one row at a time), each "after" the read the routes make now.

    python benchmarks/long_threads.py [--runs 4000] [--internal 10000]

A thread of 1 + 5 x runs events (20,001 by default: a user message and an answer per run),
and a second thread with ``--internal`` internal messages before one visible message.
Measured: what one event stream holds when it starts (traced Python heap) and how long its
first read takes; GET /v1/threads/{id} (fold of the log vs the views); GET …/events without a
limit (the whole log vs the default page); the committed zone at a version (fold from version 1
vs from the latest snapshot: events read); /committed?limit=1 past the internal messages.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import threadbox
from common import console, rows_table, write_results
from threadbox import Mailbox, Message, Visibility
from threadbox.domain import results
from threadbox.domain.thread import fold
from threadbox.infrastructure.http.reads import PAGE
from threadbox.infrastructure.http.stream import StreamSettings, reader

T = TypeVar("T")
LONG, INTERNAL = "long", "internal"


def long_thread(target: Mailbox, runs: int) -> None:
    """``runs`` runs decided on a memory mailbox, appended as stored to ``target``."""
    with threadbox.open("memory://") as source:
        for i in range(runs):
            run = f"r{i}"
            source.submit(LONG, [Message.user(f"question {i} " + "x" * 40, id=f"u{i}")], None, run)
            source.commit_output(LONG, run, [Message.assistant(f"answer {i}", id=f"a{i}")])
            source.finish_run(LONG, run)
        archived = source.store.archived(LONG)  # type: ignore[attr-defined]
    for start in range(0, len(archived), 1000):
        target.store.append_archived(archived[start : start + 1000])  # type: ignore[attr-defined]
    target.views.catch_up()


def internal_thread(mailbox: Mailbox, count: int) -> None:
    mailbox.submit(INTERNAL, [Message.user("go", id="go")], None, "r")
    internal = [
        Message.assistant(f"thinking {i}", id=f"i{i}").model_copy(
            update={"visibility": Visibility.INTERNAL}
        )
        for i in range(count)
    ]
    for start in range(0, count, 1000):
        mailbox.commit_output(INTERNAL, "r", internal[start : start + 1000])
    mailbox.commit_output(INTERNAL, "r", [Message.assistant("the answer", id="answer")])


def measured(call: Callable[[], T]) -> tuple[T, float, int]:
    """``call()``, its duration (s) and the peak of the Python heap it took (bytes)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = call()
        return result, time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def timed(call: Callable[[], T], repeat: int = 3) -> tuple[T, float]:
    """``call()`` and its best duration of ``repeat`` (s)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return result, best


def old_committed_past_internal(mailbox: Mailbox) -> list[Any]:
    """The read as it was: a page of ``limit`` rows at a time, internal ones dropped after."""
    views = mailbox.views
    mailbox.views.catch_up()
    after, found = 1, []
    while not found:
        batch = views.committed(INTERNAL, after_seq=after, limit=1, include_hidden=False)
        if not batch:
            break
        found = [m for m in batch if m.message.visibility is not Visibility.INTERNAL]
        after = batch[-1].seq
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--internal", type=int, default=10_000)
    args = parser.parse_args()
    rows: list[list[Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        threadbox.open(f"sqlite:///{Path(tmp) / 'long.db'}") as mailbox,
    ):
        long_thread(mailbox, args.runs)
        internal_thread(mailbox, args.internal)
        mailbox.views.catch_up()  # as a server's follower keeps them
        version = len(mailbox.store.load(LONG))
        console.print(f"a thread of {version} events, one of {args.internal + 2} messages")
        # The latest snapshot 250 versions back, as a mailbox writes them (every <= 500
        # versions); the import above wrote none.
        log = mailbox.store.load(LONG)
        mailbox.store.save_snapshot(fold(LONG, log[: version - 250]))

        # An event stream's first read: the whole log before, one page now.
        whole, whole_s, whole_heap = measured(lambda: mailbox.history(LONG))
        page = reader(mailbox, LONG, StreamSettings(), include_internal=False)
        first, page_s, page_heap = measured(lambda: page(0))
        assert whole[: len(first)] == first
        rows.append(["stream: heap at its start (MiB)", whole_heap / 2**20, page_heap / 2**20])
        rows.append(["stream: first read (s)", whole_s, page_s])

        # GET /v1/threads/{id}: a fold of the whole log before, the views now.
        folded, fold_s = timed(lambda: results.thread_state(fold(LONG, mailbox.store.load(LONG))))
        viewed, view_s = timed(lambda: mailbox.thread(LONG))
        assert viewed == folded
        rows.append(["GET thread (s)", fold_s, view_s])

        # GET …/events without a limit: the whole log before, the default page now.
        dump = lambda events: len(orjson.dumps([e.model_dump(mode="json") for e in events]))  # noqa: E731
        rows.append(["GET events, no limit (MiB)", dump(whole) / 2**20, dump(whole[:PAGE]) / 2**20])

        # The committed zone at a version: folded from version 1 before, from the latest
        # snapshot now.
        at = version - 1
        _, old_at_s = timed(lambda: fold(LONG, mailbox.store.load(LONG, upto=at)), 1)
        _, new_at_s = timed(lambda: mailbox.committed(LONG, at_version=at, limit=50), 1)
        rows.append(["committed at a version: events read", at, version - (version - 250)])
        rows.append(["committed at a version (s)", old_at_s, new_at_s])
        del log

        # /committed?limit=1 past the internal messages: a row at a time before, SQL now.
        old, old_s = timed(lambda: old_committed_past_internal(mailbox))
        new, new_s = timed(
            lambda: mailbox.committed(INTERNAL, after_seq=1, limit=1, include_internal=False)
        )
        assert [m.message.id for m in old] == [m.message.id for m in new] == ["answer"]
        rows.append([f"committed limit=1 past {args.internal} internal (s)", old_s, new_s])

    table = [
        [name, before, after, before / after if after else float("inf")]
        for name, before, after in rows
    ]
    console.print(
        rows_table("long threads: before / after", ["read", "before", "after", "ratio"], table)
    )
    write_results("long_threads", {"version": version, "rows": table})


if __name__ == "__main__":
    main()
