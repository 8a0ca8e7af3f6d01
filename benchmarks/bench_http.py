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
import http.client
import os
import shutil
import signal
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
import threadbox
from common import DEFAULT_PG, console, own_store, rows_table, write_results
from threadbox import Mailbox, Message

NOISE = (
    "Rates are medians of interleaved windows: other processes on the machine (2 cores shared "
    "with other work here) move single figures a lot; compare ratios of one run."
)
PER_THREAD = 200  # deliveries per conversation before a client moves to a new one
TEXT = "Please summarise the attached report and list the three most important risks. " * 3


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def library_window(mailbox: Mailbox, seconds: float, tag: str) -> tuple[float, float]:
    """Delivers per second from this thread calling the library for ``seconds``, and the CPU
    milliseconds per call of this thread."""
    done, end = 0, time.monotonic() + seconds
    began, cpu = time.monotonic(), time.thread_time()
    while time.monotonic() < end:
        mailbox.deliver(f"lib-{tag}-{done // PER_THREAD}", [Message.user(TEXT)])
        done += 1
    return done / (time.monotonic() - began), 1000 * (time.thread_time() - cpu) / done


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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and of its children still running, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    children = f"/proc/{pid}/task/{pid}/children"
    pids = [pid]
    if os.path.exists(children):
        pids += [int(c) for c in Path(children).read_text().split()]
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def client(port: int, name: str, end: float, counts: list[int], index: int) -> None:
    """One keep-alive connection delivering until ``end``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    done = 0
    while time.monotonic() < end:
        thread = f"{name}-{done // PER_THREAD}"
        body = orjson.dumps(
            {"messages": [{"role": "user", "content": [{"type": "text", "text": TEXT}]}]}
        )
        conn.request("POST", f"/v1/threads/{thread}/messages", body, headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 201:
            raise RuntimeError(f"deliver answered {answer.status}")
        done += 1
    conn.close()
    counts[index] = done


def http_window(served: Served, reader: Mailbox, seconds: float, clients: int) -> dict[str, Any]:
    """Delivers per second through the server from ``clients`` keep-alive clients for
    ``seconds``, then how long the views took to catch up once the load stopped."""
    tag = uuid.uuid4().hex[:8]
    counts = [0] * clients
    cpu_before = cpu_seconds(served.process.pid)
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
    stopped = time.monotonic()
    lag_at_stop = reader.views.status().lag
    while (lag := reader.views.status().lag) > 0 and time.monotonic() - stopped < 30:
        time.sleep(0.01)
    caught_up = time.monotonic() - stopped
    cpu = cpu_seconds(served.process.pid) - cpu_before
    return {
        "rate": sum(counts) / elapsed,
        "lag_at_stop": lag_at_stop,
        "lag_after": lag,
        "catch_up_seconds": caught_up,
        "server_cpu_ms_per_request": 1000 * cpu / max(1, sum(counts)),
    }


def start_profile(
    pid: int, path: str, seconds: float, subprocesses: bool
) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` for ``seconds`` into ``path`` (a flame graph SVG, or
    speedscope JSON when ``path`` ends in .json)."""
    spy = shutil.which("py-spy")
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
    libs: list[tuple[float, float]] = []
    windows: list[dict[str, Any]] = []
    with (
        own_store(url, "bench_lib") as lib_url,
        own_store(url, "bench_http") as http_url,
        threadbox.open(lib_url) as mailbox,
    ):
        tag = uuid.uuid4().hex[:8]
        mailbox.deliver(f"warm-{tag}", [Message.user(TEXT)])
        served = Served.start(http_url, workers)
        reader = threadbox.open(http_url)  # reads the views' lag
        try:
            client(served.port, f"warm-{tag}", time.monotonic() + 1, [0], 0)
            for n in range(rounds):
                libs.append(library_window(mailbox, seconds, f"{tag}-{n}"))
                progress(f"  round {n + 1}/{rounds}: library, one thread: {libs[-1][0]:,.0f}/s")
                spy = None
                if profile and n == rounds - 1:
                    spy = start_profile(served.process.pid, profile, seconds, workers > 1)
                windows.append(http_window(served, reader, seconds, clients))
                progress(
                    f"  round {n + 1}/{rounds}: HTTP, {clients} clients, {workers} worker(s): "
                    f"{windows[-1]['rate']:,.0f}/s"
                )
                if spy is not None:
                    spy.wait(seconds + 30)
            verified = reader.views.verify().ok
        finally:
            reader.close()
            served.stop()
    library = statistics.median(r for r, _ in libs)
    rate = statistics.median(w["rate"] for w in windows)
    return {
        "library_rate": library,
        "library_cpu_ms_per_call": statistics.median(c for _, c in libs),
        "rate": rate,
        "ratio": rate / library,
        "server_cpu_ms_per_request": statistics.median(
            w["server_cpu_ms_per_request"] for w in windows
        ),
        "lag_at_stop": max(w["lag_at_stop"] for w in windows),
        "catch_up_seconds": max(w["catch_up_seconds"] for w in windows),
        "lag_after": max(w["lag_after"] for w in windows),
        "verify_ok": verified,
        "rounds": {"library": libs, "http": windows},
    }


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
