"""Several OS processes write the same thread; nothing is lost and the invariants
(docs/semantics.md §7) still hold."""

from __future__ import annotations

import multiprocessing
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import threadbox
from threadbox import DeliveryBoundary, DeliveryMode, Message
from threadbox.errors import (
    Contention,
    NotPending,
    RunNotRunning,
    ThreadboxError,
    ThreadBusy,
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite", "postgres"])]

B = DeliveryBoundary
T = "shared-thread"
WRITERS = 4
COMMANDS = 40


@dataclass
class Report:
    """What one writer saw: ids it delivered or output, and every error it got."""

    delivered: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    legitimate: dict[str, int] = field(default_factory=dict)
    contention: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


LEGITIMATE = (NotPending, RunNotRunning, ThreadBusy)  # domain outcomes of losing a race fairly


def write(url: str, writer: int, start: Any) -> Report:
    """One process: ~40 mixed commands on the shared thread, once every writer is ready."""
    rng = random.Random(writer)
    report = Report()
    with threadbox.open(url) as mailbox:
        start.wait(timeout=60)
        for n in range(COMMANDS):
            action = rng.choice(
                ["deliver", "deliver", "edit", "steer", "start", "output", "finish"]
            )
            try:
                if action == "deliver":
                    mode = rng.choice([DeliveryMode(), DeliveryMode.next_step()])
                    message_id = f"w{writer}-m{n}"
                    mailbox.deliver(T, [Message.user(f"from {writer}", id=message_id)], mode)
                    report.delivered.append(message_id)
                elif action == "edit" and report.delivered:
                    target = rng.choice(report.delivered)
                    mailbox.edit(T, target, Message.user(f"edited by {writer} at {n}"))
                elif action == "start":
                    mailbox.freeze(T, B.NEW_RUN, f"run-w{writer}-{n}")
                else:
                    running = mailbox.thread(T).running_run_id or "no-run"
                    if action == "steer":
                        mailbox.freeze(T, B.NEXT_STEP, running)
                    elif action == "output":
                        output_id = f"w{writer}-o{n}"
                        mailbox.commit_output(T, running, [Message.assistant("ok", id=output_id)])
                        report.outputs.append(output_id)
                    else:
                        mailbox.finish_run(T, running)
            except LEGITIMATE as outcome:
                report.legitimate[outcome.code] = report.legitimate.get(outcome.code, 0) + 1
            except Contention as contention:
                report.contention.append(f"{action}: {contention}")
            except ThreadboxError as error:
                report.unexpected.append(f"{action}: {type(error).__name__}: {error}")
    return report


def test_concurrent_writers_of_one_thread_lose_nothing(store_url: str) -> None:
    with threadbox.open(store_url) as mailbox:  # creates the schema and the thread up front
        mailbox.deliver(T, [Message.user("first", id="first")])
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(WRITERS) as pool:
        start = manager.Barrier(WRITERS)
        jobs = [(store_url, w, start) for w in range(WRITERS)]
        reports = pool.starmap(write, jobs, chunksize=1)

    assert [r.contention for r in reports] == [[]] * WRITERS
    assert [r.unexpected for r in reports] == [[]] * WRITERS
    delivered = {"first"}.union(*(r.delivered for r in reports))
    outputs = set().union(*(r.outputs for r in reports))
    assert len(delivered) > WRITERS * 5, "the writers delivered something"
    with threadbox.open(store_url) as mailbox:
        mailbox.views.catch_up()
        pending = [e.pending_id for e in mailbox.pending(T)]
        committed = mailbox.committed(T, include_hidden=True)
        committed_ids = [str(c.message.id) for c in committed]
        assert [c.seq for c in committed] == list(range(1, len(committed) + 1))
        assert len(committed_ids) == len(set(committed_ids)), "a message was committed twice"
        assert not set(pending) & set(committed_ids)
        assert delivered <= set(pending) | set(committed_ids), "a delivered message was lost"
        assert outputs <= set(committed_ids)
        assert set(pending) | set(committed_ids) == delivered | outputs
        assert [e.position for e in mailbox.pending(T)] == list(range(1, len(pending) + 1))
        state = mailbox.thread(T)
        assert sum(r.status != "done" for r in state.runs) <= 1
        report = mailbox.views.verify()
        assert report.ok, report.differences
