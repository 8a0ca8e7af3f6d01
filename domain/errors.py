"""Errors of threadbox: each has a stable ``code``, the fields that say what is wrong, and a
message that names them.

Every error is declared as a dataclass: its fields are its constructor's arguments, in order;
``template`` (``str.format`` of the error as ``e``) makes the message; ``details()`` gives the
fields, but those in ``message_only``, for HTTP problem documents and JSON output. Equality is
identity and ``repr`` Exception's, as for any exception (``eq=False, repr=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(eq=False, repr=False)
class ThreadboxError(Exception):
    """Base of every error threadbox raises on purpose."""

    code = "threadbox_error"
    template: ClassVar[str] = "{e.code}"
    message_only: ClassVar[frozenset[str]] = frozenset()  # fields the message says, not details

    def __post_init__(self) -> None:
        self.message: str = self.template.format(e=self)
        super().__init__(self.message)

    def details(self) -> dict[str, Any]:
        """The error's fields, for HTTP problem documents and JSON output."""
        hidden = self.message_only
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), tuple(getattr(self, f.name) for f in fields(self) if f.init)

    @property
    def at_seq(self) -> str:
        """`` at seq N`` when the error has a seq, else empty (for templates)."""
        seq = getattr(self, "seq", None)
        return f" at seq {seq}" if seq is not None else ""


@dataclass(eq=False, repr=False)
class InvalidInput(ThreadboxError):
    """An argument is not valid; ``field`` names it where one can be named."""

    code = "invalid_input"
    template = "{e.text}"
    text: str
    field: str | None = None

    def details(self) -> dict[str, Any]:
        """The field, when one is named."""
        return {"field": self.field} if self.field else {}


@dataclass(eq=False, repr=False)
class PayloadTooLarge(ThreadboxError):
    """A message is larger, encoded, than the mailbox accepts (``limit`` bytes)."""

    code = "payload_too_large"
    template = "{e.text}"
    message_only = frozenset({"text"})
    text: str
    size: int
    limit: int


@dataclass(eq=False, repr=False)
class PendingQueueFull(ThreadboxError):
    """A delivery would take the thread's pending zone past the mailbox's cap (``limit``
    entries, ``Settings.max_pending``): it holds ``pending`` and the delivery adds ``adding``
    new ones. Nothing is delivered; a freeze, a retract or an expiry makes room."""

    code = "pending_full"
    template = (
        "thread {e.thread_id!r}: the pending zone holds {e.pending} entries and may hold at "
        "most {e.limit}; the {e.adding} new ones do not fit"
    )
    thread_id: str
    limit: int
    pending: int
    adding: int


@dataclass(eq=False, repr=False)
class ThreadNotFound(ThreadboxError):
    """No event was ever written to this thread."""

    code = "thread_not_found"
    template = "thread {e.thread_id!r} not found"
    thread_id: str


@dataclass(eq=False, repr=False)
class PendingNotFound(ThreadboxError):
    """The thread never had a pending message with this id."""

    code = "pending_not_found"
    template = "no pending message {e.pending_id!r} in thread {e.thread_id!r}"
    thread_id: str
    pending_id: str


@dataclass(eq=False, repr=False)
class MessageNotFound(ThreadboxError):
    """The thread has no committed message with this id."""

    code = "message_not_found"
    template = "no committed message {e.message_id!r} in thread {e.thread_id!r}"
    thread_id: str
    message_id: str


@dataclass(eq=False, repr=False)
class RunNotFound(ThreadboxError):
    """No run has this id."""

    code = "run_not_found"
    template = "run {e.run_id!r} not found"
    run_id: str


@dataclass(eq=False, repr=False)
class NotPending(ThreadboxError):
    """The message was pending once and is not any more; ``how`` it left sets the ``code``:
    ``already_consumed`` (at ``seq``), ``retracted`` or ``expired``."""

    template = "message {e.pending_id!r} is no longer pending: {e.how}{e.at_seq}"
    message_only = frozenset({"how"})
    pending_id: str
    how: str
    seq: int | None = None

    def __post_init__(self) -> None:
        self.code = "already_consumed" if self.how == "consumed" else self.how
        super().__post_init__()


@dataclass(eq=False, repr=False)
class AlreadyConsumed(NotPending):
    """The message was consumed by a freeze: it is committed at ``seq``."""

    code = "already_consumed"
    pending_id: str
    seq: int
    how: str = field(default="consumed", init=False)


@dataclass(eq=False, repr=False)
class MessageIdInUse(ThreadboxError):
    """The thread already used this message id: ``how`` (pending, committed at ``seq``,
    retracted or expired)."""

    code = "message_id_in_use"
    template = "message id {e.message_id!r} is already used in this thread: {e.how}{e.at_seq}"
    message_id: str
    how: str
    seq: int | None = None


@dataclass(eq=False, repr=False)
class RevisionConflict(ThreadboxError):
    """The pending entry is not at the revision the caller expected."""

    code = "revision_conflict"
    template = "expected revision {e.expected}, the entry is at revision {e.actual}"
    expected: int
    actual: int


@dataclass(eq=False, repr=False)
class VersionConflict(ThreadboxError):
    """The thread is not at the version the caller expected."""

    code = "version_conflict"
    template = "expected thread version {e.expected}, the thread is at version {e.actual}"
    expected: int
    actual: int


