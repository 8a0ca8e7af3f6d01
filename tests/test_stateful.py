"""Random command sequences against a Mailbox and a reference model, with the invariants
(docs/semantics.md §7) checked after every step, on every backend. The mailbox snapshots the
thread after every command, and a rule swaps it for a fresh one on the same store: the commands
after it decide on a state restored from a snapshot (ADR 0010: no ids before it)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import threadbox
from conftest import drop_schema, pg_store_url
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from reference_model import Model, Refused
from threadbox import DeliveryBoundary, DeliveryMode, Mailbox, Message, Settings, ThreadState
from threadbox.application.views import ProjectedViews
from threadbox.domain import errors
from threadbox.infrastructure.views.memory import MemoryViewBackend

B = DeliveryBoundary
T = "thread"
EVERY_VERSION = Settings(snapshot_interval=1)  # a snapshot after every command
R = TypeVar("R")
TEXTS = st.sampled_from(["a", "b", "c"])


class MailboxMachine(RuleBasedStateMachine):
    def store_url(self) -> str:
        """The store this machine's mailbox opens (a fresh one per example)."""
        return "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="threadbox-stateful-"))
        self.schema = f"stateful_{uuid.uuid4().hex[:12]}"
        self.mailbox = threadbox.open(self.store_url(), settings=EVERY_VERSION)
        self.model = Model()
        self.counter = itertools.count(1)
        self.seen: dict[int, ThreadState] = {}  # the live thread after each step, by version
        self.run_ids: list[str] = []

    def teardown(self) -> None:
        try:
            report = self.mailbox.views.verify()
            assert report.ok, report.differences
            for version, seen in self.seen.items():
                assert self.mailbox.thread(T, at_version=version) == seen
        finally:
            self.mailbox.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.store_url().startswith("postgres"):
                drop_schema(self.schema)

    # ---- helpers ---------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def both(self, model_call: Callable[[], R], mailbox_call: Callable[[], Any]) -> Any:
        """Run the command on the model and the mailbox: refused by both, or done by both."""
        try:
            expected = model_call()
        except Refused as refused:
            position = self.mailbox.store.committed_head()
            with pytest.raises(refused.error):
                mailbox_call()
            assert self.mailbox.store.committed_head() == position, "a refused command wrote"
            return None
        return expected, mailbox_call()

    def modes(self) -> st.SearchStrategy[DeliveryMode]:
        targets = [self.model.running or "run-none", self.model.waiting or "run-none"]
        return st.sampled_from(
            [
                DeliveryMode(),
                DeliveryMode.next_step(),
                DeliveryMode.on_natural_end("one"),
                DeliveryMode.interrupt(),
                DeliveryMode.new_run().with_barrier(),
                DeliveryMode.next_step().targeted_to_run(targets[0], False),
                DeliveryMode.next_step().targeted_to_run(targets[0], True),
                DeliveryMode.resume_input(targets[1]),
            ]
        )

    def run_choice(self) -> st.SearchStrategy[str]:
        """Mostly the open run or a new one; sometimes a run that ended."""
        open_run = [self.model.open_run] if self.model.open_run else []
        return st.sampled_from([*open_run, *open_run, "new", "new", *self.run_ids[-2:]])

    # ---- rules -----------------------------------------------------------------------------

    @rule(data=st.data(), count=st.integers(min_value=0, max_value=2), text=TEXTS)
    def deliver(self, data: st.DataObject, count: int, text: str) -> None:
        texts = {self.fresh("m"): text for _ in range(count)}
        mode = data.draw(self.modes())
        messages = [Message.user(t, id=i) for i, t in texts.items()]
        done = self.both(
            lambda: self.model.deliver(texts, mode), lambda: self.mailbox.deliver(T, messages, mode)
        )
        if done:
            expected, entries = done
            assert [e.pending_id for e in entries] == expected

    @precondition(lambda self: self.model.pending)
    @rule(data=st.data())
    def redeliver_a_pending_message(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self.model.pending))
        same = data.draw(st.booleans())
        text = entry.original if same else entry.original + "!"
        version = self.mailbox.thread(T).version
        done = self.both(
            lambda: self.model.deliver({entry.pending_id: text}, entry.mode),
            lambda: self.mailbox.deliver(T, [Message.user(text, id=entry.pending_id)], entry.mode),
        )
        if done:
            [current] = done[1]
            assert (current.revision, current.message.text) == (entry.revision, entry.text)
            assert self.mailbox.thread(T).version == version

    @precondition(lambda self: self.model.fate)
    @rule(data=st.data(), text=TEXTS, stale=st.booleans())
    def edit(self, data: st.DataObject, text: str, stale: bool) -> None:
        pending_id = data.draw(st.sampled_from(sorted(self.model.fate)))
        current = next((e for e in self.model.pending if e.pending_id == pending_id), None)
        expected = None if current is None else current.revision - (1 if stale else 0)
        done = self.both(
            lambda: self.model.edit(pending_id, text, expected),
            lambda: self.mailbox.edit(
                T, pending_id, Message.user(text), expected_revision=expected
            ),
        )
        if done:
            assert current is not None
            assert (done[1].revision, done[1].message.text) == (current.revision, text)

    @precondition(lambda self: self.model.fate)
    @rule(data=st.data())
    def retract(self, data: st.DataObject) -> None:
        pending_id = data.draw(st.sampled_from(sorted(self.model.fate)))
        self.both(
            lambda: self.model.retract(pending_id), lambda: self.mailbox.retract(T, pending_id)
        )

    @precondition(lambda self: self.model.exists)
    @rule(data=st.data())
    def reorder(self, data: st.DataObject) -> None:
        order = data.draw(st.permutations([e.pending_id for e in self.model.pending]))
        self.both(lambda: self.model.reorder(order), lambda: self.mailbox.reorder(T, order))

    @precondition(lambda self: self.model.exists)
    @rule(data=st.data(), boundary=st.sampled_from(list(B)))
    def freeze(self, data: st.DataObject, boundary: B) -> None:
        run_id = data.draw(self.run_choice())
        if run_id == "new":
            run_id = self.fresh("run-")
        done = self.both(
            lambda: self.model.freeze(boundary, run_id),
            lambda: self.mailbox.freeze(T, boundary, run_id),
        )
        if done:
            expected, result = done
            assert [c.message.id for c in result.committed] == expected
            if expected and run_id not in self.run_ids:
                self.run_ids.append(run_id)

    @rule(data=st.data(), count=st.integers(min_value=1, max_value=2), text=TEXTS)
    def submit(self, data: st.DataObject, count: int, text: str) -> None:
        texts = {self.fresh("s"): text for _ in range(count)}
        mode = data.draw(self.modes())
        run_id = data.draw(self.run_choice())
        if run_id == "new":
            run_id = self.fresh("run-")
        messages = [Message.user(t, id=i) for i, t in texts.items()]
        done = self.both(
            lambda: self.model.submit(texts, mode, run_id),
            lambda: self.mailbox.submit(T, messages, mode, run_id),
        )
        if done:
            expected, result = done
            assert [c.message.id for c in result.committed] == expected
            if run_id not in self.run_ids:
                self.run_ids.append(run_id)

    @precondition(lambda self: self.run_ids)
    @rule(data=st.data())
    def suspend(self, data: st.DataObject) -> None:
        run_id = data.draw(self.run_choice())
        self.both(
            lambda: self.model.suspend(run_id),
            lambda: self.mailbox.suspend_run(T, run_id, "waits for input"),
        )

    @precondition(lambda self: self.run_ids)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        run_id = data.draw(self.run_choice())
        done = self.both(
            lambda: self.model.finish(run_id), lambda: self.mailbox.finish_run(T, run_id)
        )
        if done:
            assert done[1] == done[0]

    @precondition(lambda self: self.run_ids)
    @rule(data=st.data(), text=TEXTS)
    def commit_output(self, data: st.DataObject, text: str) -> None:
        run_id = data.draw(self.run_choice())
        used = data.draw(st.booleans()) and bool(self.model.fate)
        message_id = sorted(self.model.fate)[0] if used else self.fresh("o")
        done = self.both(
            lambda: self.model.commit_output(run_id, {message_id: text}),
            lambda: self.mailbox.commit_output(T, run_id, [Message.assistant(text, id=message_id)]),
        )
        if done:
            assert [c.seq for c in done[1]] == [len(self.model.committed)]

    @precondition(lambda self: self.model.fate)
    @rule(data=st.data())
    def hide(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.model.fate)))
        self.both(
            lambda: self.model.hide(message_id), lambda: self.mailbox.hide(T, message_id, "x")
        )

    @rule()
    def start_cold(self) -> None:
        """A new mailbox on the same store: nothing cached, the thread loads from its snapshot."""
        if self.store_url() == "memory://":
            store = self.mailbox.store  # the store lives in the old mailbox's process memory
            views = ProjectedViews(store, MemoryViewBackend())
            self.mailbox = Mailbox(store, views, EVERY_VERSION)
            return
        self.mailbox.close()
        self.mailbox = threadbox.open(self.store_url(), settings=EVERY_VERSION)

    # ---- invariants (docs/semantics.md §7) -------------------------------------------------

    @invariant()
    def the_mailbox_agrees_with_the_model_and_the_invariants_hold(self) -> None:
        if not self.model.exists:
            with pytest.raises(errors.ThreadNotFound):
                self.mailbox.pending(T)
            return
        pending = self.mailbox.pending(T)
        # pending positions are exactly 1..n, in the model's order, at the model's revisions
        assert [e.position for e in pending] == list(range(1, len(pending) + 1))
        assert [(e.pending_id, e.message.text, e.revision) for e in pending] == [
            (e.pending_id, e.text, e.revision) for e in self.model.pending
        ]
        committed = self.mailbox.committed(T, include_hidden=True)
        # seqs exactly 1..N; nothing committed twice; committed content never changes
        assert [c.seq for c in committed] == list(range(1, len(committed) + 1))
        assert [(c.message.id, c.message.text) for c in committed] == self.model.committed
        assert len({c.message.id for c in committed}) == len(committed)
        assert {c.message.id for c in committed if not c.visible} == self.model.hidden
        # a pending id is never also committed
        assert not {e.pending_id for e in pending} & {c.message.id for c in committed}
        # at most one open run
        state = self.mailbox.thread(T)
        open_runs = [r.run_id for r in state.runs if r.status != "done"]
        assert len(open_runs) <= 1
        assert open_runs == ([self.model.open_run] if self.model.open_run else [])
        assert (state.running_run_id, state.waiting_run_id) == (
            self.model.running,
            self.model.waiting,
        )
        self._every_delivered_message_has_one_fate(pending, committed)
        self.seen[state.version] = state
        assert state.pending == pending, "the live thread equals the fold of its log"

    def _every_delivered_message_has_one_fate(
        self, pending: list[Any], committed: list[Any]
    ) -> None:
        delivered, retracted, expired = [], set(), set()
        for event in self.mailbox.history(T):
            if event.type == "MessagesDelivered":
                delivered += [m["message"]["id"] for m in event.data["messages"]]
            elif event.type == "PendingMessageRetracted":
                retracted.add(event.data["pending_id"])
            elif event.type == "PendingMessagesExpired":
                expired |= set(event.data["pending_ids"])
        assert len(delivered) == len(set(delivered)), "a message id was delivered twice"
        inputs = {c.message.id for c in committed if c.kind == "input"}
        fates = [{e.pending_id for e in pending}, inputs, retracted, expired]
        for message_id in delivered:
            assert sum(message_id in fate for fate in fates) == 1, message_id
        assert set().union(*fates) == set(delivered)


class SqliteMailboxMachine(MailboxMachine):
    def store_url(self) -> str:
        return f"sqlite:///{self.workdir}/threadbox.db"


class PostgresMailboxMachine(MailboxMachine):
    def store_url(self) -> str:
        return pg_store_url(self.schema)


_fast = settings(
    max_examples=75,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MACHINES: dict[str, tuple[type[MailboxMachine], settings]] = {
    "memory": (MailboxMachine, _fast),
    "sqlite": (SqliteMailboxMachine, settings(_fast, max_examples=10, stateful_step_count=25)),
    "postgres": (PostgresMailboxMachine, settings(_fast, max_examples=6, stateful_step_count=25)),
}


@pytest.mark.parametrize("backend", list(MACHINES))
def test_random_commands_agree_with_the_model_and_keep_every_invariant(backend: str) -> None:
    machine, budget = MACHINES[backend]
    run_state_machine_as_test(machine, settings=budget)
