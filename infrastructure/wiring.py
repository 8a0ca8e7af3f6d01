"""The composition root: a URL in, a wired ``Mailbox`` out."""

from __future__ import annotations

import os
from collections.abc import Mapping

from threadbox.application.following import PollingWakeup
from threadbox.application.mailbox import Mailbox
from threadbox.application.ports import ViewBackend, Wakeup
from threadbox.application.settings import Settings
from threadbox.application.views import ProjectedViews

from .store import RecorderStore, StoreLocation
from .views.listening import ListeningWakeup
from .views.memory import MemoryViewBackend

EVENTS_CHANNEL = "stored_events"  # eventsourcing's PostgreSQL recorder NOTIFYs its table name


def open_mailbox(
    url: str | None, *, settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> Mailbox:
    """A mailbox on the store at ``url`` (else ``THREADBOX_URL`` from ``env``, else
    ``sqlite:///./threadbox.db``), with its views in the same database."""
    source = os.environ if env is None else env
    url = url or source.get("THREADBOX_URL") or "sqlite:///./threadbox.db"
    location = StoreLocation.parse(url)
    store = RecorderStore(location)
    try:
        backend, wakeup = view_backend(location)
        return Mailbox(store, ProjectedViews(store, backend, wakeup), settings)
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
        return backend, ListeningWakeup(location.pg_conninfo, EVENTS_CHANNEL, fallback=1.0)
    return MemoryViewBackend(), PollingWakeup(0.05)
