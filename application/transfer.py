"""Export and import: event streams as JSON Lines, versions, timestamps and payloads kept
exactly, so importing into an empty store reproduces the same history.

One line per stored event: ``{"thread_id", "version", "type", "topic", "timestamp", "state"}``,
``state`` being the stored payload (upcast on read, never here). Import appends after what a
thread already has, never over it: a file that does not continue a thread is refused before
anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from threadbox.domain.errors import InvalidInput, ThreadNotFound

from .ports import (
    ArchivedEvent,
    EventArchive,
    EventStore,
    IdsTaken,
    Progress,
    StreamConflict,
    Views,
)

BATCH = 500  # events per read of the log, and per write of an import
PROGRESS_EVERY = 1000  # lines between two progress reports

Streams = dict[str, list[ArchivedEvent]]  # by thread id, in file order


def archive_of(store: EventStore) -> EventArchive:
    """The store as an archive of stored events; only stores opened from a URL are."""
    if not isinstance(store, EventArchive):
        raise InvalidInput("export and import need a store opened from a URL", "url")
    return store


def line_of(event: ArchivedEvent) -> bytes:
    """The JSON line of one stored event."""
    record = {
        "thread_id": event.thread_id,
        "version": event.version,
        "type": event.type,
        "topic": event.topic,
        "timestamp": event.payload.get("timestamp"),
        "state": event.payload,
    }
    return orjson.dumps(record) + b"\n"


def export_lines(
    archive: EventArchive, thread_ids: Sequence[str], progress: Progress | None = None
) -> Iterator[bytes]:
    """The named threads' events in version order (``ThreadNotFound`` for a thread without
    events), or every event in log order, one JSON line each."""
    total = archive.count_after("")
    for count, event in enumerate(_exported(archive, thread_ids), start=1):
        yield line_of(event)
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count, max(total, count))


def _exported(archive: EventArchive, thread_ids: Sequence[str]) -> Iterator[ArchivedEvent]:
    if thread_ids:
        for thread_id in thread_ids:
            found = archive.archived(thread_id)
            if not found:
                raise ThreadNotFound(thread_id)
            yield from found
        return
    position = ""
    while batch := archive.archived_log(after=position, limit=BATCH):
        yield from (event for _, event in batch)
        position = batch[-1][0]


def parse_line(archive: EventArchive, raw: bytes, number: int) -> ArchivedEvent:
    """One exported event; ``InvalidInput`` naming the line if it is not one."""
    try:
        record: dict[str, Any] = orjson.loads(raw)
        thread_id, version, topic, state = (
            record["thread_id"],
            record["version"],
            record["topic"],
            record["state"],
        )
        name = archive.event_type_name(topic)
        if not isinstance(version, int) or version < 1 or state.get("thread_id") != thread_id:
            raise ValueError("version or thread_id do not match the event")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as bad:
        raise InvalidInput(f"line {number} is not an exported event: {bad}", "file") from None
    return ArchivedEvent(thread_id, version, name, topic, state)


def read_streams(
    archive: EventArchive, lines: Iterable[bytes], size: int, progress: Progress | None = None
) -> Streams:
    """The exported events of a file (``size`` bytes; 0 if unknown), by thread."""
    streams: Streams = {}
    done = 0
    for number, raw in enumerate(lines, start=1):
        done += len(raw)
        if raw.strip():
            event = parse_line(archive, raw, number)
            streams.setdefault(event.thread_id, []).append(event)
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(done, max(size, done))
    return streams


def check_fits(archive: EventArchive, streams: Streams) -> None:
    """Refuse before writing anything: each thread must continue where the store's copy ends."""
    for thread_id, events in streams.items():
        at = archive.stored_version(thread_id)
        for expected, event in enumerate(events, start=at + 1):
            if event.version != expected:
                raise InvalidInput(
                    f"thread {thread_id!r}: the store is at version {at}, the file has version "
                    f"{event.version} where {expected} would come next; import does not overwrite",
                    "file",
                )


def import_streams(
    archive: EventArchive, views: Views, streams: Streams, progress: Progress | None = None
) -> int:
    """Append the streams (checked first: ``check_fits``), then catch the views up; returns
    how many events were written. A thread written to meanwhile stops the import there."""
    check_fits(archive, streams)
    written = 0
    total = sum(len(events) for events in streams.values())
    for thread_id, events in streams.items():
        for start in range(0, len(events), BATCH):
            batch = events[start : start + BATCH]
            try:
                archive.append_archived(batch)
            except StreamConflict:
                raise InvalidInput(
                    f"thread {thread_id!r} changed while importing; nothing after "
                    f"its version {batch[0].version - 1} was written",
                    "file",
                ) from None
            except IdsTaken:
                raise InvalidInput(
                    f"thread {thread_id!r}: events {batch[0].version}..{batch[-1].version} "
                    "use an id (message, run or hiding) the thread already used; nothing from "
                    f"version {batch[0].version} on was written",
                    "file",
                ) from None
            written += len(batch)
            if progress is not None:
                progress(written, total)
    views.catch_up()
    return written
