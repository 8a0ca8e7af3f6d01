"""The wake-up after commit (``pg_wakeup.CommitNotifier``, ADR 0009 and 0024): every commit is
followed by a ``NOTIFY`` sent after it, commits close together share one, and a commit after a
quiet spell wakes the sender by itself. Times here are orderings of events of this process (a
send begins after a commit), and bounds on counts; no test asserts a speed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import PG_URL, pg_connect
from psycopg import sql
from threadbox.infrastructure.pg_wakeup import CommitNotifier

pytestmark = pytest.mark.parametrize("backend", ["postgres"])
WAIT = 60.0  # liveness bound for a notification to arrive


class Recorded(CommitNotifier):
    """A notifier that notes when each send begins (monotonic clock)."""

    def __init__(self, channel: str, interval: float) -> None:
        super().__init__(PG_URL, channel, interval)
        self.starts: list[float] = []

    def _notify(self, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any] | None:
        self.starts.append(time.monotonic())
        return super()._notify(conn)


@pytest.fixture
def channel() -> str:
    return f"test_notifier_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def listener(channel: str) -> Iterator[psycopg.Connection[Any]]:
    with pg_connect() as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        yield conn


def heard(listener: psycopg.Connection[Any], count: int) -> int:
    """Wait for ``count`` notifications (at most WAIT seconds); how many came."""
    got = 0
    deadline = time.monotonic() + WAIT
    while got < count and time.monotonic() < deadline:
        got += sum(1 for _ in listener.notifies(timeout=0.5, stop_after=count - got))
    return got


def drained(listener: psycopg.Connection[Any]) -> int:
    """The notifications still arriving once the sender has been quiet a while."""
    return sum(1 for _ in listener.notifies(timeout=1.0))


def settle(notifier: Recorded) -> None:
    """Until the sender has sent what was due (its flag clear, no send under way)."""
    deadline = time.monotonic() + WAIT
    while notifier._due.is_set() or len(notifier.starts) != notifier.sent + notifier.failures:
        assert time.monotonic() < deadline, "the notifier never settled"
        time.sleep(0.01)


def test_a_burst_of_commits_shares_few_notifies_and_the_last_commit_is_announced(
    backend: str, channel: str, listener: psycopg.Connection[Any]
) -> None:
    interval = 0.2
    notifier = Recorded(channel, interval)
    try:
        began = time.monotonic()
        commits = []
        for _ in range(300):
            notifier.committed()
            commits.append(time.monotonic())
            time.sleep(0.001)
        settle(notifier)
        spell = time.monotonic() - began
        # one at once, then at most one per interval (and one after the last)
        assert 1 <= notifier.sent <= spell / interval + 2, (notifier.sent, spell)
        assert notifier.failures == 0
        assert notifier.starts[-1] >= commits[-1], "the last commit was never announced"
        assert all(any(s >= c for s in notifier.starts) for c in commits)
        assert heard(listener, notifier.sent) == notifier.sent
    finally:
        notifier.close()


def test_a_commit_after_a_quiet_spell_is_announced_without_another_commit(
    backend: str, channel: str, listener: psycopg.Connection[Any]
) -> None:
    notifier = Recorded(channel, interval=0.05)
    try:
        for round_ in range(3):
            notifier.committed()
            assert heard(listener, 1) == 1, f"round {round_}: no NOTIFY after the commit"
            settle(notifier)
            time.sleep(0.2)  # quiet: the sender waits for the next commit, not for a timer
        assert notifier.sent == 3 and drained(listener) == 0
    finally:
        notifier.close()


def test_commits_from_several_threads_are_each_followed_by_a_send(
    backend: str, channel: str, listener: psycopg.Connection[Any]
) -> None:
    notifier = Recorded(channel, interval=0.01)
    last: dict[int, float] = {}
    barrier = threading.Barrier(4)

    def commit(n: int) -> None:
        barrier.wait(timeout=WAIT)
        for _ in range(200):
            notifier.committed()
            last[n] = time.monotonic()

    try:
        threads = [threading.Thread(target=commit, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        settle(notifier)
        assert notifier.starts[-1] >= max(last.values())
        assert heard(listener, notifier.sent) == notifier.sent
    finally:
        notifier.close()


def test_close_sends_what_is_due_and_a_later_commit_starts_nothing(
    backend: str, channel: str, listener: psycopg.Connection[Any]
) -> None:
    notifier = Recorded(channel, interval=5.0)  # long: the second send waits for close
    notifier.committed()
    assert heard(listener, 1) == 1
    notifier.committed()  # due, held by the interval
    notifier.close()
    assert heard(listener, 1) == 1, "close did not send the NOTIFY still due"
    notifier.committed()
    assert drained(listener) == 0
    assert notifier._thread is not None and not notifier._thread.is_alive()
