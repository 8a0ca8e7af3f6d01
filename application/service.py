"""The command side of the mailbox: one short method per command — check the input, build the
command, decide and save it through the repository, return its result (``domain/results``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from threadbox.domain import commands as c
from threadbox.domain import errors, results
from threadbox.domain.records import CommittedMessage, FreezeResult, PendingEntry, Termination
from threadbox.domain.values import DeliveryBoundary, DeliveryMode, Message

from . import inputs
from .ids import uuid7
from .repository import Outcome, ThreadRepository
from .settings import Settings

C = TypeVar("C", bound=c.Command)
R = TypeVar("R")

MessagesIn = Sequence[Message | dict[str, Any]]
ModeIn = DeliveryMode | dict[str, Any] | None


class CommandService:
    """Every command of docs/semantics.md §4, each returning what its caller needs (and, for the
    pending-zone commands that answer with entries, the thread version after the write)."""

    def __init__(
        self, repository: ThreadRepository, settings: Settings, new_id: Callable[[], str] = uuid7
    ) -> None:
        self._repository = repository
        self._settings = settings
        self._new_id = new_id

    def deliver(
        self, thread_id: str, messages: MessagesIn, mode: ModeIn
    ) -> tuple[list[PendingEntry], int]:
        """Deliver messages to the pending zone; their entries and the version after."""
        command = c.Deliver(self._messages(messages), inputs.mode(mode), self._settings.max_pending)
        return self._transact(thread_id, command, results.delivered)

    def edit(
        self,
        thread_id: str,
        pending_id: str,
        message: Message | dict[str, Any],
        expected_revision: int | None,
    ) -> PendingEntry:
        """Replace a pending message's content."""
        msg = inputs.message(message, "message", self._settings.max_message_bytes)
        expected = inputs.guard(expected_revision, "expected_revision")
        command = c.Edit(inputs.identifier(pending_id, "pending_id"), msg, expected)
        return self._transact(thread_id, command, results.edited)[0]

    def retract(
        self, thread_id: str, pending_id: str, expected_revision: int | None
    ) -> PendingEntry:
        """Take a pending message back."""
        expected = inputs.guard(expected_revision, "expected_revision")
        command = c.Retract(inputs.identifier(pending_id, "pending_id"), expected)
        return self._transact(thread_id, command, results.retracted)[0]

    def reorder(
        self, thread_id: str, ordered_ids: Sequence[str], expected_version: int | None
    ) -> tuple[list[PendingEntry], int]:
        """Put the pending zone in a new order; the entries and the version after."""
        if not isinstance(ordered_ids, (list, tuple)) or not all(
            isinstance(i, str) for i in ordered_ids
        ):
            raise errors.InvalidInput("ordered_ids must be a list of pending ids", "ordered_ids")
        command = c.Reorder(tuple(ordered_ids), inputs.guard(expected_version, "expected_version"))
        return self._transact(thread_id, command, results.reordered)

    def freeze(
        self,
        thread_id: str,
        boundary: DeliveryBoundary | str,
        run_id: str | None,
        expected_version: int | None,
        rollback: bool = False,
    ) -> FreezeResult:
        """Commit what a freeze at ``boundary`` selects, for ``run_id`` (generated for a
        ``new_run`` or ``interrupt`` freeze when None)."""
        expected = inputs.guard(expected_version, "expected_version")
        at = inputs.boundary(boundary)
        if not isinstance(rollback, bool):
            raise errors.InvalidInput(
                f"rollback must be true or false, got {rollback!r}", "rollback"
            )
        if run_id is None:
            if at not in (DeliveryBoundary.NEW_RUN, DeliveryBoundary.INTERRUPT):
                raise errors.InvalidInput(
                    f"a {at.value} freeze needs the run_id of the run it is for (only new_run "
                    "and interrupt generate one)",
                    "run_id",
                )
            run_id = self._new_id()
        command = c.Freeze(at, inputs.identifier(run_id, "run_id"), expected, rollback)
        return self._transact(thread_id, command, results.frozen)[0]

    def submit(
        self, thread_id: str, messages: MessagesIn, mode: ModeIn, run_id: str
    ) -> FreezeResult:
        """Deliver and freeze in one write, or write nothing."""
        command = c.Submit(
            self._messages(messages), inputs.mode(mode), inputs.identifier(run_id, "run_id")
        )
        return self._transact(thread_id, command, results.frozen)[0]

    def suspend_run(self, thread_id: str, run_id: str, reason: str) -> None:
        """The running run waits."""
        command = c.SuspendRun(
            inputs.identifier(run_id, "run_id"), inputs.free_text(reason, "reason")
        )
        self._transact(thread_id, command, results.nothing)

    def finish_run(
        self, thread_id: str, run_id: str, termination: Termination | str, detail: str | None
    ) -> list[str]:
        """End the open run; the ids of the entries that expired with it."""
        try:
            ending = Termination(termination)
        except ValueError:
            raise errors.InvalidInput(
                f"termination must be one of {[t.value for t in Termination]}, not {termination!r}",
                "termination",
            ) from None
        if detail is not None:
            detail = inputs.free_text(detail, "detail")
        command = c.FinishRun(inputs.identifier(run_id, "run_id"), ending, detail)
        return self._transact(thread_id, command, results.expired)[0]

    def commit_output(
        self, thread_id: str, run_id: str, messages: MessagesIn
    ) -> list[CommittedMessage]:
        """Commit the running run's outputs."""
        command = c.CommitOutput(inputs.identifier(run_id, "run_id"), self._messages(messages))
        return self._transact(thread_id, command, results.outputs)[0]

    def hide(self, thread_id: str, message_id: str, reason: str) -> None:
        """Tombstone a committed message."""
        command = c.Hide(
            inputs.identifier(message_id, "message_id"), inputs.free_text(reason, "reason")
        )
        self._transact(thread_id, command, results.nothing)

    def _transact(self, thread_id: str, command: C, outcome: Outcome[C, R]) -> tuple[R, int]:
        thread_id = inputs.identifier(thread_id, "thread_id")
        return self._repository.transact(thread_id, command, outcome)

    def _messages(self, values: Any) -> tuple[Message, ...]:
        return inputs.messages(values, self._settings.max_message_bytes, self._new_id)
