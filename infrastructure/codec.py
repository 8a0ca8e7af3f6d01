"""The stored format: threadbox events and thread snapshots as eventsourcing ``StoredEvent``s.

An event is stored under the topic ``threadbox.domain.events:<Class>`` as the JSON of its payload
plus ``"_v"``, its ``class_version``; older versions are upcast when read (ADR 0002).
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any, cast

import orjson
from eventsourcing.persistence import StoredEvent
from pydantic import BaseModel
from threadbox.application.ports import ArchivedEvent
from threadbox.domain.errors import CorruptHistory
from threadbox.domain.events import EVENT_TYPES, AnyThreadEvent, ThreadEvent
from threadbox.domain.records import RunStatus, Termination
from threadbox.domain.thread import Pending, PendingQueue, Run, Thread
from threadbox.domain.values import DeliveryMode, Message

EVENT_TOPIC_PREFIX = "threadbox.domain.events:"
SNAPSHOT_TOPIC = "threadbox.domain.thread:Thread"
SNAPSHOT_FORMAT = 3
READABLE_SNAPSHOT_FORMATS = (2, 3)  # 2 held every used id: read without them


@functools.lru_cache(maxsize=65536)
def stream_id(thread_id: str) -> uuid.UUID:
    """The same thread id maps to the same stream, in every store, forever
    (docs/semantics.md §1, S-1)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "threadbox/threads/" + thread_id)


def encode_event(event: ThreadEvent) -> StoredEvent:
    # pydantic's serializer writes the JSON directly; "_v" goes first, the payload's fields follow.
    body = event.__pydantic_serializer__.to_json(event)
    return StoredEvent(
        originator_id=stream_id(event.thread_id),
        originator_version=event.version,
        topic=EVENT_TOPIC_PREFIX + type(event).__name__,
        state=b'{"_v":%d,' % type(event).class_version + body[1:],
    )


def event_type(topic: str) -> type[ThreadEvent]:
    if not topic.startswith(EVENT_TOPIC_PREFIX):
        raise ValueError(f"not a threadbox event topic: {topic!r}")
    name = topic[len(EVENT_TOPIC_PREFIX) :]
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown threadbox event type {name!r}") from None


def decode_payload(topic: str, state: bytes) -> tuple[type[ThreadEvent], dict[str, Any]]:
    """The event class and its payload, upcast to the class's current version."""
    cls = event_type(topic)
    payload = orjson.loads(state)
    stored_version = payload.pop("_v", 1)
    return cls, cls.upcast(payload, stored_version)


def decode_event(stored: StoredEvent) -> AnyThreadEvent:
    """A stored event as its current class; ``CorruptHistory`` if it does not decode (one
    written past the decisions, by hand or by a buggy older version).

    An event of its class's current version, as ``encode_event`` writes it, is validated from
    its JSON by pydantic directly (a third of the time of parsing it to a dict first, which a
    cold load's tail pays per event, ADR 0010); anything else, or anything that fails there,
    takes the general path: parsed, upcast, validated, and its failure named."""
    current = _CURRENT.get(stored.topic)
    if current is not None and stored.state[: len(current[1])] == current[1]:
        cls, prefix = current
        try:
            return cast(AnyThreadEvent, cls.model_validate_json(b"{" + stored.state[len(prefix) :]))
        except ValueError:
            pass  # the general path below names what is wrong
    try:
        cls, payload = decode_payload(stored.topic, stored.state)
        return cast(AnyThreadEvent, cls.model_validate(payload))
    except (ValueError, KeyError, TypeError) as e:  # pydantic's ValidationError is a ValueError
        reason = f"does not decode as {stored.topic.rpartition(':')[2]}: {_first_line(e)}"
        raise CorruptHistory(_thread_of(stored), stored.originator_version, reason) from e


