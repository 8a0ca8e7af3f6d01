"""Fixtures shared by the whole suite: one mailbox per test on each backend.

PostgreSQL tests use a schema of their own (dropped afterwards), so tests never see each
other's events. ``THREADBOX_TEST_PG`` overrides the server URL (default: the local one).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import threadbox
from psycopg import sql
from threadbox import Mailbox

PG_URL = os.environ.get("THREADBOX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_CONNINFO = "host=127.0.0.1 port=5432 dbname=test user=postgres"
BACKENDS = ["memory", "sqlite", "postgres"]


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL for ``backend`` (override it with a parametrize of "backend")."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'threadbox.db'}"
    else:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        yield f"{PG_URL}?schema={schema}"
        drop_schema(schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mailbox(store_url: str) -> Iterator[Mailbox]:
    with threadbox.open(store_url) as mb:
        yield mb
