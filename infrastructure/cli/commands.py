"""The write commands: deliver, edit, retract, reorder, freeze, submit, finish-run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from threadbox import DeliveryBoundary, DeliveryGranularity, Message, Termination
from threadbox.errors import InvalidInput

from .render import committed_table, pending_table
from .session import Session, session_of

# The choices are the domain's own enums (docs/concepts.md): --help lists them, and any other
# value is a usage error, before anything is opened.

Thread = Annotated[str, typer.Argument(metavar="THREAD", help="the thread id", show_default=False)]
Texts = Annotated[
    list[str] | None,
    typer.Option("--text", metavar="TEXT", help="a user message's text (repeatable)"),
]
PositionalTexts = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[TEXT]...", help="user messages' texts (as --text)", show_default=False
    ),
]
JsonFile = Annotated[
    str | None,
    typer.Option(
        "--json-file", metavar="FILE", help="a JSON message or list of messages; '-' reads stdin"
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON (errors too, on stderr)")]
Boundary = Annotated[DeliveryBoundary, typer.Option("--boundary", help="where it may be consumed")]
Granularity = Annotated[
    DeliveryGranularity, typer.Option("--granularity", help="a freeze takes all, or one")
]
Barrier = Annotated[bool, typer.Option("--barrier", help="nothing passes this entry")]
TargetRun = Annotated[
    str | None, typer.Option("--target-run", metavar="RUN", help="the run it is meant for")
]
NoFallback = Annotated[
    bool, typer.Option("--no-fallback", help="never consumed by a new run if its target ends")
]
RunId = Annotated[str, typer.Option("--run", metavar="RUN", help="the run id")]
NewRunId = Annotated[
    str | None,
    typer.Option(
        "--run", metavar="RUN", help="the run id (new_run, interrupt: generated if left out)"
    ),
]
Rollback = Annotated[
    bool,
    typer.Option("--rollback", help="interrupt: also hide every output of the interrupted run"),
]
Revision = Annotated[
    int | None, typer.Option("--revision", metavar="N", help="the expected revision")
]
Version = Annotated[
    int | None, typer.Option("--version", metavar="N", help="the expected thread version")
]


def read_messages(
    texts: list[str] | None, json_file: str | None, positional: list[str] | None = None
) -> list[Any]:
    """Messages from positional texts and ``--text`` (user messages, in that order) and
    ``--json-file`` (full messages)."""
    messages: list[Any] = [Message.user(t) for t in [*(positional or []), *(texts or [])]]
    if json_file is not None:
        raw = sys.stdin.buffer.read() if json_file == "-" else Path(json_file).read_bytes()
        try:
            loaded = orjson.loads(raw)
        except orjson.JSONDecodeError as bad:
            raise InvalidInput(f"{json_file} is not JSON: {bad}", "json-file") from None
        messages.extend(loaded if isinstance(loaded, list) else [loaded])
    if not messages:
        raise InvalidInput("give the messages as TEXT, --text or --json-file", "messages")
    return messages


def mode_of(
    boundary: str, granularity: str, barrier: bool, target: str | None, no_fallback: bool
) -> dict[str, Any]:
    return {
        "boundary": boundary,
        "granularity": granularity,
        "barrier": barrier,
        "target_run_id": target,
        "fallback_to_new_run": not no_fallback,
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def deliver(
        ctx: typer.Context,
        thread: Thread,
        texts: PositionalTexts = None,
        text: Texts = None,
        json_file: JsonFile = None,
        boundary: Boundary = DeliveryBoundary.NEW_RUN,
        granularity: Granularity = DeliveryGranularity.BATCH,
        barrier: Barrier = False,
        target_run: TargetRun = None,
        no_fallback: NoFallback = False,
        as_json: AsJson = False,
    ) -> None:
        """Deliver messages to the pending zone."""
        session = session_of(ctx)
        with session.mailbox() as mailbox:
            mode = mode_of(boundary, granularity, barrier, target_run, no_fallback)
            entries = mailbox.deliver(thread, read_messages(text, json_file, texts), mode)
            _entries(session, entries, as_json, "delivered")

    @app.command()
    def edit(
        ctx: typer.Context,
        thread: Thread,
        pending_id: Annotated[str, typer.Argument(help="the pending message id")],
        text: Texts = None,
        json_file: JsonFile = None,
        revision: Revision = None,
        as_json: AsJson = False,
    ) -> None:
        """Replace a pending message's content (the id stays)."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            given = read_messages(text, json_file)
            if len(given) != 1:
                raise InvalidInput("edit takes exactly one message", "messages")
            message = given[0]
            if isinstance(message, Message):
                message = message.with_id(pending_id)
            entry = mailbox.edit(thread, pending_id, message, expected_revision=revision)
            _entries(session, [entry], as_json, "edited")

    @app.command()
    def retract(
        ctx: typer.Context,
        thread: Thread,
        pending_id: Annotated[str, typer.Argument(help="the pending message id")],
        revision: Revision = None,
        as_json: AsJson = False,
    ) -> None:
        """Take a pending message back before the model reads it."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            entry = mailbox.retract(thread, pending_id, expected_revision=revision)
            _entries(session, [entry], as_json, "retracted")

    @app.command()
    def reorder(
        ctx: typer.Context,
        thread: Thread,
        order: Annotated[list[str], typer.Argument(help="every pending id, in the new order")],
        version: Version = None,
        as_json: AsJson = False,
    ) -> None:
        """Put the pending zone in a new order."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            entries = mailbox.reorder(thread, order, expected_version=version)
            _entries(session, entries, as_json, "pending")

    @app.command()
    def freeze(
        ctx: typer.Context,
        thread: Thread,
        run: NewRunId = None,
        boundary: Boundary = DeliveryBoundary.NEW_RUN,
        version: Version = None,
        rollback: Rollback = False,
        as_json: AsJson = False,
    ) -> None:
        """Commit the pending messages a run boundary selects."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            result = mailbox.freeze(
                thread, boundary, run, expected_version=version, rollback=rollback
            )
            _frozen(session, result.model_dump(mode="json"), result.committed, as_json)

    @app.command()
    def submit(
        ctx: typer.Context,
        thread: Thread,
        run: RunId,
        texts: PositionalTexts = None,
        text: Texts = None,
        json_file: JsonFile = None,
        boundary: Boundary = DeliveryBoundary.NEW_RUN,
        granularity: Granularity = DeliveryGranularity.BATCH,
        barrier: Barrier = False,
        target_run: TargetRun = None,
        no_fallback: NoFallback = False,
        as_json: AsJson = False,
    ) -> None:
        """Deliver and freeze in one write (all consumed now, or nothing).

        Every message is consumed by this freeze, or nothing is written."""
        session = session_of(ctx)
        with session.mailbox() as mailbox:
            mode = mode_of(boundary, granularity, barrier, target_run, no_fallback)
            result = mailbox.submit(thread, read_messages(text, json_file, texts), mode, run)
            _frozen(session, result.model_dump(mode="json"), result.committed, as_json)

    @app.command("finish-run")
    def finish_run(
        ctx: typer.Context,
        thread: Thread,
        run: RunId,
        termination: Annotated[Termination, typer.Option(help="how it ended")] = (
            Termination.NATURAL_END
        ),
        detail: Annotated[str | None, typer.Option(metavar="TEXT", help="why it ended")] = None,
        as_json: AsJson = False,
    ) -> None:
        """End the thread's open run."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            expired = mailbox.finish_run(thread, run, termination, detail)
            if as_json:
                session.print_json({"expired": expired})
            else:
                session.out.print(
                    f"run {run} finished ({termination}); expired: {expired or 'none'}"
                )


def _entries(session: Session, entries: list[Any], as_json: bool, title: str) -> None:
    if as_json:
        session.print_json(entries)
    else:
        session.out.print(pending_table(entries, title))


def _frozen(session: Session, result: dict[str, Any], committed: list[Any], as_json: bool) -> None:
    if as_json:
        session.print_json(result)
        return
    if not committed:
        session.out.print("nothing was selected: no message moved, no run changed")
        return
    session.out.print(committed_table(committed, f"committed to run {result['run_id']}"))
    if result.get("interrupted_run_id"):
        session.out.print(f"interrupted run {result['interrupted_run_id']}")
    if result.get("hidden"):
        session.out.print(f"rolled back (hidden): {', '.join(result['hidden'])}")
