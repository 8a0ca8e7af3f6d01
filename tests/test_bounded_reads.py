"""Bounded reads (issue 9, findings 2, 9 and 11): list routes page with a default and a maximum
size and a `next` cursor; GET /v1/threads/{id} is read from the views, not folded from the log;
a version in the past is folded from the latest snapshot before it; internal messages are left
out of /committed by the query itself; /events and the event stream leave out the content of
internal and hidden messages unless asked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import threadbox
from fastapi.testclient import TestClient
from live_server import live_server
from test_http_sse import DEADLINE, sse_messages, take
from threadbox import Mailbox, Message, Settings, Visibility
from threadbox.application.views import ProjectedViews
from threadbox.domain import results
from threadbox.domain.thread import fold
from threadbox.infrastructure.http import StreamSettings, create_app

TID = "t1"
RUNS = 101  # past the default page of 100, in every list


def json_of(items: list[Any]) -> list[Any]:
    return [item.model_dump(mode="json") for item in items]


def many_runs(mailbox: Mailbox, runs: int = RUNS, first: int = 0) -> None:
    """``runs`` runs on TID, each of one user message and one answer."""
    for i in range(first, first + runs):
        mailbox.submit(TID, [Message.user(f"question {i}", id=f"u{i}")], None, f"r{i}")
        mailbox.commit_output(TID, f"r{i}", [Message.assistant(f"answer {i}", id=f"a{i}")])
        mailbox.finish_run(TID, f"r{i}")


class LoadCounter:
    """Counts the events the mailbox's store loads (``store.load``), a spy on the instance."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.events = 0
        self.calls = 0
        store: Any = mailbox.store
        original = store.load

        def load(*args: Any, **kwargs: Any) -> Any:
            found = original(*args, **kwargs)
            self.calls += 1
            self.events += len(found)
            return found

        store.load = load


@pytest.fixture
def client(mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(create_app(mailbox)) as test_client:
        yield test_client


# ---- pages and cursors ---------------------------------------------------------------------

# route, its cursor parameter, the key of its items, the unpaged library answer
LISTS: list[tuple[str, str, str, Callable[[Mailbox], list[Any]]]] = [
    (f"/v1/threads/{TID}/committed", "after_seq", "messages", lambda m: m.committed(TID)),
    (f"/v1/threads/{TID}/runs", "after", "runs", lambda m: m.runs(TID)),
    (
        f"/v1/threads/{TID}/checkpoints",
        "after_version",
        "checkpoints",
        lambda m: m.checkpoints(TID),
    ),
    (f"/v1/threads/{TID}/events", "after_version", "events", lambda m: m.history(TID)),
    ("/v1/threads", "after", "threads", lambda m: m.threads(limit=10_000)),
]


def walk(client: TestClient, path: str, cursor: str, key: str, limit: int | None) -> list[Any]:
    """Every item of a list route, following ``next`` from the first page to the last."""
    found: list[Any] = []
    params: dict[str, Any] = {} if limit is None else {"limit": limit}
    while True:
        page = client.get(path, params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body[key]) == (limit or 100) or body["next"] is None  # full, or the last
        found += body[key]
        if body["next"] is None:
            return found
        params[cursor] = body["next"]


def test_every_list_route_pages_with_a_default_and_a_maximum_and_next_walks_it_all(
    mailbox: Mailbox, client: TestClient
) -> None:
    many_runs(mailbox)
    for i in range(RUNS):
        mailbox.deliver(f"other-{i:03}", [Message.user("hello")])
    for path, cursor, key, unpaged in LISTS:
        expected = json_of(unpaged(mailbox))
        assert len(expected) > 100, path
        first = client.get(path).json()
        assert len(first[key]) == 100 and first["next"] is not None, path  # the default page
        assert walk(client, path, cursor, key, None) == expected, path
        assert walk(client, path, cursor, key, 7) == expected, path
        assert len(client.get(path, params={"limit": 1000}).json()[key]) == len(expected[:1000])
        too_big = client.get(path, params={"limit": 1001})
        assert (too_big.status_code, too_big.json()["field"]) == (422, "limit"), path


def test_a_last_page_that_is_exactly_full_says_there_is_no_next(
    mailbox: Mailbox, client: TestClient
) -> None:
    many_runs(mailbox, 3)  # 3 runs, 6 committed messages and checkpoints, 16 events
    page = client.get(f"/v1/threads/{TID}/runs", params={"limit": 3}).json()
    assert (len(page["runs"]), page["next"]) == (3, None)
    page = client.get(f"/v1/threads/{TID}/committed", params={"limit": 5}).json()
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5] and page["next"] == 5
    rest = client.get(f"/v1/threads/{TID}/committed", params={"after_seq": 5}).json()
    assert ([m["seq"] for m in rest["messages"]], rest["next"]) == ([6], None)
    page = client.get(f"/v1/threads/{TID}/checkpoints", params={"limit": 6}).json()
    assert (len(page["checkpoints"]), page["next"]) == (6, None)
    versions = [c["version"] for c in page["checkpoints"]]
    rest = client.get(f"/v1/threads/{TID}/checkpoints", params={"after_version": versions[3]})
    assert [c["version"] for c in rest.json()["checkpoints"]] == versions[4:]


