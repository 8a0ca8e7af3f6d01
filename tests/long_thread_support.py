"""A long thread, made fast: its events are decided on a memory mailbox, then appended to the
target store as stored (export/import's path), a thousand at a time, and the views caught up."""

from __future__ import annotations

import threadbox
from threadbox import Mailbox, Message

CYCLE = 5  # events of one run: delivered, started, frozen, output, finished


def long_thread(
    target: Mailbox, thread_id: str, runs: int, text: str = "x" * 40, *, catch_up: bool = True
) -> int:
    """``runs`` runs of one user message and one answer each on ``thread_id`` in ``target``
    (1 + 5 * runs events); returns the thread's version. ``catch_up=False`` leaves the views
    behind, as another process's writes would."""
    with threadbox.open("memory://") as source:
        for i in range(runs):
            run = f"r{i}"
            source.submit(thread_id, [Message.user(f"{text} {i}", id=f"u{i}")], None, run)
            source.commit_output(thread_id, run, [Message.assistant(f"{text} {i}", id=f"a{i}")])
            source.finish_run(thread_id, run)
        archived = source.store.archived(thread_id)  # type: ignore[attr-defined]
    for start in range(0, len(archived), 1000):
        target.store.append_archived(archived[start : start + 1000])  # type: ignore[attr-defined]
    if catch_up:
        target.views.catch_up()
    return len(archived)
