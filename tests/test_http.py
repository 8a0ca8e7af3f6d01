"""The HTTP API through its ASGI app: routes, status codes, problem documents, preconditions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import threadbox
from fastapi.testclient import TestClient
from threadbox import Mailbox, Settings, errors
from threadbox.application.ports import StreamConflict
from threadbox.domain.events import ThreadEvent
from threadbox.infrastructure.http import create_app
from threadbox.infrastructure.http.problems import STATUS_BY_CODE

T = "/v1/threads/t1"


def user(text: str, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": text}]}
    if message_id is not None:
        message["id"] = message_id
    return message | extra


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


@pytest.fixture
def client(mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(create_app(mailbox)) as c:
        yield c


def deliver(client: TestClient, *messages: dict[str, Any], mode: Any = None) -> Any:
    body: dict[str, Any] = {"messages": list(messages)}
    if mode is not None:
        body["mode"] = mode
    response = client.post(f"{T}/messages", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_delivering_returns_the_entries_and_the_version_that_the_pending_etag_matches(
    client: TestClient,
) -> None:
    delivered = deliver(client, user("hi", "m1"), user("there", "m2"))
    assert [e["pending_id"] for e in delivered["entries"]] == ["m1", "m2"]
    pending = client.get(f"{T}/pending")
    assert pending.status_code == 200
    assert pending.headers["etag"] == f'"{delivered["version"]}"'
    assert pending.json()["version"] == delivered["version"]
    assert [e["position"] for e in pending.json()["entries"]] == [1, 2]


def test_an_edit_needs_the_current_revision_in_if_match(client: TestClient) -> None:
    deliver(client, user("hi", "m1"))
    url, body = f"{T}/pending/m1", {"message": user("hello", "m1")}
    missing = client.patch(url, json=body)
    assert missing.status_code == 428
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.patch(url, json=body, headers={"If-Match": "1"}).status_code == 400
    stale = client.patch(url, json=body, headers={"If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.json() | {"detail": ""} == {
        "type": "urn:threadbox:problem:revision_conflict",
        "title": "Precondition failed",
        "status": 412,
        "detail": "",
        "code": "revision_conflict",
        "expected": 7,
        "actual": 1,
    }
    edited = client.patch(url, json=body, headers={"If-Match": '"1"'})
    assert edited.status_code == 200
    assert edited.json()["revision"] == 2
    assert edited.headers["etag"] == '"2"'
    assert client.get(f"{T}/pending").json()["entries"][0]["message"]["content"][0]["text"] == (
        "hello"
    )


def test_a_retracted_message_leaves_the_queue_and_cannot_be_retracted_again(
    client: TestClient,
) -> None:
    deliver(client, user("a", "m1"), user("b", "m2"))
    assert client.delete(f"{T}/pending/m1").status_code == 428
    gone = client.delete(f"{T}/pending/m1", headers={"If-Match": '"1"'})
    assert gone.status_code == 200
    assert [e["pending_id"] for e in client.get(f"{T}/pending").json()["entries"]] == ["m2"]
    again = client.delete(f"{T}/pending/m1", headers={"If-Match": '"1"'})
    assert (again.status_code, again.json()["code"]) == (409, "retracted")


def test_reordering_is_guarded_by_the_thread_version(client: TestClient) -> None:
    deliver(client, user("a", "m1"), user("b", "m2"))
    tag = client.get(f"{T}/pending").headers["etag"]
    url, body = f"{T}/pending/order", {"order": ["m2", "m1"]}
    assert client.put(url, json=body).status_code == 428
    done = client.put(url, json=body, headers={"If-Match": tag})
    assert done.status_code == 200
    assert [e["pending_id"] for e in done.json()["entries"]] == ["m2", "m1"]
    stale = client.put(url, json={"order": ["m1", "m2"]}, headers={"If-Match": tag})
    assert (stale.status_code, stale.json()["code"]) == (412, "version_conflict")
    wrong = client.put(url, json={"order": ["m1"]}, headers={"If-Match": done.headers["etag"]})
    assert (wrong.status_code, wrong.json()["missing"]) == (409, ["m2"])


def test_a_frozen_message_is_committed_and_no_longer_editable(client: TestClient) -> None:
    deliver(client, user("a", "m1"))
    frozen = client.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": "r1"})
    assert frozen.status_code == 200
    assert [m["seq"] for m in frozen.json()["committed"]] == [1]
    late = client.patch(
        f"{T}/pending/m1", json={"message": user("b", "m1")}, headers={"If-Match": '"1"'}
    )
    assert late.status_code == 409
    assert (late.json()["code"], late.json()["seq"]) == ("already_consumed", 1)
    busy = client.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": "r2"})
    assert (busy.status_code, busy.json()["code"]) == (409, "thread_busy")


def test_invalid_input_is_a_422_problem_naming_the_field(client: TestClient) -> None:
    bad = client.post(f"{T}/messages", json={"messages": [{"role": "robot", "content": []}]})
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_input"
    assert bad.json()["field"] == "messages.0.role"
    not_json = client.post(
        f"{T}/messages", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert (not_json.status_code, not_json.json()["code"]) == (400, "invalid_input")
    blank = client.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": " "})
    assert (blank.status_code, blank.json()["field"]) == (422, "run_id")


def test_unknown_things_are_404_with_their_code(client: TestClient) -> None:
    assert client.get("/v1/threads/nope/pending").json()["code"] == "thread_not_found"
    assert client.get("/v1/runs/nope").status_code == 404
    deliver(client, user("a", "m1"))
    assert client.get(f"{T}/committed").json() == {"messages": [], "next": None}
    hidden = client.post(f"{T}/committed/nope/hide", json={"reason": "x"})
    assert (hidden.status_code, hidden.json()["code"]) == (404, "message_not_found")


def test_every_error_code_has_its_documented_status() -> None:
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ThreadboxError)
    } - {"threadbox_error"}
    codes |= {"already_consumed", "retracted", "expired"}  # NotPending sets its code per case
    assert codes <= set(STATUS_BY_CODE)


def test_the_run_lifecycle_over_http(client: TestClient) -> None:
    submitted = client.post(f"{T}/submit", json={"messages": [user("go", "m1")], "run_id": "r1"})
    assert submitted.status_code == 200
    assert submitted.json()["committed"][0]["message"]["id"] == "m1"
    output = client.post(
        f"{T}/runs/r1/output",
        json={
            "messages": [
                {"id": "a1", "role": "assistant", "content": [{"type": "text", "text": "ok"}]}
            ]
        },
    )
    assert (output.status_code, output.json()["messages"][0]["seq"]) == (201, 2)
    suspended = client.post(f"{T}/runs/r1/suspend", json={"reason": "needs input"})
    assert (suspended.status_code, suspended.json()["status"]) == (200, "waiting")
    finished = client.post(f"{T}/runs/r1/finish", json={"termination": "cancelled"})
    assert finished.json() == {"expired": []}
    assert client.get("/v1/runs/r1").json()["termination"] == "cancelled"
    assert client.post(f"{T}/runs/r1/finish").json()["code"] == "run_not_running"
    assert client.post(f"{T}/committed/a1/hide", json={"reason": "typo"}).status_code == 204
    assert [m["seq"] for m in client.get(f"{T}/committed").json()["messages"]] == [1]
    every = client.get(f"{T}/committed", params={"include_hidden": "true"}).json()["messages"]
    assert [(m["seq"], m["visible"]) for m in every] == [(1, True), (2, False)]
    assert [c["kind"] for c in client.get(f"{T}/checkpoints").json()["checkpoints"]] == [
        "input",
        "output",
    ]
    assert client.get(f"{T}/runs").json()["runs"][0]["run_id"] == "r1"
    state = client.get(T, params={"at_version": 1})
    assert (state.status_code, state.json()["version"]) == (200, 1)


def test_internal_messages_are_omitted_unless_asked_for(client: TestClient) -> None:
    deliver(
        client,
        user("a", "m1"),
        user("note", "m2", visibility="internal"),
        user("b", "m3"),
    )
    client.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": "r1"})
    shown = client.get(f"{T}/committed", params={"limit": 2}).json()["messages"]
    assert [m["message"]["id"] for m in shown] == ["m1", "m3"]
    every = client.get(f"{T}/committed", params={"include_internal": "true"}).json()["messages"]
    assert [m["message"]["id"] for m in every] == ["m1", "m2", "m3"]


def test_the_event_log_pages_by_version(client: TestClient) -> None:
    deliver(client, user("a", "m1"))
    deliver(client, user("b", "m2"))
    events = client.get(f"{T}/events", params={"after_version": 1, "limit": 1}).json()["events"]
    assert [(e["version"], e["type"]) for e in events] == [(2, "MessagesDelivered")]


def test_threads_are_listed_as_summaries_with_a_cursor_and_a_pending_filter(
    client: TestClient,
) -> None:
    for thread in ("b", "a", "c", "d"):
        client.post(f"/v1/threads/{thread}/messages", json={"messages": [user("x", f"{thread}1")]})
    client.post("/v1/threads/d/freeze", json={"boundary": "new_run", "run_id": "run-d"})
    first = client.get("/v1/threads", params={"has_pending": "true", "limit": 2}).json()
    assert [(t["thread_id"], t["pending_count"]) for t in first["threads"]] == [("a", 1), ("b", 1)]
    assert first["next_after"] == "b"
    rest = client.get("/v1/threads", params={"has_pending": "true", "after": "b"}).json()
    assert [t["thread_id"] for t in rest["threads"]] == ["c"]
    assert rest["next_after"] is None
    idle = client.get("/v1/threads", params={"has_pending": "false"}).json()["threads"]
    assert [(t["thread_id"], t["committed_count"], t["running_run_id"]) for t in idle] == [
        ("d", 1, "run-d")
    ]
    everything = client.get("/v1/threads").json()["threads"]
    assert [(t["thread_id"], t["version"]) for t in everything] == [
        ("a", 2),
        ("b", 2),
        ("c", 2),
        ("d", 4),
    ]


def test_a_token_guards_every_route_but_healthz(mailbox: Mailbox) -> None:
    with TestClient(create_app(mailbox, token="s3cret")) as client:
        assert client.get("/healthz").status_code == 200
        missing = client.get("/v1/threads")
        assert (missing.status_code, missing.json()["code"]) == (401, "unauthorized")
        wrong = client.get("/v1/threads", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/openapi.json").status_code == 401
        right = client.get("/v1/threads", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(mailbox: Mailbox) -> None:
    with TestClient(create_app(mailbox, max_body_bytes=1000)) as client:
        big = b'{"messages": [' + b" " * 2000 + b"]}"
        declared = client.post(
            f"{T}/messages", content=big, headers={"Content-Type": "application/json"}
        )
        assert (declared.status_code, declared.json()["limit"]) == (413, 1000)
        streamed = client.post(
            f"{T}/messages",
            content=iter([big[:600], big[600:]]),
            headers={"Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert client.get(f"{T}/pending").status_code == 404  # nothing was delivered


class AlwaysOvertaken:
    """An event store where another writer always saved first."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def append(self, events: Sequence[ThreadEvent]) -> list[int]:
        raise StreamConflict("overtaken")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_contention_is_a_503_with_retry_after(mailbox: Mailbox) -> None:
    settings = Settings(max_attempts=2, backoff_base=0.0, backoff_cap=0.0)
    crowded = Mailbox(AlwaysOvertaken(mailbox.store), mailbox.views, settings)
    with TestClient(create_app(crowded)) as client:
        response = client.post(f"{T}/messages", json={"messages": [user("a")]})
    assert (response.status_code, response.json()["code"]) == (503, "contention")
    assert response.headers["retry-after"] == "1"


