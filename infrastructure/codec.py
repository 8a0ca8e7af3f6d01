"""The stored format: threadbox events and thread snapshots as eventsourcing ``StoredEvent``s.

An event is stored under the topic ``threadbox.domain.events:<Class>`` as the JSON of its payload
plus ``"_v"``, its ``class_version``; older versions are upcast when read (ADR 0002).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

import orjson
from eventsourcing.persistence import StoredEvent
from threadbox.domain.events import EVENT_TYPES, AnyThreadEvent, ThreadEvent
from threadbox.domain.records import RunStatus, Termination
from threadbox.domain.thread import Pending, Run, Thread
from threadbox.domain.values import DeliveryMode, Message

EVENT_TOPIC_PREFIX = "threadbox.domain.events:"
SNAPSHOT_TOPIC = "threadbox.domain.thread:Thread"
SNAPSHOT_FORMAT = 1


def stream_id(thread_id: str) -> uuid.UUID:
    """The same thread id maps to the same stream, in every store, forever (SEMANTICS §1)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "threadbox/threads/" + thread_id)


def encode_event(event: ThreadEvent) -> StoredEvent:
    payload = event.model_dump(mode="json")
    payload["_v"] = type(event).class_version
    return StoredEvent(
        originator_id=stream_id(event.thread_id),
        originator_version=event.version,
        topic=EVENT_TOPIC_PREFIX + type(event).__name__,
        state=orjson.dumps(payload),
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
    cls, payload = decode_payload(stored.topic, stored.state)
    return cast(AnyThreadEvent, cls.model_validate(payload))


# ---- snapshots -------------------------------------------------------------------------------


def _pending_to_json(p: Pending) -> dict[str, Any]:
    return {
        "message": p.message.model_dump(mode="json"),
        "mode": p.mode.model_dump(mode="json"),
        "revision": p.revision,
        "delivered_at": p.delivered_at.isoformat(),
        "updated_at": p.updated_at.isoformat(),
        "original": None if p.original == p.message else p.original.model_dump(mode="json"),
    }


def _pending_from_json(d: dict[str, Any]) -> Pending:
    message = Message.model_validate(d["message"])
    original = message if d["original"] is None else Message.model_validate(d["original"])
    return Pending(
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
    )


def encode_snapshot(state: Thread) -> StoredEvent:
    body = {
        "format": SNAPSHOT_FORMAT,
        "thread_id": state.thread_id,
        "version": state.version,
        "pending": [_pending_to_json(p) for p in state.pending],
        "used": state.used,
        "hidden": sorted(state.hidden),
        "last_seq": state.last_seq,
        "runs": [_run_to_json(r) for r in state.runs.values()],
        "open_run_id": state.open_run_id,
    }
    return StoredEvent(
        originator_id=stream_id(state.thread_id),
        originator_version=state.version,
        topic=SNAPSHOT_TOPIC,
        state=orjson.dumps(body),
    )


def decode_snapshot(stored: StoredEvent) -> Thread | None:
    """A thread state from a snapshot, or None for a snapshot format this code does not know."""
    body = orjson.loads(stored.state)
    if stored.topic != SNAPSHOT_TOPIC or body.get("format") != SNAPSHOT_FORMAT:
        return None  # an older snapshot format is simply not used: the log is the truth
    return Thread(
        thread_id=body["thread_id"],
        version=body["version"],
        pending=[_pending_from_json(p) for p in body["pending"]],
        used={k: (how, seq) for k, (how, seq) in body["used"].items()},
        hidden=set(body["hidden"]),
        last_seq=body["last_seq"],
        runs={r["run_id"]: _run_from_json(r) for r in body["runs"]},
        open_run_id=body["open_run_id"],
    )
