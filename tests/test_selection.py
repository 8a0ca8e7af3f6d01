"""The freeze selection rule (docs/semantics.md §3.1): the conformance cases, and properties
checked against an independent oracle (``selection_oracle.py``) on arbitrary queues."""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import selection_oracle as oracle
from hypothesis import given, settings
from hypothesis import strategies as st
from threadbox import (
    DeliveryBoundary,
    DeliveryGranularity,
    DeliveryMode,
    Message,
    PendingEntry,
    select_for_freeze,
)
from threadbox.domain.selection import eligible_at

B = DeliveryBoundary
ONE = DeliveryGranularity.ONE
CONFORMANCE = Path(__file__).parent / "conformance" / "selection.json"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(pending_id: str, mode: DeliveryMode, position: int = 1) -> PendingEntry:
    return PendingEntry(
        pending_id=pending_id,
        thread_id="t",
        position=position,
        revision=1,
        message=Message.user(pending_id, id=pending_id),
        mode=mode,
        delivered_at=T0,
        updated_at=T0,
    )


def _case_entry(raw: dict[str, Any], position: int) -> PendingEntry:
    mode = DeliveryMode(
        boundary=raw["b"],
        granularity=raw.get("g", "batch"),
        barrier=raw.get("barrier", False),
        target_run_id=raw.get("target"),
        fallback_to_new_run=raw.get("fb", True),
    )
    return entry(raw["id"], mode, position)


