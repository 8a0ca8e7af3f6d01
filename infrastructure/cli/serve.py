"""``threadbox serve``: the HTTP API under uvicorn.

SIGTERM/SIGINT stop it gracefully: open SSE streams end, requests in flight finish (5 s at most),
the mailbox closes; then uvicorn re-raises the signal, so the exit status names it (-15 / 143).

Each option may also come from the environment (``THREADBOX_HOST``, ``THREADBOX_PORT``,
``THREADBOX_HEADER_TIMEOUT``, …); the flag wins. Settings that would expose or lock the API by
mistake refuse to start (ADR 0015): a token that is empty or has whitespace, a non-loopback host
without a token unless ``--insecure``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Annotated, TypeVar

import typer
import uvicorn
from threadbox.errors import InvalidInput
from threadbox.infrastructure.http import create_app
from threadbox.infrastructure.http.auth import TOKEN_SETTING, checked_token, is_loopback
from threadbox.infrastructure.http.stream import StreamSettings
from threadbox.infrastructure.http.timeouts import ServerLimits, header_timeout_protocol
from threadbox.infrastructure.logs import configure_logging
from threadbox.infrastructure.wiring import masked_url, store_url

from .session import reported, session_of

V = TypeVar("V", int, float, str)
DEFAULTS = ServerLimits()


def setting(
    given: V | None, env: Mapping[str, str], name: str, default: V, parse: Callable[[str], V]
) -> V:
    """The flag's value if given, else the environment's ``name``, else ``default``."""
    if given is not None:
        value = given
    elif env.get(name, "").strip():
        try:
            value = parse(env[name].strip())
        except ValueError:
            raise InvalidInput(f"{name}={env[name]!r} is not a valid value", name) from None
    else:
        value = default
    if isinstance(value, int | float) and value <= 0:
        raise InvalidInput(f"{name} must be positive, got {value}", name)
    return value


log = logging.getLogger("threadbox.serve")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        ctx: typer.Context,
        host: Annotated[
            str | None, typer.Option(help="the address to bind [THREADBOX_HOST; 127.0.0.1]")
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="the port to listen on [THREADBOX_PORT; 8787]")
        ] = None,
        log_level: Annotated[str, typer.Option(help="uvicorn's log level")] = "info",
        insecure: Annotated[
            bool, typer.Option(help="allow a non-loopback --host without THREADBOX_API_TOKEN")
        ] = False,
        header_timeout: Annotated[
            float | None,
            typer.Option(help="seconds to send request headers [THREADBOX_HEADER_TIMEOUT; 10]"),
        ] = None,
        body_timeout: Annotated[
            float | None,
            typer.Option(help="seconds to send a request body [THREADBOX_BODY_TIMEOUT; 60]"),
        ] = None,
        keep_alive_timeout: Annotated[
            float | None,
            typer.Option(help="idle keep-alive seconds [THREADBOX_KEEP_ALIVE_TIMEOUT; 5]"),
        ] = None,
        limit_concurrency: Annotated[
            int | None,
            typer.Option(
                help="open connections and requests beyond which requests get 503 "
                "[THREADBOX_LIMIT_CONCURRENCY; 1000]"
            ),
        ] = None,
        log_format: Annotated[
            str | None,
            typer.Option(help="text, or json: one object per line [THREADBOX_LOG_FORMAT; text]"),
        ] = None,
    ) -> None:
        """Serve the HTTP API.

        With THREADBOX_API_TOKEN set, every route but /healthz needs the bearer token."""
        session = session_of(ctx)
        env = session.env
        with reported(session):
            bind = setting(host, env, "THREADBOX_HOST", "127.0.0.1", str)
            listen = setting(port, env, "THREADBOX_PORT", 8787, int)
            limits = ServerLimits(
                header_timeout=setting(
                    header_timeout, env, "THREADBOX_HEADER_TIMEOUT", DEFAULTS.header_timeout, float
                ),
                body_timeout=setting(
                    body_timeout, env, "THREADBOX_BODY_TIMEOUT", DEFAULTS.body_timeout, float
                ),
                keep_alive_timeout=setting(
                    keep_alive_timeout,
                    env,
                    "THREADBOX_KEEP_ALIVE_TIMEOUT",
                    DEFAULTS.keep_alive_timeout,
                    float,
                ),
                limit_concurrency=setting(
                    limit_concurrency,
                    env,
                    "THREADBOX_LIMIT_CONCURRENCY",
                    DEFAULTS.limit_concurrency,
                    int,
                ),
            )
            chosen = setting(log_format, env, "THREADBOX_LOG_FORMAT", "text", str)
            if chosen not in ("text", "json"):
                raise InvalidInput(
                    f"THREADBOX_LOG_FORMAT (--log-format) must be text or json, not {chosen!r}",
                    "THREADBOX_LOG_FORMAT",
                )
            configure_logging("json" if chosen == "json" else "text", log_level)
            token = checked_token(env[TOKEN_SETTING]) if TOKEN_SETTING in env else None
            if token is None and not is_loopback(bind):
                if not insecure:
                    raise InvalidInput(
                        f"--host {bind} exposes every thread to the network and "
                        f"{TOKEN_SETTING} is not set: set a token, or pass --insecure to serve "
                        "without auth anyway",
                        "host",
                    )
                warning = (
                    f"WARNING: serving on {bind} WITHOUT AUTHENTICATION (--insecure): anyone who "
                    "can reach this port can read and write every thread"
                )
                session.err.print(warning, style="bold red", markup=False, highlight=False)
                log.warning(warning)
        store = masked_url(store_url(session.url, env))
        with session.mailbox() as mailbox:
            mailbox.views.start_following()  # views kept current with every process's writes
            log.info(
                "serving %s on http://%s:%d; auth %s",
                store,
                bind,
                listen,
                "on (bearer token)" if token else "off",
                extra={
                    "store": store,
                    "host": bind,
                    "port": listen,
                    "auth": bool(token),
                    "workers": 1,
                    "cors_origins": [],
                    "log_format": chosen,
                },
            )
            # Streams wake on the follower's news; their own reads of the log are a fallback.
            streams = StreamSettings(poll_interval=2.0)
            api = create_app(
                mailbox,
                token=token,
                stream_settings=streams,
                close_on_shutdown=True,
                body_timeout=limits.body_timeout,
            )
            uvicorn.run(
                api,
                host=bind,
                port=listen,
                log_level=log_level,
                timeout_graceful_shutdown=5,
                log_config=None,  # configure_logging's handler formats uvicorn's lines too
                access_log=False,  # threadbox.access logs each request, with its id
                http=header_timeout_protocol(limits.header_timeout),
                timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
                limit_concurrency=limits.limit_concurrency,
            )
