"""Faults: writer processes killed mid-command, PostgreSQL connections cut and the server restarted
under load (on the suite's own server, ``private_postgres``), a read-only and a full disk. After
each, everything a writer was told had succeeded is in the log, nothing is half-written (every
thread folds, the invariants hold, the views verify) and a new mailbox works.

Writers are child processes running this file (``python tests/test_faults.py URL PREFIX``): they
loop commands and print one JSON line after each command returns, until their stdin closes.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import threadbox
from pg_private import PrivateServer
from psycopg.conninfo import conninfo_to_dict
from threadbox import DeliveryBoundary, DeliveryMode, Message
from threadbox.audit import AuditReport, audit
from threadbox.domain.events import PendingMessagesFrozen, RunResumed, RunStarted
from threadbox.errors import ThreadboxError

DEADLINE = 30.0  # seconds to wait for a writer's progress before failing the test

pytestmark = pytest.mark.slow


# ---- the writer (child process) ------------------------------------------------------------------


def report(kind: str, thread_id: str, ids: list[str]) -> None:
    print(json.dumps({"kind": kind, "thread": thread_id, "ids": ids}), flush=True)


def wait_for_eof(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


def write_until_stopped(url: str, prefix: str) -> None:
    """Deliver, freeze, commit output and finish runs on three threads, reporting each result."""
    stop = threading.Event()
    threading.Thread(target=wait_for_eof, args=(stop,), daemon=True).start()
    runs: dict[str, str | None] = {}
    with threadbox.open(url) as mailbox:
        i = 0
        while not stop.is_set():
            thread_id, step = f"{prefix}-{i % 3}", (i // 3) % 4
            run_id = runs.get(thread_id)
            try:
                if step in (0, 2):
                    mode = DeliveryMode.next_step() if run_id else DeliveryMode.new_run()
                    message = Message.user(f"turn {i}", id=f"{prefix}-m{i}")
                    entries = mailbox.deliver(thread_id, [message], mode)
                    report("delivered", thread_id, [e.pending_id for e in entries])
                elif step == 1:
                    boundary = DeliveryBoundary.NEXT_STEP if run_id else DeliveryBoundary.NEW_RUN
                    run_id = run_id or str(uuid.uuid4())
                    result = mailbox.freeze(thread_id, boundary, run_id)
                    if result.committed:
                        runs[thread_id] = run_id
                    report("committed", thread_id, [m.message.id or "" for m in result.committed])
                elif run_id:
                    out = mailbox.commit_output(thread_id, run_id, [Message.assistant(f"r{i}")])
                    report("committed", thread_id, [m.message.id or "" for m in out])
                    if i % 2:
                        mailbox.finish_run(thread_id, run_id)
                        runs[thread_id] = None
                        report("finished", thread_id, [run_id])
            except ThreadboxError as e:
                report("rejected", thread_id, [e.code])
            except Exception as e:  # reported, so the test sees it; the loop goes on
                report("failed", thread_id, [repr(e)[:300]])
            i += 1


# ---- the parent's side ---------------------------------------------------------------------------


class Writer:
    """A writer child process and the lines it reported."""

    def __init__(self, url: str, prefix: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self.reports: list[dict[str, Any]] = []
        self._partial = b""

    def successes(self) -> int:
        return sum(r["kind"] in ("delivered", "committed", "finished") for r in self.reports)

    def read(self, timeout: float) -> None:
        """Take whatever complete lines the writer printed, waiting up to ``timeout``."""
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return
        chunk = self.process.stdout.read() or b""
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        self.reports.extend(json.loads(line) for line in lines if line)

    def wait_for(self, successes: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while self.successes() < successes:
            assert self.process.poll() is None, f"writer exited: {self.reports[-3:]}"
            assert time.monotonic() < deadline, f"no progress: {self.reports[-3:]}"
            self.read(0.5)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE)
        self.drain()

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(DEADLINE) == 0
        self.drain()

    def drain(self) -> None:
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), True)
        rest = self.process.stdout.read()
        *lines, _torn = (self._partial + rest).split(b"\n")  # a line cut by the kill is dropped
        self.reports.extend(json.loads(line) for line in lines if line)
        self.process.stdout.close()


def assert_reported_are_logged(store_audit: AuditReport, writers: list[Writer]) -> None:
    for writer in writers:
        for r in writer.reports:
            state = store_audit.state(r["thread"])
            if r["kind"] == "delivered":
                for message_id in r["ids"]:
                    assert store_audit.fate(r["thread"], message_id) is not None, r
            elif r["kind"] == "committed":
                assert state is not None, r
                for message_id in r["ids"]:
                    assert state.used.get(message_id, ("",))[0] == "committed", r
            elif r["kind"] == "finished":
                assert state is not None and state.runs[r["ids"][0]].status == "done", r


def assert_store_sound(url: str, writers: list[Writer]) -> None:
    """Audit with a new mailbox, then use it: no repair step between a fault and service."""
    with threadbox.open(url) as mailbox:
        store_audit = audit(mailbox.store, mailbox.views)
        assert store_audit.ok, store_audit.problems[:5]
        assert_reported_are_logged(store_audit, writers)
        for thread_id in store_audit.audited:
            mailbox.deliver(thread_id, [Message.user("after the fault")], DeliveryMode.new_run())
        assert mailbox.views.verify().ok


# ---- (a) SIGKILL mid-command ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_writers_killed_mid_command_lose_nothing_they_reported(store_url: str) -> None:
    threadbox.open(store_url).close()  # the tables exist before two writers race to make them
    writers = [Writer(store_url, f"w{n}") for n in range(2)]
    try:
        for writer in writers:
            writer.wait_for(40)
    finally:
        for writer in writers:
            writer.kill()
    assert all(w.process.returncode == -signal.SIGKILL for w in writers)
    assert_store_sound(store_url, writers)


# ---- (b) PostgreSQL connections cut under load ---------------------------------------------------
# On the suite's private server, in a database the test created: no one else's connection is cut.


def terminate_connections(database_url: str, application_name: str) -> int:
    """End the server connections of one writer only: tagged with its PGAPPNAME, in the test's
    own database."""
    database = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            (database, application_name),
        ).fetchall()
    return len(rows)


def test_a_writer_whose_connections_are_cut_recovers_and_loses_nothing(
    private_database: str,
) -> None:
    tag = f"tb-fault-{uuid.uuid4().hex[:12]}"
    threadbox.open(private_database).close()
    writer = Writer(private_database, "cut", env={"PGAPPNAME": tag})
    try:
        writer.wait_for(30)
        cut = 0
        for _ in range(3):
            cut += terminate_connections(private_database, tag)
            writer.wait_for(writer.successes() + 15)  # it carries on after each cut
        writer.stop()
    finally:
        if writer.process.poll() is None:
            writer.kill()
    assert cut >= 3
    assert_store_sound(private_database, [writer])


# ---- (c) PostgreSQL restarted under load -------------------------------------------------------
# The suite's private server is restarted (pg_ctl restart, fast mode: connections are cut).


def assert_commands_whole(url: str) -> None:
    """A freeze is written as one batch: a run started or resumed with its messages frozen."""
    with threadbox.open(url) as mailbox:
        for thread_id in {n.event.thread_id for n in mailbox.store.read(after="", limit=10**6)}:
            events = mailbox.store.load(thread_id)
            for event, following in zip(events, [*events[1:], None], strict=True):
                if isinstance(event, RunStarted | RunResumed):
                    assert isinstance(following, PendingMessagesFrozen), (event, following)
                    assert (following.run_id, following.timestamp) == (
                        event.run_id,
                        event.timestamp,
                    )


def test_writers_carry_on_through_a_postgresql_restart_and_lose_nothing(
    private_postgres: PrivateServer, private_database: str
) -> None:
    threadbox.open(private_database).close()
    started_at = private_postgres.started_at()
    writers = [Writer(private_database, f"pg{n}") for n in range(2)]
    try:
        for writer in writers:
            writer.wait_for(20)
        private_postgres.restart()
        for writer in writers:
            writer.read(0)  # what it reported before the restart
            writer.wait_for(writer.successes() + 20)  # recovered by itself, no restart of it
        for writer in writers:
            writer.stop()
    finally:
        for writer in writers:
            if writer.process.poll() is None:
                writer.kill()
    assert private_postgres.started_at() > started_at  # the server did restart under the writers
    failed = [r for w in writers for r in w.reports if r["kind"] == "failed"]
    # a command that failed despite the retries is reported, and the writer went on
    assert all(r["ids"][0].startswith(("OperationalError", "InterfaceError")) for r in failed)
    assert_commands_whole(private_database)
    assert_store_sound(private_database, writers)


# ---- (d) read-only and full disk (SQLite) --------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of our own (needs root: skipped where mounting is not allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_full_disk_fails_the_command_cleanly_and_service_resumes_when_space_is_freed(
    small_disk: Path,
) -> None:
    url = f"sqlite:///{small_disk / 'threadbox.db'}"
    filler = small_disk / "filler"
    with threadbox.open(url) as mailbox:
        mailbox.deliver("t", [Message.user("before")])
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler.write_bytes(b"\0" * (free - 600_000))
        big = "x" * 200_000
        with pytest.raises(Exception, match="disk is full"):
            for n in range(20):
                mailbox.deliver("t", [Message.user(big, id=f"big-{n}")])
        written = len(mailbox.pending("t"))
        filler.unlink()
        mailbox.deliver("t", [Message.user("after")])  # the same mailbox, no restart
        assert [e.message.text for e in mailbox.pending("t")][-1] == "after"
        assert len(mailbox.pending("t")) == written + 1
    assert_store_sound(url, [])


def test_a_read_only_store_refuses_writes_clearly_and_serves_again_once_writable(
    small_disk: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{small_disk / 'threadbox.db'}"
    view = tmp_path / "read-only"
    view.mkdir()
    with threadbox.open(url) as writer:
        writer.deliver("t", [Message.user("before")])
        position = writer.store.committed_head()
        subprocess.run(["mount", "--bind", str(small_disk), str(view)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
            read_only = f"sqlite:///{view / 'threadbox.db'}"
            with (
                pytest.raises(Exception, match=r"readonly|read-only"),
                threadbox.open(read_only) as mailbox,
            ):
                mailbox.deliver("t", [Message.user("refused")])
            assert writer.store.committed_head() == position  # nothing written
            subprocess.run(["mount", "-o", "remount,bind,rw", str(view)], check=True)
            with threadbox.open(read_only) as mailbox:
                mailbox.deliver("t", [Message.user("accepted")])
                texts = [e.message.text for e in mailbox.pending("t")]
            assert texts == ["before", "accepted"]
        finally:
            subprocess.run(["umount", "-l", str(view)], check=True)
    assert_store_sound(url, [])


if __name__ == "__main__":
    write_until_stopped(sys.argv[1], sys.argv[2])
