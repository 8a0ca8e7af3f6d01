"""A store that cannot be used answers 503 ``store_unavailable`` with ``Retry-After``, at once, and
``/healthz`` says whether the store can be written (ADR 0015): a read-only SQLite mount, a
stopped PostgreSQL (the suite's private server, never the machine's), and PostgreSQL connections
cut under a running service (only the connections of a database this test created).

Timeouts here are hang guards (``pytest.mark.timeout``), not speed assertions.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import threadbox
from fastapi.testclient import TestClient
from pg_private import PrivateServer, free_port
from psycopg.conninfo import conninfo_to_dict
from threadbox.domain.claims import MESSAGE, ClaimKey
from threadbox.errors import StoreUnavailable
from threadbox.infrastructure.cli import build_cli
from threadbox.infrastructure.faults import unavailability
from threadbox.infrastructure.http import create_app
from typer.testing import CliRunner

T = "/v1/threads/t1"
HANG_GUARD = 60  # seconds: a request that does not return fails the test instead of the suite


def user(text: str, message_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": text}]}
    if message_id:
        body["id"] = message_id
    return body


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "store_unavailable"
    assert int(response.headers["retry-after"]) >= 1


# ---- SQLite on a read-only mount -------------------------------------------------------------


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A folder and a read-only bind mount of it (needs root: skipped where mounting is not
    allowed)."""
    folder, view = tmp_path / "rw", tmp_path / "ro"
    folder.mkdir()
    view.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", str(folder), str(view)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield folder, view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)


@pytest.mark.timeout(HANG_GUARD)
def test_a_read_only_sqlite_store_answers_503_store_unavailable_and_healthz_says_not_writable(
    read_only_view: tuple[Path, Path],
) -> None:
    folder, view = read_only_view
    # The writer keeps the file's WAL index open, so the read-only side can open it.
    with threadbox.open(f"sqlite:///{folder / 'tb.db'}") as writer:
        writer.deliver("t1", [threadbox.Message.user("before", id="m0")])
        position = writer.store.last_position()
        with (
            threadbox.open(f"sqlite:///{view / 'tb.db'}") as read_only,
            TestClient(create_app(read_only)) as client,
        ):
            refused = client.post(f"{T}/messages", json={"messages": [user("no", "m1")]})
            assert_unavailable(refused)
            assert "readonly" in refused.json()["detail"]
            assert refused.json()["reason"] in refused.json()["detail"]

            pending = client.get(f"{T}/pending")  # reads still work
            assert [e["message"]["id"] for e in pending.json()["entries"]] == ["m0"]

            health = client.get("/healthz")
            assert_unavailable(health)
            assert (health.json()["readable"], health.json()["writable"]) == (True, False)
            head = client.head("/healthz")
            assert (head.status_code, head.content) == (503, b"")
        assert writer.store.last_position() == position  # nothing was written


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of our own (needs root: skipped where mounting is not allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.mark.timeout(HANG_GUARD)
def test_a_full_disk_is_503_store_unavailable_and_healthz_not_writable_until_a_write_succeeds(
    small_disk: Path,
) -> None:
    filler = small_disk / "filler"
    with (
        threadbox.open(f"sqlite:///{small_disk / 'tb.db'}") as mailbox,
        TestClient(create_app(mailbox)) as client,
    ):
        assert client.post(f"{T}/messages", json={"messages": [user("a", "m0")]}).status_code == 201
        stat = os.statvfs(small_disk)
        filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 300_000))
        big = "x" * 100_000
        answers = [
            client.post(f"{T}/messages", json={"messages": [user(big, f"big-{n}")]})
            for n in range(8)
        ]
        refused = [a for a in answers if a.status_code != 201]
        assert refused, "the disk never filled"
        for answer in refused:
            assert_unavailable(answer)
            assert "full" in answer.json()["detail"]
        health = client.get("/healthz")
        assert_unavailable(health)
        assert (health.json()["readable"], health.json()["writable"]) == (True, False)
        filler.unlink()
        again = client.post(f"{T}/messages", json={"messages": [user("after", "m9")]})
        assert again.status_code == 201, again.text
        assert client.get("/healthz").status_code == 200  # a write succeeded: writable again


@pytest.mark.timeout(HANG_GUARD)
def test_healthz_answers_get_and_head_when_the_store_can_be_written(tmp_path: Path) -> None:
    with (
        threadbox.open(f"sqlite:///{tmp_path / 'tb.db'}") as mailbox,
        TestClient(create_app(mailbox)) as client,
    ):
        health = client.get("/healthz")
        assert health.status_code == 200
        assert (health.json()["store"], health.json()["writable"]) == ("sqlite", True)
        head = client.head("/healthz")
        assert (head.status_code, head.content) == (200, b"")