# Each event topic's class and what ``encode_event`` writes first for its current version.
_CURRENT = {
    EVENT_TOPIC_PREFIX + name: (cls, b'{"_v":%d,' % cls.class_version)
    for name, cls in EVENT_TYPES.items()
}


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return " ".join(text.splitlines()[:3]) if text else type(error).__name__


def _thread_of(stored: StoredEvent) -> str:
    """The thread an undecodable event names, as far as it can be read."""
    try:
        thread_id = orjson.loads(stored.state).get("thread_id")
    except (orjson.JSONDecodeError, AttributeError):
        thread_id = None
    return thread_id if isinstance(thread_id, str) else f"stream {stored.originator_id}"


def archived_of(stored: StoredEvent) -> ArchivedEvent:
    """A stored event as export writes it: its payload as stored, not upcast."""
    payload = orjson.loads(stored.state)
    name = stored.topic.rpartition(":")[2]
    return ArchivedEvent(
        payload["thread_id"], stored.originator_version, name, stored.topic, payload
    )


def decode_archived(event: ArchivedEvent) -> AnyThreadEvent:
    """An exported event decoded under the current schema (upcast from its ``"_v"``), with
    ``ValueError`` unless it decodes exactly: the upcast payload must be the JSON of the event
    it decodes to, field for field and type for type (no ``true`` for ``1``, no ``"1"`` for 1),
    with a UTC timestamp; else the projections, which read the payload, and the fold, which
    reads the event, would disagree."""
    cls = event_type(event.topic)
    payload = dict(event.payload)
    stored_version = payload.pop("_v", 1)
    if type(stored_version) is not int or not 1 <= stored_version <= cls.class_version:
        raise ValueError(f'"_v" {stored_version!r} is not a version of {cls.__name__}')
    upcast = cls.upcast(payload, stored_version)
    decoded = cast(AnyThreadEvent, cls.model_validate(upcast))
    offset = decoded.timestamp.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ValueError(f"timestamp {upcast['timestamp']!r} is not in UTC")
    canonical = decoded.model_dump(mode="json")
    if _sorted_json(canonical) != _sorted_json(upcast):
        field = next(
            k
            for k in (*canonical, *upcast)
            if k not in canonical
            or k not in upcast
            or _sorted_json(canonical[k]) != _sorted_json(upcast[k])
        )
        if field not in upcast:
            raise ValueError(f"field {field!r} is missing (it decodes as {canonical[field]!r})")
        if field not in canonical:
            raise ValueError(f"field {field!r} is not one of {cls.__name__}'s")
        raise ValueError(
            f"field {field!r} is {upcast[field]!r}, which decodes as {canonical[field]!r}"
        )
    return decoded


def _sorted_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def stored_of(event: ArchivedEvent) -> StoredEvent:
    """An imported event, stored exactly as it was exported."""
    return StoredEvent(
        originator_id=stream_id(event.thread_id),
        originator_version=event.version,
        topic=event.topic,
        state=orjson.dumps(event.payload),
    )


# ---- snapshots -------------------------------------------------------------------------------


def _json(model: BaseModel) -> orjson.Fragment:
    """A model's JSON, written by pydantic's serializer and embedded by orjson as it is (the
    same values as its ``model_dump(mode="json")``, without the dict in between)."""
    return orjson.Fragment(model.__pydantic_serializer__.to_json(model))


@functools.lru_cache(maxsize=256)
def _mode_json(mode: DeliveryMode) -> orjson.Fragment:
    return _json(mode)  # a thread's entries share a few modes


def _pending_to_json(p: Pending) -> dict[str, Any]:
    # A snapshot holds every pending entry, and a thread with a long queue is snapshotted every
    # tenth of its length: per command this costs ~10 entries' encoding.
    same = p.original is p.message or p.original == p.message
    return {
        "message": _json(p.message),
        "mode": _mode_json(p.mode),
        "revision": p.revision,
        "delivered_at": p.delivered_at.isoformat(),
        "updated_at": p.updated_at.isoformat(),
        "original": None if same else _json(p.original),
    }


