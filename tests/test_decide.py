"""The decider's entry point (``domain/decide.py``) over any sequence of commands: every write
keeps the fixed event order and consecutive versions, and a repeat changes nothing."""

from __future__ import annotations

import pytest
from decide_support import STARTS, T0, commands, decided, deliver, thread, types
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadbox.domain import errors
from threadbox.domain.commands import Command, Deliver, Edit, Freeze, Hide, Reorder
from threadbox.domain.events import AnyThreadEvent, PendingMessageRetracted, PendingMessagesExpired
from threadbox.domain.thread import fold

WRITE_ORDER = [
    "ThreadOpened",
    "MessagesDelivered",
    "RunFinished",
    "PendingMessagesExpired",
    "RunStarted",
    "RunResumed",
    "PendingMessagesFrozen",
]


def _is_repeatable(command: Command) -> bool:
    """Commands whose repeat, right after they took effect, must change nothing."""
    return isinstance(command, Deliver | Edit | Reorder | Hide)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_write_keeps_the_fixed_event_order_and_a_repeat_changes_nothing(
    data: st.DataObject,
) -> None:
    state = thread(*data.draw(st.sampled_from(STARTS)))
    writes = 0
    for _ in range(data.draw(st.integers(min_value=1, max_value=25))):
        command = data.draw(commands(state))
        try:
            decision = decided(state, command)
        except errors.ThreadboxError:
            continue
        names = types(decision)
        writes += bool(names)
        in_order = [n for n in WRITE_ORDER if n in names]
        if len(names) > 1:
            assert names == in_order, f"events of one write out of order: {names}"
        assert [e.version for e in decision.events] == list(
            range(state.version + 1, state.version + 1 + len(names))
        )
        if isinstance(command, Freeze) and not decision.result.committed:
            assert names == [], "a freeze that selects nothing writes nothing"
        fold("t", decision.events, state)
        if _is_repeatable(command):
            assert decided(state, command).events == [], f"repeating {command} changed something"
    assume(writes > 0)  # an example whose every command was refused checks nothing


@pytest.mark.parametrize(
    "stray",
    [
        PendingMessageRetracted(
            thread_id="t", version=3, timestamp=T0, pending_id="nope", revision=1
        ),
        PendingMessagesExpired(
            thread_id="t", version=3, timestamp=T0, run_id="r", pending_ids=["nope"]
        ),
    ],
)
def test_an_event_that_takes_out_an_entry_the_queue_does_not_hold_is_damage(
    stray: AnyThreadEvent,
) -> None:
    state = thread(deliver("a"))  # version 2: ThreadOpened, MessagesDelivered
    with pytest.raises(ValueError, match="event version 3 takes 'nope' out of the pending zone"):
        fold("t", [stray], state)
