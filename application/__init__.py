"""threadbox: an event-sourced mailbox for AI-agent conversations.

``threadbox.open(url)`` gives a ``Mailbox``; the value types below are its vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping

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

from .mailbox import Mailbox, Settings
from .ports import VerifyReport

__all__ = [
    "Checkpoint",
    "CommitKind",
    "CommittedMessage",
    "DeliveryBoundary",
    "DeliveryGranularity",
    "DeliveryMode",
    "FreezeResult",
    "Mailbox",
    "Message",
    "PendingEntry",
    "RecordedEvent",
    "Role",
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


def open(
    url: str | None = None,
    *,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
) -> Mailbox:
    """A mailbox on ``url``: ``memory://``, ``sqlite:///PATH`` or ``postgresql://…``.

    Without a URL: ``THREADBOX_URL`` from ``env`` (default: the process environment), else
    ``sqlite:///./threadbox.db``.
    """
    from threadbox.infrastructure.wiring import open_mailbox

    return open_mailbox(url, settings=settings, env=env)
