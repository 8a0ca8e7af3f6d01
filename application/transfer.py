"""Export and import: event streams as JSON Lines, versions, timestamps and payloads kept
exactly, so importing into an empty store reproduces the same history.

One line per stored event: ``{"thread_id", "version", "type", "topic", "timestamp", "state"}``,
``state`` being the stored payload (upcast on read, never here). Import appends after what a
thread already has, never over it, and only what the domain could have written: every stream
of the file is checked first (each event decodes exactly, the thread folds from version 1 with
every event one a decision could have written, the invariants hold), and a file with any bad
stream is refused before anything is written, each problem naming its line. Each stream is
then written in one atomic write.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from threadbox.domain.errors import CorruptHistory, ImportRefused, InvalidInput, ThreadNotFound
from threadbox.domain.events import AnyThreadEvent, PendingMessageEdited
from threadbox.domain.values import check_id
from threadbox.projections import changes_for
from threadbox.projections.tables import Tables

from .audit import WAIT_BEHIND, ThreadChecker
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
    # Every event committed before the export began, in commit order. On PostgreSQL an older
    # transaction still running keeps later commits unreadable for a while: wait for it rather
    # than end early with a backup that silently misses committed events.
    end = archive.committed_head()
    position = ""
    while position < end:
        batch = archive.archived_log(after=position, limit=BATCH)
        if not batch:
            time.sleep(WAIT_BEHIND)
            continue
        yield from (event for _, event in batch)
        position = batch[-1][0]


@dataclass(frozen=True)
class Line:
    """One event of an import file, with the number of its line."""

    number: int
    event: ArchivedEvent


Streams = dict[str, list[Line]]  # by thread id, in file order

MOST_PROBLEMS = 20  # of a refused file, named in the error's message


class NotAnEvent(ValueError):
    """A line of an import file is not an exported event; the message says why."""


def parse_line(archive: EventArchive, raw: bytes) -> ArchivedEvent:
    """One exported event; ``NotAnEvent`` saying why if the line is not one."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise NotAnEvent(f"not JSON ({e})") from None
    if not isinstance(record, dict):
        raise NotAnEvent("not a JSON object")
    missing = [k for k in ("thread_id", "version", "topic", "state") if k not in record]
    if missing:
        raise NotAnEvent(f"no {', '.join(missing)}")
    thread_id, version, topic, state = (
        record[k] for k in ("thread_id", "version", "topic", "state")
    )
    try:
        check_id(thread_id, "thread_id", blank_ok=True)
    except (TypeError, ValueError) as e:
        raise NotAnEvent(f"{e}") from None
    if type(version) is not int or not 1 <= version < 2**63:
        raise NotAnEvent(f"version {version!r} is not a whole number >= 1")
    if not isinstance(topic, str):
        raise NotAnEvent(f"topic {topic!r} is not a string")
    try:
        name = archive.event_type_name(topic)
    except ValueError as e:
        raise NotAnEvent(str(e)) from None
    if not isinstance(state, dict):
        raise NotAnEvent("state is not a JSON object")
    if state.get("thread_id") != thread_id:
        raise NotAnEvent(f"state's thread_id {state.get('thread_id')!r} is not {thread_id!r}")
    if type(state.get("version")) is not int or state["version"] != version:
        raise NotAnEvent(f"state's version {state.get('version')!r} is not the line's {version}")
    if record.get("type", name) != name:
        raise NotAnEvent(f"type {record['type']!r} is not the topic's {name!r}")
    if record.get("timestamp", state.get("timestamp")) != state.get("timestamp"):
        raise NotAnEvent(f"timestamp {record['timestamp']!r} is not the state's")
    try:
        orjson.dumps(state)
    except orjson.JSONEncodeError as e:
        raise NotAnEvent(f"state cannot be stored: {e}") from None
    return ArchivedEvent(thread_id, version, name, topic, state)


def read_streams(
    archive: EventArchive, lines: Iterable[bytes], size: int, progress: Progress | None = None
) -> Streams:
    """The exported events of a file (``size`` bytes; 0 if unknown), by thread;
    ``ImportRefused`` naming every line that is not an exported event."""
    streams: Streams = {}
    problems: list[str] = []
    done = 0
    for number, raw in enumerate(lines, start=1):
        done += len(raw)
        if raw.strip():
            try:
                event = parse_line(archive, raw)
            except NotAnEvent as bad:
                problems.append(f"line {number} is not an exported event: {bad}")
            else:
                streams.setdefault(event.thread_id, []).append(Line(number, event))
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(done, max(size, done))
    refuse(problems)
    return streams


def refuse(problems: list[str]) -> None:
    """``ImportRefused`` listing the problems (the first ``MOST_PROBLEMS`` in its message)."""
    if not problems:
        return
    shown = "; ".join(problems[:MOST_PROBLEMS])
    more = len(problems) - MOST_PROBLEMS
    text = f"import refused, nothing written: {shown}" + (f" (and {more} more)" if more > 0 else "")
    raise ImportRefused(text, problems)


