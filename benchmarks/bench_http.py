"""HTTP deliver through `threadbox serve` vs the library call, one run, with the views kept.

    python benchmarks/bench_http.py [--url postgresql://postgres@127.0.0.1:5432/test]
                                    [--seconds 10] [--clients 4] [--workers 1] [--profile FILE]

(lib) one thread calling ``Mailbox.deliver`` (one ~240-character user message per call) on a
store of its own: the baseline. (http) ``threadbox serve`` (``--workers`` processes) on another
store of its own, and ``--clients`` threads each with one keep-alive connection POSTing the same
delivery (``/v1/threads/{id}/messages``); every client has conversations of its own (a new one
every 200 deliveries, as in the library loop). Windows of ``--seconds`` alternate, lib then http,
``--rounds`` times; medians are compared. The server's views follower runs all along; after each
HTTP window the views' lag (committed events not applied yet) is read every 10 ms until it is 0.
``--profile FILE`` records the server with py-spy (``pip install py-spy``; as root) during the
last HTTP window (a flame graph SVG, or speedscope JSON for a .json FILE).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import threadbox
from common import DEFAULT_PG, console, own_store, rows_table, write_results
from threadbox import Mailbox, Message
from threadbox.infrastructure.store import StoreLocation

NOISE = (
    "Rates are medians of interleaved windows: other processes on the machine (2 cores shared "
    "with other work here) move single figures a lot; compare ratios of one run."
)
PER_THREAD = 200  # deliveries per conversation before a client moves to a new one
TEXT = "Please summarise the attached report and list the three most important risks. " * 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def library_window(
    mailbox: Mailbox, conninfo: str | None, seconds: float, tag: str
) -> tuple[float, float, float | None]:
    """Delivers per second from this thread calling the library for ``seconds``, the CPU
    milliseconds per call of this thread, and of the PostgreSQL backends serving it."""
    backends = backend_pids(conninfo, [os.getpid()])
    backends_before = sum(_ticks(f"/proc/{b}/stat") for b in backends)
    done, end = 0, time.monotonic() + seconds
    began, cpu = time.monotonic(), time.thread_time()
    while time.monotonic() < end:
        mailbox.deliver(f"lib-{tag}-{done // PER_THREAD}", [Message.user(TEXT)])
        done += 1
    rate, mine = done / (time.monotonic() - began), 1000 * (time.thread_time() - cpu) / done
    spent = sum(_ticks(f"/proc/{b}/stat") for b in backends) - backends_before
    return rate, mine, 1000 * spent / done if backends else None


@dataclass
class Served:
    """``threadbox serve`` in a child process."""

    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, url: str, workers: int) -> Served:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
        env["THREADBOX_URL"] = url
        command = [sys.executable, "-m", "threadbox", "serve", "--port", str(port)]
        command += ["--log-level", "warning", "--workers", str(workers)]
        served = cls(subprocess.Popen(command, env=env), port)
        end = time.monotonic() + 60
        while True:
            if served.process.poll() is not None:
                raise RuntimeError("threadbox serve exited")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return served
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("threadbox serve did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def _ticks(path: str) -> float:
    """CPU seconds (user + system) in a /proc ``stat`` file; 0 once the task is gone."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(pid: int) -> list[int]:
    """``pid`` and its children (the workers of ``serve --workers N``)."""
    children = f"/proc/{pid}/task/{pid}/children"
    pids = [pid]
    if os.path.exists(children):
        pids += [int(c) for c in Path(children).read_text().split()]
    return pids


def task_cpu(pids: list[int]) -> dict[tuple[int, int], float]:
    """CPU seconds of every thread of ``pids``, by (pid, thread id)."""
    found: dict[tuple[int, int], float] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            found[(pid, int(tid))] = _ticks(f"/proc/{pid}/task/{tid}/stat")
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and of its children still running, from /proc."""
    return sum(_ticks(f"/proc/{each}/stat") for each in server_pids(pid))


def backend_pids(conninfo: str | None, pids: list[int]) -> list[int]:
    """The PostgreSQL backends serving connections of ``pids`` (matched by the client's TCP
    port; needs the server on this machine and /proc readable, as root). Empty when unknown."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        except OSError:
            continue
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    if not ports or conninfo is None:
        return []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (sorted(ports),)
        ).fetchall()
    return [int(r[0]) for r in rows]


