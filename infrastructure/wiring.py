"""The composition root: a URL in, a wired ``Mailbox`` out."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from threadbox.application.following import PollingDoorbell, PollingWakeup
from threadbox.application.mailbox import Mailbox
from threadbox.application.ports import Doorbell, ViewBackend, Wakeup
from threadbox.application.settings import Settings
from threadbox.application.views import ProjectedViews
from threadbox.domain.errors import StoreNotFound

from .faults import translating
from .metrics import PrometheusMetrics
from .pg_wakeup import events_channel
from .store import RecorderStore, StoreLocation
from .views.listening import ListeningDoorbell, ListeningWakeup
from .views.memory import MemoryViewBackend

EVENTS_TABLE = "stored_events"  # eventsourcing's application recorder table, in every store kind


def open_mailbox(
    url: str | None,
    *,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    create: bool = True,
    doorbells: Callable[[Callable[[], Doorbell]], Callable[[], Doorbell]] | None = None,
) -> Mailbox:
    """A mailbox on the store at ``url`` (else ``THREADBOX_URL`` from ``env``, else
    ``sqlite:///./threadbox.db``), with its views in the same database.

    With ``create=False`` a store that does not exist yet raises ``StoreNotFound`` and nothing
    is created (no file, folder, schema or table): what reading commands want. ``doorbells``
    wraps the store's doorbell factory (``threadbox.aio`` shares one listener between its
    subscribers, and ends their waits when it closes)."""
    url = store_url(url, env)
    location = StoreLocation.parse(url)
    if not create and not store_exists(location):
        raise StoreNotFound(masked_url(url))
    store = RecorderStore(location)
    try:
        backend, wakeup = view_backend(location)
        metrics = PrometheusMetrics()
        views = ProjectedViews(store, backend, wakeup)
        bell = doorbell(location) if doorbells is None else doorbells(doorbell(location))
        mailbox = Mailbox(store, views, settings, metrics=metrics, doorbell=bell)
        metrics.watch(mailbox)
        return mailbox
    except BaseException:
        store.close()
        raise


def view_backend(location: StoreLocation) -> tuple[ViewBackend, Wakeup]:
    """The views in the same database as the events, and how a follower learns of new ones."""
    if location.kind == "sqlite":
        from .views.sqlite import sqlite_view_backend

        return sqlite_view_backend(location.sqlite_path), PollingWakeup(0.05)
    if location.kind == "postgres":
        from .views.postgres import postgres_view_backend

        backend = postgres_view_backend(location.pg_conninfo, location.pg_schema)
        channel = events_channel(location.pg_schema)  # the store notifies it after commit
        return backend, ListeningWakeup(location.pg_conninfo, channel, fallback=1.0)
    return MemoryViewBackend(), PollingWakeup(0.05)


def doorbell(location: StoreLocation) -> Callable[[], Doorbell]:
    """What each subscriber (follow, watch, wait_for_work) waits on for other writers' commits:
    LISTEN on the schema's channel on PostgreSQL (a poll every second makes up for a missed
    notification), a 50 ms poll on SQLite and memory."""
    if location.kind == "postgres":
        conninfo, channel = location.pg_conninfo, events_channel(location.pg_schema)
        return lambda: ListeningDoorbell(conninfo, channel, fallback=1.0)
    return lambda: PollingDoorbell(0.05)


DEFAULT_URL = "sqlite:///./threadbox.db"


def store_url(url: str | None, env: Mapping[str, str] | None = None) -> str:
    """The store a mailbox opens: ``url``, else ``THREADBOX_URL`` from ``env`` (default: the
    process environment), else ``sqlite:///./threadbox.db``."""
    source = os.environ if env is None else env
    return url or source.get("THREADBOX_URL") or DEFAULT_URL


@translating
def store_exists(location: StoreLocation) -> bool:
    """Whether a threadbox store is already at ``location``, found without creating anything: a
    memory store always is; a SQLite file must exist; a PostgreSQL schema must hold the events
    table (a server that does not answer raises ``StoreUnavailable``, as any use of it would)."""
    if location.kind == "memory":
        return True
    if location.kind == "sqlite":
        return Path(location.sqlite_path).is_file()
    import psycopg

    with psycopg.connect(location.pg_conninfo, autocommit=True) as conn:
        found = conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
            (location.pg_schema, EVENTS_TABLE),
        ).fetchone()
    return found is not None and found[0] is not None


def masked_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
