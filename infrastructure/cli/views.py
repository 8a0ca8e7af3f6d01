"""``threadbox views status|catch-up|rebuild|verify``, with progress bars on long work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .commands import AsJson
from .session import Session, session_of


class RateColumn(ProgressColumn):
    """How many units a second (the task's ``unit`` field), over the task's life so far."""

    def render(self, task: Task) -> Text:
        """``12,345 events/s`` (blank until there is a rate)."""
        speed, unit = task.speed, task.fields.get("unit", "events")
        return Text(f"{speed:,.0f} {unit}/s" if speed else "", style="progress.data.speed")


@contextmanager
def progress_bars(
    session: Session, *phases: tuple[str, str]
) -> Iterator[list[Callable[[int, int], None]]]:
    """One ``(done, total)`` callback per ``(what, unit)`` phase, drawn as bars on stderr
    (stdout stays clean for --json), in one display: done/total, the rate in units per
    second, the time so far and the time left. No bars in pipes and logs."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    quiet = not session.err.is_terminal
    with Progress(*columns, console=session.err, transient=True, disable=quiet) as bar:
        yield [updater(bar, bar.add_task(what, total=None, unit=unit)) for what, unit in phases]


def updater(bar: Progress, task: TaskID) -> Callable[[int, int], None]:
    """The ``(done, total)`` callback of one task of ``bar``."""

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return advance


@contextmanager
def progress_bar(
    session: Session, what: str, unit: str = "events"
) -> Iterator[Callable[[int, int], None]]:
    """One phase's ``(done, total)`` callback (``progress_bars`` with one phase)."""
    with progress_bars(session, (what, unit)) as (advance,):
        yield advance


def build_views_cli() -> typer.Typer:
    views = typer.Typer(help="The read models: status, catch-up, rebuild, verify.")

    @views.command()
    def status(ctx: typer.Context, as_json: AsJson = False) -> None:
        """How far the views are behind the log."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            found = mailbox.views.status()
            report = {
                "position": found.position,
                "log_position": found.log_position,
                "lag": found.lag,
                "oldest_transaction_seconds": found.oldest_transaction_seconds,
            }
            if as_json:
                session.print_json(report)
            else:
                oldest = found.oldest_transaction_seconds
                session.out.print(
                    f"views at {found.position or 'the start'} of "
                    f"{found.log_position or 'the start'} (lag {found.lag} events"
                    + ("" if oldest is None else f"; oldest transaction {oldest:.1f} s")
                    + ")"
                )

    @views.command("catch-up")
    def catch_up(ctx: typer.Context) -> None:
        """Apply every event the views have not seen."""
        session = session_of(ctx)
        with (
            session.mailbox(create=False) as mailbox,
            progress_bar(session, "catching up") as advance,
        ):
            position = mailbox.views.catch_up(progress=advance)
        session.out.print(f"views at position {position or 'the start'}")

    @views.command()
    def rebuild(ctx: typer.Context) -> None:
        """Rebuild every view from the start of the log."""
        session = session_of(ctx)
        with (
            session.mailbox(create=False) as mailbox,
            progress_bar(session, "rebuilding") as advance,
        ):
            position = mailbox.views.rebuild(progress=advance)
        session.out.print(f"views rebuilt up to position {position or 'the start'}")

    @views.command()
    def verify(ctx: typer.Context, as_json: AsJson = False) -> None:
        """Compare the views with an independent fold of the whole log."""
        session = session_of(ctx)
        with (
            session.mailbox(create=False) as mailbox,
            progress_bar(session, "verifying") as advance,
        ):
            report = mailbox.views.verify(progress=advance)
        if as_json:
            session.print_json(
                {
                    "ok": report.ok,
                    "differences": report.differences,
                    "position": report.position,
                    "events": report.events,
                }
            )
        elif report.ok:
            session.out.print(
                f"views match the log up to position {report.position or 'the start'} "
                f"({report.events} events)"
            )
        else:
            for difference in report.differences:
                session.out.print(difference, markup=False)
        if not report.ok:
            raise typer.Exit(1)

    return views
