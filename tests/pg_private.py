"""A private PostgreSQL server: initdb'd in a temp dir, on a free port, started and stopped by us.

Tests and benchmarks that restart PostgreSQL or cut its connections use one of these, never a
server they did not start. The installed binaries are used (``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/*/bin``, ``pg_config --bindir`` or ``PATH``; ``THREADBOX_PG_BIN`` names the
directory explicitly). PostgreSQL refuses to run as root, so when we are root the binaries run as
the ``postgres`` OS user (``runuser``), owning the temp dir; otherwise they run as we are.

``pytest-postgresql``'s process fixture does the same but has no way to run the binaries as
another OS user (its maintainers leave that to the container), so as root it cannot start.

Benchmarks import this module too (``benchmarks/load.py --restart-postgres``): it needs only the
standard library and psycopg.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import cast

import psycopg
from psycopg import sql

SERVER_USER = "postgres"  # the OS user the server runs as when we are root
START_ATTEMPTS = 3  # a free port may be taken between finding it and binding it
COMMAND_TIMEOUT = 120  # seconds; pg_ctl itself gives up waiting after 60


class PrivateServerUnavailable(RuntimeError):
    """The binaries or the OS user a private server needs are missing here."""


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (the newest installed version)."""
    named = os.environ.get("THREADBOX_PG_BIN")
    candidates = [Path(named)] if named else []
    if not named:
        candidates += sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        pg_config = shutil.which("pg_config")
        if pg_config:
            found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            if found.returncode == 0:
                candidates.append(Path(found.stdout.strip()))
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(Path(initdb).parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl")):
            return directory
    where = named or "/usr/lib/postgresql/*/bin, pg_config --bindir or PATH"
    raise PrivateServerUnavailable(
        f"no PostgreSQL server binaries (initdb, pg_ctl) in {where}: install the PostgreSQL "
        "server package, or name their directory in THREADBOX_PG_BIN"
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that no one listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """One PostgreSQL server of our own. Trust authentication, user ``postgres``, listening on
    127.0.0.1 only (and a socket in its own directory)."""

    def __init__(self, root: Path, binaries: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.binaries = binaries
        self.port = 0
        self._as_server_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PrivateServerUnavailable(
                    f"running as root and there is no {SERVER_USER!r} OS user to run PostgreSQL "
                    "as (initdb and pg_ctl refuse root)"
                ) from None
            os.chown(root, owner.pw_uid, owner.pw_gid)
            self._as_server_user = ["runuser", "-u", SERVER_USER, "--"]

    def url(self, database: str = "postgres") -> str:
        """A libpq (and threadbox) URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, check: bool = True) -> int:
        """Run one of the server's binaries (as the server's OS user); its exit status. With
        ``check``, a failure raises with its output and the end of the server log."""
        command = [*self._as_server_user, str(self.binaries / tool), *args]
        done = subprocess.run(
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join([tool, *args])} failed ({done.returncode}): {done.stderr.strip()}\n"
                f"server log (end): {log}"
            )
        return done.returncode

    def initdb(self) -> None:
        """Make the cluster: superuser ``postgres``, trust authentication."""
        self._run(
            "initdb",
            *("--pgdata", str(self.data), "--username", "postgres", "--auth", "trust"),
            *("--encoding", "UTF8", "--no-sync"),
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{self.root}'"
        )

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "--pgdata", str(self.data), "--wait", *args)

    def start(self) -> None:
        """Start the server and wait until it accepts connections (on a free port the first
        time; later starts keep that port). The server writes to its log file: without
        ``--log`` it would write to pg_ctl's output, a pipe we would wait on forever."""
        for attempt in range(START_ATTEMPTS):
            fresh = self.port == 0
            if fresh:
                self.port = free_port()
            try:
                self._pg_ctl("start", "--log", str(self.log), "--options", self._options())
                return
            except RuntimeError:
                if not fresh or attempt == START_ATTEMPTS - 1:
                    raise
                self.port = 0  # the port was taken meanwhile: try another

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut, not awaited)."""
        self._pg_ctl("stop", "--mode", "fast")

    def restart(self) -> None:
        """Stop (fast) and start again on the same port; return once it accepts connections."""
        log, options = str(self.log), self._options()
        self._pg_ctl("restart", "--mode", "fast", "--log", log, "--options", options)

    def running(self) -> bool:
        """Is the server up (``pg_ctl status``)?"""
        return self._run("pg_ctl", "status", "--pgdata", str(self.data), check=False) == 0

    def started_at(self) -> datetime:
        """When the server (postmaster) last started."""
        with psycopg.connect(self.url()) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert row is not None
        return cast(datetime, row[0])

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending the connections still open to it."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    """A started private server, stopped and deleted on exit (whatever state it is in)."""
    binaries = find_binaries()
    root = Path(tempfile.mkdtemp(prefix="threadbox-pg-"))
    try:
        server = PrivateServer(root, binaries)
        server.initdb()
        server.start()
        try:
            yield server
        finally:
            if server.running():
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
