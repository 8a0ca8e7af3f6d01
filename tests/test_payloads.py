"""The projections read stored payloads through TypedDicts mirroring domain/events.py: the two
cannot drift apart, and the payload path gives the views what the pydantic events would."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message
from threadbox.domain import events as ev
from threadbox.projections import changes_for
from threadbox.projections import payloads as pl


def json_fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_json_schema(mode="serialization")["properties"])


@pytest.mark.parametrize("name", sorted(ev.EVENT_TYPES))
def test_every_event_payload_type_has_the_json_fields_of_its_pydantic_event(name: str) -> None:
    typed = pl.PAYLOAD_TYPES[name]
    assert typed.__required_keys__ == json_fields(ev.EVENT_TYPES[name])  # type: ignore[attr-defined]
    assert not typed.__optional_keys__  # type: ignore[attr-defined]


def test_the_payload_types_name_exactly_the_event_types() -> None:
    assert set(pl.PAYLOAD_TYPES) == set(ev.EVENT_TYPES)


@pytest.mark.parametrize(
    ("typed", "model"),
    [
        (pl.DeliveredMessage, ev.DeliveredMessage),
        (pl.FrozenMessage, ev.FrozenMessage),
        (pl.OutputMessage, ev.OutputMessage),
    ],
)
def test_nested_payload_types_have_the_json_fields_of_their_pydantic_models(
    typed: type, model: type[BaseModel]
) -> None:
    assert typed.__required_keys__ == json_fields(model)  # type: ignore[attr-defined]


ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


@given(st.datetimes(timezones=ZONES))
def test_a_stored_timestamp_reads_as_the_isoformat_of_the_decoded_event(at: datetime) -> None:
    stored = ev.ThreadOpened(thread_id="t", version=1, timestamp=at).model_dump(mode="json")
    decoded = ev.ThreadOpened.model_validate(stored)
    assert pl.view_timestamp(stored["timestamp"]) == decoded.timestamp.isoformat()


def test_read_payloads_gives_each_event_as_its_pydantic_event_dumps_it() -> None:
    import threadbox

    with threadbox.open("memory://") as mb:
        run_a_thread(mb)
        decoded = mb.store.read(after="", limit=100)
        raw = list(mb.store.read_payloads(after="", limit=100))
        assert len(raw) == len(decoded) > 5
        for (position, _, name, payload), item in zip(raw, decoded, strict=True):
            assert (position, name) == (item.position, type(item.event).__name__)
            assert payload == item.event.model_dump(mode="json")
        assert [event_id for _, event_id, _, _ in raw] == list(range(1, len(raw) + 1))
        third = raw[2][0]
        assert list(mb.store.read_payloads(after=raw[1][0], limit=2, upto=third)) == raw[2:3]


def run_a_thread(mb: Mailbox) -> None:
    mb.deliver("t", [Message.user("a"), Message.user("b")], DeliveryMode.new_run())
    first = mb.pending("t")[0]
    mb.edit("t", first.pending_id, Message.user("a2", id=first.pending_id))
    mb.freeze("t", DeliveryBoundary.NEW_RUN, "r")
    mb.commit_output("t", "r", [Message.assistant("answer")])
    mb.finish_run("t", "r")


def mutable_parts(value: Any) -> list[object]:
    """Every dict and list in a change's values, nested ones included."""
    if isinstance(value, dict):
        return [value, *(p for v in value.values() for p in mutable_parts(v))]
    if isinstance(value, list):
        return [value, *(p for v in value for p in mutable_parts(v))]
    return []


def test_no_two_changes_of_a_log_share_a_row_or_a_list() -> None:
    """Tables keep what changes bring without copying; sharing would let one row's update
    leak into another row."""
    import threadbox

    with threadbox.open("memory://") as mb:
        run_a_thread(mb)
        mb.deliver("t", [Message.user("c")], DeliveryMode.new_run())
        mb.freeze("t", DeliveryBoundary.NEW_RUN, "r2")
        changes = [
            change
            for _, event_id, name, payload in mb.store.read_payloads(after="", limit=100)
            for change in changes_for(name, payload, event_id)
        ]
    parts = [
        part
        for change in changes
        for field in dataclasses.fields(change)
        for part in mutable_parts(getattr(change, field.name))
    ]
    assert len(parts) > 20
    assert len({id(part) for part in parts}) == len(parts)
