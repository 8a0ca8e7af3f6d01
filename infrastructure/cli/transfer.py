"""``export`` and ``import``: event streams as JSON Lines, versions and timestamps kept exactly.

One line per stored event: ``{"thread_id", "version", "type", "topic", "timestamp", "state"}``,
``state`` being the stored payload (upcast on read, never here), so importing into an empty store
reproduces the same history.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
import typer
from eventsourcing.persistence import StoredEvent
from threadbox import Mailbox
from threadbox.application.ports import StreamConflict
from threadbox.errors import InvalidInput, ThreadNotFound
from threadbox.infrastructure.codec import event_type, stream_id
from threadbox.infrastructure.store import RecorderStore

from .session import session_of
from .views import progress_bar

BATCH = 500


def recorder_store(mailbox: Mailbox) -> RecorderStore:
    store = mailbox.store
    if not isinstance(store, RecorderStore):
        raise InvalidInput("export and import need a store opened from a URL", "url")
    return store


def line_of(stored: StoredEvent) -> bytes:
    payload = orjson.loads(stored.state)
    record = {
        "thread_id": payload["thread_id"],
        "version": stored.originator_version,
        "type": stored.topic.rpartition(":")[2],
        "topic": stored.topic,
        "timestamp": payload.get("timestamp"),
        "state": payload,
    }
    return orjson.dumps(record) + b"\n"


def exported(store: RecorderStore, threads: list[str]) -> Iterator[StoredEvent]:
    """The named threads' events in version order, or every event in log order."""
    if threads:
        for thread_id in threads:
            found = store.load_stored(thread_id)
            if not found:
                raise ThreadNotFound(thread_id)
            yield from found
        return
    position = 0
    while batch := store.read_stored(after=position, limit=BATCH):
        yield from batch
        position = batch[-1].id


@dataclass(frozen=True)
class Imported:
    thread_id: str
    stored: StoredEvent


def parse_line(raw: bytes, number: int) -> Imported:
    try:
        record: dict[str, Any] = orjson.loads(raw)
        thread_id, version, topic, state = (
            record["thread_id"],
            record["version"],
            record["topic"],
            record["state"],
        )
        event_type(topic)
        if not isinstance(version, int) or version < 1 or state.get("thread_id") != thread_id:
            raise ValueError("version or thread_id do not match the event")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as bad:
        raise InvalidInput(f"line {number} is not an exported event: {bad}", "file") from None
    stored = StoredEvent(
        originator_id=stream_id(thread_id),
        originator_version=version,
        topic=topic,
        state=orjson.dumps(state),
    )
    return Imported(thread_id, stored)


def check_fits(store: RecorderStore, streams: dict[str, list[StoredEvent]]) -> None:
    """Refuse before writing anything: each thread must continue where the store's copy ends."""
    for thread_id, events in streams.items():
        last = store.events.select_events(stream_id(thread_id), desc=True, limit=1)
        at = last[0].originator_version if last else 0
        for expected, stored in enumerate(events, start=at + 1):
            if stored.originator_version != expected:
                raise InvalidInput(
                    f"thread {thread_id!r}: the store is at version {at}, the file has version "
                    f"{stored.originator_version} where {expected} would come next; "
                    "import does not overwrite",
                    "file",
                )


def read_streams(handle: BinaryIO, size: int, advance: Any) -> dict[str, list[StoredEvent]]:
    streams: dict[str, list[StoredEvent]] = {}
    done = 0
    for number, raw in enumerate(handle, start=1):
        done += len(raw)
        if raw.strip():
            item = parse_line(raw, number)
            streams.setdefault(item.thread_id, []).append(item.stored)
        if number % 1000 == 0:
            advance(done, max(size, done))
    return streams


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
        with session.mailbox() as mailbox:
            store = recorder_store(mailbox)
            total = store.last_position()
            with progress_bar(session, "exporting") as advance:
                sink = output.open("wb") if output else sys.stdout.buffer
                try:
                    for count, stored in enumerate(exported(store, threads or []), start=1):
                        sink.write(line_of(stored))
                        if count % 1000 == 0:
                            advance(count, max(total, count))
                finally:
                    if output:
                        sink.close()
                    else:
                        sink.flush()

    @app.command("import")
    def import_(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="a file written by export ('-' for stdin)")],
    ) -> None:
        """Append exported event streams to this store; existing versions are never overwritten."""
        session = session_of(ctx)
        with session.mailbox() as mailbox:
            store = recorder_store(mailbox)
            with progress_bar(session, "reading") as advance:
                if str(file) == "-":
                    streams = read_streams(sys.stdin.buffer, 0, advance)
                else:
                    with file.open("rb") as handle:
                        streams = read_streams(handle, file.stat().st_size, advance)
            check_fits(store, streams)
            written = 0
            with progress_bar(session, "importing") as advance:
                total = sum(len(events) for events in streams.values())
                for thread_id, events in streams.items():
                    for start in range(0, len(events), BATCH):
                        try:
                            store.append_stored(events[start : start + BATCH])
                        except StreamConflict:
                            raise InvalidInput(
                                f"thread {thread_id!r} changed while importing; nothing after "
                                f"its version {events[start].originator_version - 1} was written",
                                "file",
                            ) from None
                        written += len(events[start : start + BATCH])
                        advance(written, total)
            mailbox.views.catch_up()
        session.out.print(f"imported {written} events of {len(streams)} threads")
