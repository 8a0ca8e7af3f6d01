"""Errors of threadbox: each has a stable ``code`` and a message naming what is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ThreadboxError(Exception):
    """Base of every error threadbox raises on purpose."""

    code = "threadbox_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """The error's fields, for HTTP problem documents and JSON output."""
        return {}


class InvalidInput(ThreadboxError):
    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, Any]:
        return {"field": self.field} if self.field else {}


class PayloadTooLarge(ThreadboxError):
    code = "payload_too_large"

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit

    def details(self) -> dict[str, Any]:
        return {"size": self.size, "limit": self.limit}


class ThreadNotFound(ThreadboxError):
    code = "thread_not_found"

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"thread {thread_id!r} not found")
        self.thread_id = thread_id

    def details(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id}


class PendingNotFound(ThreadboxError):
    code = "pending_not_found"

    def __init__(self, thread_id: str, pending_id: str) -> None:
        super().__init__(f"no pending message {pending_id!r} in thread {thread_id!r}")
        self.thread_id = thread_id
        self.pending_id = pending_id

    def details(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "pending_id": self.pending_id}


class MessageNotFound(ThreadboxError):
    code = "message_not_found"

    def __init__(self, thread_id: str, message_id: str) -> None:
        super().__init__(f"no committed message {message_id!r} in thread {thread_id!r}")
        self.thread_id = thread_id
        self.message_id = message_id

    def details(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "message_id": self.message_id}


class RunNotFound(ThreadboxError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")
        self.run_id = run_id

    def details(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class NotPending(ThreadboxError):
    """The message was pending once, and is not any more (its ``code`` says why)."""

    def __init__(self, pending_id: str, how: str, seq: int | None = None) -> None:
        where = f" at seq {seq}" if seq is not None else ""
        super().__init__(f"message {pending_id!r} is no longer pending: {how}{where}")
        self.pending_id = pending_id
        self.code = {"consumed": "already_consumed"}.get(how, how)
        self.seq = seq

    def details(self) -> dict[str, Any]:
        return {"pending_id": self.pending_id, "seq": self.seq}


class AlreadyConsumed(NotPending):
    code = "already_consumed"

    def __init__(self, pending_id: str, seq: int) -> None:
        super().__init__(pending_id, "consumed", seq)


class MessageIdInUse(ThreadboxError):
    code = "message_id_in_use"

    def __init__(self, message_id: str, how: str, seq: int | None = None) -> None:
        where = f" at seq {seq}" if seq is not None else ""
        super().__init__(f"message id {message_id!r} is already used in this thread: {how}{where}")
        self.message_id = message_id
        self.how = how
        self.seq = seq

    def details(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "how": self.how, "seq": self.seq}


class RevisionConflict(ThreadboxError):
    code = "revision_conflict"

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected revision {expected}, the entry is at revision {actual}")
        self.expected = expected
        self.actual = actual

    def details(self) -> dict[str, Any]:
        return {"expected": self.expected, "actual": self.actual}


class VersionConflict(ThreadboxError):
    code = "version_conflict"

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected thread version {expected}, the thread is at version {actual}")
        self.expected = expected
        self.actual = actual

    def details(self) -> dict[str, Any]:
        return {"expected": self.expected, "actual": self.actual}


class ReorderMismatch(ThreadboxError):
    code = "reorder_mismatch"

    def __init__(
        self,
        missing: Sequence[str],
        unknown: Sequence[str],
        duplicates: Sequence[str],
        not_pending: Sequence[str],
    ) -> None:
        parts = [
            f"{name}: {list(ids)}"
            for name, ids in (
                ("missing", missing),
                ("unknown", unknown),
                ("duplicates", duplicates),
                ("not pending", not_pending),
            )
            if ids
        ]
        super().__init__("order is not a permutation of the pending ids (" + "; ".join(parts) + ")")
        self.missing = list(missing)
        self.unknown = list(unknown)
        self.duplicates = list(duplicates)
        self.not_pending = list(not_pending)

    def details(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "unknown": self.unknown,
            "duplicates": self.duplicates,
            "not_pending": self.not_pending,
        }


class DeliveryBlocked(ThreadboxError):
    code = "delivery_blocked"

    def __init__(self, blocking_pending_id: str) -> None:
        super().__init__(
            f"submit cannot consume its messages now: blocked by pending {blocking_pending_id!r}"
        )
        self.blocking_pending_id = blocking_pending_id

    def details(self) -> dict[str, Any]:
        return {"blocking_pending_id": self.blocking_pending_id}


class RunNotRunning(ThreadboxError):
    code = "run_not_running"

    def __init__(self, run_id: str | None, detail: str) -> None:
        super().__init__(f"run {run_id!r} is not running: {detail}")
        self.run_id = run_id

    def details(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class RunNotWaiting(ThreadboxError):
    code = "run_not_waiting"

    def __init__(self, run_id: str | None, detail: str) -> None:
        super().__init__(f"run {run_id!r} is not waiting: {detail}")
        self.run_id = run_id

    def details(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class ThreadBusy(ThreadboxError):
    code = "thread_busy"

    def __init__(self, open_run_id: str, detail: str) -> None:
        super().__init__(f"thread is busy with open run {open_run_id!r}: {detail}")
        self.open_run_id = open_run_id

    def details(self) -> dict[str, Any]:
        return {"open_run_id": self.open_run_id}


class Contention(ThreadboxError):
    code = "contention"

    def __init__(self, thread_id: str, attempts: int) -> None:
        super().__init__(
            f"thread {thread_id!r}: gave up after {attempts} attempts, other writers kept winning"
        )
        self.thread_id = thread_id
        self.attempts = attempts
        self.retry_after = 1

    def details(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "attempts": self.attempts}
