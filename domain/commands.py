"""Commands: what a caller asks of a thread, as frozen values (docs/semantics.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

from .records import Termination
from .values import DeliveryBoundary, DeliveryMode, Message


@dataclass(frozen=True)
class Deliver:
    """Deliver messages (ids already assigned) to the pending zone with one mode; the zone
    may hold at most ``max_pending`` entries (``Settings.max_pending``; None: no cap)."""

    messages: tuple[Message, ...]  # ids already assigned
    mode: DeliveryMode
    max_pending: int | None = None


@dataclass(frozen=True)
class Edit:
    """Replace a pending message's content (at ``expected_revision``, when given)."""

    pending_id: str
    message: Message
    expected_revision: int | None = None


@dataclass(frozen=True)
class Retract:
    """Take a pending message back (at ``expected_revision``, when given)."""

    pending_id: str
    expected_revision: int | None = None


@dataclass(frozen=True)
class Reorder:
    """Put the pending zone in this order (at ``expected_version``, when given)."""

    ordered_ids: tuple[str, ...]
    expected_version: int | None = None


@dataclass(frozen=True)
class Freeze:
    """Commit what a freeze at ``boundary`` selects, for ``run_id``."""

    boundary: DeliveryBoundary
    run_id: str
    expected_version: int | None = None
    rollback: bool = False  # interrupt only: hide the interrupted run's outputs too


@dataclass(frozen=True)
class Submit:
    """Deliver messages and freeze at their mode's boundary in one write, or write nothing."""

    messages: tuple[Message, ...]  # ids already assigned
    mode: DeliveryMode
    run_id: str


@dataclass(frozen=True)
class SuspendRun:
    """The running run waits, for ``reason``."""

    run_id: str
    reason: str


@dataclass(frozen=True)
class FinishRun:
    """End the open run with a termination (and a ``detail``)."""

    run_id: str
    termination: Termination = Termination.NATURAL_END
    detail: str | None = None


@dataclass(frozen=True)
class CommitOutput:
    """Commit the running run's outputs (ids already assigned)."""

    run_id: str
    messages: tuple[Message, ...]  # ids already assigned


@dataclass(frozen=True)
class Hide:
    """Tombstone a committed message, for ``reason``."""

    message_id: str
    reason: str


Command = (
    Deliver
    | Edit
    | Retract
    | Reorder
    | Freeze
    | Submit
    | SuspendRun
    | FinishRun
    | CommitOutput
    | Hide
)
