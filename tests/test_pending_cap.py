"""The cap on the pending zone (``Settings.max_pending``, docs/semantics.md §4): a delivery of
new messages that would take the zone past it is ``pending_full`` (409 over HTTP, exit 1 on the
command line) and writes nothing; repeats, submits and the commands that shrink the zone are
not refused by it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import threadbox
from decide_support import RUNNING, B, decided, thread, types, user
from fastapi.testclient import TestClient
from httpx import Response
from threadbox import DeliveryMode, Mailbox, Message, Settings
from threadbox.domain.commands import Deliver, Freeze, Retract, Submit
from threadbox.errors import PendingQueueFull
from threadbox.infrastructure.cli import build_cli
from threadbox.infrastructure.http import create_app
from typer.testing import CliRunner


def capped(*ids: str, cap: int) -> Deliver:
    return Deliver(tuple(user(i) for i in ids), DeliveryMode(), cap)


# ---- the decision ------------------------------------------------------------------------------


def test_a_delivery_that_fills_the_zone_exactly_is_accepted() -> None:
    state = thread(capped("a", "b", cap=3))
    assert types(decided(state, capped("c", cap=3))) == ["MessagesDelivered"]


def test_a_delivery_one_past_the_cap_is_pending_full_naming_the_cap_and_the_thread() -> None:
    state = thread(capped("a", "b", cap=3))
    with pytest.raises(PendingQueueFull) as raised:
        decided(state, capped("c", "d", cap=3))
    error = raised.value
    assert (error.code, error.thread_id, error.limit, error.pending, error.adding) == (
        "pending_full",
        "t",
        3,
        2,
        2,
    )
    assert "'t'" in error.message and "at most 3" in error.message
    assert error.details() == {"thread_id": "t", "limit": 3, "pending": 2, "adding": 2}


def test_a_first_delivery_larger_than_the_cap_is_refused_and_opens_no_thread() -> None:
    with pytest.raises(PendingQueueFull):
        decided(thread(), capped("a", "b", "c", cap=2))


def test_a_repeat_of_a_delivery_on_a_full_zone_stays_an_idempotent_no_op() -> None:
    state = thread(capped("a", "b", cap=2))
    assert decided(state, capped("a", cap=2)).events == []


def test_only_the_new_messages_of_a_delivery_count_against_the_cap() -> None:
    state = thread(capped("a", "b", cap=3))
    assert types(decided(state, capped("a", "c", cap=3))) == ["MessagesDelivered"]


def test_a_retract_or_a_freeze_makes_room_again() -> None:
    full = (capped("a", "b", cap=2),)
    assert types(decided(thread(*full, Retract("a")), capped("c", cap=2))) == ["MessagesDelivered"]
    assert types(decided(thread(*full, Freeze(B.NEW_RUN, "r1")), capped("c", cap=2))) == [
        "MessagesDelivered"
    ]


def test_a_submit_is_not_refused_by_the_cap_its_messages_never_stay_pending() -> None:
    state = thread(*RUNNING, capped("b", "c", cap=2))
    submit = Submit((user("d"),), DeliveryMode.next_step(), "r1")
    assert "PendingMessagesFrozen" in types(decided(state, submit))


# ---- the mailbox, HTTP and the command line ----------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Mailbox]:
    """A mailbox on SQLite whose pending zones hold at most 2 entries."""
    url = f"sqlite:///{tmp_path / 'cap.db'}"
    with threadbox.open(url, settings=Settings(max_pending=2)) as mailbox:
        yield mailbox


def test_the_mailbox_refuses_past_its_settings_cap_and_writes_nothing(small: Mailbox) -> None:
    small.deliver("t1", [Message.user("a", id="a")])
    position = small.store.last_position()
    with pytest.raises(PendingQueueFull) as raised:
        small.deliver("t1", [Message.user("b", id="b"), Message.user("c", id="c")])
    assert (raised.value.limit, raised.value.pending, raised.value.adding) == (2, 1, 2)
    assert small.store.last_position() == position
    assert [e.pending_id for e in small.pending("t1")] == ["a"]


def test_the_default_cap_is_ten_thousand_entries() -> None:
    assert Settings().max_pending == 10_000


def test_http_answers_409_pending_full_with_the_cap_in_the_problem(small: Mailbox) -> None:
    client = TestClient(create_app(small))

    def deliver(message_id: str) -> Response:
        message = {"id": message_id, "role": "user", "content": [{"type": "text", "text": "x"}]}
        return client.post("/v1/threads/t1/messages", json={"messages": [message]})

    assert [deliver("a").status_code, deliver("b").status_code] == [201, 201]
    answer = deliver("c")
    problem = answer.json()
    assert (answer.status_code, problem["code"]) == (409, "pending_full")
    assert (problem["thread_id"], problem["limit"], problem["pending"], problem["adding"]) == (
        "t1",
        2,
        2,
        1,
    )
    assert answer.headers["content-type"] == "application/problem+json"


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_cli(env), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_command_line_takes_the_cap_and_reports_pending_full(tmp_path: Path) -> None:
    env = {"THREADBOX_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    assert run(env, "--max-pending", "2", "deliver", "t1", "--text", "a", "--text", "b")[0] == 0
    code, _, err = run(env, "--max-pending", "2", "deliver", "t1", "--text", "c")
    assert code == 1
    assert err.startswith("error [pending_full]: thread 't1'")
    code, _, err = run({**env, "THREADBOX_MAX_PENDING": "3"}, "deliver", "t1", "--text", "c")
    assert code == 0, err
    code, out, _ = run(env, "show", "t1", "--json")
    assert len(json.loads(out)["thread"]["pending"]) == 3


def test_the_command_line_refuses_a_cap_that_is_not_a_positive_integer(tmp_path: Path) -> None:
    env = {"THREADBOX_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    assert run(env, "--max-pending", "0", "deliver", "t1", "--text", "a")[0] == 2
    code, _, err = run({**env, "THREADBOX_MAX_PENDING": "lots"}, "deliver", "t1", "--text", "a")
    assert code == 2 and "THREADBOX_MAX_PENDING" in err
