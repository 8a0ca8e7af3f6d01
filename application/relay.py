"""The relay (API.md §7): every event of the store, in commit order, to an event bus, exactly
once on the bus across crashes and restarts (ADR 0021).

Two ports, so another bus (RabbitMQ, Kafka) is one more ``Publisher``:

- ``Publisher.publish(batch)`` returns once the bus acknowledged every item (stored it, or
  dropped it as a duplicate of one it holds), or raises ``PublishFailed`` with how many leading
  items it acknowledged;
- ``RelayPositions`` keeps each relay's position (per name) in the threadbox store itself.

The loop follows the log from the saved position, publishes a batch, and saves the position only
after the acknowledgement. Killed between the two, it publishes that batch again on restart: the
bus must drop a re-publish of an item it holds (NATS JetStream: the ``Nats-Msg-Id`` header and the
stream's duplicate window). A failed publish or an unavailable store is logged and retried from
the saved position after a pause (doubling up to ``max_pause``); anything else is a defect and
raised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from threadbox.domain.errors import InvalidInput, StoreUnavailable

from .mailbox import Mailbox
from .ports import Position
from .subscriptions import LogItem

log = logging.getLogger("threadbox.relay")

BATCH = 500  # events published between two saves of the position
IDLE_WAIT = 0.5  # seconds a caught-up relay waits for news before it looks at ``stop`` again
FIRST_PAUSE, MAX_PAUSE = 0.1, 5.0  # seconds between retries after a failure, doubling


class PublishFailed(Exception):
    """The bus did not acknowledge a whole batch: its first ``acked`` items it did (stored or
    known duplicates); the rest may or may not have reached it. The cause is chained."""

    def __init__(self, message: str, acked: int = 0) -> None:
        super().__init__(message)
        self.acked = acked


class RelayConflict(RuntimeError):
    """The relay's saved position moved under it: another relay with the same name is running
    on this store. Each relay name must run once at a time."""


class Publisher(Protocol):
    """Where a relay sends the events (one adapter per bus)."""

    def publish(self, batch: Sequence[LogItem]) -> int:
        """Publish the items in order and return once the bus acknowledged every one; returns
        how many of them the bus already held (dropped as duplicates). Raises
        ``PublishFailed`` when it cannot (the bus is down, an acknowledgement timed out)."""

    def close(self) -> None:
        """Release the connection."""


class RelayPositions(Protocol):
    """Each relay's position, per name, in the threadbox store (ADR 0021)."""

    def position(self, name: str) -> Position:
        """The relay's saved position (``""``: it never published anything)."""

    def save(self, name: str, previous: Position, position: Position) -> bool:
        """Move the relay's position from ``previous`` to ``position``; ``False`` (and nothing
        written) when the saved position was not ``previous``."""

    def close(self) -> None:
        """Release the connections."""


class StopSignal(Protocol):
    """What tells a relay to stop (a ``threading.Event``)."""

    def is_set(self) -> bool:
        """Should the relay stop?"""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set, at most ``timeout`` seconds; whether it is set."""


@dataclass(frozen=True)
class RelayProgress:
    """One batch the bus acknowledged: how many events, how many of them it already held
    (re-published after a crash or a failed acknowledgement), and the position now saved."""

    name: str
    events: int
    duplicates: int
    position: Position
    total: int  # events relayed since this relay started


@dataclass(frozen=True)
class RelayStatus:
    """Where a relay is: its saved position, the store's newest position, and ``lag``, how
    many committed events it has not published yet."""

    name: str
    position: Position
    head: Position
    lag: int


def check_name(name: object) -> str:
    """A relay name: a non-empty string of at most 200 characters, no control characters."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= 200
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise InvalidInput(f"name must be 1 to 200 printable characters, got {name!r}", "name")
    return name


def relay_status(mailbox: Mailbox, positions: RelayPositions, name: str) -> RelayStatus:
    """How far the relay ``name`` is behind the store's log."""
    name = check_name(name)
    position = positions.position(name)
    head = mailbox.head()
    return RelayStatus(name, position, head, mailbox.store.count_after(position, head))


class Relay:
    """Follows a mailbox's log and publishes it, saving the position after each acknowledged
    batch; ``run`` until ``stop`` is set (it ends after the batch in flight)."""

    def __init__(
        self,
        mailbox: Mailbox,
        publisher: Publisher,
        positions: RelayPositions,
        *,
        name: str = "default",
        batch: int = BATCH,
        on_batch: Callable[[RelayProgress], None] | None = None,
        idle_wait: float = IDLE_WAIT,
        max_pause: float = MAX_PAUSE,
    ) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput(f"batch must be an integer >= 1, got {batch!r}", "batch")
        self.name = check_name(name)
        self._mailbox = mailbox
        self._publisher = publisher
        self._positions = positions
        self._batch = batch
        self._on_batch = on_batch
        self._idle_wait = idle_wait
        self._max_pause = max_pause
        self.failures = 0
        """Failed attempts (publish or store) retried so far."""
        self.last_error: BaseException | None = None
        """The latest failure, until a batch succeeds again."""

    def run(self, stop: StopSignal | None = None) -> int:
        """Relay until ``stop`` is set (never, without one); returns the events relayed."""
        stop = stop if stop is not None else threading.Event()
        position = self._positions.position(self.name)
        total = 0
        pause = FIRST_PAUSE
        while not stop.is_set():
            try:
                batch = self._next(position)
                if not batch:
                    continue
                acked, duplicates, failure = len(batch), 0, None
                try:
                    duplicates = self._publisher.publish(batch)
                except PublishFailed as failed:
                    acked, failure = min(max(failed.acked, 0), len(batch)), failed
                if acked:
                    done = batch[acked - 1].position
                    if not self._positions.save(self.name, position, done):
                        raise RelayConflict(
                            f"the position of relay {self.name!r} moved under it: another relay "
                            "with this name is running on this store"
                        )
                    position, total = done, total + acked
                    if self._on_batch is not None:
                        self._on_batch(RelayProgress(self.name, acked, duplicates, done, total))
                if failure is not None:
                    raise failure
                pause, self.last_error = FIRST_PAUSE, None
            except (PublishFailed, StoreUnavailable) as error:
                self.failures += 1
                self.last_error = error
                log.warning(
                    "relay %r: %s; retrying from position %r in %.1f s",
                    self.name,
                    error,
                    position,
                    pause,
                )
                stop.wait(pause)
                pause = min(pause * 2, self._max_pause)
        return total

    def _next(self, position: Position) -> list[LogItem]:
        """The next batch readable after ``position``; when there is none, wait for one event
        at most ``idle_wait`` seconds (woken by commits) and return what came."""
        batch = list(self._mailbox.follow(position, limit=self._batch, timeout=0))
        if batch:
            return batch
        first = list(self._mailbox.follow(position, limit=1, timeout=self._idle_wait))
        if not first or self._batch == 1:
            return first
        return first + list(self._mailbox.follow(first[0].position, limit=self._batch - 1))
