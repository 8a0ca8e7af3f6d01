"""``threadbox serve --workers N``: N server processes accepting on one listening socket.

The parent creates the store once, binds the socket, then starts N processes (``spawn``: of
the parent's state, connections and threads they inherit nothing but the socket). Each worker
opens its own mailbox on the store, runs its own views follower and serves the API on the shared
socket; the kernel hands each new connection to one of them. They share one store, so it must be
one that several processes may write: PostgreSQL, or a SQLite file in WAL mode (``memory://`` is
per process and is refused, as is a SQLite file in another journal mode).

SIGTERM or SIGINT to the parent is passed on to every worker, each stops gracefully as a single
server does, and the parent then ends by the same signal. A worker that dies on its own stops
the others: the parent exits with status 1 rather than serve with fewer workers than asked.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sqlite3
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from threadbox.errors import InvalidInput
from threadbox.infrastructure.config import Config
from threadbox.infrastructure.logs import configure_logging
from threadbox.infrastructure.store import StoreLocation

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("threadbox.serve")
STOP_TIMEOUT = 15.0  # seconds the parent waits for a worker's graceful stop before killing it


def check_shared_store(url: str) -> None:
    """Refuse a store that several processes cannot share: ``memory://`` (one per process), and
    a SQLite file whose journal mode is not WAL (readers and the writer would block each other,
    and the views' followers would see "database is locked")."""
    location = StoreLocation.parse(url)
    if location.kind == "memory":
        raise InvalidInput(
            "--workers needs a store the worker processes share: memory:// is private to each "
            "process; use PostgreSQL or a SQLite file",
            "workers",
        )
    if location.kind == "sqlite":
        mode = journal_mode(location.sqlite_path)
        if mode is not None and mode != "wal":
            raise InvalidInput(
                f"--workers needs the SQLite file in WAL mode; {location.sqlite_path} is in "
                f"journal mode {mode!r} (run `PRAGMA journal_mode=WAL` on it, or serve with "
                "one worker)",
                "workers",
            )


def journal_mode(path: str) -> str | None:
    """The journal mode of the SQLite file at ``path`` (None: no such file yet)."""
    if not Path(path).is_file():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    return str(row[0]).lower()


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every worker accepts on, bound and listening as uvicorn binds its own."""
    config = uvicorn.Config("threadbox:unused", host=host, port=port)
    sock = config.bind_socket()
    sock.set_inheritable(True)
    return sock


def serve_workers(session: Session, config: Config) -> None:
    """Run ``config.workers`` workers on one socket bound to ``config.host``:``config.port``
    until SIGTERM/SIGINT (then end by that signal) or until a worker dies (then exit 1)."""
    check_shared_store(config.url)
    with session.mailbox(config=config):
        pass  # the store (schema, tables, WAL) created once, before the workers race to
    check_shared_store(config.url)  # a new SQLite file: WAL now, or refused
    sock = listening_socket(config.host, config.port)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=run_worker, args=(config, sock), name=f"threadbox-worker-{n}")
        for n in range(1, config.workers + 1)
    ]
    received: list[int] = []
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        log.info("%d worker processes on %s:%d", config.workers, config.host, config.port)
        while not stopping.wait(0.2):
            if any(not w.is_alive() for w in workers):
                break
    finally:
        sock.close()
        stop_all(workers)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        signal.raise_signal(received[0])  # end as a single server does: by the signal
    dead = [f"{w.name} (exit {w.exitcode})" for w in workers if w.exitcode not in (0, None)]
    log.error("a worker stopped on its own: %s; stopped the others", ", ".join(dead) or "?")
    raise SystemExit(1)


def stop_all(workers: list[Any]) -> None:
    """SIGTERM every worker still running, wait for them, kill those that do not stop."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(STOP_TIMEOUT)
        if worker.is_alive():
            log.error("%s did not stop within %g s: killed", worker.name, STOP_TIMEOUT)
            worker.kill()
            worker.join()


def run_worker(config: Config, sock: socket.socket) -> None:
    """One worker process: its own mailbox and follower, serving on the inherited socket."""
    from .serve import serve_config
    from .session import Session

    configure_logging(config.log_format, config.log_level)
    serve_config(Session(env={}), config, sockets=[sock])
