"""``Run``: an agent's run on a thread (API.md §6), over the mailbox's commands, with its
interruption pushed by a watch of the thread (``Run.interrupted``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from threadbox.domain import errors
from threadbox.domain.records import CommittedMessage, Termination
from threadbox.domain.values import DeliveryBoundary, Message

from .subscriptions import Subscriptions

if TYPE_CHECKING:
    from .mailbox import Mailbox

B = DeliveryBoundary
log = logging.getLogger("threadbox.runs")


class Run:
    """One run of an agent on a thread, started by ``Mailbox.start_run``.

    ``inputs`` is what its first freeze committed. ``step()`` and ``end()`` freeze for it at
    ``next_step`` and ``on_natural_end``, ``output()`` commits its messages, ``finish()`` ends
    it. ``interrupted`` turns true as soon as another writer (any process) commits an interrupt
    that ends this run: a watch of the thread pushes it (PostgreSQL LISTEN/NOTIFY, a 50 ms poll
    on SQLite and memory); ``step``, ``output`` and ``end`` then raise ``RunInterrupted``.
    Use it as a context manager, or call ``close()``, to stop the watch (``finish`` stops it).
    """

    def __init__(
        self,
        mailbox: Mailbox,
        subscriptions: Subscriptions,
        thread_id: str,
        run_id: str,
        inputs: list[CommittedMessage],
        version: int,
    ) -> None:
        """A run that a freeze at thread ``version`` started (``Mailbox.start_run`` makes it)."""
        self.id = run_id
        """The run's id."""
        self.thread_id = thread_id
        """The thread it runs on."""
        self.inputs = inputs
        """What its first freeze committed: the messages that started it."""
        self.by_run_id: str | None = None
        """The run whose interrupt ended this one, once ``interrupted``."""
        self._mailbox = mailbox
        self._interrupted = threading.Event()
        self._stop = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch,
            args=(subscriptions, version),
            name=f"threadbox-run-{run_id}",
            daemon=True,
        )
        self._watcher.start()

    @property
    def watcher(self) -> threading.Thread:
        """The thread that watches for an interrupt of this run (it ends soon after
        ``close``)."""
        return self._watcher

    @property
    def interrupted(self) -> bool:
        """Did another writer's interrupt end this run (seen within ~100 ms of its commit)?"""
        return self._interrupted.is_set()

    def wait_interrupted(self, timeout: float | None = None) -> bool:
        """Block until the run is interrupted (``True``) or ``timeout`` seconds pass."""
        return self._interrupted.wait(timeout)

    def _watch(self, subscriptions: Subscriptions, version: int) -> None:
        try:
            for event in subscriptions.watch_until(self.thread_id, version, self._stop):
                if event.type == "RunFinished" and event.data["run_id"] == self.id:
                    if event.data.get("termination") == Termination.INTERRUPTED:
                        self._interrupted_by(event.data.get("by_run_id"))
                    return
        except Exception:
            # The store failed: ``interrupted`` can no longer turn true by itself; the run's
            # own commands still raise ``RunInterrupted`` (they are decided on the log).
            log.warning("run %r: watching thread %r failed", self.id, self.thread_id, exc_info=True)

    def _interrupted_by(self, by_run_id: str | None) -> None:
        self.by_run_id = by_run_id
        self._interrupted.set()

    def _guarded(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except errors.RunInterrupted as interrupted:
            self._interrupted_by(interrupted.by_run_id)
            self.close()
            raise

    def step(self) -> list[CommittedMessage]:
        """Freeze at ``next_step`` for this run: the messages to add before the next model call
        (``[]`` when none are waiting)."""
        result = self._guarded(self._mailbox.freeze, self.thread_id, B.NEXT_STEP, self.id)
        return list(result.committed)

    def output(self, messages: Sequence[Message | dict[str, Any]]) -> list[CommittedMessage]:
        """Commit the run's outputs (assistant, tool or system messages)."""
        committed: list[CommittedMessage] = self._guarded(
            self._mailbox.commit_output, self.thread_id, self.id, messages
        )
        return committed

    def end(self) -> list[CommittedMessage]:
        """Freeze at ``on_natural_end``: non-empty means the run goes on with these inputs;
        ``[]`` means it may ``finish()``."""
        result = self._guarded(self._mailbox.freeze, self.thread_id, B.ON_NATURAL_END, self.id)
        return list(result.committed)

    def finish(
        self, termination: Termination | str = Termination.NATURAL_END, detail: str | None = None
    ) -> list[str]:
        """End the run; returns the ids of the pending entries that expired with it."""
        try:
            expired: list[str] = self._guarded(
                self._mailbox.finish_run, self.thread_id, self.id, termination, detail
            )
        finally:
            self.close()
        return expired

    def suspend(self, reason: str) -> None:
        """The run waits for ``resume_input`` work (``resume`` waits for it)."""
        self._guarded(self._mailbox.suspend_run, self.thread_id, self.id, reason)

    def resume(self, timeout: float | None) -> list[CommittedMessage]:
        """Wait (event-driven) up to ``timeout`` seconds (``None``: for ever) for
        ``resume_input`` work for this run, then freeze it: the run runs again with these
        inputs. ``[]`` at timeout (the run is still waiting)."""
        mailbox = self._mailbox
        if not mailbox.wait_for_work(self.thread_id, B.RESUME_INPUT, self.id, timeout=timeout):
            if self.interrupted:
                raise errors.RunInterrupted(self.id, self.by_run_id)
            return []
        result = self._guarded(self._mailbox.freeze, self.thread_id, B.RESUME_INPUT, self.id)
        return list(result.committed)

    def close(self, wait: float | None = None) -> None:
        """Stop watching the thread for an interrupt (the run itself is left as it is); with
        ``wait``, also wait up to that many seconds for the watch to end (the mailbox does,
        before it closes its store)."""
        self._stop.set()
        if wait is not None and threading.current_thread() is not self._watcher:
            self._watcher.join(wait)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, thread_id={self.thread_id!r})"
