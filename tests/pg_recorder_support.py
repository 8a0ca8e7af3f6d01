"""What the PostgreSQL commit-order tests share: a schema of their own, recorders, events, and
the committed rows read directly (the expected answers, independent of the recorder's reads)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from conftest import PG_URL, drop_schema
from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from psycopg import sql
from threadbox.infrastructure.pg_recorder import RECORDER_TOPIC
from threadbox.infrastructure.store import StoreLocation, ensure_pg_schema

TABLE = "stored_events"
WAIT = 120.0  # how long a wait may last before the test fails (liveness, not speed)

Key = tuple[uuid.UUID, int]  # (stream, version)


@contextmanager
def own_location() -> Iterator[StoreLocation]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    found = StoreLocation.parse(f"{PG_URL}?schema={schema}&pool_size=2&max_overflow=12")
    ensure_pg_schema(found)
    try:
        yield found
    finally:
        drop_schema(schema)


def recorder_env(location: StoreLocation, topic: str | None = RECORDER_TOPIC) -> dict[str, str]:
    """eventsourcing's settings for ``location``: this recorder, or (``None``) the library's."""
    env = dict(location.pg_env)
    if topic is not None:
        env["APPLICATION_RECORDER_TOPIC"] = topic
    return env


@contextmanager
def opened(env: dict[str, str]) -> Iterator[Any]:
    """The application recorder eventsourcing's factory makes from ``env`` (tables created)."""
    factory = InfrastructureFactory.construct(env)
    try:
        yield factory.application_recorder()
    finally:
        factory.close()


def settled(recorder: Any) -> Any:
    """``recorder`` once every committed event is readable: transactions anywhere on the server
    (other tests, other clients) hold the bound down while they run, so a read right after a
    write may not reach it yet."""
    deadline = time.monotonic() + WAIT
    while recorder.head() != recorder.committed_head():
        assert time.monotonic() < deadline, "the committed events never became readable"
        time.sleep(0.01)
    return recorder


def event(stream: uuid.UUID, version: int, topic: str = "test:Event") -> StoredEvent:
    """An event of the shape threadbox stores: a ~300-byte JSON state."""
    state = b'{"stream":"%s","version":%d,"text":"%s"}' % (stream.hex.encode(), version, b"x" * 240)
    return StoredEvent(originator_id=stream, originator_version=version, topic=topic, state=state)


def stored_rows(location: StoreLocation) -> dict[Key, tuple[int, int]]:
    """Every committed row, read directly: (stream, version) -> (transaction, notification id)."""
    statement = sql.SQL(
        "SELECT originator_id, originator_version, transaction_id::text, notification_id FROM {}.{}"
    ).format(sql.Identifier(location.pg_schema), sql.Identifier(TABLE))
    with psycopg.connect(location.pg_conninfo) as conn:
        rows = conn.execute(statement).fetchall()
    return {(stream, version): (int(tx), nid) for stream, version, tx, nid in rows}


def assert_versions_in_order(keys: Sequence[Key]) -> None:
    versions: dict[uuid.UUID, list[int]] = defaultdict(list)
    for stream, version in keys:
        versions[stream].append(version)
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"stream {stream} came as {seen}"
