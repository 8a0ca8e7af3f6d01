"""Every command and the fold grow linearly with the pending queue and the batch (ADR 0013):
doubling the size at most doubles the work, counted — never timed.

Work is counted in units that a quadratic loop cannot hide in: every Python bytecode executed
(``sys.settrace`` with opcode events) plus every hash and comparison of a message id (the ids are
``CountedId``, a ``str`` that counts them), which is what a set or list rebuilt per element in C
(``i not in set(current)`` inside a comprehension) costs. Hypothesis draws the sizes; for each
operation — reorder, batch freeze, an interrupt's expiry, retract, edit, submit, the selection
rule, a redelivery, the fold of a history and the projections of it — the work at 2n is at most
``GROWTH`` times the work at n (linear: about 2; quadratic: about 4).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadbox import DeliveryMode, Message
from threadbox.domain import results
from threadbox.domain.commands import Command, Deliver, Edit, Freeze, Reorder, Retract, Submit
from threadbox.domain.decide import decide
from threadbox.domain.events import AnyThreadEvent
from threadbox.domain.selection import select_for_freeze
from threadbox.domain.thread import Thread, fold
from threadbox.domain.values import DeliveryBoundary, Role, TextPart
from threadbox.infrastructure.codec import encode_event
from threadbox.projections import changes_for
from threadbox.projections.tables import Tables

B = DeliveryBoundary
NOW = datetime(2026, 1, 1, tzinfo=UTC)
GROWTH = 2.25  # work(2n) / work(n) allowed: linear plus room for constant terms
SIZES = st.integers(min_value=64, max_value=256)
SOME = settings(max_examples=4, deadline=None, derandomize=True)
ONLY_R1 = DeliveryMode.next_step().targeted_to_run("r1", False)
BARRIER = DeliveryMode.new_run().with_barrier()


class Work:
    """The units counted while ``measured`` runs."""

    units = 0


class CountedId(str):
    """A message id that counts each hash and comparison made of it as a unit of work."""

    __slots__ = ()

    def __hash__(self) -> int:
        Work.units += 1
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        Work.units += 1
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        Work.units += 1
        return str.__ne__(self, other)


def _tracer(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    if event == "opcode":
        Work.units += 1
    return _tracer


def measured(call: Callable[[], object]) -> int:
    """The units of work ``call()`` does: bytecodes executed, ids hashed or compared."""
    previous = sys.gettrace()
    Work.units = 0
    sys.settrace(_tracer)
    try:
        call()
    finally:
        sys.settrace(previous)
    return Work.units


def message(message_id: str) -> Message:
    """A user message whose id stays a ``CountedId`` (validation would make it a plain str)."""
    return Message.model_construct(
        id=CountedId(message_id), role=Role.USER, content=[TextPart(text=f"text {message_id}")]
    )


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{k}" for k in range(n)]


def built(*commands: Command) -> tuple[Thread, list[AnyThreadEvent]]:
    """A thread after the commands, decided and folded in turn, and its log."""
    state, log = Thread("t"), []
    for command in commands:
        events = decide(state, command, NOW)
        fold("t", events, state)
        log.extend(events)
    return state, log


def batch(prefix: str, n: int, mode: DeliveryMode | None = None) -> Deliver:
    return Deliver(tuple(message(i) for i in ids(prefix, n)), mode or DeliveryMode())


def command_work(state: Thread, command: Command, outcome: Any) -> int:
    """Decide, read the result and fold the events: what one command costs a process."""
    after = state.copy()

    def run() -> None:
        events = decide(state, command, NOW)
        outcome(command, state, events)
        fold("t", events, after)

    return measured(run)


# ---- the operations, at size n ---------------------------------------------------------------


def reorder(n: int) -> int:
    state, _ = built(batch("m", n))
    order = tuple(CountedId(i) for i in reversed(ids("m", n)))
    return command_work(state, Reorder(order), results.reordered)


def batch_freeze(n: int) -> int:
    state, _ = built(batch("m", n))
    return command_work(state, Freeze(B.NEW_RUN, "r1"), results.frozen)


def interrupt_expiring(n: int) -> int:
    """An interrupt ends r1: n entries only r1 could read expire, the interrupt is read."""
    state, _ = built(
        batch("a", 1),
        Freeze(B.NEW_RUN, "r1"),
        batch("x", n, ONLY_R1),
        batch("i", 1, DeliveryMode.interrupt()),
    )
    return command_work(state, Freeze(B.INTERRUPT, "r2"), results.frozen)


def retract(n: int) -> int:
    state, _ = built(batch("m", n))
    return command_work(state, Retract(f"m{n // 2}"), results.retracted)


def edit(n: int) -> int:
    state, _ = built(batch("m", n))
    changed = message(f"m{n // 2}").model_copy(update={"metadata": {"edited": True}})
    return command_work(state, Edit(f"m{n // 2}", changed), results.edited)


def submit(n: int) -> int:
    """A submit of n messages behind n queued ones: both batches frozen in one write."""
    state, _ = built(batch("m", n))
    command = Submit(tuple(message(i) for i in ids("s", n)), DeliveryMode(), "r1")
    return command_work(state, command, results.frozen)


def selection(n: int) -> int:
    """The selection rule over a queue of n: next_step entries, then a barrier nothing passes."""
    state, _ = built(batch("a", n, DeliveryMode.next_step()), batch("b", 1, BARRIER))
    queue = list(state.pending)
    return measured(lambda: select_for_freeze(queue, B.NEW_RUN))


def redeliver(n: int) -> int:
    """A delivery repeating n pending messages and adding n new ones."""
    state, _ = built(batch("m", n))
    again = Deliver(tuple(message(i) for i in [*ids("m", n), *ids("n", n)]), DeliveryMode(), 10 * n)
    return command_work(state, again, results.delivered)


def history(n: int) -> list[AnyThreadEvent]:
    """n deliveries of one message, n/2 edits, a reorder, n/4 retracts and a batch freeze."""
    commands: list[Command] = [batch(f"m{k}-", 1) for k in range(n)]
    names = [f"m{k}-0" for k in range(n)]
    edited = [message(name).model_copy(update={"metadata": {"e": 1}}) for name in names]
    commands += [Edit(name, m) for name, m in zip(names[: n // 2], edited, strict=False)]
    commands.append(Reorder(tuple(CountedId(i) for i in reversed(names))))
    commands += [Retract(name) for name in names[: n // 4]]
    commands.append(Freeze(B.NEW_RUN, "r1"))
    return built(*commands)[1]


def fold_history(n: int) -> int:
    log = history(n)
    return measured(lambda: fold("t", log))


def _counted_ids(payload: Any, key: str = "") -> Any:
    """The payload with every message id a ``CountedId`` (as ``message`` makes them)."""
    if isinstance(payload, dict):
        return {k: _counted_ids(v, k) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_counted_ids(v, key) for v in payload]
    if isinstance(payload, str) and key in ("id", "pending_id", "pending_ids", "order"):
        return CountedId(payload)
    return payload


def project_history(n: int) -> int:
    """The views folded from the stored payloads of ``history(n)``, then read."""
    stored = [
        (type(e).__name__, _counted_ids(orjson.loads(encode_event(e).state))) for e in history(n)
    ]

    def run() -> None:
        tables = Tables()
        for position, (event_type, payload) in enumerate(stored, start=1):
            for change in changes_for(event_type, payload, position):
                tables.apply(change)
        tables.thread_rows("pending", "t")
        tables.flat()

    return measured(run)


OPERATIONS: dict[str, Callable[[int], int]] = {
    "reorder": reorder,
    "batch freeze": batch_freeze,
    "interrupt expiring": interrupt_expiring,
    "retract": retract,
    "edit": edit,
    "submit": submit,
    "selection": selection,
    "redeliver": redeliver,
    "fold": fold_history,
    "projections": project_history,
}


def growth(operation: Callable[[int], int], n: int) -> tuple[int, int, float]:
    small, large = operation(n), operation(2 * n)
    return small, large, large / small


@pytest.mark.parametrize("name", list(OPERATIONS))
@SOME
@given(n=SIZES)
def test_doubling_the_queue_or_the_batch_at_most_doubles_the_work(name: str, n: int) -> None:
    small, large, ratio = growth(OPERATIONS[name], n)
    assert ratio <= GROWTH, f"{name}: work {small} at n={n}, {large} at n={2 * n}"


def test_the_instrument_tells_a_quadratic_loop_from_a_linear_one() -> None:
    # The instrument itself: ids are counted, and a quadratic loop over them would show.
    def quadratic(n: int) -> int:
        names = [CountedId(i) for i in ids("m", n)]
        return measured(lambda: [i for i in names if i not in set(names)])

    def linear(n: int) -> int:
        names = [CountedId(i) for i in ids("m", n)]

        def once() -> list[str]:
            seen = set(names)
            return [i for i in names if i in seen]

        return measured(once)

    assert growth(quadratic, 128)[2] > 3.5
    assert growth(linear, 128)[2] <= GROWTH
    for name, operation in OPERATIONS.items():
        assert operation(64) > 64 * 10, name  # each operation does work on every entry