class Unreachable:
    def __init__(self, store: Any) -> None:
        self._store = store

    def ping(self) -> None:
        raise ConnectionError("connection refused")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_healthz_reports_an_unreachable_store_as_503(mailbox: Mailbox) -> None:
    cut_off = Mailbox(Unreachable(mailbox.store), mailbox.views)
    with TestClient(create_app(cut_off)) as client:
        response = client.get("/healthz")
    assert (response.status_code, response.json()["code"]) == (503, "store_unavailable")
    assert (response.json()["readable"], response.json()["writable"]) == (False, False)
    assert int(response.headers["retry-after"]) > 0


def test_reads_include_what_another_process_wrote_to_the_same_sqlite_store(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with threadbox.open(url) as served, TestClient(create_app(served)) as client:
        deliver(client, user("a", "m1"))
        with threadbox.open(url) as other:
            other.freeze("t1", "new_run", "r1")
        committed = client.get(f"{T}/committed").json()["messages"]
        assert [m["message"]["id"] for m in committed] == ["m1"]
        assert client.get(f"{T}/pending").json()["entries"] == []
        assert client.get("/v1/runs/r1").json()["status"] == "running"


@pytest.mark.parametrize("thread_id", ["org/7", "50%", "a b", "é/漢"])
def test_ids_with_slashes_and_percent_signs_are_addressable_in_paths(
    client: TestClient, mailbox: Mailbox, thread_id: str
) -> None:
    base = f"/v1/threads/{quote(thread_id, safe='')}"
    pending_id = "q/1%"
    created = client.post(f"{base}/messages", json={"messages": [user("hi", pending_id)]})
    assert created.status_code == 201
    assert created.json()["entries"][0]["thread_id"] == thread_id
    entry = f"{base}/pending/{quote(pending_id, safe='')}"
    edited = client.patch(
        entry, json={"message": user("hello", pending_id)}, headers={"If-Match": '"1"'}
    )
    assert (edited.status_code, edited.json()["revision"]) == (200, 2)
    assert [e.message.text for e in mailbox.pending(thread_id)] == ["hello"]
    assert client.get(f"{base}/events").json()["events"][-1]["type"] == "PendingMessageEdited"
