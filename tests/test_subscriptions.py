"""Subscriptions (API.md §4): ``head``, ``follow``, ``watch`` and ``wait_for_work`` on every
backend, with writers in other processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
import threadbox
from threadbox import DeliveryMode, LogItem, Mailbox, Message
from threadbox.errors import InvalidInput

WRITERS, PER_WRITER = 4, 40


def write_in_process(url: str, writer: int, count: int) -> list[str]:
    """Another OS process: ``count`` deliveries to two threads of its own and one shared thread;
    the ids of the messages it delivered."""
    ids: list[str] = []
    with threadbox.open(url) as mb:
        for n in range(count):
            thread = ("shared", f"w{writer}-a", f"w{writer}-b")[n % 3]
            message_id = f"w{writer}-m{n}"
            mb.deliver(thread, [Message.user(f"{writer}/{n}", id=message_id)])
            ids.append(message_id)
    return ids


def delivered_id(item: LogItem) -> str | None:
    if item.event.type != "MessagesDelivered":
        return None
    return str(item.event.data["messages"][0]["message"]["id"])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_follow_yields_every_event_once_in_commit_order_while_four_processes_write(
    store_url: str,
) -> None:
    with threadbox.open(store_url) as mb:
        mb.deliver("before", [Message.user("first", id="m0")])  # creates the store, one event
        start = mb.head()
        followed: list[LogItem] = []
        done = threading.Event()

        def follow() -> None:
            position = start
            while not done.is_set():
                for item in mb.follow(position, timeout=0.2):
                    followed.append(item)
                    position = item.position  # a new follow from the last position each time

        follower = threading.Thread(target=follow)
        follower.start()
        context = multiprocessing.get_context("spawn")
        with context.Pool(WRITERS) as pool:
            jobs = [
                pool.apply_async(write_in_process, (store_url, w, PER_WRITER))
                for w in range(WRITERS)
            ]
            written = [i for job in jobs for i in job.get(timeout=240)]
        # every write has returned: wait for the follower to have read them all
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(followed) < mb.store.count_after(start):
            time.sleep(0.05)
        done.set()
        follower.join(30)
        log = list(mb.follow(start))  # the log read afterwards, in one go

    assert [i.position for i in followed] == [i.position for i in log]  # nothing lost or doubled
    assert [i.position for i in followed] == sorted({i.position for i in followed})
    assert sorted(filter(None, map(delivered_id, followed))) == sorted(written)
    versions: dict[str, list[int]] = defaultdict(list)
    for item in followed:
        versions[item.thread_id].append(item.event.version)
    for thread_id, seen in versions.items():
        assert seen == list(range(seen[0], seen[0] + len(seen))), thread_id
    assert start not in {i.position for i in followed}


def test_follow_pages_limit_and_positions(mailbox: Mailbox) -> None:
    assert mailbox.head() == ""
    assert list(mailbox.follow()) == []
    for n in range(7):
        mailbox.deliver(f"t{n % 2}", [Message.user(str(n), id=f"m{n}")])
    # On PostgreSQL a read sees the log only below the oldest running transaction anywhere on
    # the server: wait (at most 30 s) for the 9 events rather than read what is visible now.
    items = list(mailbox.follow(limit=9, timeout=30))
    # 7 deliveries, 2 of them opening their thread
    assert [i.event.type for i in items].count("MessagesDelivered") == 7
    assert len(items) == 9
    assert mailbox.head() == items[-1].position
    assert list(mailbox.follow(limit=3)) == items[:3]
    assert list(mailbox.follow(items[3].position)) == items[4:]
    assert list(mailbox.follow(mailbox.head())) == []
    assert items[0].event == mailbox.history(items[0].thread_id)[0]


def test_follow_waits_for_a_commit_until_its_timeout(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("one")])
    head = mailbox.head()
    timer = threading.Timer(0.3, lambda: mailbox.deliver("t", [Message.user("two")]))
    timer.start()
    got = list(mailbox.follow(head, limit=1, timeout=10))
    timer.join()
    assert [i.event.data["messages"][0]["message"]["content"][0]["text"] for i in got] == ["two"]


@pytest.mark.parametrize(
    ("after", "why"),
    [
        ("garbage", "not a position"),
        ("00000000000000000001.00000000000000000001", "not a position"),
        ("99999999999999999999", "not a position"),
        (7, "position string"),
    ],
)
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_follow_rejects_positions_of_no_store_or_another(
    mailbox: Mailbox, after: object, why: str
) -> None:
    mailbox.deliver("t", [Message.user("one")])
    with pytest.raises(InvalidInput) as raised:
        list(mailbox.follow(after))  # type: ignore[arg-type]
    assert raised.value.field == "after"
    assert why in str(raised.value) or "another store" in str(raised.value)


@pytest.mark.parametrize("backend", ["postgres"])
def test_follow_rejects_a_sqlite_position_on_postgres(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("one")])
    for bad in ("00000000000000000001", "garbage", "99999999999999999999.00000000000000000001"):
        with pytest.raises(InvalidInput) as raised:
            list(mailbox.follow(bad))
        assert raised.value.field == "after"


def test_follow_and_watch_reject_bad_limits_and_timeouts(mailbox: Mailbox) -> None:
    for kwargs, field in [
        ({"limit": 0}, "limit"),
        ({"limit": "3"}, "limit"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "1"}, "timeout"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            list(mailbox.follow("", **kwargs))  # type: ignore[arg-type]
        assert raised.value.field == field
    with pytest.raises(InvalidInput) as raised:
        list(mailbox.watch("t", -1))
    assert raised.value.field == "after_version"


def test_watch_yields_the_threads_events_by_version(mailbox: Mailbox) -> None:
    mailbox.deliver("t", [Message.user("one")])
    mailbox.deliver("other", [Message.user("elsewhere")])
    mailbox.deliver("t", [Message.user("two")])
    assert list(mailbox.watch("t")) == mailbox.history("t")
    assert [e.version for e in mailbox.watch("t", 2)] == [3]
    assert list(mailbox.watch("nobody")) == []

    timer = threading.Timer(0.3, lambda: mailbox.deliver("t", [Message.user("three")]))
    timer.start()
    got = [next(mailbox.watch("t", 3, timeout=10))]  # the first: not the 10 s idle wait after it
    timer.join()
    assert [e.version for e in got] == [4]


def deliver_later(url: str, delay: float) -> None:
    """Another OS process: deliver a next-step message to thread ``t`` after ``delay``."""
    time.sleep(delay)
    with threadbox.open(url) as mb:
        mb.deliver("t", [Message.user("steer")], DeliveryMode.next_step())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_wait_for_work_wakes_on_another_process_commit(store_url: str) -> None:
    with threadbox.open(store_url) as mb:
        mb.deliver("t", [Message.user("go")])
        mb.freeze("t", "new_run", "r1")
        assert mb.wait_for_work("t", "next_step", "r1", timeout=0.1) is False
        context = multiprocessing.get_context("spawn")
        writer = context.Process(target=deliver_later, args=(store_url, 0.5))
        writer.start()
        try:
            assert mb.wait_for_work("t", "next_step", "r1", timeout=60) is True
        finally:
            writer.join(60)
        assert [m.message.text for m in mb.freeze("t", "next_step", "r1").committed] == ["steer"]


def test_wait_for_work_selects_as_a_freeze_would(mailbox: Mailbox) -> None:
    assert mailbox.wait_for_work("new", "new_run", timeout=0) is False  # no thread yet
    mailbox.deliver("t", [Message.user("go")])
    mailbox.freeze("t", "new_run", "r1")
    mailbox.deliver("t", [Message.user("next run")])  # a new_run entry: not for this run
    assert mailbox.wait_for_work("t", "next_step", "r1", timeout=0) is False
    assert mailbox.wait_for_work("t", "next_step", timeout=0) is False
    assert mailbox.wait_for_work("t", "new_run", timeout=0) is True
    mailbox.deliver("t", [Message.user("steer")], DeliveryMode.next_step())
    assert mailbox.wait_for_work("t", "next_step", "r1", timeout=0) is True  # skips new_run
    assert mailbox.wait_for_work("t", "next_step", "r2", timeout=0) is True  # not targeted
    assert [m.message.text for m in mailbox.freeze("t", "next_step", "r1").committed] == ["steer"]
    assert mailbox.wait_for_work("t", "next_step", "r1", timeout=0) is False
    with pytest.raises(InvalidInput) as raised:
        mailbox.wait_for_work("t", "soon", timeout=0)
    assert raised.value.field == "boundary"
    with pytest.raises(InvalidInput) as raised:
        mailbox.wait_for_work("t", "new_run", timeout=-1)
    assert raised.value.field == "timeout"


@pytest.mark.parametrize("backend", ["memory"])
def test_follow_reads_in_pages_and_only_as_far_as_it_is_iterated(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadbox.application.subscriptions import PAGE

    for n in range(2 * PAGE + 10):
        mailbox.deliver(f"t{n % 7}", [Message.user("x", id=f"x{n}")])
    total = mailbox.store.count_after("")
    reads: list[int] = []
    read = mailbox.store.read

    def counting(*, after: str, limit: int, upto: str | None = None) -> Any:
        found = read(after=after, limit=limit, upto=upto)
        reads.append(len(found))
        return found

    monkeypatch.setattr(mailbox.store, "read", counting)
    follower = mailbox.follow()
    first = next(follower)
    assert sum(reads) <= PAGE + 1  # one page (and the position check), not the whole log
    rest = list(follower)
    assert len(rest) + 1 == total
    assert max(reads) <= PAGE
    assert [first, *rest] == sorted([first, *rest], key=lambda i: i.position)
