"""The ``threadbox`` command line (docs/cli.md), built by ``build_cli(env)``; ``main()`` runs it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import typer

from . import audit, commands, demo, serve, show, transfer
from .session import Session
from .views import build_views_cli


def build_cli(env: Mapping[str, str]) -> typer.Typer:
    """The typer app; ``env`` gives ``THREADBOX_URL`` and ``THREADBOX_API_TOKEN``."""
    app = typer.Typer(
        help="threadbox: an event-sourced mailbox for AI-agent conversations.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        url: Annotated[
            str | None,
            typer.Option(help="store URL (default: THREADBOX_URL, else sqlite:///./threadbox.db)"),
        ] = None,
    ) -> None:
        ctx.obj = Session(url=url or env.get("THREADBOX_URL"), env=env)

    commands.register(app)
    show.register(app)
    app.add_typer(build_views_cli(), name="views")
    audit.register(app)
    transfer.register(app)
    demo.register(app)
    serve.register(app)
    return app


def main() -> None:
    build_cli(os.environ)()


__all__ = ["build_cli", "main"]
