"""``threadbox.relay``: every event of a store, in commit order, to an event bus, exactly once
on the bus across crashes and restarts (docs/operations.md, ADR 0021).

``run_nats_relay(mailbox, nats_url, ...)`` relays to NATS JetStream (the ``relay`` extra:
``pip install 'threadbox[relay]'``); ``Relay`` with a ``Publisher`` of your own relays to another
bus; ``relay_status(mailbox, name)`` says how far a relay is behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threadbox.application.mailbox import Mailbox
from threadbox.application.relay import (
    BATCH,
    Publisher,
    PublishFailed,
    Relay,
    RelayConflict,
    RelayPositions,
    RelayProgress,
    RelayStatus,
    StopSignal,
)
from threadbox.application.relay import relay_status as _relay_status

if TYPE_CHECKING:
    from threadbox.infrastructure.nats_relay import BusUnavailable


def run_nats_relay(
    mailbox: Mailbox,
    nats_url: str,
    *,
    name: str = "default",
    stream: str = "THREADBOX",
    subject_prefix: str = "threadbox",
    stop: StopSignal | None = None,
    batch: int = BATCH,
    on_batch: Callable[[RelayProgress], None] | None = None,
) -> int:
    """Publish every event of ``mailbox``'s store, in commit order, to the NATS JetStream stream
    ``stream`` at ``nats_url`` (made when missing, taking ``<subject_prefix>.>``), until ``stop``
    (a ``threading.Event``) is set — never, without one; returns how many events it published.

    The position is saved under ``name`` in the store after each batch of ``batch`` events that
    JetStream acknowledged; ``on_batch`` is called with each. Raises ``BusUnavailable`` when NATS
    cannot be reached at start or the stream does not take the subjects, ``RelayConflict`` when
    another relay of the same name runs on the store, ``InvalidInput`` for a bad name, stream or
    prefix. NATS going away later is retried, not raised."""
    from threadbox.infrastructure import nats_relay

    return nats_relay.run_nats_relay(
        mailbox,
        nats_url,
        name=name,
        stream=stream,
        subject_prefix=subject_prefix,
        stop=stop,
        batch=batch,
        on_batch=on_batch,
    )


def relay_positions(mailbox: Mailbox) -> RelayPositions:
    """The relay positions kept in ``mailbox``'s store (a table of their own)."""
    from threadbox.infrastructure.relay_positions import relay_positions as positions_of

    return positions_of(mailbox.store)


def relay_status(mailbox: Mailbox, name: str = "default") -> RelayStatus:
    """Where the relay ``name`` of ``mailbox``'s store is: its position and its ``lag``
    (committed events it has not published yet)."""
    positions = relay_positions(mailbox)
    try:
        return _relay_status(mailbox, positions, name)
    finally:
        positions.close()


def __getattr__(name: str) -> Any:
    """``BusUnavailable`` (of the NATS adapter) loads nats-py on first use."""
    if name == "BusUnavailable":
        from threadbox.infrastructure import nats_relay

        return getattr(nats_relay, name)
    raise AttributeError(f"module 'threadbox.relay' has no attribute {name!r}")


__all__ = [
    "BusUnavailable",
    "PublishFailed",
    "Publisher",
    "Relay",
    "RelayConflict",
    "RelayPositions",
    "RelayProgress",
    "RelayStatus",
    "StopSignal",
    "relay_positions",
    "relay_status",
    "run_nats_relay",
]
