"""The composition root: a URL in, a wired ``Mailbox`` out."""

from __future__ import annotations

import os
from collections.abc import Mapping

from threadbox.mailbox import Mailbox, Settings
from threadbox.projections.engine import ProjectedViews
from threadbox.projections.memory import MemoryViewBackend

from .store import RecorderStore, StoreLocation


def open_mailbox(
    url: str | None, *, settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> Mailbox:
    source = os.environ if env is None else env
    url = url or source.get("THREADBOX_URL") or "sqlite:///./threadbox.db"
    location = StoreLocation.parse(url)
    store = RecorderStore(location)
    try:
        backend = MemoryViewBackend()
        return Mailbox(store, ProjectedViews(store, backend), settings)
    except BaseException:
        store.close()
        raise
