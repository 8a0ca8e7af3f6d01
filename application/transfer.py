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

import hashlib
import io
import tempfile
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

import orjson
from threadbox.domain.errors import CorruptHistory, ImportRefused, InvalidInput, ThreadNotFound
from threadbox.domain.events import AnyThreadEvent, PendingMessageEdited
from threadbox.domain.values import check_id
from threadbox.projections import changes_for
from threadbox.projections.tables import Outline, Tables

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


MOST_PROBLEMS = 20  # of a refused file, named in the error's message
MOST_KEPT = 1000  # of a refused file's problems, kept in the error (the rest only counted)
SPOOL_IN_MEMORY = 4 * 2**20  # bytes of an input that cannot seek kept in memory, then on disk
_FIELDS = 5  # per line in a thread's index: offset, length, number, version, digest


class NotAnEvent(ValueError):
    """A line of an import file is not an exported event; the message says why."""


class FileChanged(ValueError):
    """A line of an import file is not what it was when the file was read: the file changed."""

    def __init__(self, number: int) -> None:
        super().__init__(f"line {number} changed since the file was read")
        self.number = number


def _digest(raw: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little", signed=True)


class Streams:
    """An import file, read once (``read_streams``): per thread, in the order the threads first
    appear, where each of its lines is (offset, length, line number, version and a digest of its
    bytes: 40 bytes a line), never the events, which ``lines`` reads again from the file. Memory
    grows with the number of lines, not with their content.

    The file must stay as it was: a line that reads back otherwise raises ``FileChanged``. An
    input that cannot seek (stdin, a list of lines) is spooled as it is read, in memory up to
    ``SPOOL_IN_MEMORY`` bytes and then in a temporary file; ``close()`` (or ``with``) removes
    the spool. A seekable file is read in place and stays its owner's to close."""

    def __init__(self, archive: EventArchive, file: IO[bytes], *, owned: bool) -> None:
        self._archive = archive
        self._file = file
        self._owned = owned
        self._index: dict[str, array[int]] = {}
        self.events = 0
        """How many events (non-blank lines) the file holds."""

    def _add(self, event: ArchivedEvent, offset: int, raw: bytes, number: int) -> None:
        found = self._index.get(event.thread_id)
        if found is None:
            found = self._index[event.thread_id] = array("q")
        found.extend((offset, len(raw), number, event.version, _digest(raw)))
        self.events += 1

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def count(self, thread_id: str) -> int:
        """How many events of the thread the file holds."""
        return len(self._index.get(thread_id, ())) // _FIELDS

    def versions(self, thread_id: str) -> Iterator[tuple[int, int]]:
        """The thread's lines as (line number, version), in file order, without reading them."""
        index = self._index.get(thread_id, array("q"))
        for at in range(0, len(index), _FIELDS):
            yield index[at + 2], index[at + 3]

    def lines(self, thread_id: str, *, above: int = 0, upto: int | None = None) -> Iterator[Line]:
        """The thread's events whose version is above ``above`` (and at most ``upto``), read
        again from the file, in file order; ``FileChanged`` if a line is not as it was."""
        index = self._index.get(thread_id, array("q"))
        for at in range(0, len(index), _FIELDS):
            offset, length, number, version, digest = index[at : at + _FIELDS]
            if version <= above or (upto is not None and version > upto):
                continue
            self._file.seek(offset)
            raw = self._file.read(length)
            if len(raw) != length or _digest(raw) != digest:
                raise FileChanged(number)
            # The very bytes ``parse_line`` accepted: their fields, without its checks again.
            record = orjson.loads(raw)
            topic = record["topic"]
            name = self._archive.event_type_name(topic)
            event = ArchivedEvent(record["thread_id"], version, name, topic, record["state"])
            yield Line(number, event)

    def close(self) -> None:
        """Remove the spool, if the input was spooled."""
        if self._owned:
            self._file.close()

    def __enter__(self) -> Streams:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


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
    """Read an import file once (``size`` bytes; 0 if unknown): where each thread's lines are
    (``Streams``); ``ImportRefused`` naming every line that is not an exported event. ``lines``
    is a binary file (read in place if it can seek) or any iterable of lines (spooled)."""
    if isinstance(lines, io.IOBase) and lines.seekable():
        file = cast(IO[bytes], lines)
        streams, spool, offset = Streams(archive, file, owned=False), None, file.tell()
    else:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        streams, offset = Streams(archive, cast(IO[bytes], spool), owned=True), 0
    problems: list[str] = []
    found = 0
    try:
        for number, raw in enumerate(lines, start=1):
            if spool is not None:
                spool.write(raw)
            if raw.strip():
                try:
                    event = parse_line(archive, raw)
                except NotAnEvent as bad:
                    found += 1
                    if len(problems) < MOST_KEPT:
                        problems.append(f"line {number} is not an exported event: {bad}")
                else:
                    streams._add(event, offset, raw, number)
            offset += len(raw)
            if progress is not None and number % PROGRESS_EVERY == 0:
                progress(offset, max(size, offset))
        refuse(problems, found)
    except BaseException:
        streams.close()
        raise
    return streams


def refuse(problems: list[str], found: int | None = None) -> None:
    """``ImportRefused`` listing the problems (the first ``MOST_PROBLEMS`` in its message);
    ``found``: how many there were, when only the first of them were kept."""
    if not problems:
        return
    shown = "; ".join(problems[:MOST_PROBLEMS])
    more = max(len(problems), found or 0) - MOST_PROBLEMS
    text = f"import refused, nothing written: {shown}" + (f" (and {more} more)" if more > 0 else "")
    raise ImportRefused(text, problems)


def check_stream(
    store: EventStore,
    archive: EventArchive,
    streams: Streams,
    thread_id: str,
    *,
    skip_existing: bool = False,
    max_message_bytes: int | None = None,
) -> tuple[int, int, list[str]]:
    """Check one thread's stream: ``(at, count, problems)``, the events to write being the
    ``count`` events of the file above version ``at`` (the store's), and ``problems`` what is
    wrong with it (each names its line; then nothing of it is to be written). A stream is
    written only if it continues the store's copy of the thread, every event decodes exactly
    under the current schema, and the whole thread folds from version 1 through the domain's
    fold with every event one a decision could have written and the invariants holding
    (``ThreadChecker``) and projects onto the views (applied to an ``Outline`` of its rows);
    with ``max_message_bytes``, no message it carries is larger, encoded, than that (as
    delivery). With ``skip_existing``, events the store already holds, identical, are left out.

    The thread's events are read from the file one at a time and not kept: the checks hold the
    thread's folded state (ids, runs, the pending zone) and the outline of its view rows."""
    numbered = streams.versions(thread_id)
    first = next(numbered, None)
    if first is None:
        return 0, 0, []
    at = archive.stored_version(thread_id)
    skipping = skip_existing and at > 0 and first[1] <= at
    if skipping:
        stored = archive.archived(thread_id)
        for line in streams.lines(thread_id, upto=at):
            kept = stored[line.event.version - 1]
            if _same(kept) != _same(line.event):
                return (
                    at,
                    0,
                    [
                        f"line {line.number}: thread {thread_id!r} version {line.event.version} "
                        "differs from the store's copy"
                    ],
                )
        del stored
    expected, first_kept = at + 1, None
    for number, version in streams.versions(thread_id):
        if skipping and version <= at:
            continue
        if version != expected:
            return (
                at,
                0,
                [
                    f"line {number}: thread {thread_id!r}: the store is at version {at}, the "
                    f"file has version {version} where {expected} would come next; "
                    "import does not overwrite"
                ],
            )
        first_kept = first_kept or number
        expected += 1
    if first_kept is None:
        return at, 0, []
    count = expected - at - 1
    checker = ThreadChecker(thread_id)
    tables = Outline()
    before = f"line {first_kept} (thread {thread_id!r}): the store's copy "
    done = 0
    while done < at:  # the store's copy first, a page at a time
        try:
            page = store.load(thread_id, after=done, upto=at, limit=BATCH)
        except CorruptHistory as e:
            return at, 0, [before + f"cannot be read: {e.message}"]
        if not page:
            break
        for event in page:
            if problems := checker.check(event):
                return at, 0, [before + f"fails at version {event.version}: " + "; ".join(problems)]
            _project(tables, type(event).__name__, event.model_dump(mode="json"), event.version)
        done = page[-1].version
    last = first_kept
    for line in streams.lines(thread_id, above=at):
        last = line.number
        where = f"line {line.number} (thread {thread_id!r}, version {line.event.version}): "
        try:
            event = archive.decoded(line.event)
        except ValueError as e:
            return at, 0, [f"{where}does not decode as {line.event.type}: {_first_line(e)}"]
        problems = checker.check(event)
        if not problems and max_message_bytes is not None:
            problems = _too_large(line.event, event, max_message_bytes)
        if not problems:
            try:
                _project(tables, line.event.type, event.model_dump(mode="json"), event.version)
            except Exception as e:  # the views would fail on it: the finding, not a crash
                problems = [f"the views cannot apply it: {type(e).__name__} {e}"]
        if problems:
            return at, 0, [where + "; ".join(problems)]
    if problems := checker.finish():
        return at, 0, [f"line {last} (thread {thread_id!r}, end): " + "; ".join(problems)]
    return at, count, []


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
    thread written to meanwhile, or a file changed meanwhile, stops the import there: nothing
    of that thread is written. ``max_message_bytes``: the limit on a message's size (the
    mailbox's, for the command line). ``progress(done, total)`` counts the events checked,
    then those written.

    One thread at a time is checked, then one at a time written, its events read again from
    the file: memory holds the file's index and one thread's checks or write, whatever the
    size of the file."""
    archive = archive_of(store)
    checked: list[tuple[str, int, int]] = []  # thread, the version after which, how many
    problems: list[str] = []
    in_file = streams.events
    seen = 0
    for thread_id in streams:
        try:
            at, count, found = check_stream(
                store,
                archive,
                streams,
                thread_id,
                skip_existing=skip_existing,
                max_message_bytes=max_message_bytes,
            )
        except FileChanged as changed:
            raise ImportRefused(
                f"import refused, nothing written: the file changed while it was imported "
                f"({changed})",
                [str(changed)],
            ) from None
        problems.extend(found)
        if count:
            checked.append((thread_id, at, count))
        seen += streams.count(thread_id)
        if progress is not None:
            progress(seen, 2 * in_file)
    refuse(problems)
    written = 0
    total = sum(count for _, _, count in checked)
    for done, (thread_id, at, count) in enumerate(checked):
        before = f"({done} threads, {written} events, were imported before it)"
        try:
            archive.append_archived(line.event for line in streams.lines(thread_id, above=at))
        except StreamConflict:
            raise ImportRefused(
                f"thread {thread_id!r} changed while importing; nothing of it was written "
                + before,
                [
                    f"line {_first_number(streams, thread_id, at)}: thread {thread_id!r} changed "
                    "while importing"
                ],
            ) from None
        except IdsTaken:  # the checks refuse a used id first: another writer took it meanwhile
            raise ImportRefused(
                f"thread {thread_id!r} uses an id (message, run or hiding) the thread already "
                f"used; nothing of it was written {before}",
                [
                    f"line {_first_number(streams, thread_id, at)}: thread {thread_id!r} uses an "
                    "id already used"
                ],
            ) from None
        except FileChanged as changed:
            raise ImportRefused(
                f"the file changed while it was imported ({changed}); nothing of thread "
                f"{thread_id!r} was written {before}",
                [str(changed)],
            ) from None
        written += count
        if progress is not None:
            progress(in_file + written * in_file // max(total, 1), 2 * in_file)
    views.catch_up(progress=catch_up_progress)
    return written


def _first_number(streams: Streams, thread_id: str, at: int) -> int:
    """The number of the thread's first line above version ``at``."""
    return next(number for number, version in streams.versions(thread_id) if version > at)
