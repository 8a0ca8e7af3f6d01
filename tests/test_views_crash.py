"""A process killed (SIGKILL) in the middle of a catch-up or a rebuild leaves views that a
later catch-up brings to exactly what a clean rebuild gives (SQLite and PostgreSQL)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import threadbox
from threadbox import DeliveryBoundary, Mailbox, Message
from threadbox.application.views import ProjectedViews

pytestmark = pytest.mark.slow

# The child stops at a chosen point — inside a catch-up transaction, between two rebuild fills,
# or inside the swap transaction — says "ready", and waits there to be killed.
CHILD = textwrap.dedent(
    """
    import sys
    import threadbox
    from threadbox.application import views
    from threadbox.infrastructure.views import sql

    url, point = sys.argv[1], sys.argv[2]
    mailbox = threadbox.open(url)
    views.BATCH = 20
    sql.BULK_ROWS = 50
    Backend = sql.SqlViewBackend
    calls = {"n": 0}

    def stop_here_on(name, nth):
        original = getattr(Backend, name)

        def wrapper(self, *args):
            result = original(self, *args)
            calls["n"] += 1
            if calls["n"] == nth:
                print("ready", flush=True)
                sys.stdin.read()  # until killed
            return result

        setattr(Backend, name, wrapper)

    if point == "catch-up":
        stop_here_on("_write_difference", 5)  # the 5th batch written, not yet committed
        mailbox.views.catch_up()
    elif point == "rebuild-fill":
        stop_here_on("_fill", 3)
        mailbox.views.rebuild()
    else:
        stop_here_on("_swap_table", 2)  # inside the swap: old tables dropped, not committed
        mailbox.views.rebuild()
    print("finished", flush=True)
    """
)


def write_history(mailbox: Mailbox, threads: int = 12, rounds: int = 12) -> None:
    for n in range(rounds):
        for t in range(threads):
            tid = f"t{t}"
            mailbox.deliver(tid, [Message.user(f"m{n}"), Message.user(f"n{n}")])
            if n % 3 == 2:
                mailbox.freeze(tid, DeliveryBoundary.NEW_RUN, f"r{n}-{t}")
                mailbox.commit_output(tid, f"r{n}-{t}", [Message.assistant("ok")])
                mailbox.finish_run(tid, f"r{n}-{t}")


def kill_at(url: str, point: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, point],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", "the child ended before its stop"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("point", ["catch-up", "rebuild-fill", "rebuild-swap"])
def test_views_killed_mid_work_catch_up_to_exactly_a_clean_rebuild(
    store_url: str, point: str
) -> None:
    with threadbox.open(store_url) as mailbox:
        write_history(mailbox)
        views = mailbox.views
        assert isinstance(views, ProjectedViews)
        if point != "catch-up":
            views.catch_up()  # a rebuild replaces live views: they must survive its death
        before = views.backend.dump()

        kill_at(store_url, point)

        after_kill = views.backend.dump()
        if point == "catch-up":
            batches = views.store.read(after="", limit=4 * 20)
            assert after_kill[0] == batches[-1].position  # four batches; the fifth rolled back
        else:
            assert after_kill == before  # readers still see the old views, whole
        views.catch_up()
        report = views.verify()
        assert report.ok, report.differences
        caught_up = views.backend.dump()
        views.rebuild()
        assert views.backend.dump() == caught_up
