"""threadbox: an event-sourced mailbox for AI-agent conversations.

``threadbox.open(url)`` gives a ``Mailbox``; the value types below are its vocabulary.

This module is the public facade. Its names load on first use (PEP 562), so importing
``threadbox.domain`` (or any one layer) loads that layer alone; type checkers and IDEs read
the imports below.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadbox.application.agent import Run
    from threadbox.application.mailbox import Mailbox
    from threadbox.application.ports import VerifyReport
    from threadbox.application.settings import Settings
    from threadbox.application.subscriptions import LogItem
    from threadbox.domain.records import (
        Checkpoint,
        CommitKind,
        CommittedMessage,
        FreezeResult,
        PendingEntry,
        RecordedEvent,
        RunRecord,
        RunStatus,
        Termination,
        ThreadState,
        ThreadSummary,
    )
    from threadbox.domain.selection import select_for_freeze
    from threadbox.domain.values import (
        DeliveryBoundary,
        DeliveryGranularity,
        DeliveryMode,
        Message,
        Role,
        Visibility,
    )

__version__ = "0.2.0"
"""threadbox's version: the one place it is written (the package metadata reads it)."""

__all__ = [
    "Checkpoint",
    "CommitKind",
    "CommittedMessage",
    "DeliveryBoundary",
    "DeliveryGranularity",
    "DeliveryMode",
    "FreezeResult",
    "LogItem",
    "Mailbox",
    "Message",
    "PendingEntry",
    "RecordedEvent",
    "Role",
    "Run",
    "RunRecord",
    "RunStatus",
    "Settings",
    "Termination",
    "ThreadState",
    "ThreadSummary",
    "VerifyReport",
    "Visibility",
    "open",
    "select_for_freeze",
]

# Where each lazily loaded name lives (the imports above, for the interpreter).
EXPORTS: dict[str, str] = {
    "Mailbox": "threadbox.application.mailbox",
    "Run": "threadbox.application.agent",
    "VerifyReport": "threadbox.application.ports",
    "Settings": "threadbox.application.settings",
    "LogItem": "threadbox.application.subscriptions",
    **dict.fromkeys(
        (
            "Checkpoint",
            "CommitKind",
            "CommittedMessage",
            "FreezeResult",
            "PendingEntry",
            "RecordedEvent",
            "RunRecord",
            "RunStatus",
            "Termination",
            "ThreadState",
            "ThreadSummary",
        ),
        "threadbox.domain.records",
    ),
    "select_for_freeze": "threadbox.domain.selection",
    **dict.fromkeys(
        (
            "DeliveryBoundary",
            "DeliveryGranularity",
            "DeliveryMode",
            "Message",
            "Role",
            "Visibility",
        ),
        "threadbox.domain.values",
    ),
}


def open(
    url: str | None = None,
    *,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    create: bool = True,
) -> Mailbox:
    """A mailbox on ``url``: ``memory://``, ``sqlite:///PATH`` or ``postgresql://…``.

    Without a URL: ``THREADBOX_URL`` from ``env`` (default: the process environment), else
    ``sqlite:///./threadbox.db``. Close it with ``close()``, or use it as a context manager.
    The store is created when missing; with ``create=False`` a missing store raises
    ``threadbox.errors.StoreNotFound`` instead, and nothing is created.
    """
    from threadbox.infrastructure.wiring import open_mailbox

    return open_mailbox(url, settings=settings, env=env, create=create)


if not TYPE_CHECKING:  # type checkers read the imports above; a __getattr__ would hide typos

    def __getattr__(name: str) -> Any:
        """Load a public name on first use, from the module that defines it."""
        try:
            module = EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module 'threadbox' has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