# ---- the thread's state, read from the views ----------------------------------------------


def busy_thread(mailbox: Mailbox) -> None:
    """A thread with finished, waiting and pending work, an edit, a retraction and a hide."""
    mailbox.deliver(TID, [Message.user("one", id="m1"), Message.user("two", id="m2")])
    mailbox.edit(TID, "m2", Message.user("two, edited", id="m2"))
    mailbox.freeze(TID, "new_run", "r1")
    mailbox.commit_output(TID, "r1", [Message.assistant("done", id="o1")])
    mailbox.finish_run(TID, "r1")
    mailbox.hide(TID, "o1", "wrong")
    mailbox.deliver(TID, [Message.user("three", id="m3")])
    mailbox.freeze(TID, "new_run", "r2")
    mailbox.suspend_run(TID, "r2", "needs input")
    mailbox.deliver(TID, [Message.user("four", id="m4"), Message.user("five", id="m5")])
    mailbox.retract(TID, "m4")


def test_the_thread_state_is_read_from_the_views_without_loading_the_log(
    mailbox: Mailbox, client: TestClient
) -> None:
    busy_thread(mailbox)
    log = mailbox.store.load(TID)
    folded = results.thread_state(fold(TID, log))  # the state the log says, independently
    loads = LoadCounter(mailbox)
    assert mailbox.thread(TID) == folded
    reply = client.get(f"/v1/threads/{TID}")
    assert reply.json() == folded.model_dump(mode="json")
    assert reply.headers["ETag"] == f'"{len(log)}"'
    assert (loads.calls, loads.events) == (0, 0)  # no event of the log was read


def test_a_past_version_of_the_thread_is_the_fold_of_the_log_up_to_it(mailbox: Mailbox) -> None:
    busy_thread(mailbox)
    log = mailbox.store.load(TID)
    for version in range(1, len(log) + 1):
        expected = results.thread_state(fold(TID, log[:version]))
        assert mailbox.thread(TID, at_version=version) == expected, version


EVERY_25 = Settings(snapshot_interval=25)  # no snapshot between `at` and the last write below


def test_the_committed_zone_at_a_version_folds_from_the_latest_snapshot_before_it(
    store_url: str,
) -> None:
    with threadbox.open(store_url, settings=EVERY_25) as mailbox:
        committed_zone_from_the_snapshot(mailbox)


def committed_zone_from_the_snapshot(mailbox: Mailbox) -> None:
    many_runs(mailbox, 20)  # 101 events: snapshots every 25 versions
    hidden_before = len(mailbox.store.load(TID)) + 1
    mailbox.hide(TID, "a1", "before")  # before the snapshot: hidden then and now
    many_runs(mailbox, 6, first=20)  # 30 more events: a snapshot after the hiding
    late = [Message.user(f"late {i}", id=f"late{i}") for i in range(3)]
    mailbox.submit(TID, late, None, "late-run")
    snapshot = mailbox.store.load_snapshot(TID)
    assert snapshot is not None and snapshot.version > hidden_before
    at = snapshot.version + 2
    mailbox.hide(TID, "a2", "after")  # hidden now, not then
    log = mailbox.store.load(TID)
    then = fold(TID, log[:at])
    every = mailbox.committed(TID, include_hidden=True)
    expected = [
        m.model_copy(update={"visible": m.message.id not in then.hidden})
        for m in every
        if m.seq <= then.last_seq
    ]
    loads = LoadCounter(mailbox)
    assert mailbox.committed(TID, include_hidden=True, at_version=at) == expected
    # The snapshot, the events after it up to then, and those since (for the later hidings).
    assert loads.events == len(log) - snapshot.version
    assert mailbox.committed(TID, at_version=at) == [m for m in expected if m.visible]


# ---- internal messages: left out by the query ---------------------------------------------


def test_internal_messages_are_left_out_by_the_query_not_one_row_at_a_time(
    mailbox: Mailbox, client: TestClient
) -> None:
    mailbox.submit(TID, [Message.user("go", id="u0")], None, "r1")
    internal = [
        Message.assistant(f"thinking {i}", id=f"i{i}").model_copy(
            update={"visibility": Visibility.INTERNAL}
        )
        for i in range(1000)
    ]
    mailbox.commit_output(TID, "r1", [*internal, Message.assistant("the answer", id="out")])
    views = mailbox.views
    assert isinstance(views, ProjectedViews)
    fetched: list[int] = []
    original = views.backend.committed_rows

    def counting(*args: Any, **kwargs: Any) -> Any:
        rows = original(*args, **kwargs)
        fetched.append(len(rows))
        return rows

    views.backend.committed_rows = counting  # type: ignore[method-assign]
    page = mailbox.committed(TID, after_seq=1, limit=1, include_internal=False)
    assert [m.message.id for m in page] == ["out"]
    assert fetched == [1]  # one query, one row: the 1,000 internal ones never left the database
    fetched.clear()
    reply = client.get(f"/v1/threads/{TID}/committed", params={"after_seq": 1, "limit": 1})
    assert [m["message"]["id"] for m in reply.json()["messages"]] == ["out"]
    assert fetched == [1]
    every = client.get(f"/v1/threads/{TID}/committed", params={"include_internal": True})
    assert len(every.json()["messages"]) == 100  # internal ones, when asked for


