"""Conditional requests (RFC 9110 §13) with a real HTTP client over the network: each resource's
``ETag`` is what its ``If-Match`` expects, ``*`` and lists match as the RFC says, weak tags never
match ``If-Match``, and ``If-None-Match`` answers 304 on the GETs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import threadbox
from live_server import live_server
from threadbox import Mailbox
from threadbox.infrastructure.http import create_app

T = "/v1/threads/t1"


def user(text: str, message_id: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "content": [{"type": "text", "text": text}]}


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with threadbox.open("memory://") as mb:
        yield mb


@pytest.fixture
def http(mailbox: Mailbox) -> Iterator[httpx.Client]:
    """An httpx client talking to a real uvicorn server on a free loopback port."""
    with live_server(create_app(mailbox)) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def seed(http: httpx.Client) -> None:
    body = {"messages": [user("a", "m1"), user("b", "m2")]}
    assert http.post(f"{T}/messages", json=body).status_code == 201


def test_the_etag_of_an_entry_is_what_its_edit_expects(http: httpx.Client) -> None:
    seed(http)
    entry = http.get(f"{T}/pending/m1")
    assert entry.status_code == 200
    assert entry.json()["revision"] == 1 and entry.json()["position"] == 1
    # Send back exactly the ETag just received: it is the guard the edit wants.
    edited = http.patch(
        f"{T}/pending/m1",
        json={"message": user("a2", "m1")},
        headers={"If-Match": entry.headers["etag"]},
    )
    assert edited.status_code == 200
    assert edited.headers["etag"] == '"2"' == http.get(f"{T}/pending/m1").headers["etag"]
    # The list's ETag is the thread version, the guard of a reorder.
    listed = http.get(f"{T}/pending")
    reordered = http.put(
        f"{T}/pending/order",
        json={"order": ["m2", "m1"]},
        headers={"If-Match": listed.headers["etag"]},
    )
    assert reordered.status_code == 200
    assert reordered.headers["etag"] == f'"{listed.json()["version"] + 1}"'


def test_an_entry_that_left_the_zone_says_how(http: httpx.Client) -> None:
    seed(http)
    assert http.delete(f"{T}/pending/m2", headers={"If-Match": '"1"'}).status_code == 200
    gone = http.get(f"{T}/pending/m2")
    assert (gone.status_code, gone.json()["code"]) == (409, "retracted")
    missing = http.get(f"{T}/pending/nope")
    assert (missing.status_code, missing.json()["code"]) == (404, "pending_not_found")
    assert http.get("/v1/threads/none/pending/m1").json()["code"] == "thread_not_found"


def test_if_match_star_matches_any_current_representation(http: httpx.Client) -> None:
    seed(http)
    edited = http.patch(
        f"{T}/pending/m1", json={"message": user("x", "m1")}, headers={"If-Match": "*"}
    )
    assert (edited.status_code, edited.json()["revision"]) == (200, 2)
    reordered = http.put(
        f"{T}/pending/order", json={"order": ["m2", "m1"]}, headers={"If-Match": "*"}
    )
    assert reordered.status_code == 200
    retracted = http.delete(f"{T}/pending/m2", headers={"If-Match": "*"})
    assert retracted.status_code == 200
    # No current representation: the request fails as it would without the header.
    again = http.delete(f"{T}/pending/m2", headers={"If-Match": "*"})
    assert (again.status_code, again.json()["code"]) == (409, "retracted")


def test_if_match_takes_a_list_and_compares_strongly(http: httpx.Client) -> None:
    seed(http)
    url, body = f"{T}/pending/m1", {"message": user("x", "m1")}
    listed = http.patch(url, json=body, headers={"If-Match": '"7", "1", "9"'})
    assert (listed.status_code, listed.json()["revision"]) == (200, 2)
    stale = http.patch(url, json={"message": user("y", "m1")}, headers={"If-Match": '"1", "3"'})
    assert (stale.status_code, stale.json()["code"], stale.json()["actual"]) == (
        412,
        "revision_conflict",
        2,
    )
    weak = http.patch(url, json={"message": user("y", "m1")}, headers={"If-Match": 'W/"2"'})
    assert (weak.status_code, weak.json()["code"]) == (412, "precondition_failed")
    mixed = http.patch(url, json={"message": user("y", "m1")}, headers={"If-Match": 'W/"1", "2"'})
    assert (mixed.status_code, mixed.json()["revision"]) == (200, 3)
    assert http.get(url).json()["message"]["content"][0]["text"] == "y"


@pytest.mark.parametrize("garbage", ["2", "W/2", '"2', '"2",', '"2" "3"', '*, "2"', "\u00e9"])
def test_garbage_if_match_is_a_400_naming_the_header(http: httpx.Client, garbage: str) -> None:
    seed(http)
    refused = http.patch(
        f"{T}/pending/m1",
        json={"message": user("x", "m1")},
        headers={"If-Match": garbage.encode("latin-1")},
    )
    assert refused.status_code == 400
    assert (refused.json()["code"], refused.json()["field"]) == ("invalid_input", "if-match")
    assert "If-Match" in refused.json()["detail"]
    assert http.get(f"{T}/pending/m1").json()["revision"] == 1  # nothing written


@pytest.mark.parametrize("route", [f"{T}/pending", f"{T}/pending/m1", T])
def test_if_none_match_answers_304_while_the_tag_is_current(http: httpx.Client, route: str) -> None:
    seed(http)
    first = http.get(route)
    tag = first.headers["etag"]
    for header in (tag, f"W/{tag}", f'"999", {tag}', "*"):
        unchanged = http.get(route, headers={"If-None-Match": header})
        assert (unchanged.status_code, unchanged.content) == (304, b"")
        assert unchanged.headers["etag"] == tag
    assert http.get(route, headers={"If-None-Match": '"999"'}).status_code == 200
    http.patch(f"{T}/pending/m1", json={"message": user("x", "m1")}, headers={"If-Match": "*"})
    changed = http.get(route, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    bad = http.get(route, headers={"If-None-Match": "nope"})
    assert (bad.status_code, bad.json()["field"]) == (400, "if-none-match")
