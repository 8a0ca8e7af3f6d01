"""``threadbox relay NATS_URL`` (API.md §7, ADR 0021) and ``threadbox relay-status``.

The relay prints one line per batch the bus acknowledged; SIGTERM or SIGINT (Ctrl-C) stop it
after the batch in flight, with its position saved, and it exits 0. Warnings (NATS down and
reconnecting, a publish retried) go to stderr as log lines (``THREADBOX_LOG_FORMAT``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer
from threadbox.application.relay import RelayConflict, RelayProgress
from threadbox.infrastructure.logs import configure_logging
from threadbox.infrastructure.wiring import masked_url

from .commands import AsJson
from .session import FAILURE_EXIT, report_error, reported, session_of


@contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (a second one interrupts at once)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    before = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    @app.command()
    def relay(
        ctx: typer.Context,
        nats_url: Annotated[str, typer.Argument(metavar="NATS_URL", help="nats://host:port")],
        name: Annotated[
            str, typer.Option(help="the relay's name: its position is saved under it")
        ] = "default",
        stream: Annotated[
            str, typer.Option(help="the JetStream stream (made when missing)")
        ] = "THREADBOX",
        subject_prefix: Annotated[
            str, typer.Option(help="subjects are PREFIX.<stream uuid>.<EventType>")
        ] = "threadbox",
        batch: Annotated[
            int, typer.Option(min=1, max=10000, help="events published between two saves")
        ] = 500,
    ) -> None:
        """Publish every event of the store, in commit order, to NATS JetStream, exactly once
        on the stream across restarts; runs until SIGTERM or Ctrl-C."""
        session = session_of(ctx)
        with reported(session):
            config = session.config()
        configure_logging(config.log_format, config.log_level)
        try:
            from threadbox.infrastructure.nats_relay import (
                BusUnavailable,
                run_nats_relay,
                subject_token,
            )
        except ModuleNotFoundError as missing:
            if (missing.name or "").partition(".")[0] != "nats":
                raise
            report_error(
                session,
                "missing_extra",
                "threadbox relay needs nats-py: pip install 'threadbox[relay]'",
                {},
            )
            raise typer.Exit(FAILURE_EXIT) from None
        from threadbox.relay import relay_status

        stop = threading.Event()
        with stopped_by_signals(stop), session.mailbox(create=False, config=config) as mailbox:
            subject_token(stream, "stream")
            subject_token(subject_prefix, "subject_prefix")
            start = relay_status(mailbox, name)
            session.out.print(
                f"relay {name!r}: {masked_url(config.url)} -> "
                f"{nats_url} stream {stream}, subjects {subject_prefix}.>; "
                f"{start.lag} events to publish",
                markup=False,
                highlight=False,
            )

            def progress(done: RelayProgress) -> None:
                again = f" ({done.duplicates} already on the stream)" if done.duplicates else ""
                session.out.print(
                    f"published {done.events} events{again}, {done.total} in all; "
                    f"position {done.position}",
                    markup=False,
                    highlight=False,
                )

            try:
                total = run_nats_relay(
                    mailbox,
                    nats_url,
                    name=name,
                    stream=stream,
                    subject_prefix=subject_prefix,
                    stop=stop,
                    batch=batch,
                    on_batch=progress,
                )
            except BusUnavailable as error:
                report_error(session, "bus_unavailable", str(error), {})
                raise typer.Exit(FAILURE_EXIT) from None
            except RelayConflict as error:
                report_error(session, "relay_conflict", str(error), {"name": name})
                raise typer.Exit(FAILURE_EXIT) from None
            session.out.print(f"stopped: {total} events published", markup=False, highlight=False)

    @app.command("relay-status")
    def relay_status_command(
        ctx: typer.Context,
        name: Annotated[str, typer.Option(help="the relay's name")] = "default",
        as_json: AsJson = False,
    ) -> None:
        """Where a relay is: its saved position and its lag (events not published yet)."""
        from threadbox.relay import relay_status

        session = session_of(ctx)
        with session.mailbox(create=False) as mailbox:
            found = relay_status(mailbox, name)
            report = {
                "name": found.name,
                "position": found.position,
                "head": found.head,
                "lag": found.lag,
            }
            if as_json:
                session.print_json(report)
                return
            for key, value in report.items():
                session.out.print(f"{key}: {value}", markup=False, highlight=False)