# ---- /events and the stream leave out internal and hidden content -------------------------

SECRETS = ("INTERNAL-SECRET", "HIDDEN-SECRET", "EDITED-INTERNAL-SECRET")


def secret_thread(mailbox: Mailbox) -> int:
    """A thread whose internal and hidden messages carry the SECRETS; its version."""
    internal = Message.user(SECRETS[0], id="int").model_copy(
        update={"visibility": Visibility.INTERNAL, "metadata": {"note": SECRETS[0]}}
    )
    mailbox.deliver(TID, [internal, Message.user(SECRETS[1], id="hid")])
    edited = Message.user(SECRETS[2], id="int").model_copy(
        update={"visibility": Visibility.INTERNAL}
    )
    mailbox.edit(TID, "int", edited)
    mailbox.freeze(TID, "new_run", "r1")
    mailbox.commit_output(TID, "r1", [Message.assistant("public answer", id="pub")])
    mailbox.hide(TID, "hid", "private")
    return len(mailbox.store.load(TID))


def redacted_messages(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every message the events carry, by id (each time it appears)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        data = event["data"]
        messages = [data["message"]] if "message" in data else []
        messages += [m["message"] for m in data.get("messages", [])]
        for message in messages:
            found.setdefault(message["id"], []).append(message)
    return found


def test_events_leave_out_internal_and_hidden_content_unless_asked(
    mailbox: Mailbox, client: TestClient
) -> None:
    secret_thread(mailbox)
    reply = client.get(f"/v1/threads/{TID}/events")
    assert not any(secret in reply.text for secret in SECRETS)
    messages = redacted_messages(reply.json()["events"])
    empty = [{"type": "text", "text": ""}]
    assert all(m["content"] == empty for m in messages["int"] + messages["hid"])
    assert {m["metadata"]["redacted"] for m in messages["int"]} == {"internal"}
    assert {m["metadata"]["redacted"] for m in messages["hid"]} == {"hidden"}
    assert messages["pub"][0]["content"][0]["text"] == "public answer"
    asked = client.get(f"/v1/threads/{TID}/events", params={"include_internal": True})
    assert all(secret in asked.text for secret in SECRETS)
    assert asked.json()["events"] == json_of(mailbox.history(TID))
    assert reply.json()["events"] == json_of(mailbox.history(TID, include_internal=False))


def test_the_event_stream_reads_in_pages_and_leaves_out_internal_and_hidden_content(
    mailbox: Mailbox,
) -> None:
    version = secret_thread(mailbox)
    settings = StreamSettings(poll_interval=0.05, heartbeat=0.2, page=2)
    with live_server(create_app(mailbox, stream_settings=settings)) as server:
        url = f"{server}/v1/threads/{TID}/events/stream"
        for params, shown in (({}, False), ({"include_internal": "true"}, True)):
            with httpx.stream("GET", url, params=params, timeout=DEADLINE) as response:
                sent = take(sse_messages(response), version)
            assert [int(e.id or 0) for e in sent] == list(range(1, version + 1))
            text = "\n".join(line for e in sent for line in e.data)
            assert all((secret in text) is shown for secret in SECRETS), params


def ag_ui_frames(url: str, headers: dict[str, str], version: int) -> list[tuple[str | None, str]]:
    """The AG-UI stream's events until the one that closes ``version``: (id, data)."""
    found: list[tuple[str | None, str]] = []
    with httpx.stream("GET", url, headers=headers, timeout=DEADLINE) as response:
        for event in sse_messages(response):
            found.append((event.id, "\n".join(event.data)))
            if event.id == str(version):
                return found
    raise AssertionError(f"the stream ended before version {version}")


def test_the_ag_ui_stream_folds_its_opening_a_page_at_a_time(mailbox: Mailbox) -> None:
    busy_thread(mailbox)
    version = len(mailbox.store.load(TID))
    streams: list[list[list[tuple[str | None, str]]]] = []
    for page in (2, 1000):
        settings = StreamSettings(poll_interval=0.05, heartbeat=60, page=page)
        with live_server(create_app(mailbox, stream_settings=settings)) as server:
            url = f"{server}/v1/threads/{TID}/ag-ui"
            streams.append(
                [
                    ag_ui_frames(url, {"Last-Event-ID": str(resume)} if resume else {}, version)
                    for resume in (None, 1, 4, 5, version)
                ]
            )
            ahead = httpx.get(url, headers={"Last-Event-ID": str(version + 1)}, timeout=DEADLINE)
            assert (ahead.status_code, ahead.json()["code"]) == (409, "cursor_ahead")
    paged, whole = streams
    assert paged == whole
    assert [frames[-1][0] for frames in paged] == [str(version)] * 5
