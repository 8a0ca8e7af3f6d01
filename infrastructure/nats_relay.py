"""The relay's NATS JetStream adapter (API.md §7, ADR 0021), on the official client, nats-py.

- subject ``<prefix>.<stream uuid>.<EventType>`` (the thread's UUIDv5 stream id, codec.py);
- body ``{position, thread_id, version, type, timestamp, data}`` (JSON);
- header ``Nats-Msg-Id: <stream uuid>:<version>``: JetStream drops a re-publish inside the
  stream's duplicate window, which covers a relay killed between the acknowledgement and the
  save of its position;
- the stream is made when missing (subjects ``<prefix>.>``, file storage, the duplicate window).

nats-py is asyncio: the publisher runs its own event loop in a daemon thread (which also answers
the server's pings and reconnects), and the relay's thread waits on it. Publishes are sent one
after another, each waiting for its acknowledgement, so the stream holds the log in commit order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import nats
import orjson
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError
from threadbox.application.mailbox import Mailbox
from threadbox.application.relay import (
    PublishFailed,
    Relay,
    RelayProgress,
    StopSignal,
    check_name,
)
from threadbox.application.subscriptions import LogItem
from threadbox.domain.errors import InvalidInput

from .codec import stream_id
from .relay_positions import relay_positions

log = logging.getLogger("threadbox.relay")

T = TypeVar("T")

DUPLICATE_WINDOW = 600.0  # seconds JetStream remembers a Nats-Msg-Id (its default is 120)
ACK_TIMEOUT = 5.0  # seconds to wait for one publish's acknowledgement
CONNECT_TIMEOUT = 10.0  # seconds the first connection may take (later ones retry forever)


class BusUnavailable(Exception):
    """The relay could not reach the bus at start, or the bus refused its setup (a stream
    that does not take the relay's subjects); the message says which."""


def subject_token(value: str, what: str) -> str:
    """A dot-separated NATS subject prefix (or stream name) without wildcards or spaces."""
    bad = (
        not value
        or any(c in value for c in " \t\r\n*>")
        or any(not part for part in value.split("."))
    )
    if what == "stream":
        bad = bad or "." in value or "/" in value or "\\" in value
    if bad:
        raise InvalidInput(f"{what} {value!r} is not a valid NATS {what}", what)
    return value


def message_of(item: LogItem, prefix: str) -> tuple[str, bytes, dict[str, str]]:
    """The subject, body and headers of one event on the bus."""
    stream = stream_id(item.thread_id)
    event = item.event
    body = orjson.dumps(
        {
            "position": item.position,
            "thread_id": item.thread_id,
            "version": event.version,
            "type": event.type,
            "timestamp": event.model_dump(mode="json")["timestamp"],
            "data": event.data,
        }
    )
    return f"{prefix}.{stream}.{event.type}", body, {"Nats-Msg-Id": f"{stream}:{event.version}"}


class NatsPublisher:
    """A ``Publisher`` to a JetStream stream; connects (and makes the stream) when made."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = "THREADBOX",
        subject_prefix: str = "threadbox",
        duplicate_window: float = DUPLICATE_WINDOW,
        ack_timeout: float = ACK_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.url = url
        self.stream = subject_token(stream, "stream")
        self.prefix = subject_token(subject_prefix, "subject_prefix")
        self._window = duplicate_window
        self._ack_timeout = ack_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="threadbox-relay-nats", daemon=True
        )
        self._thread.start()
        self._client: Client | None = None
        self._closing = False
        self._last_error: Exception | None = None
        self._js: JetStreamContext | None = None
        try:
            self._call(self._connect(connect_timeout))
        except BaseException:
            self.close()
            raise

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _connect(self, timeout: float) -> None:
        async def disconnected() -> None:
            if not self._closing:
                log.warning("relay: disconnected from NATS at %s; reconnecting", self.url)

        async def reconnected() -> None:
            log.warning("relay: reconnected to NATS at %s", self.url)

        async def error(problem: Exception) -> None:
            self._last_error = problem
            if self._client is not None:  # before the first connection, BusUnavailable says it
                log.warning("relay: NATS error: %s", problem)

        try:
            self._client = await asyncio.wait_for(
                nats.connect(
                    self.url,
                    name="threadbox-relay",
                    connect_timeout=max(1, round(timeout / 2)),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # a relay outlives a bus restart
                    reconnect_time_wait=1,
                    error_cb=error,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                ),
                timeout,
            )
        except (OSError, NatsError, TimeoutError) as failed:
            why = self._last_error or failed
            raise BusUnavailable(f"cannot connect to NATS at {self.url}: {why}") from None
        self._js = self._client.jetstream(timeout=self._ack_timeout)
        await self._ensure_stream(self._js)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        subjects = f"{self.prefix}.>"
        try:
            try:
                info = await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[subjects],
                        storage=StorageType.FILE,
                        duplicate_window=self._window,
                    )
                )
                log.info("relay: made stream %s for %s", self.stream, subjects)
                return
        except NatsError as failed:
            raise BusUnavailable(
                f"cannot set up JetStream stream {self.stream!r} at {self.url}: {failed!r} "
                "(is JetStream enabled, -js?)"
            ) from None
        taken = info.config.subjects or []
        if subjects not in taken:
            raise BusUnavailable(
                f"JetStream stream {self.stream!r} takes {taken}, not {subjects!r}: "
                "choose another --stream or --subject-prefix"
            )
        window = info.config.duplicate_window or 0
        if window < self._window:
            log.warning(
                "relay: stream %s keeps message ids %.0f s (less than %.0f s): a relay down "
                "longer than that may publish its last batch twice",
                self.stream,
                window,
                self._window,
            )

    def publish(self, batch: Sequence[LogItem]) -> int:
        """Publish in order, each acknowledged before the next; the duplicates JetStream
        dropped are counted. ``PublishFailed`` with the count acknowledged when one fails."""
        messages = [message_of(item, self.prefix) for item in batch]
        return self._call(self._publish(messages))

    async def _publish(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> int:
        js = self._js
        assert js is not None  # made by __init__
        duplicates = 0
        for done, (subject, body, headers) in enumerate(messages):
            try:
                ack = await js.publish(subject, body, stream=self.stream, headers=headers)
            except (NatsError, TimeoutError, OSError) as failed:
                raise PublishFailed(
                    f"NATS did not acknowledge {subject}: {failed!r}", acked=done
                ) from failed
            duplicates += bool(ack.duplicate)
        return duplicates

    def close(self) -> None:
        """Drain the connection and stop the event loop."""
        self._closing = True
        client = self._client
        if client is not None and not client.is_closed:
            try:
                self._call(asyncio.wait_for(client.close(), 5.0))
            except (NatsError, TimeoutError, OSError) as failed:
                log.warning("relay: closing the NATS connection failed: %r", failed)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()


def run_nats_relay(
    mailbox: Mailbox,
    nats_url: str,
    *,
    name: str = "default",
    stream: str = "THREADBOX",
    subject_prefix: str = "threadbox",
    stop: StopSignal | None = None,
    batch: int = 500,
    duplicate_window: float = DUPLICATE_WINDOW,
    on_batch: Callable[[RelayProgress], None] | None = None,
) -> int:
    """Publish every event of ``mailbox``'s store, in commit order, to the JetStream stream
    ``stream`` at ``nats_url``, until ``stop`` (a ``threading.Event``) is set; returns how many
    events it published. See ``threadbox.relay``."""
    name = check_name(name)
    subject_token(stream, "stream")
    subject_token(subject_prefix, "subject_prefix")
    positions = relay_positions(mailbox.store)
    try:
        publisher = NatsPublisher(
            nats_url,
            stream=stream,
            subject_prefix=subject_prefix,
            duplicate_window=duplicate_window,
        )
        try:
            relay = Relay(mailbox, publisher, positions, name=name, batch=batch, on_batch=on_batch)
            return relay.run(stop)
        finally:
            publisher.close()
    finally:
        positions.close()
