"""``threadbox serve``: the HTTP API under uvicorn.

SIGTERM/SIGINT stop it gracefully: open SSE streams end, requests in flight finish (5 s at most),
the mailbox closes; then uvicorn re-raises the signal, so the exit status names it (-15 / 143).

Every option may also come from the environment (``THREADBOX_HOST``, ``THREADBOX_PORT``,
``THREADBOX_HEADER_TIMEOUT``, …; ``threadbox config`` lists them); the flag wins. Settings that
would expose or lock the API by mistake refuse to start (ADR 0015): a token that is empty or has
whitespace, a non-loopback host without a token unless ``--insecure``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Annotated

import typer
import uvicorn
from threadbox.errors import InvalidInput
from threadbox.infrastructure.config import Config, field_help
from threadbox.infrastructure.http import create_app
from threadbox.infrastructure.http.auth import TOKEN_SETTING, is_loopback
from threadbox.infrastructure.http.stream import StreamSettings
from threadbox.infrastructure.http.timeouts import header_timeout_protocol
from threadbox.infrastructure.logs import configure_logging
from threadbox.infrastructure.wiring import masked_url

from .session import Session, reported, session_of
from .workers import serve_workers

log = logging.getLogger("threadbox.serve")
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        ctx: typer.Context,
        host: Annotated[str | None, typer.Option(help=field_help("host"))] = None,
        port: Annotated[int | None, typer.Option(help=field_help("port"))] = None,
        insecure: Annotated[
            bool | None, typer.Option("--insecure", help=field_help("insecure"))
        ] = None,
        log_level: Annotated[str | None, typer.Option(help=field_help("log_level"))] = None,
        log_format: Annotated[str | None, typer.Option(help=field_help("log_format"))] = None,
        header_timeout: Annotated[
            float | None, typer.Option(help=field_help("header_timeout"))
        ] = None,
        body_timeout: Annotated[float | None, typer.Option(help=field_help("body_timeout"))] = None,
        keep_alive_timeout: Annotated[
            float | None, typer.Option(help=field_help("keep_alive_timeout"))
        ] = None,
        limit_concurrency: Annotated[
            int | None, typer.Option(help=field_help("limit_concurrency"))
        ] = None,
        workers: Annotated[int | None, typer.Option(help=field_help("workers"))] = None,
        cors_origins: Annotated[str | None, typer.Option(help=field_help("cors_origins"))] = None,
    ) -> None:
        """Serve the HTTP API.

        With THREADBOX_API_TOKEN set, every route but /healthz needs the bearer token."""
        session = session_of(ctx)
        with reported(session):
            config = session.config(
                host=host,
                port=port,
                insecure=insecure,
                log_level=log_level,
                log_format=log_format,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
                keep_alive_timeout=keep_alive_timeout,
                limit_concurrency=limit_concurrency,
                workers=workers,
                cors_origins=cors_origins,
            )
            refuse_an_exposed_host(session, config)
            configure_logging(config.log_format, config.log_level)
        if config.workers > 1:
            with reported(session):
                serve_workers(session, config)  # each worker runs serve_config
            return
        serve_config(session, config)


def refuse_an_exposed_host(session: Session, config: Config) -> None:
    """A non-loopback host needs a token, or ``--insecure`` (then a loud warning)."""
    if config.api_token is not None or is_loopback(config.host):
        return
    if not config.insecure:
        raise InvalidInput(
            f"--host {config.host} exposes every thread to the network and {TOKEN_SETTING} is "
            "not set: set a token, or pass --insecure to serve without auth anyway",
            "host",
        )
    warning = (
        f"WARNING: serving on {config.host} WITHOUT AUTHENTICATION (--insecure): anyone who can "
        "reach this port can read and write every thread"
    )
    session.err.print(warning, style="bold red", markup=False, highlight=False)
    log.warning(warning)


def serve_config(
    session: Session, config: Config, sockets: list[socket.socket] | None = None
) -> None:
    """Open the store and serve it with ``config`` until stopped (on the listening ``sockets``
    given, else on ``config.host``:``config.port``)."""
    store = masked_url(config.url)
    with session.mailbox(config=config) as mailbox:
        mailbox.views.start_following()  # views kept current with every process's writes
        token = config.token()
        log.info(
            "serving %s on http://%s:%d; auth %s",
            store,
            config.host,
            config.port,
            "on (bearer token)" if token else "off",
            extra={
                "store": store,
                "host": config.host,
                "port": config.port,
                "auth": bool(token),
                "workers": config.workers,
                "cors_origins": config.cors_origins,
                "log_format": config.log_format,
            },
        )
        # Streams wake on the follower's news; their own reads of the log are a fallback.
        streams = StreamSettings(poll_interval=2.0)
        api = create_app(
            mailbox,
            token=token,
            stream_settings=streams,
            close_on_shutdown=True,
            body_timeout=config.body_timeout,
            cors_origins=config.cors_origins,
        )
        server = uvicorn.Config(
            api,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            log_config=None,  # configure_logging's handler formats uvicorn's lines too
            access_log=False,  # threadbox.access logs each request, with its id
            timeout_graceful_shutdown=5,
            http=header_timeout_protocol(config.header_timeout),  # httptools' parser
            loop="auto",  # uvloop where it is installed (a dependency of the server extra)
            timeout_keep_alive=config.keep_alive_timeout,  # type: ignore[arg-type]
            limit_concurrency=config.limit_concurrency,
        )
        instance = uvicorn.Server(server)
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
            instance.run(sockets=sockets)
        if not instance.started:
            raise SystemExit(STARTUP_FAILURE)  # as uvicorn.run: the port could not be bound
