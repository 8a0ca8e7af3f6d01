"""``threadbox serve``: the HTTP API under uvicorn.

SIGTERM/SIGINT stop it gracefully: open SSE streams end, requests in flight finish (5 s at most),
the mailbox closes; then uvicorn re-raises the signal, so the exit status names it (-15 / 143).
"""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from threadbox.infrastructure.http import create_app
from threadbox.infrastructure.http.stream import StreamSettings

from .session import session_of


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="the address to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="the port to listen on")] = 8787,
        log_level: Annotated[str, typer.Option(help="uvicorn's log level")] = "info",
    ) -> None:
        """Serve the HTTP API.

        With THREADBOX_API_TOKEN set, every route but /healthz needs the bearer token."""
        session = session_of(ctx)
        with session.mailbox() as mailbox:
            mailbox.views.start_following()  # views kept current with every process's writes
            token = session.env.get("THREADBOX_API_TOKEN") or None
            # Streams wake on the follower's news; their own reads of the log are a fallback.
            streams = StreamSettings(poll_interval=2.0)
            api = create_app(mailbox, token=token, stream_settings=streams, close_on_shutdown=True)
            uvicorn.run(api, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
