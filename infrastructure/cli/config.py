"""``threadbox config``: the effective configuration, secrets masked, and where each value came
from (a flag, the environment, or the default)."""

from __future__ import annotations

import typer
from rich.table import Table

from .commands import AsJson
from .session import reported, session_of


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config_command(ctx: typer.Context, as_json: AsJson = False) -> None:
        """Print the effective configuration (secrets masked) and each value's source."""
        session = session_of(ctx)
        with reported(session):
            rows = session.config().effective(session.env, session.flags)
        if as_json:
            session.print_json({row["name"]: row["value"] for row in rows})
            return
        table = Table(title="threadbox configuration", title_justify="left")
        table.add_column("setting")
        table.add_column("environment variable")
        table.add_column("value", overflow="fold")  # a long URL wraps, never cut
        table.add_column("from")
        for row in rows:
            value = row["value"]
            shown = (
                ", ".join(value)
                if isinstance(value, list)
                else "-"
                if value is None
                else str(value)
            )
            table.add_row(row["name"], row["variable"], shown, row["source"])
        session.out.print(table)
