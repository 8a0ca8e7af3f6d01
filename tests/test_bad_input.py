"""Invalid input is refused with a typed error naming the field, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from threadbox import DeliveryMode, Mailbox, Message
from threadbox.errors import InvalidInput, PayloadTooLarge, ThreadNotFound

pytestmark = pytest.mark.parametrize("backend", ["memory", "sqlite"])

T = "thread-1"
TEXT = [{"type": "text", "text": "hi"}]


def user(**fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": TEXT, **fields}


@pytest.fixture
def busy(mailbox: Mailbox) -> Mailbox:
    """A thread with a committed message "c", a running run "r1" and a pending entry "p"."""
    mailbox.submit(T, [Message.user("committed", id="c")], DeliveryMode(), "r1")
    mailbox.deliver(T, [Message.user("pending", id="p")])
    return mailbox


Call = Callable[[Mailbox], object]

INVALID: dict[str, tuple[Call, str]] = {
    "empty content": (
        lambda mb: mb.deliver(T, [{"role": "user", "content": []}]),
        "messages.0.content",
    ),
    "unknown part type": (
        lambda mb: mb.deliver(T, [{"role": "user", "content": [{"type": "video", "url": "x"}]}]),
        "messages.0.content.0",
    ),
    "unknown role": (
        lambda mb: mb.deliver(T, [{"role": "robot", "content": TEXT}]),
        "messages.0.role",
    ),
    "tool message without tool_call_id": (
        lambda mb: mb.deliver(T, [{"role": "tool", "content": TEXT}]),
        "messages.0",
    ),
    "tool message with a blank tool_call_id": (
        lambda mb: mb.deliver(T, [{"role": "tool", "content": TEXT, "tool_call_id": "  "}]),
        "messages.0",
    ),
    "tool_call_id on a user message": (
        lambda mb: mb.deliver(T, [user(tool_call_id="call-1")]),
        "messages.0",
    ),
    "blank message id": (lambda mb: mb.deliver(T, [user(id="   ")]), "messages.0.id"),
    "message id over 200 characters": (
        lambda mb: mb.deliver(T, [user(id="x" * 201)]),
        "messages.0.id",
    ),
    "control character in a message id": (
        lambda mb: mb.deliver(T, [user(id="a\nb")]),
        "messages.0.id",
    ),
    "metadata not an object": (
        lambda mb: mb.deliver(T, [user(metadata=["not", "an", "object"])]),
        "messages.0.metadata",
    ),
    "lone surrogate in a top-level metadata key": (
        lambda mb: mb.deliver(T, [user(metadata={"ok": 1, "\ud800": 2})]),
        "messages.0.metadata",
    ),
    "lone surrogate in a nested metadata key": (
        lambda mb: mb.deliver(T, [user(metadata={"a": {"\udc00x": 1}})]),
        "messages.0.metadata.a",
    ),
    "lone surrogate in a metadata value": (
        lambda mb: mb.deliver(T, [user(metadata={"a": ["fine", "x\udfff"]})]),
        "messages.0.metadata.a.1",
    ),
    "lone surrogate in a message's text": (
        lambda mb: mb.deliver(
            T, [user(), {"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]
        ),
        "messages.1.content.0.text",
    ),
    "lone surrogate in a tool input key": (
        lambda mb: mb.commit_output(
            T,
            "r1",
            [
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "call-1",
                            "name": "search",
                            "input": {"q": {"\ud83dx": 1}},
                        }
                    ],
                }
            ],
        ),
        "messages.0.content.0.input.q",
    ),
    "lone surrogate in an edit's metadata key": (
        lambda mb: mb.edit(T, "p", user(metadata={"\udbff": True})),
        "message.metadata",
    ),
    "unknown message field": (lambda mb: mb.deliver(T, [user(colour="red")]), "messages.0.colour"),
    "messages not a list": (lambda mb: mb.deliver(T, "hello"), "messages"),  # type: ignore[arg-type]
    "duplicate ids in one delivery": (
        lambda mb: mb.deliver(T, [user(id="d"), user(id="d")]),
        "messages.id",
    ),
    "resume_input mode without a target": (
        lambda mb: mb.deliver(T, [user()], {"boundary": "resume_input"}),
        "mode",
    ),
    "resume_input mode with fallback": (
        lambda mb: mb.deliver(T, [user()], {"boundary": "resume_input", "target_run_id": "r1"}),
        "mode",
    ),
    "unknown mode boundary": (
        lambda mb: mb.deliver(T, [user()], {"boundary": "later"}),
        "mode.boundary",
    ),
    "unknown mode field": (
        lambda mb: mb.deliver(T, [user()], {"boundary": "new_run", "urgent": True}),
        "mode.urgent",
    ),
    "empty thread id": (lambda mb: mb.deliver("", [user()]), "thread_id"),
    "thread id over 200 characters": (lambda mb: mb.deliver("t" * 201, [user()]), "thread_id"),
    "control character in a thread id": (lambda mb: mb.deliver("a\x00b", [user()]), "thread_id"),
    "thread id not a string": (lambda mb: mb.deliver(42, [user()]), "thread_id"),  # type: ignore[arg-type]
    "unknown boundary": (lambda mb: mb.freeze(T, "soon", "r2"), "boundary"),
    "blank run id": (lambda mb: mb.freeze(T, "next_step", ""), "run_id"),
    "control character in a run id": (lambda mb: mb.freeze(T, "next_step", "r\t1"), "run_id"),
    "interrupt with a used run id": (lambda mb: mb.freeze(T, "interrupt", "r1"), "run_id"),
    "negative expected_version": (
        lambda mb: mb.freeze(T, "next_step", "r1", expected_version=-1),
        "expected_version",
    ),
    "expected_version not a number": (
        lambda mb: mb.reorder(T, ["p"], expected_version="3"),  # type: ignore[arg-type]
        "expected_version",
    ),
    "negative expected_revision": (
        lambda mb: mb.edit(T, "p", user(), expected_revision=-1),
        "expected_revision",
    ),
    "boolean expected_revision": (
        lambda mb: mb.retract(T, "p", expected_revision=True),
        "expected_revision",
    ),
    "edit changing the message id": (lambda mb: mb.edit(T, "p", user(id="other")), "message.id"),
    "edit to an invalid message": (
        lambda mb: mb.edit(T, "p", {"role": "user", "content": []}),
        "message.content",
    ),
    "ordered ids as a string": (lambda mb: mb.reorder(T, "p"), "ordered_ids"),
    "ordered ids not strings": (lambda mb: mb.reorder(T, [1]), "ordered_ids"),  # type: ignore[list-item]
    "unknown termination": (lambda mb: mb.finish_run(T, "r1", "done"), "termination"),
    "empty submit": (lambda mb: mb.submit(T, [], DeliveryMode(), "r2"), "messages"),
    "user message as run output": (
        lambda mb: mb.commit_output(T, "r1", [Message.user("me", id="u")]),
        "messages.role",
    ),
    "invalid output message": (
        lambda mb: mb.commit_output(T, "r1", [{"role": "assistant", "content": []}]),
        "messages.0.content",
    ),
    "hide reason not a string": (lambda mb: mb.hide(T, "c", 7), "reason"),  # type: ignore[arg-type]
    "lone surrogate in a hide reason": (lambda mb: mb.hide(T, "c", "typo \ud800"), "reason"),
    "lone surrogate in a suspend reason": (lambda mb: mb.suspend_run(T, "r1", "\udc00"), "reason"),
    "lone surrogate in a finish detail": (
        lambda mb: mb.finish_run(T, "r1", "cancelled", "\udfff"),
        "detail",
    ),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_input_names_the_field_and_writes_nothing(busy: Mailbox, case: str) -> None:
    call, field = INVALID[case]
    position, version = busy.store.committed_head(), busy.thread(T).version
    with pytest.raises(InvalidInput) as raised:
        call(busy)
    assert raised.value.code == "invalid_input"
    assert raised.value.field == field
    assert busy.store.committed_head() == position
    assert busy.thread(T).version == version


def test_an_invalid_first_delivery_does_not_create_the_thread(mailbox: Mailbox) -> None:
    with pytest.raises(InvalidInput):
        mailbox.deliver("fresh", [Message.user("fine"), {"role": "user", "content": []}])
    with pytest.raises(ThreadNotFound):
        mailbox.thread("fresh")
    assert mailbox.store.committed_head() == ""


def test_an_oversize_message_is_payload_too_large_and_writes_nothing(busy: Mailbox) -> None:
    position = busy.store.committed_head()
    huge = Message.user("x" * (1024 * 1024))
    for call in (
        lambda: busy.deliver(T, [huge]),
        lambda: busy.submit(T, [huge], DeliveryMode.next_step(), "r1"),
        lambda: busy.edit(T, "p", huge.with_id("p")),
        lambda: busy.commit_output(T, "r1", [Message.assistant("y" * (1024 * 1024))]),
    ):
        with pytest.raises(PayloadTooLarge) as raised:
            call()
        assert raised.value.code == "payload_too_large"
        assert raised.value.size > raised.value.limit == 1024 * 1024
    assert busy.store.committed_head() == position


@pytest.mark.parametrize(
    ("read", "field"),
    [
        (lambda mb: mb.thread(T, at_version=0), "at_version"),
        (lambda mb: mb.history(T, after_version=-1), "after_version"),
        (lambda mb: mb.committed(T, after_seq=-1), "after_seq"),
        (lambda mb: mb.committed(T, limit=0), "limit"),
        (lambda mb: mb.threads_with_pending(limit=0), "limit"),
        (lambda mb: mb.run(""), "run_id"),
    ],
    ids=["at_version", "after_version", "after_seq", "limit", "pending-limit", "run_id"],
)
def test_invalid_read_arguments_name_the_field(busy: Mailbox, read: Call, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        read(busy)
    assert raised.value.field == field
