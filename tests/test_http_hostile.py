"""Hostile requests through the HTTP API: wrong shapes, raw bytes, oversized and deeply nested
bodies, broken ids and headers. Every one is a 4xx problem document and writes nothing (the
store's log position does not move); the valid requests of the same shapes succeed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from threadbox import Mailbox
from threadbox.infrastructure.http import create_app

LIMIT = 64 * 1024  # the body limit of the app under test
EXAMPLES = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
memory_only = pytest.mark.parametrize("backend", ["memory"])


def user(text: str, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": text}]}
    return message | ({"id": message_id} if message_id else {}) | extra


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@dataclass(frozen=True)
class Route:
    method: str
    url: str
    body: dict[str, Any]  # a valid body on the seeded mailbox
    guard: str | None = None  # what If-Match carries: "revision" of p1, or thread "version"
    body_optional: bool = False


# Seeded: t1 has pending p1, p2 (version 1); t2 has run r1 running with committed c1 (seq 1).
ROUTES = {
    "deliver": Route("POST", "/v1/threads/t1/messages", {"messages": [user("x")]}),
    "submit": Route("POST", "/v1/threads/t3/submit", {"messages": [user("x")], "run_id": "r3"}),
    "edit": Route("PATCH", "/v1/threads/t1/pending/p1", {"message": user("e", "p1")}, "revision"),
    "reorder": Route("PUT", "/v1/threads/t1/pending/order", {"order": ["p2", "p1"]}, "version"),
    "freeze": Route("POST", "/v1/threads/t1/freeze", {"boundary": "new_run", "run_id": "r2"}),
    "suspend": Route("POST", "/v1/threads/t2/runs/r1/suspend", {"reason": "wait"}, None, True),
    "finish": Route(
        "POST", "/v1/threads/t2/runs/r1/finish", {"termination": "cancelled"}, None, True
    ),
    "output": Route("POST", "/v1/threads/t2/runs/r1/output", {"messages": [assistant("ok")]}),
    "hide": Route("POST", "/v1/threads/t2/committed/c1/hide", {"reason": "typo"}, None, True),
}
REQUIRED_BODY = [name for name, route in ROUTES.items() if not route.body_optional]

bad_message: list[Any] = [
    None, 7, "hi", [], {"role": "user"},
    {"role": "robot", "content": [{"type": "text", "text": "x"}]},
    user("x", bogus=1), user("x", "\x00"), user("x", "\ud800"), user("x", "x" * 201),
    user("x", metadata=[]), user("x", metadata={"a": float("inf")}), user("x", visibility=None),
    user("x", metadata={"\ud800": 1}), user("x", metadata={"a": {"\udc00x": 1}}),
    {"role": "user", "content": [{"type": "nope"}]}, {"role": "user", "content": []},
    {"role": "tool", "content": [{"type": "text", "text": "x"}]},
    {"role": "user", "content": [{"type": "tool_use", "id": "", "name": "n", "input": []}]},
]  # fmt: skip
bad_id: list[Any] = [None, 7, 1.5, [], {}, "", " ", "\x07", "a\x00b", "\ud800", "\x85", "x" * 201]
POISON: dict[str, list[Any]] = {
    "messages": [None, "m", 7, {"role": "user"}, *[[m] for m in bad_message]],  # [] is a no-op
    "message": bad_message,
    "mode": [7, "new_run", [], {"boundary": "soon"}, {"barrier": "maybe"}, {"x": 1}],
    "run_id": bad_id,
    "order": [None, "p1", 7, [7], [None], {"p1": 1}, ["p1"], ["p1", "p1", "p2"], ["\ud800"]],
    "boundary": [None, 7, "soon", [], "NEW_RUN"],
    "expected_version": [-1, 1.5, "x", [], 2**64, 10**40],
    "reason": [None, 7, [], {}, "\ud800"],
    "termination": [None, 7, "exploded", []],
    "detail": [7, [], {}, "why \udc00"],
}
top_level: list[Any] = [None, [], 7, "body", True]


@pytest.fixture
def client(mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(create_app(mailbox, max_body_bytes=LIMIT)) as c:
        seed: dict[str, Any] = {"t1/messages": {"messages": [user("a", "p1"), user("b", "p2")]}}
        seed["t2/submit"] = {"messages": [user("c", "c1")], "run_id": "r1"}
        for path, body in seed.items():
            assert c.post(f"/v1/threads/{path}", json=body).status_code < 300
        yield c


def guard_header(client: TestClient, route: Route) -> dict[str, str]:
    if route.guard is None:
        return {}
    if route.guard == "version":
        return {"If-Match": client.get("/v1/threads/t1/pending").headers["etag"]}
    return {"If-Match": '"1"'}


def assert_refused(mailbox: Mailbox, client: TestClient, method: str, url: str, **kw: Any) -> str:
    """The request is a 4xx problem document and the log did not move; returns its code."""
    before = mailbox.store.committed_head()
    response = client.request(method, url, **kw)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:400])
    assert response.headers["content-type"] == "application/problem+json"
    code = response.json()["code"]
    assert isinstance(code, str) and code
    assert mailbox.store.committed_head() == before
    return str(code)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> tuple[Route, Any]:
    route = ROUTES[draw(st.sampled_from(sorted(ROUTES)))]
    fields = [f for f in route.body if f in POISON] + (["mode"] if "messages" in route.body else [])
    how = draw(st.sampled_from(["field", "unknown", "top"] if fields else ["unknown", "top"]))
    if how == "field":
        field = draw(st.sampled_from(fields))
        poison = POISON[field]
        if route is ROUTES["freeze"] and field == "run_id":  # null: a generated run id
            poison = [p for p in poison if p is not None]
        return route, route.body | {field: draw(st.sampled_from(poison))}
    if how == "unknown":
        return route, route.body | {"unknown_" + draw(st.text(max_size=10)): draw(st.integers())}
    values = [v for v in top_level if v is not None or not route.body_optional]
    return route, draw(st.sampled_from(values))


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@EXAMPLES
@given(case=hostile_bodies())
@example(case=(ROUTES["reorder"], {"order": ["\ud800"]}))  # once echoed into a 500
def test_bodies_of_the_wrong_shape_are_refused_on_every_write_route_and_write_nothing(
    mailbox: Mailbox, client: TestClient, case: tuple[Route, Any]
) -> None:
    route, body = case
    headers = {"Content-Type": "application/json", **guard_header(client, route)}
    content = json.dumps(body).encode("utf-8", "surrogatepass")  # lone surrogates as raw bytes
    assert_refused(mailbox, client, route.method, route.url, content=content, headers=headers)
    escaped = json.dumps(body)  # the same body with lone surrogates as \\ud800 escapes
    assert_refused(mailbox, client, route.method, route.url, content=escaped, headers=headers)


@memory_only
@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"\ud800": 1}, "messages.0.metadata"),  # once stored as "\ufffd\ufffd\ufffd": 201
        ({"a": {"\udc00x": 1}}, "messages.0.metadata.a"),  # once a 500
        ({"a": ["\udc00"]}, "messages.0.metadata.a.0"),
    ],
)
def test_a_lone_surrogate_in_a_metadata_key_or_value_is_a_422_naming_the_field(
    mailbox: Mailbox, client: TestClient, metadata: dict[str, Any], field: str
) -> None:
    body = json.dumps({"messages": [user("x", "s1", metadata=metadata)]})  # \udXXX escapes
    headers = {"Content-Type": "application/json"}
    before = mailbox.store.last_position()
    answer = client.post("/v1/threads/t1/messages", content=body, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_input")
    assert answer.json()["field"] == field
    assert mailbox.store.last_position() == before
    pending = [e.pending_id for e in mailbox.pending("t1")]
    assert pending == [p.pending_id for p in mailbox.thread("t1").pending] == ["p1", "p2"]


def deep_message(depth: int, where: str) -> bytes:
    if where == "metadata":
        text = '{"role":"user","content":[{"type":"text","text":"x"}],"metadata":{"a":%s}}'
    else:
        text = '{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n",'
        text += '"input":{"a":%s}}]}'
    return (text % nested(depth)).encode()


TEXT = b'[{"type": "text", "text": "x"}]'
INFINITE = (
    b'{"messages": [{"role": "assistant", "content": %s, "metadata": {"a": -Infinity}}]}' % TEXT
)
raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([
        b"", b"\xff\xfe{}", b'{"messages": "\xff"}', b"{", b"NaN", b'{"run_id": "r", "run_id": 7}',
        b'{"expected_version": 1e309}', b'{"expected_version": ' + b"9" * 5000 + b"}",
        b'{"order": [], "order": null}', b'{"messages": [], "messages": null}',
        b'{"boundary": "new_run", "run_id": "r", "expected_version": Infinity}',
    ]),
    st.builds(
        lambda depth, where: b'{"messages": [%s]}' % deep_message(depth, where),
        st.sampled_from([130, 200, 240, 250, 254, 300, 990, 10_000]),
        st.sampled_from(["metadata", "input"]),
    ),
)  # fmt: skip


@memory_only
@EXAMPLES
@given(
    name=st.sampled_from(REQUIRED_BODY),
    content=raw_bodies,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", None]
    ),
)
@example(
    name="deliver", content=b'{"messages": [%s]}' % deep_message(250, "input"), content_type=None
)
@example(name="output", content=INFINITE, content_type="application/json")
def test_raw_bytes_that_are_not_a_valid_body_are_refused_and_write_nothing(
    mailbox: Mailbox, client: TestClient, name: str, content: bytes, content_type: str | None
) -> None:
    route = ROUTES[name]
    headers = guard_header(client, route) | ({"Content-Type": content_type} if content_type else {})
    code = assert_refused(
        mailbox, client, route.method, route.url, content=content, headers=headers
    )
    assert code == "invalid_input"


@memory_only
@EXAMPLES
@given(
    name=st.sampled_from(sorted(ROUTES)),
    over=st.integers(min_value=1, max_value=3 * LIMIT),
    streamed=st.booleans(),
)
def test_bodies_over_the_limit_are_refused_with_413_before_they_are_parsed(
    mailbox: Mailbox, client: TestClient, name: str, over: int, streamed: bool
) -> None:
    route = ROUTES[name]
    garbage = b"{" + b"\xff" * (LIMIT + over - 1)  # a parser would call it a 400, not a 413
    content: bytes | Iterator[bytes] = (
        iter([garbage[:1000], garbage[1000:]]) if streamed else garbage
    )
    headers = {"Content-Type": "application/json"} | guard_header(client, route)
    code = assert_refused(
        mailbox, client, route.method, route.url, content=content, headers=headers
    )
    assert code == "payload_too_large"


ident_chars = st.characters(exclude_categories=[])  # controls, surrogates, anything
hostile_ids = st.one_of(
    st.tuples(
        st.text(ident_chars, max_size=8),
        st.sampled_from("\x00\x07\x1b\x7f\x85\ud800\udfff"),
        st.text(ident_chars, max_size=8),
    ).map("".join),
    st.sampled_from(["\t", "x" * 201, "é" * 201]),  # (" " is a valid thread id)
)
raw_id_segments = st.sampled_from(["%ff", "%C0%AF", "%ED%A0%80", "a%80b", "%F4%90%80%80", "%E2%82"])


def quoted(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@memory_only
@EXAMPLES
@given(
    name=st.sampled_from(sorted(ROUTES)),
    segment=st.one_of(hostile_ids.map(quoted), raw_id_segments),
    data=st.data(),
)
def test_broken_ids_in_the_path_are_refused_and_write_nothing(
    mailbox: Mailbox, client: TestClient, name: str, segment: str, data: st.DataObject
) -> None:
    route = ROUTES[name]
    slot = data.draw(st.sampled_from(re.findall(r"/([tprc]\d)(?=/|$)", route.url)))
    url = re.sub(rf"/{slot}(?=/|$)", f"/{segment}", route.url)
    headers = guard_header(client, route)
    assert_refused(mailbox, client, route.method, url, json=route.body, headers=headers)


def could_match(tag: str, current: int) -> bool:
    """Whether ``If-Match: tag`` would pass for ``current`` (RFC 9110, read here on its own):
    ``*``, or a comma-separated list holding the strong tag ``"<current>"``, byte for byte."""
    return tag.strip() == "*" or f'"{current}"' in [item.strip(" \t") for item in tag.split(",")]


garbage_tags = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
    st.sampled_from(['"1e309"', '"-1"', '"' + "9" * 40 + '"', 'W/"1"', '"98", "99"', "1", '""',
                     '"0x1"', '"\uff11"', "**", '"1" "2"', 'W/"1", W/"2"', '"01"']),
)  # fmt: skip


@memory_only
@EXAMPLES
@given(name=st.sampled_from(["edit", "reorder", "retract"]), tag=garbage_tags)
def test_garbage_if_match_headers_are_refused_and_write_nothing(
    mailbox: Mailbox, client: TestClient, name: str, tag: str
) -> None:
    current = 1 if name != "reorder" else mailbox.thread("t1").version
    assume(not could_match(tag, current))  # a valid guard, not garbage (test_http_conditional)
    header = {"If-Match": tag.encode()}  # raw octets: UTF-8 bytes are not what a tag may hold
    if name == "retract":
        assert_refused(mailbox, client, "DELETE", "/v1/threads/t1/pending/p1", headers=header)
        return
    route = ROUTES[name]
    assert_refused(mailbox, client, route.method, route.url, json=route.body, headers=header)


query_values = st.sampled_from(
    ["-1", "1e309", "9" * 5000, "", "abc", "1.5", "0x10", "true", "\x00", "\ud800"]
)
READS = {
    "/v1/threads/t2/committed": ["after_seq", "limit", "include_hidden", "include_internal"],
    "/v1/threads/t2/events": ["after_version", "limit"],
    "/v1/threads/t2": ["at_version"],
    "/v1/threads": ["has_pending", "limit", "after"],
    "/v1/events": ["after", "limit", "include_internal"],
    "/v1/events/stream": ["after", "include_internal"],
}


@memory_only
@EXAMPLES
@given(path=st.sampled_from(sorted(READS)), data=st.data())
def test_hostile_query_parameters_are_refused_by_the_read_routes(
    mailbox: Mailbox, client: TestClient, path: str, data: st.DataObject
) -> None:
    param = data.draw(st.sampled_from(READS[path]))
    raw = data.draw(st.one_of(query_values.map(quoted), st.sampled_from(["%ff", "%ED%A0%80"])))
    if param == "after" and raw in ("", "abc", "true", "1.5", "0x10", "-1", "1e309", "%20"):
        raw = "%ff"  # any valid string is a valid cursor
    if param in ("include_hidden", "include_internal", "has_pending") and raw == "true":
        raw = "maybe"
    assert_refused(mailbox, client, "GET", f"{path}?{param}={raw}")


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_valid_requests_of_the_same_shapes_succeed(
    mailbox: Mailbox, client: TestClient
) -> None:
    def send(name: str, body: dict[str, Any] | None = None) -> None:
        route = ROUTES[name]
        headers = guard_header(client, route)
        sent = route.body if body is None else body
        response = client.request(route.method, route.url, json=sent, headers=headers)
        assert response.status_code < 300, (name, response.text[:400])

    start = mailbox.store.committed_head()
    send("reorder")
    send("edit")
    deep = user("d", metadata={"a": json.loads(nested(100))})
    use = {"type": "tool_use", "id": "t", "name": "n", "input": {"a": json.loads(nested(100))}}
    tool = {"role": "assistant", "content": [use]}
    send(
        "deliver",
        {"messages": [deep, tool, user("é\u2028 \U0001f600")], "mode": {"boundary": "next_step"}},
    )
    padded = json.dumps({"messages": [user("x" * 1000)]})
    padded += " " * (LIMIT - len(padded))  # exactly at the limit
    at_limit = client.post(
        "/v1/threads/t1/messages", content=padded, headers={"Content-Type": "application/json"}
    )
    assert at_limit.status_code == 201, at_limit.text[:400]
    send("freeze", {"boundary": "new_run", "run_id": "r2", "expected_version": None})
    for name in ("output", "suspend", "finish", "hide", "submit"):
        send(name)
    assert mailbox.store.committed_head() > start
    assert client.get("/v1/threads/t1/pending").json()["entries"] == []
    assert client.get("/v1/runs/r1").json()["termination"] == "cancelled"
    assert [m["seq"] for m in client.get("/v1/threads/t2/committed").json()["messages"]] == [2]


# ---- stream tickets (ADR 0018) ------------------------------------------------------------------

TICKET_TOKEN = "hostile-s3cret"
TICKET_AUTH = {"Authorization": f"Bearer {TICKET_TOKEN}"}


@pytest.fixture
def ticketing(mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(create_app(mailbox, token=TICKET_TOKEN, max_body_bytes=LIMIT)) as c:
        assert c.post("/v1/threads/t1/messages", headers=TICKET_AUTH, json=ROUTES["deliver"].body)
        yield c


ticket_bodies = st.one_of(
    st.sampled_from(top_level),
    st.sampled_from([b for b in bad_id if b not in (None, " ")]).map(lambda b: {"thread_id": b}),
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "thread_id"), st.integers(), min_size=1
    ),
)


@memory_only
@EXAMPLES
@given(body=ticket_bodies)
def test_hostile_ticket_requests_are_refused_and_write_nothing(
    mailbox: Mailbox, ticketing: TestClient, body: Any
) -> None:
    assume(body is not None)  # no body asks for a cross-thread ticket: valid
    headers = TICKET_AUTH | {"Content-Type": "application/json"}
    content = json.dumps(body).encode()  # lone surrogates as \ud800 escapes
    code = assert_refused(
        mailbox, ticketing, "POST", "/v1/stream-tickets", content=content, headers=headers
    )
    assert code == "invalid_input"


@memory_only
@EXAMPLES
@given(raw=st.binary(max_size=300))
def test_raw_bytes_as_a_ticket_request_are_refused_and_write_nothing(
    mailbox: Mailbox, ticketing: TestClient, raw: bytes
) -> None:
    assume(raw != b"")  # no body asks for a cross-thread ticket: valid
    try:
        json.loads(raw)
        assume(False)  # JSON is the other test's
    except ValueError:
        pass
    headers = TICKET_AUTH | {"Content-Type": "application/json"}
    assert_refused(mailbox, ticketing, "POST", "/v1/stream-tickets", content=raw, headers=headers)


@memory_only
@EXAMPLES
@given(
    path=st.sampled_from(
        ["/v1/threads/t1/events/stream", "/v1/threads/t1/ag-ui", "/v1/events/stream"]
    ),
    ticket=st.one_of(st.text(max_size=400), st.sampled_from(["%ff", "%ED%A0%80", "a.b", "."])),
)
def test_hostile_tickets_on_the_stream_routes_are_401_and_write_nothing(
    mailbox: Mailbox, ticketing: TestClient, path: str, ticket: str
) -> None:
    query = ticket if ticket.startswith("%") else quote(ticket, safe="")
    code = assert_refused(mailbox, ticketing, "GET", f"{path}?ticket={query}")
    assert code in ("unauthorized", "invalid_input")
