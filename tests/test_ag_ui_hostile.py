"""Hostile requests to the AG-UI routes of a real server: poisoned fields of a RunAgentInput,
arbitrary JSON, hostile headers. None is answered with a 5xx; every refusal is a problem
document and writes nothing (the store's log position does not move). An input that happens to
be valid starts its stream, which the client closes at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import threadbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import live_server
from test_http_sse import DEADLINE
from threadbox import Mailbox, Message
from threadbox.infrastructure.http import StreamSettings, create_app

EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
URL = "/v1/threads/t1/ag-ui"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        mb.deliver("t1", [Message.user("seeded", id="m1")])
        yield mb


@pytest.fixture(scope="module")
def api(mailbox: Mailbox) -> Iterator[httpx.Client]:
    settings = StreamSettings(poll_interval=0.05, heartbeat=60.0)
    with (
        live_server(create_app(mailbox, stream_settings=settings)) as server,
        httpx.Client(base_url=server, timeout=DEADLINE) as client,
    ):
        yield client


def answered(mailbox: Mailbox, api: httpx.Client, method: str, **request: Any) -> int:
    """The status of one request: a stream is closed at once; a refusal must be a problem
    document and must have written nothing."""
    before = mailbox.store.committed_head()
    with api.stream(method, URL, **request) as response:
        status = response.status_code
        assert status < 500, response.read()[:400]
        if status == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            return status
        problem = json.loads(response.read())
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == status and problem["code"]
    assert mailbox.store.committed_head() == before, "a refused request wrote"
    return status


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
HOSTILE_TEXT = st.sampled_from(["", " ", "\x00", "\ud800", "\x85", "x" * 201, "t1", "m1"])
MESSAGE_FIELDS = {
    "id": HOSTILE_TEXT | JSON,
    "role": st.sampled_from(["user", "assistant", "tool", "developer", "activity", "robot"]) | JSON,
    "content": HOSTILE_TEXT
    | JSON
    | st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image", "audio", "document"]), "text": HOSTILE_TEXT}
        ),
        max_size=2,
    ),
    "toolCallId": HOSTILE_TEXT | JSON,
    "toolCalls": JSON,
    "metadata": JSON,
}
MESSAGES = st.lists(st.fixed_dictionaries({}, optional=MESSAGE_FIELDS), max_size=3)
INPUT_FIELDS = {
    "threadId": st.just("t1") | HOSTILE_TEXT | JSON,
    "runId": HOSTILE_TEXT | JSON,
    "messages": MESSAGES | JSON,
    "forwardedProps": JSON
    | st.fixed_dictionaries({"threadbox": st.fixed_dictionaries({"mode": JSON})}),
    "state": JSON,
    "tools": JSON,
    "context": JSON,
    "resume": JSON,
}


def valid(message_id: str) -> dict[str, Any]:
    user = {"id": message_id, "role": "user", "content": "hello"}
    return {"threadId": "t1", "runId": "ui", "messages": [user]}


def input_poisoned(field: str, ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """A valid input (of a new message) with one field hostile."""
    return st.tuples(ids, INPUT_FIELDS[field]).map(lambda v: {**valid(v[0]), field: v[1]})


def message_poisoned(field: str, ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """A valid input whose message has one field hostile."""

    def build(values: tuple[str, Any]) -> dict[str, Any]:
        payload = valid(values[0])
        payload["messages"] = [{**payload["messages"][0], field: values[1]}]
        return payload

    return st.tuples(ids, MESSAGE_FIELDS[field]).map(build)


NEW_IDS = st.uuids().map(str)  # each valid example delivers a message of its own
INPUTS = (
    st.sampled_from(sorted(INPUT_FIELDS)).flatmap(lambda f: input_poisoned(f, NEW_IDS))
    | st.sampled_from(sorted(MESSAGE_FIELDS)).flatmap(lambda f: message_poisoned(f, NEW_IDS))
    | st.fixed_dictionaries({}, optional=INPUT_FIELDS)
    | JSON
)


@EXAMPLES
@given(payload=INPUTS)
def test_no_posted_body_gets_a_server_error_and_refusals_write_nothing(
    mailbox: Mailbox, api: httpx.Client, payload: Any
) -> None:
    content = json.dumps(payload).encode()  # \\ud800 stays an escape: the server decodes it
    answered(mailbox, api, "POST", content=content, headers={"Content-Type": "application/json"})


@EXAMPLES
@given(
    last_event_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
    | st.sampled_from(["0", "1", "2", "-1", "1.0", "1e3", "2" * 30, "٣"]),
    include_internal=st.sampled_from(["true", "false", "1", "maybe", ""]),
)
def test_no_stream_request_gets_a_server_error(
    mailbox: Mailbox, api: httpx.Client, last_event_id: str, include_internal: str
) -> None:
    headers = {"Last-Event-ID": last_event_id.encode()}
    status = answered(
        mailbox, api, "GET", headers=headers, params={"include_internal": include_internal}
    )
    assert status in (200, 400, 409, 422)


def test_raw_bytes_and_a_body_over_the_limit_are_refused(
    mailbox: Mailbox, api: httpx.Client
) -> None:
    json_header = {"Content-Type": "application/json"}
    assert answered(mailbox, api, "POST", content=b"\xff{", headers=json_header) == 400
    assert answered(mailbox, api, "POST", content=b'{"threadId": ', headers=json_header) == 400
    huge = b'{"threadId": "t1", "x": "' + b"z" * (5 * 1024 * 1024) + b'"}'
    assert answered(mailbox, api, "POST", content=huge, headers=json_header) == 413
