"""The AG-UI routes against a real server, read with httpx-sse as a front end would: every
event validated by the ``ag-ui-protocol`` models, the deltas replayed with ``jsonpatch`` onto the
snapshot until they reach what ``GET …/pending`` and ``GET …/runs`` answer, the POST stream
ending with the run another client finishes, and refused inputs writing nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import ag_ui.core as ag
import httpx
import jsonpatch
import pytest
import threadbox
from fastapi.testclient import TestClient
from httpx_sse import EventSource, connect_sse
from live_server import live_server
from pydantic import TypeAdapter
from test_http_sse import DEADLINE
from test_openapi import declared
from threadbox import Mailbox, Message
from threadbox.infrastructure.http import StreamSettings, create_app

EVENT: TypeAdapter[Any] = TypeAdapter(ag.Event)
T = "/v1/threads/t1"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


@pytest.fixture
def server(mailbox: Mailbox) -> Iterator[str]:
    """The base URL of a live server of ``mailbox`` with fast polls."""
    settings = StreamSettings(poll_interval=0.05, heartbeat=60.0)
    with live_server(create_app(mailbox, stream_settings=settings)) as url:
        yield url


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    """The second client: writes through the HTTP API while the first one streams."""
    with httpx.Client(base_url=server, timeout=DEADLINE) as client:
        yield client


def received(source: EventSource) -> Iterator[tuple[str, dict[str, Any]]]:
    """(last event id, AG-UI event) as a front end gets them, each validated: it parses by its
    ``type`` to a protocol model that has every field it sent, camelCase, and no other."""
    for sse in source.iter_sse():
        assert sse.event == "message"  # no `event:` line: EventSource's onmessage gets them all
        event = EVENT.validate_json(sse.data)
        assert not event.model_extra, sse.data
        sent: dict[str, Any] = json.loads(sse.data)
        assert json.loads(event.model_dump_json(by_alias=True)) == sent
        yield sse.id, sent


def until_version(events: Iterator[tuple[str, dict[str, Any]]], version: int) -> list[Any]:
    """The events up to the last one of ``version`` (the one that carries its id)."""
    taken = []
    for last_id, event in events:
        taken.append(event)
        if last_id == str(version):
            return taken
    raise AssertionError(f"the stream ended before version {version}")


def state_read(api: httpx.Client) -> dict[str, Any]:
    pending = api.get(f"{T}/pending").json()
    return {
        "pending": pending["entries"],
        "runs": api.get(f"{T}/runs").json()["runs"],
        "version": pending["version"],
    }


def replayed(events: list[dict[str, Any]]) -> Any:
    snapshot = next(e for e in events if e["type"] == "STATE_SNAPSHOT")
    state = snapshot["snapshot"]
    for event in events:
        if event["type"] == "STATE_DELTA":
            state = jsonpatch.apply_patch(state, event["delta"])
    return state


def texts(events: list[dict[str, Any]]) -> dict[str, str]:
    """Each streamed text message's text, checking start, content and end come in order."""
    found: dict[str, str] = {}
    open_id = None
    for event in events:
        if event["type"] == "TEXT_MESSAGE_START":
            assert open_id is None and event["messageId"] not in found
            open_id, found[event["messageId"]] = event["messageId"], ""
        elif event["type"] == "TEXT_MESSAGE_CONTENT":
            assert event["messageId"] == open_id
            found[open_id] += event["delta"]
        elif event["type"] == "TEXT_MESSAGE_END":
            assert event["messageId"] == open_id
            open_id = None
    assert open_id is None
    return found


def user(message_id: str, text: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "content": text}


def run_input(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"threadId": "t1", "runId": "ui-run", "messages": list(messages), **extra}


def body(text: str, message_id: str, role: str = "assistant") -> dict[str, Any]:
    return {"id": message_id, "role": role, "content": [{"type": "text", "text": text}]}


# ---- GET: the thread as AG-UI events ----------------------------------------------------------


