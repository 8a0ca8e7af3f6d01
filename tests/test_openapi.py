"""The OpenAPI document: every operation named, described and secured, its errors declared as
the routes really answer them, and recorded events typed by a union that the wire JSON meets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import threadbox
from fastapi.testclient import TestClient
from httpx import Response
from jsonschema import Draft202012Validator
from threadbox import DeliveryMode, Mailbox, Message
from threadbox.infrastructure.http import create_app

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = "/v1/threads/t1"

OPERATION_IDS = {
    "deliver",
    "submit",
    "list_pending",
    "edit_pending",
    "retract_pending",
    "reorder_pending",
    "freeze",
    "suspend_run",
    "finish_run",
    "commit_output",
    "hide_committed",
    "get_thread",
    "list_committed",
    "list_runs",
    "get_run",
    "get_pending",
    "list_checkpoints",
    "list_events",
    "stream_events",
    "stream_ag_ui",
    "run_ag_ui",
    "list_threads",
    "healthz",
    "metrics",
    "create_stream_ticket",
    "list_log",
    "stream_log",
    "healthz_head",
}

# The thirteen event types of a thread, as the stored format names them.
EVENT_TYPES = {
    "ThreadOpened",
    "MessagesDelivered",
    "PendingMessageEdited",
    "PendingMessageRetracted",
    "PendingQueueReordered",
    "PendingMessagesExpired",
    "RunStarted",
    "RunResumed",
    "RunSuspended",
    "RunFinished",
    "PendingMessagesFrozen",
    "RunOutputCommitted",
    "CommittedMessageHidden",
}


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


@pytest.fixture
def client(mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(create_app(mailbox, token=TOKEN)) as c:
        yield c


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def declared(document: dict[str, Any], operation_id: str) -> dict[int, set[str]]:
    """The error statuses an operation declares, each with the problem codes it lists."""
    for _, _, operation in operations(document):
        if operation["operationId"] == operation_id:
            found: dict[int, set[str]] = {}
            for status, response in operation["responses"].items():
                if not status.startswith(("2", "3")):
                    schema = response["content"]["application/problem+json"]["schema"]
                    found[int(status)] = set(schema["properties"]["code"]["enum"])
            return found
    raise AssertionError(f"no operation {operation_id}")


def user(text: str, message_id: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "content": [{"type": "text", "text": text}]}


def test_every_operation_has_a_readable_id_a_summary_a_description_and_a_tag(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json", headers=AUTH).json()
    found = [operation for _, _, operation in operations(document)]
    assert sorted(o["operationId"] for o in found) == sorted(OPERATION_IDS)
    for operation in found:
        assert operation["summary"].strip(), operation["operationId"]
        assert len(operation["description"]) > len(operation["summary"]), operation["operationId"]
        assert operation["tags"], operation["operationId"]


def test_every_route_but_healthz_declares_bearer_security_and_its_401(client: TestClient) -> None:
    document = client.get("/openapi.json", headers=AUTH).json()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for method, path, operation in operations(document):
        if path == "/healthz":
            assert "security" not in operation and "401" not in operation["responses"]
        else:
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert declared(document, operation["operationId"])[401] == {"unauthorized"}


def test_every_error_response_is_a_problem_document_listing_its_codes(client: TestClient) -> None:
    document = client.get("/openapi.json", headers=AUTH).json()
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            if status == "304":  # Not Modified has no body
                assert "content" not in response and method == "GET", (method, path)
                continue
            assert list(response["content"]) == ["application/problem+json"], (method, path)
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema["allOf"] == [{"$ref": "#/components/schemas/Problem"}]
            assert schema["properties"]["code"]["enum"], (method, path, status)


def test_editing_a_pending_message_declares_exactly_the_errors_it_can_meet(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json", headers=AUTH).json()
    assert declared(document, "edit_pending") == {
        400: {"invalid_input"},
        401: {"unauthorized"},
        404: {"thread_not_found", "pending_not_found"},
        409: {"already_consumed", "retracted", "expired"},
        412: {"revision_conflict", "precondition_failed"},
        413: {"payload_too_large"},
        422: {"invalid_input"},
        428: {"precondition_required"},
        503: {"contention", "store_unavailable"},
    }


def test_the_errors_routes_answer_are_the_errors_they_declare(
    client: TestClient, mailbox: Mailbox
) -> None:
    document = client.get("/openapi.json", headers=AUTH).json()
    mailbox.deliver("t1", [Message.user("a", id="a"), Message.user("b", id="b")])
    mailbox.deliver("t1", [Message.user("x", id="x")])
    mailbox.retract("t1", "x")
    mailbox.freeze("t1", "new_run", "r1")  # a and b committed; r1 running
    mailbox.deliver("t1", [Message.user("c", id="c")])
    mailbox.deliver("t1", [Message.user("n", id="n")], DeliveryMode.on_natural_end())
    big = [user("z" * (5 * 1024 * 1024), "big")]

    def edit(pending_id: str, if_match: str | None) -> Response:
        headers = AUTH | ({"If-Match": if_match} if if_match else {})
        body = {"message": user("new text", pending_id)}
        return client.patch(f"{T}/pending/{pending_id}", headers=headers, json=body)

    def post(path: str, body: Any = None) -> Response:
        return client.post(f"{T}/{path}", headers=AUTH, json=body)

    steer = {"boundary": "next_step"}
    # (operation, the answer to a request, the status and code it must have)
    cases: list[tuple[str, Response, int, str]] = [
        ("list_pending", client.get(f"{T}/pending"), 401, "unauthorized"),
        (
            "list_pending",
            client.get("/v1/threads/no/pending", headers=AUTH),
            404,
            "thread_not_found",
        ),
        ("edit_pending", edit("c", None), 428, "precondition_required"),
        ("edit_pending", edit("c", '"7"'), 412, "revision_conflict"),
        ("edit_pending", edit("c", "W/1"), 400, "invalid_input"),
        ("edit_pending", edit("x", '"1"'), 409, "retracted"),
        ("edit_pending", edit("a", '"1"'), 409, "already_consumed"),
        ("edit_pending", edit("q", '"1"'), 404, "pending_not_found"),
        ("reorder_pending", order(client, ["c", "n"], '"1"'), 412, "version_conflict"),
        ("deliver", post("messages", {"messages": [user("again", "a")]}), 409, "message_id_in_use"),
        ("deliver", post("messages", {"messages": big}), 413, "payload_too_large"),
        ("deliver", post("messages", {"messages": [{"role": "robot"}]}), 422, "invalid_input"),
        (
            "submit",
            post("submit", {"messages": [user("d", "d")], "mode": steer, "run_id": "r1"}),
            409,
            "delivery_blocked",
        ),
        ("freeze", post("freeze", {"boundary": "new_run", "run_id": "r2"}), 409, "thread_busy"),
        ("commit_output", post("runs/r9/output", {"messages": []}), 409, "run_not_running"),
        ("hide_committed", post("committed/c/hide"), 404, "message_not_found"),
        ("get_run", client.get("/v1/runs/r9", headers=AUTH), 404, "run_not_found"),
        ("stream_events", stream(client, "x"), 400, "invalid_input"),
        ("stream_events", stream(client, "999"), 409, "cursor_ahead"),
        ("list_log", client.get("/v1/events?after=nope", headers=AUTH), 422, "invalid_input"),
        (
            "stream_log",
            client.get("/v1/events/stream", headers=AUTH | {"Last-Event-ID": "nope"}),
            400,
            "invalid_input",
        ),
        (
            "stream_events",
            client.get(f"{T}/events/stream?ticket=forged.x"),
            401,
            "unauthorized",
        ),
        (
            "create_stream_ticket",
            client.post("/v1/stream-tickets", headers=AUTH, json={"thread_id": ""}),
            422,
            "invalid_input",
        ),
        (
            "create_stream_ticket",
            client.post("/v1/stream-tickets", headers=AUTH, json={"thread": "t1"}),
            422,
            "invalid_input",
        ),
    ]
    for operation_id, answer, status, code in cases:
        assert (answer.status_code, answer.json()["code"]) == (status, code), operation_id
        assert answer.headers["content-type"] == "application/problem+json"
        assert code in declared(document, operation_id).get(status, set()), (operation_id, code)


def order(client: TestClient, ids: list[str], if_match: str) -> Response:
    headers = AUTH | {"If-Match": if_match}
    return client.put(f"{T}/pending/order", headers=headers, json={"order": ids})


def stream(client: TestClient, last_event_id: str) -> Response:
    return client.get(f"{T}/events/stream", headers=AUTH | {"Last-Event-ID": last_event_id})


def every_event_type(mailbox: Mailbox) -> None:
    """A session on thread t1 that records each of the thirteen event types."""
    mailbox.deliver("t1", [Message.user(t, id=t) for t in ("a", "b", "c")])
    mailbox.edit("t1", "a", Message.user("a, edited", id="a"))
    mailbox.retract("t1", "c")
    mailbox.reorder("t1", ["b", "a"])
    mailbox.freeze("t1", "new_run", "r1")
    mailbox.commit_output("t1", "r1", [Message.assistant("out", id="o1")])
    mailbox.hide("t1", "o1", "typo")
    mailbox.suspend_run("t1", "r1", "needs input")
    mailbox.deliver("t1", [Message.user("d", id="d")], DeliveryMode.resume_input("r1"))
    mailbox.freeze("t1", "resume_input", "r1")
    only_r1 = DeliveryMode.next_step().targeted_to_run("r1", fallback_to_new_run=False)
    mailbox.deliver("t1", [Message.user("e", id="e")], only_r1)
    mailbox.finish_run("t1", "r1", "error", "the model failed")


def test_a_page_of_every_event_type_validates_against_the_event_union(
    client: TestClient, mailbox: Mailbox
) -> None:
    every_event_type(mailbox)
    document = client.get("/openapi.json", headers=AUTH).json()
    page = client.get(f"{T}/events", headers=AUTH).json()
    assert {e["type"] for e in page["events"]} == EVENT_TYPES
    components = {"components": document["components"]}
    validator = Draft202012Validator({"$ref": "#/components/schemas/EventsPage", **components})
    validator.validate(page)
    union = document["components"]["schemas"]["RecordedEvent"]
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == EVENT_TYPES
    # The union is typed, not an object: a payload of the wrong shape for its type fails.
    started = next(e for e in page["events"] if e["type"] == "RunStarted")
    wrong = {**started, "data": {"pending_ids": ["a"]}}
    event = Draft202012Validator({"$ref": "#/components/schemas/RecordedEvent", **components})
    assert not event.is_valid(wrong)
    assert event.is_valid(started)


def test_typing_the_events_leaves_their_json_as_the_mailbox_records_them(
    client: TestClient, mailbox: Mailbox
) -> None:
    every_event_type(mailbox)
    expected = [e.model_dump(mode="json") for e in mailbox.history("t1", include_internal=False)]
    assert client.get(f"{T}/events", headers=AUTH).json() == {"events": expected, "next": None}
    assert client.get(f"{T}/events?after_version=3&limit=2", headers=AUTH).json() == {
        "events": expected[3:5],
        "next": expected[4]["version"],
    }
