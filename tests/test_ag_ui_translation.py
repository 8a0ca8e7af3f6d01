"""The AG-UI translation on its own: thread events to AG-UI events (validated by the protocol's
models), state deltas that rebuild the thread's state, and messages mapped both ways."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import ag_ui.core as ag
import jsonpatch
import pytest
import threadbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from threadbox import DeliveryMode, Mailbox, Message
from threadbox.domain.errors import InvalidInput, ThreadboxError
from threadbox.infrastructure.http.ag_ui_events import ThreadTranslator, thread_event
from threadbox.infrastructure.http.ag_ui_messages import canonical, from_ag_ui, to_ag_ui

EVENT: TypeAdapter[Any] = TypeAdapter(ag.Event)
MESSAGE: TypeAdapter[Any] = TypeAdapter(ag.Message)


def wire(event: ag.BaseEvent) -> dict[str, Any]:
    """The event as sent, checked: it parses back (by its ``type``) to the same JSON."""
    data = event.model_dump_json(by_alias=True)
    parsed = EVENT.validate_json(data)
    assert type(parsed) is type(event) and not parsed.model_extra
    sent: dict[str, Any] = json.loads(data)
    assert json.loads(parsed.model_dump_json(by_alias=True)) == sent
    return sent


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


def translated(mailbox: Mailbox, *, at: int = 0, **options: Any) -> list[dict[str, Any]]:
    """The thread's AG-UI events: snapshots at version ``at``, then every later event."""
    translator = ThreadTranslator("t1", **options)
    history = [thread_event("t1", r) for r in mailbox.history("t1")]
    translator.advance(e for e in history if e.version <= at)
    events = translator.snapshots()
    for event in history:
        if event.version > at:
            events += translator.translate(event)
    return [wire(e) for e in events]


def state_now(mailbox: Mailbox) -> dict[str, Any]:
    """The state as the read routes answer it (the views, not the translator's fold)."""
    entries, version = mailbox.pending_page("t1")
    return {
        "pending": [e.model_dump(mode="json") for e in entries],
        "runs": [r.model_dump(mode="json") for r in mailbox.runs("t1")],
        "version": version,
    }


def replayed(events: list[dict[str, Any]]) -> Any:
    state = events[0]["snapshot"]
    for event in events:
        if event["type"] == "STATE_DELTA":
            state = jsonpatch.apply_patch(state, event["delta"])
    return state


def test_a_session_translates_to_valid_events_whose_deltas_rebuild_the_state(
    mailbox: Mailbox,
) -> None:
    mailbox.deliver("t1", [Message.user("a", id="a"), Message.user("b", id="b")])
    mailbox.edit("t1", "a", Message.user("a2"))
    mailbox.reorder("t1", ["b", "a"])
    mailbox.freeze("t1", "new_run", "r1")
    mailbox.deliver("t1", [Message.user("c", id="c")])
    mailbox.retract("t1", "c")
    mailbox.commit_output("t1", "r1", [Message.assistant("out", id="o1")])
    mailbox.hide("t1", "o1", "typo")
    mailbox.suspend_run("t1", "r1", "ask")
    mailbox.deliver("t1", [Message.user("d", id="d")], DeliveryMode.resume_input("r1"))
    mailbox.freeze("t1", "resume_input", "r1")
    only_r1 = DeliveryMode.next_step().targeted_to_run("r1", fallback_to_new_run=False)
    mailbox.deliver("t1", [Message.user("e", id="e")], only_r1)
    mailbox.finish_run("t1", "r1", "error", "the model failed")
    events = translated(mailbox)
    assert [e["type"] for e in events[:2]] == ["STATE_SNAPSHOT", "MESSAGES_SNAPSHOT"]
    assert events[0]["snapshot"] == {"pending": [], "runs": [], "version": 0}
    assert replayed(events) == state_now(mailbox)
    deltas = sum(e["type"] == "STATE_DELTA" for e in events)
    assert deltas == len(mailbox.history("t1"))  # every event changes the version
    kinds = [e["type"] for e in events]
    assert kinds.count("RUN_STARTED") == 1 and kinds[-2:] == ["RUN_ERROR", "STATE_DELTA"]
    error = next(e for e in events if e["type"] == "RUN_ERROR")
    assert error["message"] == "the model failed" and error["metadata"]["runId"] == "r1"
    customs = [e["name"] for e in events if e["type"] == "CUSTOM"]
    assert customs == [
        "threadbox.ThreadOpened",
        "threadbox.CommittedMessageHidden",
        "threadbox.RunSuspended",
        "threadbox.RunResumed",
    ]
    hidden = next(e for e in events if e.get("name") == "threadbox.CommittedMessageHidden")
    assert hidden["value"] == {"message_id": "o1", "seq": 3, "reason": "typo"}