def test_the_thread_stream_replays_to_the_state_the_read_routes_answer(
    mailbox: Mailbox, server: str, api: httpx.Client
) -> None:
    mailbox.deliver("t1", [Message.user("plan a trip", id="m1")])
    with connect_sse(api, "GET", f"{T}/ag-ui") as source:
        events = received(source)
        opening = until_version(events, 2)
        assert [e["type"] for e in opening] == ["STATE_SNAPSHOT", "MESSAGES_SNAPSHOT"]
        assert [p["pending_id"] for p in opening[0]["snapshot"]["pending"]] == ["m1"]
        api.post(f"{T}/messages", json={"messages": [body("to Oslo", "m2", "user")]})
        api.patch(
            f"{T}/pending/m1",
            headers={"If-Match": '"1"'},
            json={"message": body("plan", "m1", "user")},
        )
        api.put(f"{T}/pending/order", headers={"If-Match": '"4"'}, json={"order": ["m2", "m1"]})
        api.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": "r1"})
        api.post(f"{T}/runs/r1/output", json={"messages": [body("Booked.", "a1")]})
        api.post(f"{T}/committed/a1/hide", json={"reason": "draft"})
        api.post(f"{T}/runs/r1/finish", json={})
        live = until_version(events, 10)
    assert replayed(opening + live) == state_read(api)
    assert texts(live) == {"m2": "to Oslo", "m1": "plan", "a1": "Booked."}
    kinds = [e["type"] for e in live]
    assert (
        kinds.index("RUN_STARTED") < kinds.index("TEXT_MESSAGE_START") < kinds.index("RUN_FINISHED")
    )
    assert kinds[-1] == "RUN_FINISHED"
    assert [e["name"] for e in live if e["type"] == "CUSTOM"] == [
        "threadbox.CommittedMessageHidden"
    ]


def test_a_reconnect_gets_the_snapshots_of_its_last_version_then_every_later_event(
    mailbox: Mailbox, server: str, api: httpx.Client
) -> None:
    mailbox.deliver("t1", [Message.user("a", id="m1"), Message.user("b", id="m2")])
    mailbox.freeze("t1", "new_run", "r1")  # versions 3 and 4
    mailbox.commit_output("t1", "r1", [Message.assistant("out", id="a1")])
    mailbox.finish_run("t1", "r1")  # version 6
    then = mailbox.thread("t1", at_version=2)
    with connect_sse(api, "GET", f"{T}/ag-ui", headers={"Last-Event-ID": "2"}) as source:
        events = list(until_version(received(source), 6))
    assert events[0]["snapshot"] == {
        "pending": [e.model_dump(mode="json") for e in then.pending],
        "runs": [],
        "version": 2,
    }
    assert replayed(events) == state_read(api)
    assert texts(events) == {"m1": "a", "m2": "b", "a1": "out"}


def test_events_are_framed_for_ag_ui_clients_with_the_last_of_each_version_carrying_its_id(
    mailbox: Mailbox, server: str, api: httpx.Client
) -> None:
    """Read as @ag-ui/client's parser reads: events end at a blank line of two LFs exactly
    (CRLF framing would run the events together)."""
    mailbox.deliver("t1", [Message.user("a", id="m1")])
    mailbox.freeze("t1", "new_run", "r1")
    frames: list[tuple[str | None, str]] = []
    buffer = ""
    with api.stream("GET", f"{T}/ag-ui", headers={"Last-Event-ID": "1"}) as response:
        for chunk in response.iter_text():
            buffer += chunk
            *blocks, buffer = buffer.split("\n\n")
            for block in blocks:
                fields = dict(line.split(": ", 1) for line in block.split("\n"))
                frames.append((fields.get("id"), json.loads(fields["data"])["type"]))
            if len(frames) >= 9:
                break
    # version 1 (snapshots), 2 (delivered), 3 (run started), 4 (frozen: one text message)
    assert frames == [
        (None, "STATE_SNAPSHOT"),
        ("1", "MESSAGES_SNAPSHOT"),
        ("2", "STATE_DELTA"),
        (None, "RUN_STARTED"),
        ("3", "STATE_DELTA"),
        (None, "STATE_DELTA"),
        (None, "TEXT_MESSAGE_START"),
        (None, "TEXT_MESSAGE_CONTENT"),
        ("4", "TEXT_MESSAGE_END"),
    ]


def test_the_stream_answers_plainly_before_it_starts(mailbox: Mailbox) -> None:
    with TestClient(create_app(mailbox)) as client:
        document = client.get("/openapi.json").json()
        missing = client.get("/v1/threads/nope/ag-ui")
        mailbox.deliver("t1", [Message.user("a")])
        bad = client.get(f"{T}/ag-ui", headers={"Last-Event-ID": "two"})
        ahead = client.get(f"{T}/ag-ui", headers={"Last-Event-ID": "3"})
    assert (missing.status_code, missing.json()["code"]) == (404, "thread_not_found")
    assert (bad.status_code, bad.json()["field"]) == (400, "last-event-id")
    assert (ahead.status_code, ahead.json()["code"]) == (409, "cursor_ahead")
    assert "version 2" in ahead.json()["detail"]
    for answer in (missing, bad, ahead):
        status, code = answer.status_code, answer.json()["code"]
        assert code in declared(document, "stream_ag_ui")[status]


def test_the_ag_ui_routes_need_the_token_like_every_route(mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("a")])
    with TestClient(create_app(mailbox, token="s3cret")) as client:
        assert client.get(f"{T}/ag-ui").status_code == 401
        assert client.post(f"{T}/ag-ui", json=run_input(user("m9", "x"))).status_code == 401
    assert len(mailbox.history("t1")) == 2


