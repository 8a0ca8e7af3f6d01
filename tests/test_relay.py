"""The relay to NATS JetStream (API.md §7, ADR 0021): every event of the store on the stream
exactly once, in commit order; killed at random instants and restarted; across a restart of
NATS itself (a private nats-server: the machine's shared one is never restarted)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import threadbox
from nats_support import (
    SHARED_URL,
    PrivateNats,
    answers,
    delete_stream,
    read_stream,
)
from pg_private import free_port
from threadbox import Mailbox, Message
from threadbox.domain.values import DeliveryBoundary
from threadbox.relay import (
    PublishFailed,
    Relay,
    RelayConflict,
    RelayPositions,
    RelayProgress,
    RelayStatus,
    relay_positions,
    relay_status,
)


@pytest.fixture(scope="module")
def shared_nats() -> str:
    """The machine's NATS (CI starts it: .ci/run); its tests fail, never skip, without it."""
    if not answers(SHARED_URL):
        pytest.fail(f"no NATS server answers at {SHARED_URL} (THREADBOX_TEST_NATS; .ci/run)")
    return SHARED_URL


@pytest.fixture
def bus_names(shared_nats: str) -> Iterator[tuple[str, str]]:
    """A stream and a subject prefix of this test's own on the shared server, deleted after."""
    tag = uuid.uuid4().hex[:12]
    stream, prefix = f"TEST_{tag}", f"t{tag}"
    yield stream, prefix
    delete_stream(shared_nats, stream)