@dataclass(eq=False, repr=False)
class ReorderMismatch(ThreadboxError):
    """A new order is not a permutation of the pending ids; the lists say how."""

    code = "reorder_mismatch"
    template = "order is not a permutation of the pending ids ({e.listing})"
    missing: list[str]
    unknown: list[str]
    duplicates: list[str]
    not_pending: list[str]

    @property
    def listing(self) -> str:
        """The non-empty lists, named (for the message)."""
        named = [
            ("missing", self.missing),
            ("unknown", self.unknown),
            ("duplicates", self.duplicates),
            ("not pending", self.not_pending),
        ]
        return "; ".join(f"{name}: {ids}" for name, ids in named if ids)


@dataclass(eq=False, repr=False)
class DeliveryBlocked(ThreadboxError):
    """A submit cannot consume all its messages now: this pending entry stands in the way."""

    code = "delivery_blocked"
    template = (
        "submit cannot consume its messages now: blocked by pending {e.blocking_pending_id!r}"
    )
    blocking_pending_id: str


@dataclass(eq=False, repr=False)
class RunNotRunning(ThreadboxError):
    """The command needs this run to be the thread's running run; ``detail`` says which is."""

    code = "run_not_running"
    template = "run {e.run_id!r} is not running: {e.detail}"
    message_only = frozenset({"detail"})
    run_id: str | None
    detail: str


@dataclass(eq=False, repr=False, init=False)
class RunInterrupted(RunNotRunning):
    """The command's run is not running because another writer interrupted it: ``by_run_id``
    is the run that the interrupting freeze started (None when the run was finished as
    interrupted by ``finish_run``). A ``RunNotRunning``, so that callers that only know that
    one still catch it."""

    code = "run_interrupted"
    template = "run {e.run_id!r} was interrupted by run {e.by_run_id!r}"
    message_only = frozenset({"detail"})
    by_run_id: str | None

    def __init__(self, run_id: str | None, by_run_id: str | None) -> None:
        self.run_id = run_id
        self.by_run_id = by_run_id
        self.detail = f"it was interrupted by run {by_run_id!r}"
        self.__post_init__()

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.run_id, self.by_run_id)


@dataclass(eq=False, repr=False)
class RunNotWaiting(ThreadboxError):
    """The command needs this run to be the thread's waiting run; ``detail`` says which is."""

    code = "run_not_waiting"
    template = "run {e.run_id!r} is not waiting: {e.detail}"
    message_only = frozenset({"detail"})
    run_id: str | None
    detail: str


@dataclass(eq=False, repr=False)
class ThreadBusy(ThreadboxError):
    """The thread's open run stands in the way of a new_run freeze."""

    code = "thread_busy"
    template = "thread is busy with open run {e.open_run_id!r}: {e.detail}"
    message_only = frozenset({"detail"})
    open_run_id: str
    detail: str


@dataclass(eq=False, repr=False)
class Contention(ThreadboxError):
    """Other writers of the thread kept winning: the command gave up after ``attempts`` tries
    and wrote nothing (trying again later is safe)."""

    code = "contention"
    template = (
        "thread {e.thread_id!r}: gave up after {e.attempts} attempts, other writers kept winning"
    )
    thread_id: str
    attempts: int


@dataclass(eq=False, repr=False)
class StoreNotFound(ThreadboxError):
    """A reading command was pointed at a store that does not exist (``location``, password
    masked); nothing was created."""

    code = "store_not_found"
    template = "no threadbox store at {e.location}"
    location: str


@dataclass(eq=False, repr=False)
class StoreUnavailable(ThreadboxError):
    """The store cannot be used now (server down or unreachable, connection lost and not
    regained, read-only file or server, disk full, lock or statement timeout): the command wrote
    nothing it reported, and trying again later is safe."""

    code = "store_unavailable"
    template = "the store cannot be used now: {e.reason}"
    reason: str


@dataclass(eq=False, repr=False)
class CorruptHistory(ThreadboxError, ValueError):
    """A thread's stored events cannot be decoded or folded (written past the decisions: by a
    buggy older version, or by hand); ``reason`` says what is wrong with event ``version``.
    A ``ValueError`` too, as the fold's damage was before it had a code."""

    code = "corrupt_history"
    template = "thread {e.thread_id!r} cannot be read: event version {e.version}: {e.reason}"
    thread_id: str
    version: int
    reason: str


@dataclass(eq=False, repr=False)
class ImportRefused(ThreadboxError):
    """An import file holds streams that cannot be written as they are; ``problems`` names
    each one's line and reason. Nothing of a refused stream is written."""

    code = "import_refused"
    template = "{e.text}"
    message_only = frozenset({"text"})
    text: str
    problems: list[str]


@dataclass(eq=False, repr=False)
class ProjectionFailed(ThreadboxError):
    """The views cannot apply the event at ``position`` of the log (of type ``event_type``):
    they stay just before it (a history written past the decisions, or damaged view rows;
    ``threadbox audit`` and ``views verify`` say which)."""

    code = "projection_failed"
    template = (
        "the views cannot apply event {e.position} ({e.event_type} of thread {e.thread_id!r})"
    )
    position: int
    event_type: str
    thread_id: str = ""
