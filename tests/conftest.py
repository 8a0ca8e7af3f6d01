"""Fixtures shared by the whole suite: one mailbox per test on each backend.

PostgreSQL tests use a schema of their own on the server ``THREADBOX_TEST_PG`` names (a
``postgresql://user@host:port/database`` URL; default ``postgresql://postgres@127.0.0.1:5432/test``),
dropped afterwards, so tests never see each other's events. Every connection the suite makes to
that server is derived from this one URL. Tests that restart PostgreSQL or cut its connections
use ``private_postgres``, a server of their own (``pg_private.py``), never that one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest
import threadbox
from pg_private import PrivateServer, PrivateServerUnavailable, private_server
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from threadbox import Mailbox

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SKIP_PRIVATE_PG = "THREADBOX_TEST_SKIP_PRIVATE_PG"  # "1": skip the tests that need one
BACKENDS = ["memory", "sqlite", "postgres"]


def _checked(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or parts.query or parts.fragment:
        raise pytest.UsageError(
            f"THREADBOX_TEST_PG={url!r}: expected postgresql://user@host:port/database "
            "(no query: each test adds the schema it uses)"
        )
    conninfo_to_dict(url)  # libpq's own check of the rest
    return url


PG_URL = _checked(os.environ.get("THREADBOX_TEST_PG", DEFAULT_PG_URL))


def pg_store_url(schema: str, base: str = PG_URL) -> str:
    """The threadbox store URL of ``schema`` on the server and database of ``base``."""
    return f"{base}?{urlencode({'schema': schema})}"


def pg_connect(base: str = PG_URL) -> psycopg.Connection[TupleRow]:
    """An autocommit connection to the database of ``base`` (the suite's server by default)."""
    return psycopg.connect(base, autocommit=True)


def drop_schema(schema: str) -> None:
    with pg_connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """The order is shuffled (pytest-randomly) and ``-q`` hides the header naming its seed: a
    failing run names it, so the order can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    if exitstatus != 0 and isinstance(seed, int):
        terminalreporter.write_line(
            f"tests ran in a shuffled order: --randomly-seed={seed} replays it"
        )


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL for ``backend`` (override it with a parametrize of "backend")."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'threadbox.db'}"
    else:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        yield pg_store_url(schema)
        drop_schema(schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mailbox(store_url: str) -> Iterator[Mailbox]:
    with threadbox.open(store_url) as mb:
        yield mb


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivateServer]:
    """A PostgreSQL server of the suite's own (temp dir, free port), for tests that restart it
    or cut its connections. Where the server binaries are missing the test fails, saying so,
    unless ``THREADBOX_TEST_SKIP_PRIVATE_PG=1`` explicitly skips it."""
    if os.environ.get(SKIP_PRIVATE_PG) == "1":
        pytest.skip(f"{SKIP_PRIVATE_PG}=1: no private PostgreSQL server")
    with ExitStack() as stack:
        try:
            server = stack.enter_context(private_server())
        except PrivateServerUnavailable as e:
            pytest.fail(f"{e} (or set {SKIP_PRIVATE_PG}=1 to skip the tests that need one)")
        yield server


@pytest.fixture
def private_database(private_postgres: PrivateServer) -> Iterator[str]:
    """A new database on the private server, running when the test starts; its URL. Dropped
    afterwards (the server is started again first if the test left it stopped)."""
    if not private_postgres.running():
        private_postgres.start()
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = private_postgres.create_database(name)
    yield url
    if not private_postgres.running():
        private_postgres.start()
    private_postgres.drop_database(name)
