"""``threadbox audit``: every thread of the store checked against the invariants
(docs/semantics.md §7)."""

from __future__ import annotations

import typer
from rich.table import Table
from threadbox.application.audit import audit

from .commands import AsJson
from .session import session_of
from .views import progress_bar


def register(app: typer.Typer) -> None:
    @app.command("audit")
    def audit_command(ctx: typer.Context, as_json: AsJson = False) -> None:
        """Check the invariants over the whole log; exit 1 on a problem.

        Also verifies the views against an independent fold of the log."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox, progress_bar(session, "auditing") as advance:
            report = audit(mailbox.store, mailbox.views, progress=advance)
        if as_json:
            session.print_json(
                {
                    "ok": report.ok,
                    "threads": report.threads,
                    "events": report.events,
                    "views_ok": report.views_ok,
                    "problems": report.problems,
                }
            )
        else:
            table = Table(title="audit (invariants I-1 to I-5)")
            table.add_column("what")
            table.add_column("value", justify="right")
            table.add_row("threads", str(report.threads))
            table.add_row("events", str(report.events))
            table.add_row("views match the log", "yes" if report.views_ok else "no")
            table.add_row("problems", str(len(report.problems)))
            session.out.print(table)
            for problem in report.problems:
                session.out.print(problem, markup=False, highlight=False)
        if not report.ok:
            raise typer.Exit(1)
