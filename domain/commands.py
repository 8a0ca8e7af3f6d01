"""Commands: what a caller asks of a thread, as frozen values (SEMANTICS §4)."""

from __future__ import annotations

from dataclasses import dataclass

from .records import Termination
from .values import DeliveryBoundary, DeliveryMode, Message


@dataclass(frozen=True)
class Deliver:
    messages: tuple[Message, ...]  # ids already assigned
    mode: DeliveryMode


@dataclass(frozen=True)
class Edit:
    pending_id: str
    message: Message
    expected_revision: int | None = None


@dataclass(frozen=True)
class Retract:
    pending_id: str
    expected_revision: int | None = None


@dataclass(frozen=True)
class Reorder:
    ordered_ids: tuple[str, ...]
    expected_version: int | None = None


@dataclass(frozen=True)
class Freeze:
    boundary: DeliveryBoundary
    run_id: str
    expected_version: int | None = None


@dataclass(frozen=True)
class Submit:
    messages: tuple[Message, ...]  # ids already assigned
    mode: DeliveryMode
    run_id: str


@dataclass(frozen=True)
class SuspendRun:
    run_id: str
    reason: str


@dataclass(frozen=True)
class FinishRun:
    run_id: str
    termination: Termination = Termination.NATURAL_END
    detail: str | None = None


@dataclass(frozen=True)
class CommitOutput:
    run_id: str
    messages: tuple[Message, ...]  # ids already assigned


@dataclass(frozen=True)
class Hide:
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