def _pending_from_json(d: dict[str, Any]) -> Pending:
    message = Message.model_validate(d["message"])
    original = message if d["original"] is None else Message.model_validate(d["original"])
    return Pending(
        pending_id=d["message"]["id"],
        message=message,
        mode=DeliveryMode.model_validate(d["mode"]),
        revision=d["revision"],
        delivered_at=datetime.fromisoformat(d["delivered_at"]),
        updated_at=datetime.fromisoformat(d["updated_at"]),
        original=original,
    )


def _run_to_json(r: Run) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "status": r.status.value,
        "started_at": r.started_at.isoformat(),
        "termination": r.termination.value if r.termination else None,
        "detail": r.detail,
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "trigger_message_ids": r.trigger_message_ids,
        "input_ranges": r.input_ranges,
        "output_message_ids": r.output_message_ids,
        "freeze_count": r.freeze_count,
    }


def _run_from_json(d: dict[str, Any]) -> Run:
    return Run(
        run_id=d["run_id"],
        status=RunStatus(d["status"]),
        started_at=datetime.fromisoformat(d["started_at"]),
        termination=Termination(d["termination"]) if d["termination"] else None,
        detail=d["detail"],
        finished_at=datetime.fromisoformat(d["finished_at"]) if d["finished_at"] else None,
        trigger_message_ids=list(d["trigger_message_ids"]),
        input_ranges=[(a, b) for a, b in d["input_ranges"]],
        output_message_ids=list(d["output_message_ids"]),
        freeze_count=d["freeze_count"],
        output_seqs=list(d.get("output_seqs", [])),
    )


def _open_run_to_json(r: Run) -> dict[str, Any]:
    """The open run as decisions see it: its id, status, start and outputs with their seqs
    (what a rollback hides), not the rest of its history."""
    return {
        **_run_to_json(r),
        "trigger_message_ids": [],
        "input_ranges": [],
        "freeze_count": 0,
        "output_seqs": r.output_seqs,
    }


def encode_snapshot(state: Thread) -> StoredEvent:
    """What decisions need now, and nothing that grows with the thread: the pending entries, the
    last seq and the open run (its id, status and start). The ids used before are the id
    table's (ADR 0010)."""
    open_run = state.open_run
    body = {
        "format": SNAPSHOT_FORMAT,
        "thread_id": state.thread_id,
        "version": state.version,
        "pending": [_pending_to_json(p) for p in state.pending],
        "last_seq": state.last_seq,
        "open_run": _open_run_to_json(open_run) if open_run is not None else None,
    }
    return StoredEvent(
        originator_id=stream_id(state.thread_id),
        originator_version=state.version,
        topic=SNAPSHOT_TOPIC,
        state=orjson.dumps(body),
    )


def decode_snapshot(stored: StoredEvent) -> Thread | None:
    """A thread state from a snapshot, or None for a snapshot format this code does not know.
    Format 2 (every id the thread used, by fate) is upcast by leaving its id lists out: the id
    table answers for them."""
    body = orjson.loads(stored.state)
    if stored.topic != SNAPSHOT_TOPIC or body.get("format") not in READABLE_SNAPSHOT_FORMATS:
        return None  # an unknown snapshot format is simply not used: the log is the truth
    if body["open_run"] is not None and "output_seqs" not in body["open_run"]:
        return None  # written before the open run kept its outputs (what a rollback hides)
    pending = [_pending_from_json(p) for p in body["pending"]]
    open_run = _run_from_json(body["open_run"]) if body["open_run"] else None
    return Thread(
        thread_id=body["thread_id"],
        version=body["version"],
        pending=PendingQueue(pending),
        used={p.pending_id: ("pending", None) for p in pending},
        last_seq=body["last_seq"],
        runs={open_run.run_id: open_run} if open_run else {},
        open_run_id=open_run.run_id if open_run else None,
        runs_complete=False,
        ids_complete=False,
    )
