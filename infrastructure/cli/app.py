"""The ``threadbox`` command line (docs/cli.md), built by ``build_cli(env)``; ``run`` runs it
with the exit codes of docs/cli.md."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Annotated

import orjson
import threadbox
import typer

from . import audit, commands, config, demo, relay, serve, show, transfer
from .session import USAGE_EXIT, Session
from .views import build_views_cli


def _print_version(given: bool) -> None:
    if given:
        typer.echo(f"threadbox {threadbox.__version__}")
        raise typer.Exit()


def build_cli(env: Mapping[str, str]) -> typer.Typer:
    """The typer app; ``env`` is the environment its configuration is read from
    (``THREADBOX_URL``, ``THREADBOX_MAX_PENDING``, …: ``threadbox.infrastructure.config``)."""
    app = typer.Typer(
        help="threadbox: an event-sourced mailbox for AI-agent conversations.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,  # plain help: reads well at 80 columns, shows every choice
        context_settings={"max_content_width": 100},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        url: Annotated[
            str | None,
            typer.Option(
                metavar="URL",
                help="store URL (default: THREADBOX_URL, else sqlite:///./threadbox.db)",
            ),
        ] = None,
        show_version: Annotated[
            bool,
            typer.Option(
                "--version",
                is_eager=True,
                callback=_print_version,
                help="print the version and exit",
            ),
        ] = False,
        max_pending: Annotated[
            int | None,
            typer.Option(
                metavar="N",
                min=1,
                help="the most entries a thread's pending zone may hold (default: "
                "THREADBOX_MAX_PENDING, else 10000)",
            ),
        ] = None,
        max_message_bytes: Annotated[
            int | None,
            typer.Option(
                metavar="N",
                min=1,
                help="the largest message, JSON-encoded bytes (default: "
                "THREADBOX_MAX_MESSAGE_BYTES, else 1048576)",
            ),
        ] = None,
    ) -> None:
        flags = {"url": url, "max_pending": max_pending, "max_message_bytes": max_message_bytes}
        ctx.obj = Session(env=env, flags=flags)

    commands.register(app)
    show.register(app)
    app.add_typer(build_views_cli(), name="views")
    audit.register(app)
    transfer.register(app)
    demo.register(app)
    serve.register(app)
    config.register(app)
    relay.register(app)
    return app


def run(args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run one command line; its exit code: 0 done, 1 refused (a domain or store error), 2 a
    usage error or invalid input. With ``--json`` a usage error is a JSON object on stderr too."""
    command = typer.main.get_command(build_cli(env))
    try:
        result = command.main(list(args), prog_name="threadbox", standalone_mode=False)
    except typer.TyperException as error:  # click's usage errors (typer vendors click)
        if "--json" in args:
            problem = {"code": "usage_error", "message": error.format_message()}
            sys.stderr.write(orjson.dumps(problem).decode() + "\n")
        else:
            show = getattr(error, "show", None)  # usage line, hint and message, as click prints
            if callable(show):
                show()
            else:
                sys.stderr.write(f"Error: {error.format_message()}\n")
        return USAGE_EXIT if error.exit_code == USAGE_EXIT else 1
    except typer.Abort:
        sys.stderr.write("aborted\n")
        return 1
    return result if isinstance(result, int) else 0


__all__ = ["build_cli", "run"]