def test_only_errors_of_the_database_itself_count_as_unavailability(tmp_path: Path) -> None:
    import sqlite3

    connection = sqlite3.connect(tmp_path / "x.db")
    try:
        with pytest.raises(sqlite3.OperationalError) as missing:
            connection.execute("SELECT * FROM no_such_table")
    finally:
        connection.close()
    assert unavailability(missing.value) is None  # a defect: stays a 500 with its traceback
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert unavailability(locked) == "SQLite: database is locked"
    assert unavailability(psycopg.OperationalError("connection refused")) is not None
    assert unavailability(ValueError("x")) is None


# ---- PostgreSQL stopped ----------------------------------------------------------------------


@pytest.mark.timeout(HANG_GUARD * 2)
def test_a_stopped_postgresql_answers_503_store_unavailable_and_service_resumes_once_it_is_back(
    private_postgres: PrivateServer, private_database: str
) -> None:
    with (
        threadbox.open(private_database) as mailbox,
        TestClient(create_app(mailbox)) as client,
    ):
        created = client.post(f"{T}/messages", json={"messages": [user("before", "m0")]})
        assert created.status_code == 201
        assert client.get("/healthz").json()["writable"] is True
        private_postgres.stop()
        try:
            for n in range(3):  # the first meets dead pooled connections, the others none
                refused = client.post(f"{T}/messages", json={"messages": [user("x", f"m{n + 1}")]})
                assert_unavailable(refused)
            assert_unavailable(client.get(f"{T}/committed"))
            health = client.get("/healthz")
            assert_unavailable(health)
            assert (health.json()["readable"], health.json()["writable"]) == (False, False)
            with pytest.raises(StoreUnavailable):
                mailbox.deliver("t1", [threadbox.Message.user("python api too")])
        finally:
            private_postgres.start()
        deadline = time.monotonic() + 30  # the pool reconnects by itself: no restart of ours
        while True:
            again = client.post(f"{T}/messages", json={"messages": [user("after", "m9")]})
            if again.status_code == 201 or time.monotonic() > deadline:
                break
            assert_unavailable(again)
            time.sleep(0.5)
        assert again.status_code == 201, again.text
        ids = [e["message"]["id"] for e in client.get(f"{T}/pending").json()["entries"]]
        assert ids == ["m0", "m9"]  # nothing refused was written
        assert client.get("/healthz").status_code == 200


def test_a_postgresql_that_cannot_be_reached_at_open_is_store_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreUnavailable, match="PostgreSQL"):
        threadbox.open(url)
    result = CliRunner().invoke(build_cli({"THREADBOX_URL": url}), ["views", "status"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error [store_unavailable]: "), lines


# ---- PostgreSQL connections cut under a running service --------------------------------------


def terminate_other_connections(database_url: str) -> int:
    """End every connection to the test's own database but this one."""
    database = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


@pytest.mark.timeout(HANG_GUARD * 2)
def test_view_reads_carry_on_after_their_pooled_connections_are_terminated(
    private_database: str,
) -> None:
    run_id = f"r-{uuid.uuid4().hex[:8]}"
    with (
        threadbox.open(private_database) as mailbox,
        TestClient(create_app(mailbox)) as client,
    ):
        assert client.post(f"{T}/messages", json={"messages": [user("a", "m1")]}).status_code == 201
        frozen = client.post(f"{T}/freeze", json={"boundary": "new_run", "run_id": run_id})
        assert frozen.status_code == 200, frozen.text
        reads = [
            f"{T}/committed",
            f"{T}/runs",
            f"{T}/checkpoints",
            f"/v1/runs/{run_id}",
            "/healthz",
        ]
        for _ in range(3):
            for path in reads:
                assert client.get(path).status_code == 200
            assert terminate_other_connections(private_database) > 0
            for _ in range(6):  # more reads than pooled connections: each dead one is met
                for path in reads:
                    response = client.get(path)
                    assert response.status_code == 200, (path, response.text)
        committed = client.get(f"{T}/committed").json()["messages"]
        assert [m["message"]["id"] for m in committed] == ["m1"]
        assert client.get(f"/v1/runs/{run_id}").json()["status"] == "running"


@pytest.mark.timeout(HANG_GUARD * 2)
def test_id_table_lookups_carry_on_after_their_pooled_connections_are_terminated(
    private_database: str,
) -> None:
    with threadbox.open(private_database) as mailbox:
        mailbox.deliver("t1", [threadbox.Message.user("a", id="m1")])
        delivered = mailbox.store.load("t1")[-1].version  # the event that used m1
        keys = [ClaimKey(MESSAGE, "m1"), ClaimKey(MESSAGE, "m2")]
        assert mailbox.store.claimed("t1", keys) == {keys[0]: delivered}
        for _ in range(3):
            assert terminate_other_connections(private_database) > 0
            for _ in range(6):  # more lookups than pooled connections: each dead one is met
                assert mailbox.store.claimed("t1", keys) == {keys[0]: delivered}