def py_spy() -> str | None:
    """The py-spy command: on the PATH, or beside this Python (a virtualenv not activated)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))


def thread_names(pid: int) -> dict[int, str]:
    """Thread id -> Python thread name of ``pid``, from ``py-spy dump`` (empty without it)."""
    spy = py_spy()
    if spy is None:
        return {}
    dump = subprocess.run(
        [spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True
    )
    names: dict[int, str] = {}
    for match in re.finditer(r'Thread (0x[0-9A-Fa-f]+|\d+) \(\w+\): "([^"]*)"', dump.stdout):
        names[int(match.group(1), 0)] = match.group(2)
    return names


def request_bytes(port: int, thread: str, body: bytes) -> bytes:
    """One keep-alive POST of ``body`` to deliver to ``thread``, as sent on the wire."""
    head = (
        f"POST /v1/threads/{thread}/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one whole response (``Content-Length`` framed) from ``sock``; its status code.
    Bytes of the next response stay in ``buffer``."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    at = head.find(b"\r\ncontent-length:")
    length = int(head[at + 17 : head.index(b"\r\n", at + 2)]) if at >= 0 else 0
    whole = end + 4 + length
    while len(buffer) < whole:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    del buffer[:whole]
    return status


BODY = orjson.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": TEXT}]}]})


def client(port: int, name: str, end: float, counts: list[int], index: int) -> None:
    """One keep-alive connection delivering until ``end``: a raw socket sending request bytes
    built once per conversation, so the client's own CPU stays small (it shares the cores)."""
    done = 0
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = b""
        while time.monotonic() < end:
            if done % PER_THREAD == 0:
                request = request_bytes(port, f"{name}-{done // PER_THREAD}", BODY)
            sock.sendall(request)
            status = read_response(sock, buffer)
            if status != 201:
                raise RuntimeError(f"deliver answered {status}")
            done += 1
    counts[index] = done


