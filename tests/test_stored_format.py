"""The stored format, read back from the recorder on every backend: a thread's stream id, each
event's topic and payload version. These are what another store, or a later release, must read
the same way; the expected values are written out here, not taken from the codec."""

from __future__ import annotations

import json
import uuid
from typing import Any

from threadbox import DeliveryBoundary, Mailbox, Message, Termination

THREAD_IDS = ["t1", "a thread/with slashes, blanks and ünïcödé 🧵"]
PAYLOAD_VERSIONS = {"RunFinished": 3}  # every other event type is at version 1


def stream_of(thread_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, "threadbox/threads/" + thread_id)


def stored_events(mailbox: Mailbox, thread_id: str) -> list[Any]:
    """The thread's events as the recorder holds them (eventsourcing ``StoredEvent``s)."""
    recorder = mailbox.store.events  # type: ignore[attr-defined]
    return list(recorder.select_events(stream_of(thread_id)))


def write_a_run(mailbox: Mailbox, thread_id: str) -> None:
    mailbox.deliver(thread_id, [Message.user("hi", id=f"{thread_id}/m1")])
    mailbox.freeze(thread_id, DeliveryBoundary.NEW_RUN, "r1")
    mailbox.finish_run(thread_id, "r1", Termination.NATURAL_END, "done")


def test_a_threads_events_are_stored_under_the_uuid5_of_its_id(mailbox: Mailbox) -> None:
    for thread_id in THREAD_IDS:
        write_a_run(mailbox, thread_id)
    assert str(stream_of("t1")) == "e8689137-a19a-546f-aa07-23f4190cd3c6"  # RFC 4122 §4.3, SHA-1
    for thread_id in THREAD_IDS:
        stored = stored_events(mailbox, thread_id)
        versions = [e.version for e in mailbox.history(thread_id)]
        assert [s.originator_version for s in stored] == versions == [1, 2, 3, 4, 5]
        assert {s.originator_id for s in stored} == {stream_of(thread_id)}
        assert {json.loads(s.state)["thread_id"] for s in stored} == {thread_id}


def test_each_event_is_stored_under_its_types_topic_with_its_payload_version(
    mailbox: Mailbox,
) -> None:
    write_a_run(mailbox, "t1")
    stored = stored_events(mailbox, "t1")
    types = [e.type for e in mailbox.history("t1")]
    assert types == [
        "ThreadOpened",
        "MessagesDelivered",
        "RunStarted",
        "PendingMessagesFrozen",
        "RunFinished",
    ]
    assert [s.topic for s in stored] == [f"threadbox.domain.events:{t}" for t in types]
    assert [json.loads(s.state)["_v"] for s in stored] == [
        PAYLOAD_VERSIONS.get(t, 1) for t in types
    ]