CASES: list[dict[str, Any]] = json.loads(CONFORMANCE.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_selection_matches_the_conformance_case(case: dict[str, Any]) -> None:
    queue = [_case_entry(raw, n) for n, raw in enumerate(case["pending"], start=1)]
    selected = select_for_freeze(queue, case["boundary"], current_run_id=case["run"])
    assert [queue[i].pending_id for i in selected] == case["expect"]


def test_the_conformance_file_has_cases() -> None:
    assert len(CASES) >= 14


@pytest.mark.parametrize(
    ("entry_boundary", "freeze_boundary", "eligible"),
    [
        (B.INTERRUPT, B.INTERRUPT, True),
        (B.INTERRUPT, B.NEW_RUN, True),
        (B.NEXT_STEP, B.INTERRUPT, False),
        (B.NEXT_STEP, B.ON_NATURAL_END, True),
        (B.ON_NATURAL_END, B.NEXT_STEP, False),
        (B.NEW_RUN, B.ON_NATURAL_END, False),
        (B.NEW_RUN, B.NEW_RUN, True),
        (B.NEXT_STEP, B.RESUME_INPUT, False),
        (B.NEW_RUN, B.RESUME_INPUT, False),
    ],
)
def test_an_earlier_boundary_entry_falls_through_to_any_later_boundary(
    entry_boundary: B, freeze_boundary: B, eligible: bool
) -> None:
    assert eligible_at(DeliveryMode(boundary=entry_boundary), freeze_boundary, None) is eligible


def test_a_resume_input_entry_is_eligible_only_at_its_target_runs_resume() -> None:
    mode = DeliveryMode.resume_input("r1")
    assert eligible_at(mode, B.RESUME_INPUT, "r1")
    assert not eligible_at(mode, B.RESUME_INPUT, "r2")
    assert not eligible_at(mode, B.NEW_RUN, "r1")
    assert not eligible_at(mode, B.INTERRUPT, "r1")


def test_a_targeted_entry_reaches_a_new_run_only_through_its_fallback() -> None:
    with_fallback = DeliveryMode.next_step().targeted_to_run("r1", fallback_to_new_run=True)
    without = DeliveryMode.next_step().targeted_to_run("r1", fallback_to_new_run=False)
    assert eligible_at(with_fallback, B.NEW_RUN, "r9")
    assert not eligible_at(without, B.NEW_RUN, "r1")
    assert eligible_at(without, B.NEXT_STEP, "r1")
    assert not eligible_at(without, B.NEXT_STEP, "r2")


# ---- properties, against an independent oracle (selection_oracle.py) -------------------------

RUN_IDS = st.sampled_from([None, "r1", "r2"])
# Every combination is drawn, but barriers and `one` entries (each of which ends a selection) only
# now and then, so that scans often run deep into the queue.
plain_entries = st.builds(
    oracle.Entry,
    boundary=st.sampled_from(oracle.BOUNDARIES),
    granularity=st.sampled_from(["batch", "batch", "batch", "one"]),
    barrier=st.sampled_from([False, False, False, True]),
    target=st.sampled_from([None, None, "r1", "r2"]),
    fallback=st.booleans(),
)
plain_queues = st.lists(plain_entries, max_size=10)
boundaries = st.sampled_from(oracle.BOUNDARIES)
EVERY_ENTRY = [
    oracle.Entry(*fields)
    for fields in itertools.product(
        oracle.BOUNDARIES, ["one", "batch"], [False, True], [None, "r1", "r2"], [False, True]
    )
]


@functools.cache
def as_mode(plain: oracle.Entry) -> DeliveryMode:
    return DeliveryMode(
        boundary=plain.boundary,
        granularity=plain.granularity,
        barrier=plain.barrier,
        target_run_id=plain.target,
        fallback_to_new_run=plain.fallback,
    )


@dataclass(frozen=True)
class Queued:
    """What the selection reads of a pending entry: its mode (``select_for_freeze`` takes any
    sequence of things with a ``mode``), and a name for the test."""

    name: str
    mode: DeliveryMode


def as_queue(plain: list[oracle.Entry]) -> list[Queued]:
    return [Queued(f"p{n}", as_mode(e)) for n, e in enumerate(plain)]


def passable(e: oracle.Entry, boundary: str, run_id: str | None) -> bool:
    """An entry the scan may pass over: ineligible, skippable, and no barrier."""
    ineligible = not oracle.eligible(e, boundary, run_id)
    return ineligible and oracle.skippable(e, boundary) and not e.barrier


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_oracle_itself_answers_every_conformance_case(case: dict[str, Any]) -> None:
    queue = [
        oracle.Entry(
            raw["b"],
            raw.get("g", "batch"),
            raw.get("barrier", False),
            raw.get("target"),
            raw.get("fb", True),
        )
        for raw in case["pending"]
    ]
    selected = oracle.select(queue, case["boundary"], case["run"])
    assert [case["pending"][i]["id"] for i in selected] == case["expect"]


def test_eligibility_follows_the_rule_table_for_every_mode_freeze_and_run() -> None:
    checked = [
        (plain, freeze, run_id)
        for plain in EVERY_ENTRY
        for freeze in oracle.BOUNDARIES
        for run_id in (None, "r1", "r2")
    ]
    wrong = [
        (plain, freeze, run_id)
        for plain, freeze, run_id in checked
        if eligible_at(as_mode(plain), B(freeze), run_id)
        is not oracle.eligible(plain, freeze, run_id)
    ]
    assert len(checked) == 120 * 5 * 3
    assert wrong == []


def test_the_selection_is_what_the_rule_selects_for_every_queue_of_up_to_two_entries() -> None:
    """Exhaustive where it is cheap: every mode pair, every freeze, every freezing run."""
    queues = [[], *([e] for e in EVERY_ENTRY), *map(list, itertools.product(EVERY_ENTRY, repeat=2))]
    wrong = [
        (queue, freeze, run_id)
        for queue in queues
        for freeze in oracle.BOUNDARIES
        for run_id in (None, "r1", "r2")
        if select_for_freeze(as_queue(queue), freeze, run_id)
        != oracle.select(queue, freeze, run_id)
    ]
    assert len(queues) == 1 + 120 + 120**2
    assert wrong[:3] == []


@settings(max_examples=500, deadline=None)
@given(plain_queues, boundaries, RUN_IDS)
def test_the_selection_is_what_the_rule_read_step_by_step_selects(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    """Any queue (every mode, barrier, target, fallback), any freeze, any freezing run."""
    expected = oracle.select(plain, boundary, run_id)
    assert select_for_freeze(as_queue(plain), boundary, run_id) == expected


@given(plain_queues, boundaries, RUN_IDS)
def test_selected_indexes_are_strictly_ascending_and_in_the_queue(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    selected = select_for_freeze(as_queue(plain), boundary, run_id)
    assert selected == sorted(set(selected))
    assert all(0 <= i < len(plain) for i in selected)


@given(plain_queues, boundaries, RUN_IDS)
def test_every_selected_entry_is_eligible_at_the_freeze(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    for i in select_for_freeze(as_queue(plain), boundary, run_id):
        assert oracle.eligible(plain[i], boundary, run_id)


@given(plain_queues, boundaries, RUN_IDS)
def test_a_selected_barrier_is_the_last_selected_and_nothing_was_skipped_before_it(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    selected = select_for_freeze(as_queue(plain), boundary, run_id)
    for n, i in enumerate(selected):
        if plain[i].barrier:
            assert n == len(selected) - 1
            assert selected == list(range(i + 1)), "a barrier never passes a skipped entry"


@given(plain_queues, boundaries, RUN_IDS)
def test_a_selected_one_entry_is_the_only_entry_selected(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    selected = select_for_freeze(as_queue(plain), boundary, run_id)
    if any(plain[i].granularity == "one" for i in selected):
        assert len(selected) == 1


@given(plain_queues, boundaries, RUN_IDS)
def test_every_entry_passed_over_before_the_last_selected_was_skippable(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    """FIFO: the scan passes an entry only when it may be skipped, never an eligible one."""
    selected = select_for_freeze(as_queue(plain), boundary, run_id)
    if selected:
        for i in range(selected[-1]):
            if i not in selected:
                assert passable(plain[i], boundary, run_id)


@given(plain_queues, boundaries, RUN_IDS)
def test_nothing_is_selected_after_the_first_ineligible_entry_that_cannot_be_skipped(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    selected = select_for_freeze(as_queue(plain), boundary, run_id)
    blockers = [
        i
        for i, e in enumerate(plain)
        if not oracle.eligible(e, boundary, run_id) and not passable(e, boundary, run_id)
    ]
    if blockers:
        assert all(i < blockers[0] for i in selected)


@given(plain_queues, boundaries, RUN_IDS)
def test_the_selection_stops_only_where_the_rule_says_it_must(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    """Maximality: the first entry the scan did not pass over and did not take is a stopper."""
    selected = select_for_freeze(as_queue(plain), boundary, run_id)
    if selected and (plain[selected[-1]].barrier or plain[selected[-1]].granularity == "one"):
        return
    start = selected[-1] + 1 if selected else 0
    rest = [i for i in range(start, len(plain)) if not passable(plain[i], boundary, run_id)]
    if not rest:
        return
    stop = plain[rest[0]]
    skipped_before = any(
        i not in selected and passable(plain[i], boundary, run_id) for i in range(rest[0])
    )
    assert (
        not oracle.eligible(stop, boundary, run_id)
        or (stop.barrier and skipped_before)
        or (stop.granularity == "one" and bool(selected))
    )


@given(plain_queues, boundaries, RUN_IDS)
def test_entries_after_the_last_selected_do_not_change_the_selection(
    plain: list[oracle.Entry], boundary: str, run_id: str | None
) -> None:
    queue = as_queue(plain)
    selected = select_for_freeze(queue, boundary, run_id)
    cut = selected[-1] + 1 if selected else 0
    assert select_for_freeze(queue[:cut], boundary, run_id) == selected


@given(
    st.lists(plain_entries.filter(lambda e: not e.barrier), max_size=8),
    st.sampled_from(["interrupt", "next_step", "on_natural_end"]),
    RUN_IDS,
    st.lists(st.integers(min_value=0, max_value=8), max_size=3),
)
def test_a_queued_new_run_entry_never_blocks_steering_of_the_running_run(
    plain: list[oracle.Entry], boundary: str, run_id: str | None, slots: list[int]
) -> None:
    """(Without barriers: a barrier, by design, never passes a skipped entry.)"""
    queue = as_queue(plain)
    before = [queue[i].name for i in select_for_freeze(queue, boundary, run_id)]
    steered = list(queue)
    for n, slot in enumerate(slots):
        steered.insert(min(slot, len(steered)), Queued(f"queued{n}", DeliveryMode.new_run()))
    after = [steered[i].name for i in select_for_freeze(steered, boundary, run_id)]
    assert after == before