def thread_stream(thread_id: str) -> str:
    """The thread's stream id, computed here from the documented rule (UUIDv5, URL namespace)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "threadbox/threads/" + thread_id))


def write(mailbox: Mailbox, writer: str, rounds: int, threads: int = 4) -> None:
    """Deliveries, runs and outputs on a few threads: several event types."""
    for n in range(rounds):
        tid = f"{writer}-{n % threads}"
        mailbox.deliver(tid, [Message.user(f"{writer} {n}")])
        if n % 5 == 4:
            run = f"{writer}-r{n}"
            mailbox.freeze(tid, DeliveryBoundary.NEW_RUN, run)
            mailbox.commit_output(tid, run, [Message.assistant("ok")])
            mailbox.finish_run(tid, run)


def expected_ids(mailbox: Mailbox) -> set[str]:
    """Every event's message id, from each thread's own events (not the log the relay reads)."""
    found = set()
    for summary in mailbox.threads(limit=1000):
        for event in mailbox.watch(summary.thread_id):
            found.add(f"{thread_stream(summary.thread_id)}:{event.version}")
    return found


def wait_until(done: Callable[[], bool], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def check_exactly_once(mailbox: Mailbox, url: str, stream: str, prefix: str) -> None:
    """The stream holds every event of the store once, in commit order, as documented."""
    messages = read_stream(url, stream, f"{prefix}.>")
    ids = [m.msg_id for m in messages]
    assert len(ids) == len(set(ids)), "an event is on the stream twice"
    assert set(ids) == expected_ids(mailbox)
    log = list(mailbox.follow(""))
    assert [m.body["position"] for m in messages] == [item.position for item in log]
    for message, item in zip(messages, log, strict=True):
        stream_uuid = thread_stream(item.thread_id)
        assert message.subject == f"{prefix}.{stream_uuid}.{item.event.type}"
        assert message.msg_id == f"{stream_uuid}:{item.event.version}"
        assert message.body == {
            "position": item.position,
            "thread_id": item.thread_id,
            "version": item.event.version,
            "type": item.event.type,
            "timestamp": item.event.model_dump(mode="json")["timestamp"],
            "data": item.event.data,
        }


@contextmanager
def relaying(
    mailbox: Mailbox, url: str, stream: str, prefix: str, **options: object
) -> Iterator[None]:
    """``run_nats_relay`` in a thread for the block; its error, if any, is raised after it."""
    from threadbox.relay import run_nats_relay

    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_nats_relay(
                mailbox,
                url,
                stream=stream,
                subject_prefix=prefix,
                stop=stop,
                **options,  # type: ignore[arg-type]
            )
        except BaseException as error:
            failed.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    if failed:
        raise failed[0]


def caught_up(mailbox: Mailbox, name: str = "default") -> Callable[[], bool]:
    return lambda: relay_status(mailbox, name).lag == 0


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
def test_every_event_reaches_the_stream_once_in_commit_order_while_writers_write(
    mailbox: Mailbox, shared_nats: str, bus_names: tuple[str, str]
) -> None:
    stream, prefix = bus_names
    write(mailbox, "before", 30)  # a backlog, then writes while the relay runs
    with relaying(mailbox, shared_nats, stream, prefix, batch=16):
        writers = [threading.Thread(target=write, args=(mailbox, f"w{n}", 40)) for n in range(3)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        wait_until(caught_up(mailbox))
    check_exactly_once(mailbox, shared_nats, stream, prefix)
    status = relay_status(mailbox)
    assert (status.position, status.lag) == (mailbox.head(), 0)


def test_two_relay_names_keep_their_own_positions(
    tmp_path: Path, shared_nats: str, bus_names: tuple[str, str]
) -> None:
    stream, prefix = bus_names
    with threadbox.open(f"sqlite:///{tmp_path / 'a.db'}") as mailbox:
        write(mailbox, "w", 12)
        with relaying(mailbox, shared_nats, stream, prefix, name="first"):
            wait_until(caught_up(mailbox, "first"))
        assert relay_status(mailbox, "first").lag == 0
        assert relay_status(mailbox, "second").position == ""
        assert relay_status(mailbox, "second").lag == len(list(mailbox.follow("")))


class FlakyBus:
    """A ``Publisher`` that acknowledges the first ``acked`` items of its first batch and then
    fails; afterwards it takes everything. It records what it held (duplicates dropped by id)."""

    def __init__(self, acked: int) -> None:
        self.acked = acked
        self.held: list[str] = []
        self.calls = 0

    def publish(self, batch: list[threadbox.LogItem]) -> int:
        self.calls += 1
        fresh = [i for i in batch if i.position not in self.held]
        if self.calls == 1:
            self.held += [i.position for i in batch[: self.acked]]
            raise PublishFailed("bus down", acked=self.acked)
        self.held += [i.position for i in fresh]
        return len(batch) - len(fresh)

    def close(self) -> None:
        return None


def test_a_failed_batch_saves_the_acknowledged_part_and_retries_the_rest(tmp_path: Path) -> None:
    with threadbox.open(f"sqlite:///{tmp_path / 'a.db'}") as mailbox:
        write(mailbox, "w", 10)
        log = [item.position for item in mailbox.follow("")]
        bus = FlakyBus(acked=3)
        positions = relay_positions(mailbox)
        stop = threading.Event()
        seen: list[int] = []

        def progress(done: RelayProgress) -> None:
            seen.append(done.events)
            if done.total == len(log):
                stop.set()

        relay = Relay(mailbox, bus, positions, batch=5, on_batch=progress, max_pause=0.01)
        assert relay.run(stop) == len(log)
        assert bus.held == log
        assert seen[0] == 3  # the acknowledged part of the failed batch, saved
        assert relay.failures == 1
        assert positions.position("default") == log[-1]
        positions.close()


class StalePositions:
    """Positions read before another relay of the same name saved (it reads ``""``)."""

    def __init__(self, real: RelayPositions) -> None:
        self.real = real

    def position(self, name: str) -> str:
        return ""

    def save(self, name: str, previous: str, position: str) -> bool:
        return self.real.save(name, previous, position)

    def close(self) -> None:
        return None


class AcceptingBus:
    def publish(self, batch: list[threadbox.LogItem]) -> int:
        return 0

    def close(self) -> None:
        return None


def test_a_second_relay_with_the_same_name_is_refused(tmp_path: Path) -> None:
    with threadbox.open(f"sqlite:///{tmp_path / 'a.db'}") as mailbox:
        write(mailbox, "w", 3)
        positions = relay_positions(mailbox)
        first = next(iter(mailbox.follow(""))).position
        assert positions.save("default", "", first)  # the other relay saved first
        relay = Relay(mailbox, AcceptingBus(), StalePositions(positions))
        with pytest.raises(RelayConflict):
            relay.run()
        assert positions.position("default") == first  # nothing written
        positions.close()


RELAY_COMMAND = [sys.executable, "-m", "threadbox"]


def start_relay(store_url: str, nats_url: str, stream: str, prefix: str) -> subprocess.Popen[str]:
    command = [*RELAY_COMMAND, "--url", store_url, "relay", nats_url]
    command += ["--stream", stream, "--subject-prefix", prefix, "--batch", "7"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_relay_killed_at_random_instants_leaves_every_event_once_on_the_stream(
    store_url: str, shared_nats: str, bus_names: tuple[str, str]
) -> None:
    stream, prefix = bus_names
    rng = random.Random()
    with threadbox.open(store_url) as mailbox:
        writer = threading.Thread(target=write, args=(mailbox, "during", 150))
        writer.start()
        kills = 0
        for round in range(5):
            write(mailbox, f"round{round}", 40)  # work for several batches: it prints a line
            child = start_relay(store_url, shared_nats, stream, prefix)
            assert child.stdout is not None
            child.stdout.readline()  # the start line
            child.stdout.readline()  # a first batch published: the kill lands while it works
            time.sleep(rng.uniform(0.0, 0.15))
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += child.returncode == -signal.SIGKILL
        writer.join()
        assert kills == 5
        child = start_relay(store_url, shared_nats, stream, prefix)
        try:
            assert child.stdout is not None
            assert "events to publish" in child.stdout.readline()  # SIGTERM is handled now
            wait_until(caught_up(mailbox))
        finally:
            child.send_signal(signal.SIGTERM)
            out, _ = child.communicate(timeout=60)
        assert child.returncode == 0, out
        assert "stopped:" in out
        check_exactly_once(mailbox, shared_nats, stream, prefix)


@pytest.mark.slow
def test_relay_survives_a_restart_of_nats(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "nats")
    server.start()
    stream, prefix = "RESTARTED", "restarted"
    try:
        with threadbox.open(f"sqlite:///{tmp_path / 'a.db'}") as mailbox:
            write(mailbox, "before", 40)
            with relaying(mailbox, server.url, stream, prefix, batch=10):
                wait_until(caught_up(mailbox))
                server.stop()
                write(mailbox, "while-down", 40)  # written while NATS is down
                time.sleep(1.5)  # the relay fails to publish, retries
                server.start()
                write(mailbox, "after", 40)
                wait_until(caught_up(mailbox))
            check_exactly_once(mailbox, server.url, stream, prefix)
    finally:
        server.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAY_COMMAND, *args], capture_output=True, text=True, timeout=120)


def test_relay_command_refuses_bad_input_and_missing_things(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    gone = run_cli("--url", missing, "relay", SHARED_URL)
    assert (gone.returncode, gone.stderr.split(":")[0]) == (1, "error [store_not_found]")
    assert not (tmp_path / "none.db").exists()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with threadbox.open(url) as mailbox:
        write(mailbox, "w", 2)
    bad = run_cli("--url", url, "relay", SHARED_URL, "--stream", "a.b")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error [invalid_input]: stream 'a.b'")
    status = run_cli("--url", url, "relay-status", "--name", "n1", "--json")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    # two threads opened, one delivery each: four events, none published by "n1"
    assert (found["name"], found["position"], found["lag"]) == ("n1", "", 4)


def test_relay_command_without_a_bus_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with threadbox.open(url) as mailbox:
        write(mailbox, "w", 1)
    nowhere = f"nats://127.0.0.1:{free_port()}"
    down = run_cli("--url", url, "relay", nowhere)
    assert down.returncode == 1
    assert f"error [bus_unavailable]: cannot connect to NATS at {nowhere}" in down.stderr
    assert relay_status_of(url).position == ""


def relay_status_of(url: str) -> RelayStatus:
    with threadbox.open(url) as mailbox:
        return relay_status(mailbox)
