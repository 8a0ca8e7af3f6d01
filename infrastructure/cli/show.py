"""The reading commands: ``show`` (pending, committed, runs) and ``history`` (the audit trail)."""

from __future__ import annotations

from typing import Annotated

import typer

from .commands import AsJson, Thread
from .render import committed_table, history_table, pending_table, runs_table
from .session import session_of


def register(app: typer.Typer) -> None:
    @app.command()
    def show(
        ctx: typer.Context,
        thread: Thread,
        at_version: Annotated[
            int | None, typer.Option("--at-version", help="the thread as it was then")
        ] = None,
        as_json: AsJson = False,
    ) -> None:
        """The thread's pending zone, committed zone and runs."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            state = mailbox.thread(thread, at_version=at_version)
            committed = mailbox.committed(thread, include_hidden=True, at_version=at_version)
            if as_json:
                session.print_json(
                    {"thread": state.model_dump(mode="json"), "committed": committed}
                )
                return
            running = state.running_run_id or "-"
            waiting = state.waiting_run_id or "-"
            session.out.print(
                f"thread {state.thread_id} at version {state.version}: "
                f"running {running}, waiting {waiting}"
            )
            session.out.print(pending_table(state.pending))
            session.out.print(committed_table(committed))
            session.out.print(runs_table(state.runs))

    @app.command()
    def history(
        ctx: typer.Context,
        thread: Thread,
        after_version: Annotated[int, typer.Option("--after-version")] = 0,
        as_json: AsJson = False,
    ) -> None:
        """The audit trail: version, time, event and what changed."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            events = mailbox.history(thread, after_version=after_version)
            if as_json:
                session.print_json(events)
            else:
                session.out.print(history_table(events, f"history of {thread}"))