# ---- POST: deliver a RunAgentInput, stream until its run ends --------------------------------


def post_stream(api: httpx.Client, payload: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Opens the POST stream; yields the two snapshots, then (resumed) every later event."""
    with connect_sse(api, "POST", f"{T}/ag-ui", json=payload) as source:
        assert source.response.status_code == 200
        events = received(source)
        opening = [next(events)[1], next(events)[1]]
        assert [e["type"] for e in opening] == ["STATE_SNAPSHOT", "MESSAGES_SNAPSHOT"]
        yield opening
        yield [event for _, event in events]


def run_r1(api: httpx.Client, *, termination: str = "natural_end") -> None:
    """The agent (a second client): read the pending zone, answer, finish."""
    assert api.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": "r1"}).status_code == 200
    api.post(f"{T}/runs/r1/output", json={"messages": [body("Hello!", "a1")]})
    detail = "the model failed" if termination == "error" else None
    api.post(f"{T}/runs/r1/finish", json={"termination": termination, "detail": detail})


def test_a_posted_input_streams_until_the_run_that_read_it_finishes(
    mailbox: Mailbox, server: str, api: httpx.Client
) -> None:
    stream = post_stream(api, run_input(user("u1", "hi")))
    opening = next(stream)
    assert [p["pending_id"] for p in opening[0]["snapshot"]["pending"]] == ["u1"]
    run_r1(api)
    rest = next(stream)  # the stream ended by itself: this is all of it
    assert rest[-1]["type"] == "RUN_FINISHED" and rest[-1]["runId"] == "r1"
    assert rest[-1]["outcome"] == {"type": "success"}
    assert texts(rest) == {"u1": "hi", "a1": "Hello!"}
    assert replayed(opening + rest) == state_read(api)
    delivered = [e for e in mailbox.history("t1") if e.type == "MessagesDelivered"]
    assert len(delivered) == 1


def test_posting_the_same_conversation_again_delivers_only_what_is_new(
    mailbox: Mailbox, server: str, api: httpx.Client
) -> None:
    first = post_stream(api, run_input(user("u1", "hi")))
    next(first)
    run_r1(api)
    next(first)
    versions = len(mailbox.history("t1"))
    again = post_stream(api, run_input(user("u1", "hi")))
    next(again)
    replay = next(again)  # at once: the run that read u1 is over; its end is told again
    assert [(e["type"], e.get("runId")) for e in replay] == [("RUN_FINISHED", "r1")]
    assert len(mailbox.history("t1")) == versions  # nothing written
    shown = {"id": "a1", "role": "assistant", "content": "Hello!"}
    follow_up = post_stream(api, run_input(user("u1", "hi"), shown, user("u2", "and?")))
    opening = next(follow_up)
    assert [p["pending_id"] for p in opening[0]["snapshot"]["pending"]] == ["u2"]
    assert [m["id"] for m in opening[1]["messages"]] == ["u1", "a1"]
    api.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": "r2"})
    api.post(f"{T}/runs/r2/finish", json={"termination": "cancelled"})
    ending = next(follow_up)[-1]
    assert (ending["runId"], ending["outcome"]) == ("r2", {"type": "cancelled"})


def test_a_run_that_fails_ends_the_stream_with_run_error(server: str, api: httpx.Client) -> None:
    stream = post_stream(api, run_input(user("u1", "hi")))
    next(stream)
    run_r1(api, termination="error")
    last = next(stream)[-1]
    assert (last["type"], last["message"], last["metadata"]["runId"]) == (
        "RUN_ERROR",
        "the model failed",
        "r1",
    )


def test_an_input_retracted_before_any_run_reads_it_ends_with_run_error(
    server: str, api: httpx.Client
) -> None:
    stream = post_stream(api, run_input(user("u1", "hi")))
    next(stream)
    api.delete(f"{T}/pending/u1", headers={"If-Match": '"1"'})
    rest = next(stream)
    assert [e["type"] for e in rest] == ["STATE_DELTA", "RUN_ERROR"]
    assert rest[-1]["code"] == "input_not_read"


def test_forwarded_props_choose_the_delivery_mode(
    mailbox: Mailbox, server: str, api: httpx.Client
) -> None:
    mailbox.deliver("t1", [Message.user("start", id="u0")])
    mailbox.freeze("t1", "new_run", "r1")
    steer = {"threadbox": {"mode": {"boundary": "next_step"}}}
    stream = post_stream(api, run_input(user("u1", "faster"), forwardedProps=steer))
    opening = next(stream)
    assert opening[0]["snapshot"]["pending"][0]["mode"]["boundary"] == "next_step"
    mailbox.freeze("t1", "next_step", "r1")  # the running run reads it at its next step
    mailbox.finish_run("t1", "r1")
    rest = next(stream)
    assert texts(rest) == {"u1": "faster"} and rest[-1]["runId"] == "r1"


# ---- POST refusals: 4xx with the field, nothing written ----------------------------------------

CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[]"}}
REFUSED = [
    ({"runId": "r", "messages": []}, 422, "threadId"),
    (run_input(user("u", "x"), threadId="t2"), 422, "threadId"),
    ({"threadId": "t1", "runId": "r", "messages": "hi"}, 422, "messages"),
    (run_input({"id": "u", "role": "robot", "content": "x"}), 422, "messages.0"),
    (run_input({"id": "u", "role": "user"}), 422, "messages.0.user.content"),
    (
        run_input(user("ok", "x"), {"id": "\x00", "role": "user", "content": "x"}),
        422,
        "messages.1.id",
    ),
    (
        run_input({"id": "a", "role": "assistant", "toolCalls": [CALL]}),
        422,
        "messages.0.toolCalls.0.function.arguments",
    ),
    (
        run_input(user("u", "x"), forwardedProps={"threadbox": {"mode": {"boundary": "soon"}}}),
        422,
        "forwardedProps.threadbox.mode.boundary",
    ),
    (
        run_input({"id": "x", "role": "activity", "activityType": "PLAN", "content": {}}),
        422,
        "messages",
    ),
    (
        run_input(user("u", "x"), forwardedProps={"threadbox": {"moed": {}}}),
        422,
        "forwardedProps.threadbox",
    ),
    (run_input(user("u", "x"), user("u", "x")), 422, "messages.id"),
    (
        run_input(user("m1", "first words"), {**user("n", "x"), "metadata": {"k": 2**70}}),
        422,
        "messages.1",  # the delivery's first message, named by its place in the input
    ),
    (run_input(user("m1", "other words")), 409, None),
    (run_input(user("big", "z" * (2 * 1024 * 1024))), 413, None),
]


@pytest.mark.parametrize(("payload", "status", "field"), REFUSED)
def test_a_refused_input_writes_nothing_and_names_what_is_wrong(
    mailbox: Mailbox, payload: dict[str, Any], status: int, field: str | None
) -> None:
    mailbox.deliver("t1", [Message.user("first words", id="m1")])
    before = mailbox.history("t1")
    with TestClient(create_app(mailbox)) as client:
        answer = client.post(f"{T}/ag-ui", json=payload)
        document = client.get("/openapi.json").json()
    assert answer.status_code == status, answer.json()
    assert answer.json()["code"] in declared(document, "run_ag_ui")[status]
    assert answer.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert answer.json()["field"] == field
    if status == 409:
        assert (answer.json()["code"], answer.json()["message_id"]) == ("message_id_in_use", "m1")
    assert mailbox.history("t1") == before


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_agent_in_another_process_ends_the_post_stream(store_url: str) -> None:
    """The server's mailbox follows the log; the agent writes through a mailbox of its own."""
    with threadbox.open(store_url) as serving, threadbox.open(store_url) as agent:
        serving.views.start_following()
        settings = StreamSettings(poll_interval=0.05, heartbeat=60.0)
        try:
            with (
                live_server(create_app(serving, stream_settings=settings)) as running,
                httpx.Client(base_url=running, timeout=DEADLINE) as api,
            ):
                stream = post_stream(api, run_input(user("u1", "hi")))
                opening = next(stream)
                agent.freeze("t1", "new_run", "r1")
                agent.commit_output("t1", "r1", [Message.assistant("Hello!", id="a1")])
                agent.finish_run("t1", "r1")
                rest = next(stream)
                final = state_read(api)
        finally:
            serving.views.stop_following()
    assert rest[-1]["type"] == "RUN_FINISHED" and rest[-1]["runId"] == "r1"
    assert texts(rest) == {"u1": "hi", "a1": "Hello!"}
    assert replayed(opening + rest) == final
    assert final["version"] == 6 and final["runs"][0]["status"] == "done"


def test_a_message_over_the_size_limit_is_named_by_its_place_in_the_input(mailbox: Mailbox) -> None:
    mailbox.deliver("t1", [Message.user("first words", id="m1")])
    payload = run_input(user("m1", "first words"), user("big", "z" * (2 * 1024 * 1024)))
    with TestClient(create_app(mailbox)) as client:
        answer = client.post(f"{T}/ag-ui", json=payload)
    assert (answer.status_code, answer.json()["code"]) == (413, "payload_too_large")
    assert answer.json()["detail"].startswith("messages.1 is ")
