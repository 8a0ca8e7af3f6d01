"""``threadbox serve --workers N``: N processes on one port sharing one store, each with its own
views follower; SIGTERM stops all of them; stores several processes cannot share are refused."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import threadbox
from pg_private import free_port
from threadbox import Message

DEADLINE = 60.0


def message(n: int) -> dict[str, object]:
    return {"id": f"m{n}", "role": "user", "content": [{"type": "text", "text": f"hello {n}"}]}


class Workers:
    """``threadbox serve --workers N`` in a child process on a free port."""

    def __init__(self, url: str, log: Path, count: int) -> None:
        self.port = free_port()
        self.log = log
        environment = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
        environment["THREADBOX_URL"] = url
        command = [sys.executable, "-m", "threadbox", "serve", "--port", str(self.port)]
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [*command, "--workers", str(count), "--log-level", "warning"],
                env=environment,
                stderr=stderr,
            )
        end = time.monotonic() + DEADLINE
        while len(self.workers()) < count or not self.healthy():
            assert self.process.poll() is None, f"serve exited: {log.read_text()}"
            assert time.monotonic() < end, "the workers did not come up"
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def workers(self) -> list[int]:
        """The pids of the worker processes (the parent's children running the spawn entry)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        found = []
        for child in children.read_text().split() if children.exists() else []:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:
                found.append(int(child))
        return found

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(DEADLINE)


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[Workers]:
    with threadbox.open(store_url):  # the store exists before (as an operator's would)
        pass
    server = Workers(store_url, tmp_path / "serve.log", 2)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            for pid in server.workers():
                os.kill(pid, signal.SIGCONT)
            server.stop()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_workers_serve_one_store_and_sigterm_stops_them_all(served: Workers) -> None:
    """With one worker stopped (SIGSTOP) the other accepts every new connection: a delivery
    through the first is then read through the second, and the other way round."""
    first, second = served.workers()
    os.kill(second, signal.SIGSTOP)
    answer = httpx.post(f"{served.url}/v1/threads/t/messages", json={"messages": [message(1)]})
    assert answer.status_code == 201, answer.text
    os.kill(second, signal.SIGCONT)
    os.kill(first, signal.SIGSTOP)
    pending = httpx.get(f"{served.url}/v1/threads/t/pending", timeout=10)
    assert [e["message"]["id"] for e in pending.json()["entries"]] == ["m1"]
    answer = httpx.post(f"{served.url}/v1/threads/t/messages", json={"messages": [message(2)]})
    assert answer.status_code == 201, answer.text
    os.kill(first, signal.SIGCONT)
    os.kill(second, signal.SIGSTOP)
    pending = httpx.get(f"{served.url}/v1/threads/t/pending", timeout=10)
    assert [e["message"]["id"] for e in pending.json()["entries"]] == ["m1", "m2"]
    os.kill(second, signal.SIGCONT)

    assert served.stop() == -signal.SIGTERM
    assert not any(alive(pid) for pid in (first, second))


def test_a_worker_that_dies_stops_the_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tb.db'}"
    served = Workers(url, tmp_path / "serve.log", 2)
    first, second = served.workers()
    os.kill(first, signal.SIGKILL)
    assert served.process.wait(DEADLINE) == 1
    assert not alive(second)
    assert "a worker stopped on its own" in (tmp_path / "serve.log").read_text()


def serve_refused(url: str, workers: str = "2") -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    command = [sys.executable, "-m", "threadbox", "--url", url, "serve", "--workers", workers]
    command += ["--port", str(free_port())]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def test_workers_refuse_a_sqlite_file_not_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "tb.db"
    with threadbox.open(f"sqlite:///{path}") as mailbox:
        mailbox.deliver("t", [Message.user("kept")])
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    refused = serve_refused(f"sqlite:///{path}")
    assert refused.returncode == 2, refused.stderr
    assert "WAL mode" in refused.stderr and "'delete'" in refused.stderr
    with sqlite3.connect(path) as conn:  # left as it was
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_workers_refuse_a_memory_store() -> None:
    refused = serve_refused("memory://")
    assert refused.returncode == 2, refused.stderr
    assert "memory:// is private to each process" in refused.stderr


def test_workers_must_be_a_positive_number(tmp_path: Path) -> None:
    path = tmp_path / "tb.db"
    refused = serve_refused(f"sqlite:///{path}", workers="0")
    assert refused.returncode == 2, refused.stderr
    assert "--workers: Input should be greater than 0" in refused.stderr
    assert not path.exists()  # refused before anything was created
