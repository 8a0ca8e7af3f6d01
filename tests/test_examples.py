"""The examples in examples/ run as written: the asyncio agent loop, the FastAPI app, and the
exactly-once downstream consumer (killed mid-way and restarted)."""

from __future__ import annotations

import asyncio
import importlib.util
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import threadbox
from threadbox import Message

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up
    spec.loader.exec_module(module)
    return module


def aio_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("threadbox-aio")]


# ---- (a) the asyncio agent loop ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_agent_loop_steers_queues_interrupts_and_rolls_back(store_url: str) -> None:
    visible, hidden = asyncio.run(example("agent_loop").conversation(store_url))
    # run 1 reads the first message, is steered once, and ends; the queued message starts
    # run 2, which is steered, then interrupted: its one reply is rolled back (hidden), its
    # reply to the steer never written; run 3 answers the interrupting message.
    assert visible == [
        "Plan a trip to Lisbon",
        "You said: Plan a trip to Lisbon",
        "Make it 3 days",
        "You said: Make it 3 days",
        "Then book a hotel",
        "A cheap one",
        "Cancel that, find flights",
        "You said: Cancel that, find flights",
    ]
    assert hidden == ["You said: Then book a hotel"]
    assert aio_threads() == []


def test_agent_loop_runs_as_a_script() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "agent_loop.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "(hidden) You said: Then book a hotel" in done.stdout
    assert done.stdout.strip().splitlines()[-1].endswith("You said: Cancel that, find flights")


# ---- (b) the FastAPI app ------------------------------------------------------------------------


def test_fastapi_app_embeds_an_async_mailbox(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    url = f"sqlite:///{tmp_path / 'chat.db'}"
    app = example("fastapi_app").create_app(url)
    with TestClient(app) as client:  # the lifespan opens the mailbox
        assert client.get("/threads/t/messages").status_code == 404
        said = client.post("/threads/t/messages", json={"text": "hello"})
        assert said.status_code == 202
        assert client.post("/threads/t/messages", json={"text": ""}).status_code == 422
        client.post("/threads/t/messages", json={"text": "also", "steer": True})
        with threadbox.open(url) as mb:  # the agent, elsewhere, starts a run
            mb.freeze("t", "new_run", "r1")
        assert client.get("/threads/t/messages").json() == [
            {"role": "user", "text": "hello"},
            {"role": "user", "text": "also"},
        ]
        events = client.get("/threads/t/events").json()
        assert [e["type"] for e in events] == [
            "ThreadOpened",
            "MessagesDelivered",
            "MessagesDelivered",
            "RunStarted",
            "PendingMessagesFrozen",
        ]
        last = events[-1]["version"]
        assert client.get(f"/threads/t/events?after_version={last}").json() == []

        def answer() -> None:
            time.sleep(0.3)
            with threadbox.open(url) as mb:
                mb.commit_output("t", "r1", [Message.assistant("hi")])

        writer = threading.Thread(target=answer)
        writer.start()
        waited = client.get(f"/threads/t/events?after_version={last}&wait=30").json()
        writer.join()
        assert [(e["version"], e["type"]) for e in waited] == [(last + 1, "RunOutputCommitted")]
    assert aio_threads() == []  # the lifespan closed it


# ---- (c) the exactly-once consumer --------------------------------------------------------------


def write_events(url: str, count: int) -> None:
    """Another process: ``count`` deliveries over five threads."""
    with threadbox.open(url) as mb:
        for n in range(count):
            mb.deliver(f"t{n % 5}", [Message.user(str(n))])


def consumed(path: Path) -> list[str]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            rows = db.execute("SELECT position FROM consumed ORDER BY rowid").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
    return [row[0] for row in rows]


def start_consumer(url: str, path: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(EXAMPLES / "consumer.py"), url, str(path), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_consumer_killed_mid_way_and_restarted_takes_every_event_once(
    store_url: str, tmp_path: Path
) -> None:
    own = tmp_path / "consumer.db"
    with threadbox.open(store_url) as mb:
        mb.deliver("t0", [Message.user("before")])
    writer = multiprocessing.get_context("spawn").Process(
        target=write_events, args=(store_url, 300)
    )
    writer.start()
    first = start_consumer(store_url, own, "--idle", "60", "--slow", "0.005")
    try:
        deadline = time.monotonic() + 120
        while len(consumed(own)) < 60 and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)  # mid-way: no chance to finish anything
        first.wait(30)
        killed_at = len(consumed(own))
    finally:
        if first.poll() is None:
            first.kill()
        writer.join(240)
    assert writer.exitcode == 0
    with threadbox.open(store_url) as mb:
        expected = 5 + 301  # five threads opened, 301 deliveries
        log = [item.position for item in mb.follow(limit=expected + 1, timeout=2)]
    assert len(log) == expected
    assert 60 <= killed_at < len(log)

    second = start_consumer(store_url, own, "--idle", "1.5")
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err
    assert out.strip() == f"took {len(log) - killed_at} events"
    assert consumed(own) == log  # every event once, in commit order
    assert os.path.getsize(own) > 0


def test_the_docs_async_loop_is_the_examples() -> None:
    """docs/embedding.md shows the loop of examples/agent_loop.py (where the model is a
    parameter): the same body, so the page cannot drift from the tested example."""
    page = (ROOT / "docs" / "embedding.md").read_text()
    code = (EXAMPLES / "agent_loop.py").read_text()

    def body(text: str, start: str, end: str) -> list[str]:
        part = text.split(start, 1)[1].split(end, 1)[0]
        lines = part.replace("call_model(context)", "model(context)").splitlines()[2:]
        return [line for line in lines if line.strip()]

    shown = page.split("## The async agent loop")[1]
    assert body(shown, "async def drive", "async def serve") == body(
        code, "async def drive", "async def serve"
    )
