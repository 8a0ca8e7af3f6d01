"""What each command returns (``domain/results.py``) is read from its events and the state they
were decided on; here it is checked against the other side, the state those events fold to."""

from __future__ import annotations

from typing import Any

from decide_support import STARTS, after, commands, decided, thread
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadbox.domain import errors
from threadbox.domain.commands import (
    Command,
    CommitOutput,
    Deliver,
    Edit,
    FinishRun,
    Freeze,
    Reorder,
    Retract,
    Submit,
)
from threadbox.domain.results import pending_entries
from threadbox.domain.thread import Thread, fold


def expired(before: Thread, now: Thread) -> list[str]:
    """The entries pending before that expired with the events, in queue order."""
    return [p.pending_id for p in before.pending if now.used[p.pending_id] == ("expired", None)]


def check_result(command: Command, before: Thread, now: Thread, result: Any) -> None:
    """``result`` of ``command`` says what ``now`` (the state after its events) holds."""
    queue = {e.pending_id: e for e in pending_entries(now)}
    match command:
        case Deliver() | Edit():
            entries = result if isinstance(command, Deliver) else [result]
            assert all(queue[e.pending_id] == e for e in entries)
        case Reorder():
            assert result == pending_entries(now)
        case Retract(pending_id=pending_id):
            was = [e for e in pending_entries(before) if e.pending_id == pending_id]
            assert was == [result]
            assert pending_id not in queue
            assert now.used[pending_id] == ("retracted", None)
        case Freeze() | Submit():
            assert result.version == now.version
            committed = result.committed
            first = before.last_seq + 1
            assert [c.seq for c in committed] == list(range(first, first + len(committed)))
            assert all(now.used[c.message.id] == ("committed", c.seq) for c in committed)
            if committed:
                assert now.running_run_id == command.run_id
            was_open = before.open_run_id
            ended = was_open is not None and now.runs[was_open].termination is not None
            assert result.interrupted_run_id == (was_open if ended else None)
            assert result.expired == expired(before, now)
        case FinishRun():
            assert result == expired(before, now)
        case CommitOutput(run_id=run_id):
            for c in result:
                assert now.used[c.message.id] == ("committed", c.seq)
                assert c.message.id in now.runs[run_id].output_message_ids
            assert now.last_seq == (result[-1].seq if result else before.last_seq)
        case _:  # suspend and hide return nothing
            assert result is None


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_result_agrees_with_the_state_its_events_fold_to(data: st.DataObject) -> None:
    state = thread(*data.draw(st.sampled_from(STARTS)))
    checked = 0
    for _ in range(data.draw(st.integers(min_value=1, max_value=25))):
        command = data.draw(commands(state))
        try:
            decision = decided(state, command)
        except errors.ThreadboxError:
            continue
        check_result(command, state, after(state, decision), decision.result)
        checked += bool(decision.events)
        fold("t", decision.events, state)
    assume(checked > 0)  # an example whose every command was refused or a no-op checks little
