"""A plain reference model of one thread for the stateful test: lists and dicts, no events.

It follows docs/semantics.md §4 directly. It reuses only the selection rule
(``select_for_freeze``, tested on its own in test_selection.py); queue bookkeeping, seqs, runs
and fates are its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from threadbox import DeliveryBoundary, DeliveryMode, select_for_freeze
from threadbox.domain import errors

B = DeliveryBoundary


class Refused(Exception):
    """The model's prediction that the mailbox refuses a command with ``error``."""

    def __init__(self, error: type[errors.ThreadboxError]) -> None:
        super().__init__(error.__name__)
        self.error = error


@dataclass
class Entry:
    pending_id: str
    text: str
    mode: DeliveryMode
    original: str  # the text first delivered: an identical re-delivery is a no-op
    revision: int = 1


@dataclass
class Model:
    pending: list[Entry] = field(default_factory=list)
    committed: list[tuple[str, str]] = field(default_factory=list)  # (id, text); seq = index + 1
    fate: dict[str, str] = field(default_factory=dict)  # id -> pending/committed/retracted/expired
    runs: dict[str, str] = field(default_factory=dict)  # run id -> running/waiting/done
    hidden: set[str] = field(default_factory=set)
    exists: bool = False

    @property
    def open_run(self) -> str | None:
        return next((r for r, s in self.runs.items() if s != "done"), None)

    @property
    def running(self) -> str | None:
        return next((r for r, s in self.runs.items() if s == "running"), None)

    @property
    def waiting(self) -> str | None:
        return next((r for r, s in self.runs.items() if s == "waiting"), None)

    def find(self, pending_id: str) -> Entry:
        if not self.exists:
            raise Refused(errors.ThreadNotFound)
        for entry in self.pending:
            if entry.pending_id == pending_id:
                return entry
        raise Refused(errors.NotPending if pending_id in self.fate else errors.PendingNotFound)

    def _check_mode(self, mode: DeliveryMode) -> None:
        if mode.target_run_id is None or mode.fallback_to_new_run:
            return
        if mode.boundary == B.RESUME_INPUT:
            if mode.target_run_id != self.waiting:
                raise Refused(errors.RunNotWaiting)
        elif mode.target_run_id != self.running:
            raise Refused(errors.RunNotRunning)

    # ---- commands: check everything first, then change ------------------------------------

    def deliver(self, texts: dict[str, str], mode: DeliveryMode) -> list[str]:
        """Ids of the entries returned, in call order."""
        new = []
        for message_id, text in texts.items():
            if message_id in self.fate:
                same = [
                    e
                    for e in self.pending
                    if e.pending_id == message_id and e.original == text and e.mode == mode
                ]
                if not same:
                    raise Refused(errors.MessageIdInUse)
            else:
                new.append(message_id)
        if new:  # the run a mode targets matters only for what is delivered now
            self._check_mode(mode)
        for message_id in new:
            self.pending.append(Entry(message_id, texts[message_id], mode, texts[message_id]))
            self.fate[message_id] = "pending"
        self.exists = self.exists or bool(new)
        return list(texts)

    def edit(self, pending_id: str, text: str, expected_revision: int | None) -> None:
        entry = self.find(pending_id)
        if expected_revision is not None and expected_revision != entry.revision:
            raise Refused(errors.RevisionConflict)
        if text != entry.text:
            entry.text, entry.revision = text, entry.revision + 1

    def retract(self, pending_id: str) -> None:
        entry = self.find(pending_id)
        self.pending.remove(entry)
        self.fate[pending_id] = "retracted"

    def reorder(self, order: list[str]) -> None:
        if sorted(order) != sorted(e.pending_id for e in self.pending):
            raise Refused(errors.ReorderMismatch)
        by_id = {e.pending_id: e for e in self.pending}
        self.pending = [by_id[i] for i in order]

    def _plan(self, boundary: B, run_id: str) -> tuple[str | None, str]:
        """(the run an interrupt ends, what happens to run_id: start/resume/continue)."""
        if boundary == B.INTERRUPT:
            if run_id in self.runs:
                raise Refused(errors.InvalidInput)
            return self.open_run, "start"
        if boundary in (B.NEXT_STEP, B.ON_NATURAL_END):
            if self.running != run_id:
                raise Refused(errors.RunNotRunning)
            return None, "continue"
        if boundary == B.RESUME_INPUT:
            if self.waiting != run_id:
                raise Refused(errors.RunNotWaiting)
            return None, "resume"
        if self.running is not None or (self.waiting not in (None, run_id)):
            raise Refused(errors.ThreadBusy)
        if self.waiting == run_id:
            return None, "resume"
        if run_id in self.runs:
            raise Refused(errors.InvalidInput)
        return None, "start"

    def _expiring(self, run_id: str) -> list[Entry]:
        return [
            e
            for e in self.pending
            if e.mode.target_run_id == run_id and not e.mode.fallback_to_new_run
        ]

    def freeze(self, boundary: B, run_id: str) -> list[str]:
        """Ids committed, in seq order."""
        if not self.exists:
            raise Refused(errors.ThreadNotFound)
        interrupted, _ = self._plan(boundary, run_id)
        expiring = self._expiring(interrupted) if interrupted else []
        queue = [e for e in self.pending if e not in expiring]
        chosen = [queue[i] for i in select_for_freeze(queue, boundary, run_id)]
        if not chosen:
            return []
        if interrupted is not None:
            self.runs[interrupted] = "done"
            for entry in expiring:
                self.pending.remove(entry)
                self.fate[entry.pending_id] = "expired"
        self.runs[run_id] = "running"
        for entry in chosen:
            self.pending.remove(entry)
            self.committed.append((entry.pending_id, entry.text))
            self.fate[entry.pending_id] = "committed"
        return [e.pending_id for e in chosen]

    def submit(self, texts: dict[str, str], mode: DeliveryMode, run_id: str) -> list[str]:
        """Ids committed, in seq order; all of ``texts`` among them, or nothing changes."""
        self._check_mode(mode)
        if any(i in self.fate for i in texts):
            raise Refused(errors.MessageIdInUse)
        interrupted, _ = self._plan(mode.boundary, run_id)
        expiring = self._expiring(interrupted) if interrupted else []
        new = [Entry(i, t, mode, t) for i, t in texts.items()]
        queue = [e for e in self.pending if e not in expiring] + new
        chosen = [queue[i] for i in select_for_freeze(queue, mode.boundary, run_id)]
        if chosen[-len(new) :] != new:
            raise Refused(errors.DeliveryBlocked)
        self.exists = True
        for entry in new:
            self.pending.append(entry)
            self.fate[entry.pending_id] = "pending"
        return self.freeze(mode.boundary, run_id)

    def suspend(self, run_id: str) -> None:
        if not self.exists:
            raise Refused(errors.ThreadNotFound)
        if self.running != run_id:
            raise Refused(errors.RunNotRunning)
        self.runs[run_id] = "waiting"

    def finish(self, run_id: str) -> list[str]:
        if not self.exists:
            raise Refused(errors.ThreadNotFound)
        if self.open_run != run_id:
            raise Refused(errors.RunNotRunning)
        self.runs[run_id] = "done"
        expiring = self._expiring(run_id)
        for entry in expiring:
            self.pending.remove(entry)
            self.fate[entry.pending_id] = "expired"
        return [e.pending_id for e in expiring]

    def commit_output(self, run_id: str, texts: dict[str, str]) -> None:
        if not self.exists:
            raise Refused(errors.ThreadNotFound)
        if self.running != run_id:
            raise Refused(errors.RunNotRunning)
        if any(i in self.fate for i in texts):
            raise Refused(errors.MessageIdInUse)
        for message_id, text in texts.items():
            self.committed.append((message_id, text))
            self.fate[message_id] = "output"

    def hide(self, message_id: str) -> None:
        if not self.exists:
            raise Refused(errors.ThreadNotFound)
        if message_id not in [i for i, _ in self.committed]:
            raise Refused(errors.MessageNotFound)
        self.hidden.add(message_id)
