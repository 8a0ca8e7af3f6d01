"""``export`` and ``import``: event streams as JSON Lines (the format and its rules are the
application's, ``threadbox.application.transfer``); here, files, stdin/stdout and progress."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from threadbox.application import transfer

from .session import session_of
from .views import progress_bar, progress_bars


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        ctx: typer.Context,
        threads: Annotated[list[str] | None, typer.Argument(help="threads (default: all)")] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="file (default: stdout)")
        ] = None,
    ) -> None:
        """Write event streams as JSON Lines."""
        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            archive = transfer.archive_of(mailbox.store)
            with progress_bar(session, "exporting") as advance:
                sink = output.open("wb") if output else sys.stdout.buffer
                try:
                    for line in transfer.export_lines(archive, threads or [], advance):
                        sink.write(line)
                finally:
                    if output:
                        sink.close()
                    else:
                        sink.flush()

    @app.command("import")
    def import_(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="a file written by export ('-' for stdin)")],
        skip_existing: Annotated[
            bool,
            typer.Option(
                "--skip-existing", help="leave out events the store already holds, identical"
            ),
        ] = False,
    ) -> None:
        """Append exported event streams to this store.

        Every stream is checked first (exit 1 naming each bad line; nothing written), then
        each thread is written in one transaction. Existing versions are never overwritten.
        The file is read in place (stdin is spooled to a temporary file first); memory stays
        flat whatever its size."""
        session = session_of(ctx)
        with session.mailbox() as mailbox, ExitStack() as open_files:
            archive = transfer.archive_of(mailbox.store)
            if str(file) == "-":
                source, size = sys.stdin.buffer, 0
            else:
                source = open_files.enter_context(file.open("rb"))
                size = file.stat().st_size
            with progress_bar(session, "reading", unit="bytes") as advance:
                streams = open_files.enter_context(
                    transfer.read_streams(archive, source, size, advance)
                )
            phases = (("checking, then importing", "events"), ("catching up the views", "events"))
            with progress_bars(session, *phases) as (advance, catching_up):
                written = transfer.import_streams(
                    mailbox.store,
                    mailbox.views,
                    streams,
                    advance,
                    skip_existing=skip_existing,
                    max_message_bytes=mailbox.settings.max_message_bytes,
                    catch_up_progress=catching_up,
                )
        session.out.print(f"imported {written} events of {len(streams)} threads")