def text_messages(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(message id, role, text) of each streamed text message, checking that each is started,
    filled and ended in order, one at a time."""
    found: list[tuple[str, str, str]] = []
    open_id: str | None = None
    for event in events:
        kind = event["type"]
        if kind == "TEXT_MESSAGE_START":
            assert open_id is None
            open_id = event["messageId"]
            found.append((event["messageId"], event["role"], ""))
        elif kind == "TEXT_MESSAGE_CONTENT":
            assert open_id == event["messageId"]
            message_id, role, text = found[-1]
            found[-1] = (message_id, role, text + event["delta"])
        elif kind == "TEXT_MESSAGE_END":
            assert open_id == event["messageId"]
            open_id = None
    assert open_id is None
    return found


def test_inputs_and_outputs_stream_as_text_tool_calls_and_tool_results(mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("find flights", id="u1")])
    mailbox.freeze("t1", "new_run", "r1")
    call = {"type": "tool_use", "id": "c1", "name": "search", "input": {"to": "Oslo"}}
    thinking = {"type": "text", "text": "Searching"}
    mailbox.commit_output(
        "t1", "r1", [{"id": "a1", "role": "assistant", "content": [thinking, call]}]
    )
    mailbox.commit_output("t1", "r1", [Message.tool("c1", "2 flights", id="t1")])
    events = translated(mailbox)
    assert text_messages(events) == [
        ("u1", "user", "find flights"),
        ("a1", "assistant", "Searching"),
    ]
    tools = [e for e in events if e["type"].startswith("TOOL_CALL")]
    assert tools == [
        {**tools[0], "type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "search"},
        {**tools[1], "type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": '{"to":"Oslo"}'},
        {**tools[2], "type": "TOOL_CALL_END", "toolCallId": "c1"},
        {
            **tools[3],
            "type": "TOOL_CALL_RESULT",
            "messageId": "t1",
            "toolCallId": "c1",
            "content": "2 flights",
        },
    ]
    assert tools[0]["parentMessageId"] == "a1"


def test_the_messages_snapshot_leaves_out_hidden_and_internal_messages(mailbox: Mailbox) -> None:
    note = {"id": "n1", "role": "system", "content": [{"type": "text", "text": "x"}]}
    mailbox.deliver("t1", [Message.user("hi", id="u1"), {**note, "visibility": "internal"}])
    mailbox.freeze("t1", "new_run", "r1")
    result = {"type": "tool_result", "tool_use_id": "c0", "content": "42"}
    mailbox.commit_output("t1", "r1", [Message.assistant("hello", id="a1")])
    mailbox.commit_output("t1", "r1", [Message.assistant("oops", id="a2")])
    mailbox.hide("t1", "a2", "wrong")
    mailbox.finish_run("t1", "r1")
    mailbox.deliver("t1", [{"id": "u2", "role": "user", "content": [result]}])
    mailbox.freeze("t1", "new_run", "r2")
    head = len(mailbox.history("t1"))
    snapshot = translated(mailbox, at=head)[1]["messages"]
    assert snapshot == [
        {"id": "u1", "role": "user", "content": "hi"},
        {"id": "a1", "role": "assistant", "content": "hello"},
        {"id": "u2#0", "role": "tool", "content": "42", "toolCallId": "c0"},
    ]
    everything = translated(mailbox, at=head, include_internal=True)[1]["messages"]
    assert {"id": "n1", "role": "system", "content": "x"} in everything
    streamed = translated(mailbox)
    assert "n1" not in {m for m, _, _ in text_messages(streamed)}
    assert "n1" in {m for m, _, _ in text_messages(translated(mailbox, include_internal=True))}


@pytest.mark.parametrize(
    ("termination", "outcome"),
    [("natural_end", "success"), ("cancelled", "cancelled"), ("interrupted", "cancelled")],
)
def test_a_run_that_did_not_fail_finishes_with_a_result_saying_how_it_ended(
    mailbox: Mailbox, termination: str, outcome: str
) -> None:
    mailbox.deliver("t1", [Message.user("a", id="a")])
    mailbox.freeze("t1", "new_run", "r1")
    mailbox.finish_run("t1", "r1", termination, "why")
    finished = [e for e in translated(mailbox) if e["type"] == "RUN_FINISHED"]
    assert [(f["runId"], f["outcome"], f["result"]) for f in finished] == [
        ("r1", {"type": outcome}, {"termination": termination, "detail": "why"})
    ]


# ---- deltas, for any sequence of commands -----------------------------------------------------

COMMAND_NAMES = ["deliver", "deliver", "edit", "retract", "reorder", "freeze", "freeze", "output"]
COMMANDS = st.lists(
    st.tuples(st.sampled_from([*COMMAND_NAMES, "hide", "suspend", "finish"]), st.integers(0, 5)),
    max_size=16,
)
BOUNDARIES = ["new_run", "next_step", "on_natural_end", "interrupt", "resume_input"]


def play(mailbox: Mailbox, commands: list[tuple[str, int]]) -> None:
    """Apply the commands, choosing ids the thread has; the ones it refuses (a boundary that
    selects nothing, a run in the wrong state) leave it as it is."""
    mailbox.deliver("t1", [Message.user("first", id="m0")])
    for step, (command, n) in enumerate(commands, start=1):
        pending = [e.pending_id for e in mailbox.pending("t1")]
        target = pending[n % len(pending)] if pending else "none"
        state = mailbox.thread("t1")
        run = state.running_run_id or state.waiting_run_id
        boundary = BOUNDARIES[n % len(BOUNDARIES)]
        try:
            if command == "deliver":
                mode = DeliveryMode(boundary=boundary, target_run_id=run) if run else None
                mailbox.deliver("t1", [Message.user(f"m{step}", id=f"m{step}")], mode)
            elif command == "edit":
                mailbox.edit("t1", target, Message.user(f"edited {step}"))
            elif command == "retract":
                mailbox.retract("t1", target)
            elif command == "reorder":
                turn = n % len(pending) if pending else 0
                mailbox.reorder("t1", pending[turn:] + pending[:turn])
            elif command == "freeze" and (run is None or boundary == "interrupt"):
                mailbox.freeze("t1", "new_run" if run is None else "interrupt", f"r{step}")
            elif command == "freeze":
                mailbox.freeze("t1", boundary, run or "none")
            elif command == "output":
                mailbox.commit_output("t1", run or "none", [Message.assistant("o", id=f"o{step}")])
            elif command == "hide":
                mailbox.hide("t1", f"o{n}", "hidden")
            elif command == "suspend":
                mailbox.suspend_run("t1", run or "none", "wait")
            else:
                mailbox.finish_run(
                    "t1", run or "none", ["natural_end", "error", "cancelled"][n % 3]
                )
        except ThreadboxError:
            continue  # refused: nothing was written


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(COMMANDS)
def test_the_deltas_of_any_session_rebuild_the_state_at_every_version(
    commands: list[tuple[str, int]],
) -> None:
    with threadbox.open("memory://") as mailbox:
        play(mailbox, commands)
        events = translated(mailbox)
        state = events[0]["snapshot"]
        for event in events[2:]:
            if event["type"] == "STATE_DELTA":
                state = jsonpatch.apply_patch(state, event["delta"])
                at = mailbox.thread("t1", at_version=state["version"])
                assert state["pending"] == [e.model_dump(mode="json") for e in at.pending]
                assert state["runs"] == [r.model_dump(mode="json") for r in at.runs]
        assert state == state_now(mailbox)


# ---- messages, both ways ----------------------------------------------------------------------


IMAGE = {"type": "image", "source": {"type": "data", "value": "AAA=", "mimeType": "image/png"}}
PDF = {"type": "document", "source": {"type": "url", "value": "https://x/y.pdf"}}
CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": [1, 2]}'}}

# (a message as a front end may post it, the AG-UI message threadbox shows it as)
ROUND_TRIPS = [
    ({"id": "u", "role": "user", "content": "plain"}, {"content": "plain"}),
    (
        {
            "id": "u",
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"content": "ab"},
    ),
    (
        {"id": "u", "role": "user", "content": [{"type": "text", "text": "look"}, IMAGE, PDF]},
        {"content": [{"type": "text", "text": "look"}, IMAGE, PDF]},
    ),
    ({"id": "s", "role": "system", "content": "be brief"}, {"content": "be brief"}),
    ({"id": "a", "role": "assistant", "content": "hello"}, {"content": "hello"}),
    (
        {"id": "a", "role": "assistant", "toolCalls": [CALL]},
        {"toolCalls": [{**CALL, "function": {"name": "f", "arguments": '{"x":[1,2]}'}}]},
    ),
    (
        {"id": "t", "role": "tool", "toolCallId": "c", "content": "done", "error": "timeout"},
        {"toolCallId": "c", "content": "done", "error": "timeout"},
    ),
    (
        {"id": "u", "role": "user", "content": "x", "metadata": {"k": [1]}},
        {"content": "x", "metadata": {"k": [1]}},
    ),
]


@pytest.mark.parametrize(("posted", "shown"), ROUND_TRIPS)
def test_a_posted_message_is_stored_and_shown_as_the_same_message(
    posted: dict[str, Any], shown: dict[str, Any]
) -> None:
    stored = from_ag_ui(MESSAGE.validate_python(posted), "messages.0")
    assert stored is not None and stored.id == posted["id"]
    [message] = to_ag_ui(stored)
    identity = {"id": posted["id"], "role": posted["role"]}
    assert message.model_dump(mode="json", by_alias=True) == identity | shown
    # What a front end posts back of what it was shown is the same message (a repeat).
    back = from_ag_ui(MESSAGE.validate_python(identity | shown), "messages.0")
    assert back is not None and [canonical(m) for m in to_ag_ui(back)] == [canonical(message)]


def test_developer_messages_are_system_messages_and_front_end_messages_are_not_delivered() -> None:
    developer = MESSAGE.validate_python({"id": "d", "role": "developer", "content": "rules"})
    assert from_ag_ui(developer, "messages.0") == Message.system("rules", id="d")
    activity = {"id": "x", "role": "activity", "activityType": "PLAN", "content": {}}
    assert from_ag_ui(MESSAGE.validate_python(activity), "messages.1") is None


@pytest.mark.parametrize(
    ("posted", "field"),
    [
        ({"id": "u", "role": "user", "content": []}, "messages.2.content"),
        ({"id": " ", "role": "user", "content": "x"}, "messages.2.id"),
        (
            {
                "id": "u",
                "role": "user",
                "content": [{"type": "audio", "source": {"type": "url", "value": "u"}}],
            },
            "messages.2.content.0",
        ),
        (
            {
                "id": "u",
                "role": "user",
                "content": [{"type": "image", "source": {"type": "file", "value": "f"}}],
            },
            "messages.2.content.0.source",
        ),
        (
            {
                "id": "a",
                "role": "assistant",
                "toolCalls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            },
            "messages.2.toolCalls.0.function.arguments",
        ),
    ],
)
def test_a_message_threadbox_cannot_hold_is_refused_naming_its_field(
    posted: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        from_ag_ui(MESSAGE.validate_python(posted), "messages.2")
    assert refused.value.field == field
