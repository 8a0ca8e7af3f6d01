"""``threadbox demo``: a short, realistic session on a fresh embedded store, step by step."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import threadbox
import typer
from threadbox import DeliveryMode, Mailbox, Message

from .render import committed_table, pending_table
from .session import Session, reported, session_of

THREAD = "demo-trip"

Step = tuple[str, Callable[[Mailbox], object]]


def story() -> list[Step]:
    """One line of narration and one mailbox call per step."""
    return [
        (
            "The user asks for a trip plan; the agent starts run-1 on it.",
            lambda mb: (
                mb.deliver(THREAD, [Message.user("Plan me 3 days in Lisbon", id="ask")]),
                mb.freeze(THREAD, "new_run", "run-1"),
            ),
        ),
        (
            "While run-1 works, the user steers it (next_step) and queues a follow-up (new_run).",
            lambda mb: (
                mb.deliver(
                    THREAD,
                    [Message.user("Include a day trip to Sintra", id="steer")],
                    DeliveryMode.next_step(),
                ),
                mb.deliver(THREAD, [Message.user("Budget: 300 EUR", id="budget")]),
            ),
        ),
        (
            "At its next step boundary run-1 reads the steering; the follow-up keeps waiting.",
            lambda mb: mb.freeze(THREAD, "next_step", "run-1"),
        ),
        (
            "The user edits the queued follow-up before the model has read it.",
            lambda mb: mb.edit(
                THREAD, "budget", Message.user("Budget: 400 EUR", id="budget"), expected_revision=1
            ),
        ),
        (
            "The user queues a message, then retracts it: it never reaches the model.",
            lambda mb: (
                mb.deliver(THREAD, [Message.user("Skip the museums", id="oops")]),
                mb.retract(THREAD, "oops", expected_revision=1),
            ),
        ),
        (
            "The user adds one more and moves it to the front of the queue.",
            lambda mb: (
                mb.deliver(THREAD, [Message.user("Morning flights only", id="mornings")]),
                mb.reorder(THREAD, ["mornings", "budget"]),
            ),
        ),
        (
            "run-1 answers; an on_natural_end note arrives for when it would stop.",
            lambda mb: (
                mb.commit_output(
                    THREAD, "run-1", [Message.assistant("Day 1 Alfama, day 2 Sintra, day 3 Belém.")]
                ),
                mb.deliver(
                    THREAD,
                    [Message.user("Then add a packing list", id="packing")],
                    DeliveryMode.on_natural_end(),
                ),
            ),
        ),
        (
            "At its natural end run-1 reads the note and continues instead of stopping.",
            lambda mb: mb.freeze(THREAD, "on_natural_end", "run-1"),
        ),
        (
            "run-1 finishes; run-2 starts on the queued follow-ups, in their new order.",
            lambda mb: (
                mb.commit_output(THREAD, "run-1", [Message.assistant("Packing: shoes, hat.")]),
                mb.finish_run(THREAD, "run-1"),
                mb.freeze(THREAD, "new_run", "run-2"),
            ),
        ),
        (
            "The user interrupts run-2 with a change of plan; run-3 takes it at once.",
            lambda mb: (
                mb.deliver(
                    THREAD,
                    [Message.user("Stop - make it Porto instead", id="porto")],
                    DeliveryMode.interrupt(),
                ),
                mb.freeze(THREAD, "interrupt", "run-3"),
            ),
        ),
        (
            "run-3 answers and ends naturally; nothing is left pending.",
            lambda mb: (
                mb.commit_output(THREAD, "run-3", [Message.assistant("Porto: 3 days, 400 EUR.")]),
                mb.finish_run(THREAD, "run-3"),
            ),
        ),
    ]


def play(session: Session, mailbox: Mailbox) -> None:
    for number, (narration, act) in enumerate(story(), start=1):
        act(mailbox)
        session.out.rule(f"step {number}")
        session.out.print(narration)
        session.out.print(pending_table(mailbox.pending(THREAD)))
        session.out.print(committed_table(mailbox.committed(THREAD)))
    runs = ", ".join(f"{r.run_id} {r.termination or r.status}" for r in mailbox.runs(THREAD))
    session.out.print(f"runs: {runs}")


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(ctx: typer.Context) -> None:
        """Play a short agent session, step by step, on a fresh store."""
        session = session_of(ctx)
        with tempfile.TemporaryDirectory(prefix="threadbox-demo-") as folder:
            url = f"sqlite:///{Path(folder) / 'demo.db'}"
            session.out.print(f"a fresh store at {url}")
            with reported(session), threadbox.open(url, env={}) as mailbox:
                play(session, mailbox)
