"""NATS for the relay tests: the machine's shared server (``THREADBOX_TEST_NATS``, default
``nats://127.0.0.1:4222``, never restarted), a private ``nats-server`` of a test's own (a free
port, its own ``-sd`` directory) for the tests that stop and start it, and reading a JetStream
stream back with a consumer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
from pg_private import free_port

SHARED_URL = os.environ.get("THREADBOX_TEST_NATS", "nats://127.0.0.1:4222")
NATS_SERVER = os.environ.get("THREADBOX_NATS_SERVER", "/usr/sbin/nats-server")


def answers(url: str, timeout: float = 2.0) -> bool:
    """Does a NATS server answer at ``url`` (its INFO line)?"""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 4222), timeout) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


class PrivateNats:
    """A nats-server with JetStream of our own: started, stopped and started again by the test
    (same port, same store directory)."""

    def __init__(self, store_dir: Path) -> None:
        binary = shutil.which(NATS_SERVER) or shutil.which("nats-server")
        if binary is None:
            raise RuntimeError(f"no nats-server at {NATS_SERVER} (THREADBOX_NATS_SERVER)")
        self.binary = binary
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        command += ["-sd", str(self.store_dir)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while not answers(self.url, 0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private nats-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None


@dataclass(frozen=True)
class BusMessage:
    """One message of the stream as a consumer received it."""

    subject: str
    msg_id: str
    body: dict[str, Any]


async def _read(url: str, stream: str, subjects: str) -> list[BusMessage]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        count = (await js.stream_info(stream)).state.messages
        found: list[BusMessage] = []
        if count:
            sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True)
            while len(found) < count:
                msg = await sub.next_msg(timeout=10)
                found.append(
                    BusMessage(
                        msg.subject,
                        (msg.headers or {}).get("Nats-Msg-Id", ""),
                        json.loads(msg.data),
                    )
                )
            await sub.unsubscribe()
        return found
    finally:
        await client.close()


def read_stream(url: str, stream: str, subjects: str) -> list[BusMessage]:
    """Every message of the JetStream ``stream``, in stream order, read by an ordered consumer."""
    return asyncio.run(_read(url, stream, subjects))


async def _delete(url: str, stream: str) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    finally:
        await client.close()


def delete_stream(url: str, stream: str) -> None:
    """Delete the stream (nothing if it does not exist)."""
    asyncio.run(_delete(url, stream))
