"""``threadbox demo``: a short, realistic session on a fresh embedded store, step by step."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import threadbox
import typer
from rich.markup import escape
from threadbox import DeliveryMode, Mailbox, Message, RecordedEvent

from .render import committed_table, pending_table, preview
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


# How each event of a step is shown: a marker, a style, and what changed (rich markup).
MARKS = {
    "MessagesDelivered": ("+", "green"),
    "PendingMessageEdited": ("~", "yellow"),
    "PendingMessageRetracted": ("-", "red"),
    "PendingMessagesExpired": ("-", "red"),
    "PendingQueueReordered": ("↕", "yellow"),
    "PendingMessagesFrozen": ("→", "cyan"),
    "RunOutputCommitted": ("←", "magenta"),
    "RunStarted": ("▶", "bold"),
    "RunFinished": ("■", "bold"),
    "ThreadOpened": ("○", "dim"),
}


def _text(message: dict[str, Any]) -> str:
    parts = message.get("content") or []
    text = " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    return escape(f'"{preview(text)}"')


def change_line(event: RecordedEvent) -> list[str]:
    """What one event changed, as the demo's marked lines (rich markup)."""
    d = event.data
    mark, style = MARKS.get(event.type, ("·", "dim"))
    head = f"   [{style}]{mark}[/{style}] "
    match event.type:
        case "MessagesDelivered":
            return [
                f"{head}pending   {escape(i['message']['id'])} {_text(i['message'])}"
                f" [dim]({i['mode']['boundary']})[/dim]"
                for i in d["messages"]
            ]
        case "PendingMessageEdited":
            return [f"{head}edited    {escape(d['pending_id'])} → {_text(d['message'])}"]
        case "PendingMessageRetracted":
            return [f"{head}retracted {escape(d['pending_id'])} (the model never reads it)"]
        case "PendingMessagesExpired":
            return [f"{head}expired   {escape(', '.join(d['pending_ids']))}"]
        case "PendingQueueReordered":
            return [f"{head}reordered pending: {escape(', '.join(d['order']))}"]
        case "PendingMessagesFrozen":
            return [
                f"{head}committed {escape(i['message']['id'])} as #{i['seq']} for "
                f"{escape(d['run_id'])} [dim]({d['boundary']})[/dim]"
                for i in d["messages"]
            ]
        case "RunOutputCommitted":
            return [
                f"{head}output    #{i['seq']} {_text(i['message'])} from {escape(d['run_id'])}"
                for i in d["messages"]
            ]
        case "RunStarted":
            return [f"{head}{escape(d['run_id'])} started ({d['boundary']})"]
        case "RunFinished":
            return [f"{head}{escape(d['run_id'])} finished: {d['termination']}"]
        case "ThreadOpened":
            return [f"{head}thread {escape(THREAD)} opened"]
        case _:
            return [f"{head}{event.type}"]


def play(session: Session, mailbox: Mailbox, *, verbose: bool = False) -> None:
    """Each step: its narration, then one marked line per change its events made; with
    ``verbose``, the pending and committed zones after it as tables too."""
    out = session.out
    version = 0
    for number, (narration, act) in enumerate(story(), start=1):
        act(mailbox)
        out.print(f"[bold]{number:>2}[/bold] {escape(narration)}")
        for event in mailbox.history(THREAD, after_version=version):
            version = event.version
            for line in change_line(event):
                out.print(line, highlight=False)
        if verbose:
            out.print(pending_table(mailbox.pending(THREAD)))
            out.print(committed_table(mailbox.committed(THREAD)))
    runs = ", ".join(f"{r.run_id} {r.termination or r.status}" for r in mailbox.runs(THREAD))
    committed = len(mailbox.committed(THREAD))
    pending = len(mailbox.pending(THREAD))
    out.print(
        f"[bold]end[/bold]: {committed} committed, {pending} pending, {version} events; "
        f"runs: {runs}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        ctx: typer.Context,
        verbose: Annotated[
            bool, typer.Option("--verbose", "-v", help="show both zones after every step")
        ] = False,
        keep: Annotated[
            bool, typer.Option("--keep", help="keep the store, to explore it afterwards")
        ] = False,
    ) -> None:
        """Play a short agent session, step by step, on a fresh store.

        Each line under a step is an event written to the thread's log: + delivered,
        ~ edited, - retracted, ↕ reordered, → committed, ← output, ▶ ■ runs.
        """
        session = session_of(ctx)
        folder = Path(tempfile.mkdtemp(prefix="threadbox-demo-"))
        url = f"sqlite:///{folder / 'demo.db'}"
        try:
            session.out.print(
                f"threadbox demo: thread [bold]{THREAD}[/bold], a fresh store at {url}",
                highlight=False,
            )
            session.out.print(
                "[dim]+ delivered  ~ edited  - retracted  ↕ reordered  → committed  "
                "← output  ▶ ■ run started/finished[/dim]"
            )
            with reported(session), threadbox.open(url, env={}) as mailbox:
                play(session, mailbox, verbose=verbose)
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        if keep:
            session.out.print(
                f"kept; explore it: threadbox --url {url} show {THREAD}  (or history, audit)",
                highlight=False,
            )
        else:
            session.out.print("the store was deleted; --keep keeps it", highlight=False)