def http_window(
    served: Served, reader: Mailbox, conninfo: str | None, seconds: float, clients: int
) -> dict[str, Any]:
    """Delivers per second through the server from ``clients`` keep-alive clients for
    ``seconds``, then how long the views took to catch up once the load stopped; the CPU
    each request cost the server (by thread, when py-spy can name them), the PostgreSQL
    backends serving it, and the clients."""
    tag = uuid.uuid4().hex[:8]
    counts = [0] * clients
    pids = server_pids(served.process.pid)
    backends = backend_pids(conninfo, pids)
    tasks_before = task_cpu(pids)
    backends_before = sum(_ticks(f"/proc/{b}/stat") for b in backends)
    client_before = time.process_time()
    began = time.monotonic()
    end = began + seconds
    threads = [
        threading.Thread(target=client, args=(served.port, f"c{n}-{tag}", end, counts, n))
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    client_cpu = time.process_time() - client_before
    stopped = time.monotonic()
    lag_at_stop = reader.views.status().lag
    while (lag := reader.views.status().lag) > 0 and time.monotonic() - stopped < 30:
        time.sleep(0.01)
    caught_up = time.monotonic() - stopped
    tasks_after = task_cpu(pids)
    backends_cpu = sum(_ticks(f"/proc/{b}/stat") for b in backends) - backends_before
    done = max(1, sum(counts))
    names: dict[int, str] = {}
    for pid in pids:
        names.update(thread_names(pid))
    by_thread: dict[str, float] = {}
    for key, after in tasks_after.items():
        name = names.get(key[1], "other")
        if name.startswith(("AnyIO worker", "threadbox-request")):
            name = "request threads"  # anyio's pool before ADR 0023, one-hop workers after
        spent = after - tasks_before.get(key, 0.0)
        by_thread[name] = by_thread.get(name, 0.0) + 1000 * spent / done
    return {
        "rate": sum(counts) / elapsed,
        "lag_at_stop": lag_at_stop,
        "lag_after": lag,
        "catch_up_seconds": caught_up,
        "server_cpu_ms_per_request": 1000 * sum(tasks_after.values()) / done
        - 1000 * sum(tasks_before.get(k, 0.0) for k in tasks_after) / done,
        "server_cpu_ms_by_thread": by_thread,
        "postgres_cpu_ms_per_request": 1000 * backends_cpu / done if backends else None,
        "client_cpu_ms_per_request": 1000 * client_cpu / done,
    }


def start_profile(
    pid: int, path: str, seconds: float, subprocesses: bool
) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` for ``seconds`` into ``path`` (a flame graph SVG, or
    speedscope JSON when ``path`` ends in .json)."""
    spy = py_spy()
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    form = "speedscope" if path.endswith(".json") else "flamegraph"
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
    command += ["--format", form, "--output", path, "--nonblocking"]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def measure(
    url: str,
    seconds: float,
    clients: int,
    workers: int = 1,
    profile: str | None = None,
    rounds: int = 3,
    progress: Callable[[str], None] = console.print,
) -> dict[str, Any]:
    """Library and HTTP windows of ``seconds`` each, interleaved ``rounds`` times (each on a
    store of its own); medians and the ratio of the medians."""
    libs: list[tuple[float, float, float | None]] = []
    windows: list[dict[str, Any]] = []
    with (
        own_store(url, "bench_lib") as lib_url,
        own_store(url, "bench_http") as http_url,
        threadbox.open(lib_url) as mailbox,
    ):
        location = StoreLocation.parse(url)
        conninfo = location.pg_conninfo if location.kind == "postgres" else None
        tag = uuid.uuid4().hex[:8]
        mailbox.deliver(f"warm-{tag}", [Message.user(TEXT)])
        served = Served.start(http_url, workers)
        reader = threadbox.open(http_url)  # reads the views' lag
        try:
            client(served.port, f"warm-{tag}", time.monotonic() + 1, [0], 0)
            for n in range(rounds):
                libs.append(library_window(mailbox, conninfo, seconds, f"{tag}-{n}"))
                progress(f"  round {n + 1}/{rounds}: library, one thread: {libs[-1][0]:,.0f}/s")
                spy = None
                if profile and n == rounds - 1:
                    spy = start_profile(served.process.pid, profile, seconds, workers > 1)
                windows.append(http_window(served, reader, conninfo, seconds, clients))
                progress(
                    f"  round {n + 1}/{rounds}: HTTP, {clients} clients, {workers} worker(s): "
                    f"{windows[-1]['rate']:,.0f}/s, server CPU "
                    f"{windows[-1]['server_cpu_ms_per_request']:.2f} ms/request"
                )
                if spy is not None:
                    spy.wait(seconds + 30)
            verified = reader.views.verify().ok
        finally:
            reader.close()
            served.stop()
    library = statistics.median(r for r, _, _ in libs)
    rate = statistics.median(w["rate"] for w in windows)
    threads = {name for w in windows for name in w["server_cpu_ms_by_thread"]}
    return {
        "library_rate": library,
        "library_cpu_ms_per_call": statistics.median(c for _, c, _ in libs),
        "library_postgres_cpu_ms_per_call": median_of([p for _, _, p in libs]),
        "rate": rate,
        "ratio": rate / library,
        "server_cpu_ms_per_request": statistics.median(
            w["server_cpu_ms_per_request"] for w in windows
        ),
        "server_cpu_ms_by_thread": {
            name: statistics.median(w["server_cpu_ms_by_thread"].get(name, 0.0) for w in windows)
            for name in sorted(threads)
        },
        "postgres_cpu_ms_per_request": median_of(
            [w["postgres_cpu_ms_per_request"] for w in windows]
        ),
        "client_cpu_ms_per_request": statistics.median(
            w["client_cpu_ms_per_request"] for w in windows
        ),
        "lag_at_stop": max(w["lag_at_stop"] for w in windows),
        "catch_up_seconds": max(w["catch_up_seconds"] for w in windows),
        "lag_after": max(w["lag_after"] for w in windows),
        "verify_ok": verified,
        "rounds": {"library": libs, "http": windows},
    }


def median_of(values: list[float | None]) -> float | None:
    """The median of the values known (None when none is)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_PG)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved windows of each")
    parser.add_argument("--profile", help="py-spy output of the server, last HTTP window")
    args = parser.parse_args()
    console.print(NOISE)
    result = measure(args.url, args.seconds, args.clients, args.workers, args.profile, args.rounds)
    rows = [
        ["library, 1 thread (median)", result["library_rate"], "", ""],
        [
            f"HTTP, {args.clients} clients, {args.workers} worker(s)",
            result["rate"],
            result["lag_at_stop"],
            f"{result['catch_up_seconds']:.3f}",
        ],
    ]
    header = ["deliver", "per second", "view lag at stop", "lag 0 after (s)"]
    console.print(rows_table("HTTP deliver vs library deliver", header, rows))
    console.print(
        f"HTTP / library = {result['ratio']:.2f} (target >= 0.8); views verify: "
        f"{result['verify_ok']}; lag 0 within 1 s: {result['catch_up_seconds'] <= 1.0}; "
        f"CPU per call: server {result['server_cpu_ms_per_request']:.2f} ms, library "
        f"{result['library_cpu_ms_per_call']:.2f} ms"
    )
    by_thread = ", ".join(
        f"{name} {value:.2f}"
        for name, value in result["server_cpu_ms_by_thread"].items()
        if value >= 0.005
    )
    console.print(f"server CPU ms per request by thread: {by_thread}")
    console.print(
        f"PostgreSQL backends' CPU per call: HTTP {ms(result['postgres_cpu_ms_per_request'])}, "
        f"library {ms(result['library_postgres_cpu_ms_per_call'])}; the clients' own CPU: "
        f"{ms(result['client_cpu_ms_per_request'])} per request (they share the cores)"
    )
    write_results(
        "bench_http",
        {
            "url": args.url,
            "seconds": args.seconds,
            "clients": args.clients,
            "workers": args.workers,
            **result,
        },
    )


if __name__ == "__main__":
    main()
