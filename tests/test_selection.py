"""The freeze selection rule (SEMANTICS §3.1): the conformance cases and its properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadbox import (
    DeliveryBoundary,
    DeliveryGranularity,
    DeliveryMode,
    Message,
    PendingEntry,
    select_for_freeze,
)
from threadbox.domain.selection import eligible_at, skippable

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


# ---- properties ------------------------------------------------------------------------------

RUN_IDS = st.sampled_from([None, "r1", "r2"])
modes = st.builds(
    DeliveryMode,
    boundary=st.sampled_from(list(B)),
    granularity=st.sampled_from(list(DeliveryGranularity)),
    barrier=st.booleans(),
    target_run_id=RUN_IDS,
    fallback_to_new_run=st.booleans(),
)
queues = st.lists(modes, max_size=8).map(
    lambda ms: [entry(f"p{n}", m, n + 1) for n, m in enumerate(ms)]
)
boundaries = st.sampled_from(list(B))


def _passable(item: PendingEntry, boundary: B, run_id: str | None) -> bool:
    """An entry the scan may pass over: ineligible, skippable, and no barrier."""
    mode = item.mode
    return (
        not eligible_at(mode, boundary, run_id) and skippable(mode, boundary) and not mode.barrier
    )


@given(queues, boundaries, RUN_IDS)
def test_selected_indexes_are_strictly_ascending_and_in_the_queue(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    selected = select_for_freeze(queue, boundary, run_id)
    assert selected == sorted(set(selected))
    assert all(0 <= i < len(queue) for i in selected)


@given(queues, boundaries, RUN_IDS)
def test_every_selected_entry_is_eligible_at_the_freeze(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    for i in select_for_freeze(queue, boundary, run_id):
        assert eligible_at(queue[i].mode, boundary, run_id)


@given(queues, boundaries, RUN_IDS)
def test_a_selected_barrier_is_the_last_selected_and_nothing_was_skipped_before_it(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    selected = select_for_freeze(queue, boundary, run_id)
    for n, i in enumerate(selected):
        if queue[i].mode.barrier:
            assert n == len(selected) - 1
            assert selected == list(range(i + 1)), "a barrier never passes a skipped entry"


@given(queues, boundaries, RUN_IDS)
def test_a_selected_one_entry_is_the_only_entry_selected(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    selected = select_for_freeze(queue, boundary, run_id)
    if any(queue[i].mode.granularity is ONE for i in selected):
        assert len(selected) == 1


@given(queues, boundaries, RUN_IDS)
def test_every_entry_passed_over_before_the_last_selected_was_skippable(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    """FIFO: the scan passes an entry only when it may be skipped, never an eligible one."""
    selected = select_for_freeze(queue, boundary, run_id)
    if selected:
        for i in range(selected[-1]):
            if i not in selected:
                assert _passable(queue[i], boundary, run_id)


@given(queues, boundaries, RUN_IDS)
def test_nothing_is_selected_after_the_first_ineligible_entry_that_cannot_be_skipped(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    selected = select_for_freeze(queue, boundary, run_id)
    blockers = [
        i
        for i, item in enumerate(queue)
        if not eligible_at(item.mode, boundary, run_id) and not _passable(item, boundary, run_id)
    ]
    if blockers:
        assert all(i < blockers[0] for i in selected)


@given(queues, boundaries, RUN_IDS)
def test_the_selection_stops_only_where_the_rule_says_it_must(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    """Maximality: the first entry the scan did not pass over and did not take is a stopper."""
    selected = select_for_freeze(queue, boundary, run_id)
    if selected and (
        queue[selected[-1]].mode.barrier or queue[selected[-1]].mode.granularity is ONE
    ):
        return
    start = selected[-1] + 1 if selected else 0
    rest = [i for i in range(start, len(queue)) if not _passable(queue[i], boundary, run_id)]
    if not rest:
        return
    stop = queue[rest[0]].mode
    skipped_before = any(
        i not in selected and _passable(queue[i], boundary, run_id) for i in range(rest[0])
    )
    assert (
        not eligible_at(stop, boundary, run_id)
        or (stop.barrier and skipped_before)
        or (stop.granularity is ONE and bool(selected))
    )


@given(queues, boundaries, RUN_IDS)
def test_entries_after_the_last_selected_do_not_change_the_selection(
    queue: list[PendingEntry], boundary: B, run_id: str | None
) -> None:
    selected = select_for_freeze(queue, boundary, run_id)
    cut = selected[-1] + 1 if selected else 0
    assert select_for_freeze(queue[:cut], boundary, run_id) == selected


@given(
    st.lists(modes.map(lambda m: m.with_barrier(False)), max_size=8).map(
        lambda ms: [entry(f"p{n}", m, n + 1) for n, m in enumerate(ms)]
    ),
    st.sampled_from([B.INTERRUPT, B.NEXT_STEP, B.ON_NATURAL_END]),
    RUN_IDS,
    st.lists(st.integers(min_value=0, max_value=8), max_size=3),
)
def test_a_queued_new_run_entry_never_blocks_steering_of_the_running_run(
    queue: list[PendingEntry], boundary: B, run_id: str | None, slots: list[int]
) -> None:
    """(Without barriers: a barrier, by design, never passes a skipped entry.)"""
    before = [queue[i].pending_id for i in select_for_freeze(queue, boundary, run_id)]
    steered = list(queue)
    for n, slot in enumerate(slots):
        steered.insert(min(slot, len(steered)), entry(f"queued{n}", DeliveryMode.new_run()))
    after = [steered[i].pending_id for i in select_for_freeze(steered, boundary, run_id)]
    assert after == before