def check_stream(
    store: EventStore,
    archive: EventArchive,
    thread_id: str,
    lines: list[Line],
    *,
    skip_existing: bool = False,
    max_message_bytes: int | None = None,
) -> tuple[list[Line], list[str]]:
    """The lines of one thread's stream still to write, and what is wrong with it (each
    problem names its line). A stream is written only if it continues the store's copy of the
    thread, every event decodes exactly under the current schema, and the whole thread folds
    from version 1 through the domain's fold with every event one a decision could have
    written and the invariants holding (``ThreadChecker``) and projects onto the views; with
    ``max_message_bytes``, no message it carries is larger, encoded, than that (as delivery).
    With ``skip_existing``, events the store already holds, identical, are left out."""
    at = archive.stored_version(thread_id) if lines else 0
    if skip_existing and at and lines[0].event.version <= at:
        stored = archive.archived(thread_id)
        for line in [x for x in lines if x.event.version <= at]:
            kept = stored[line.event.version - 1]
            if _same(kept) != _same(line.event):
                return [], [
                    f"line {line.number}: thread {thread_id!r} version {line.event.version} "
                    "differs from the store's copy"
                ]
        lines = [x for x in lines if x.event.version > at]
    if not lines:
        return [], []
    for expected, line in enumerate(lines, start=at + 1):
        if line.event.version != expected:
            return [], [
                f"line {line.number}: thread {thread_id!r}: the store is at version {at}, the "
                f"file has version {line.event.version} where {expected} would come next; "
                "import does not overwrite"
            ]
    checker = ThreadChecker(thread_id)
    tables = Tables()
    first = f"line {lines[0].number} (thread {thread_id!r}): the store's copy "
    try:
        existing = store.load(thread_id) if at else []
    except CorruptHistory as e:
        return [], [first + f"cannot be read: {e.message}"]
    for event in existing:
        if problems := checker.check(event):
            return [], [first + f"fails at version {event.version}: " + "; ".join(problems)]
        _project(tables, type(event).__name__, event.model_dump(mode="json"), event.version)
    for line in lines:
        where = f"line {line.number} (thread {thread_id!r}, version {line.event.version}): "
        try:
            event = archive.decoded(line.event)
        except ValueError as e:
            return [], [f"{where}does not decode as {line.event.type}: {_first_line(e)}"]
        problems = checker.check(event)
        if not problems and max_message_bytes is not None:
            problems = _too_large(line.event, event, max_message_bytes)
        if not problems:
            try:
                _project(tables, line.event.type, event.model_dump(mode="json"), event.version)
            except Exception as e:  # the views would fail on it: the finding, not a crash
                problems = [f"the views cannot apply it: {type(e).__name__} {e}"]
        if problems:
            return [], [where + "; ".join(problems)]
    if lines and (problems := checker.finish()):
        return [], [f"line {lines[-1].number} (thread {thread_id!r}, end): " + "; ".join(problems)]
    return lines, []


def _too_large(archived: ArchivedEvent, event: AnyThreadEvent, limit: int) -> list[str]:
    """The messages of ``event`` over the size limit deliveries have (checked one by one
    only when the whole payload is over it)."""
    if len(orjson.dumps(archived.payload)) <= limit:
        return []
    carried = [
        *(m.message for m in getattr(event, "messages", [])),
        *([event.message] if isinstance(event, PendingMessageEdited) else []),
    ]
    problems = []
    for message in carried:
        size = len(orjson.dumps(message.model_dump(mode="json")))
        if size > limit:
            problems.append(f"message {message.id!r} is {size} bytes encoded; the limit is {limit}")
    return problems


def _same(event: ArchivedEvent) -> tuple[str, bytes]:
    """What two copies of an event must share to be the same (``true`` is not ``1`` here)."""
    return event.topic, orjson.dumps(event.payload, option=orjson.OPT_SORT_KEYS)


def _project(tables: Tables, event_type: str, payload: dict[str, Any], position: int) -> None:
    for change in changes_for(event_type, payload, position):
        tables.apply(change)


def _first_line(error: Exception) -> str:
    return " ".join(str(error).strip().splitlines()[:3])


def import_streams(
    store: EventStore,
    views: Views,
    streams: Streams,
    progress: Progress | None = None,
    *,
    skip_existing: bool = False,
    max_message_bytes: int | None = None,
    catch_up_progress: Progress | None = None,
) -> int:
    """Check every stream (``check_stream``), then, if none is refused, append each stream in
    one atomic write and catch the views up (``catch_up_progress`` counts the events applied);
    returns how many events were written.
    ``ImportRefused`` (nothing written) naming each refused stream's line and reason. A
    thread written to meanwhile stops the import there: nothing of it is written.
    ``max_message_bytes``: the limit on a message's size (the mailbox's, for the command line).
    ``progress(done, total)`` counts the events checked, then those written."""
    archive = archive_of(store)
    checked: list[tuple[str, list[Line]]] = []
    problems: list[str] = []
    in_file = sum(len(lines) for lines in streams.values())
    seen = 0
    for thread_id, lines in streams.items():
        kept, found = check_stream(
            store,
            archive,
            thread_id,
            lines,
            skip_existing=skip_existing,
            max_message_bytes=max_message_bytes,
        )
        problems.extend(found)
        if kept:
            checked.append((thread_id, kept))
        seen += len(lines)
        if progress is not None:
            progress(seen, 2 * in_file)
    refuse(problems)
    written = 0
    total = sum(len(lines) for _, lines in checked)
    for done, (thread_id, lines) in enumerate(checked):
        try:
            archive.append_archived([line.event for line in lines])
        except StreamConflict:
            raise ImportRefused(
                f"thread {thread_id!r} changed while importing; nothing of it was written "
                f"({done} threads, {written} events, were imported before it)",
                [f"line {lines[0].number}: thread {thread_id!r} changed while importing"],
            ) from None
        except IdsTaken:  # the checks refuse a used id first: another writer took it meanwhile
            raise ImportRefused(
                f"thread {thread_id!r} uses an id (message, run or hiding) the thread already "
                f"used; nothing of it was written ({done} threads, {written} events, were "
                "imported before it)",
                [f"line {lines[0].number}: thread {thread_id!r} uses an id already used"],
            ) from None
        written += len(lines)
        if progress is not None:
            progress(in_file + written * in_file // max(total, 1), 2 * in_file)
    views.catch_up(progress=catch_up_progress)
    return written
