"""The freeze selection rule (docs/semantics.md §3.1): which pending entries a boundary consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .values import DeliveryBoundary, DeliveryGranularity, DeliveryMode

B = DeliveryBoundary
_PRECEDENCE = {B.INTERRUPT: 0, B.NEXT_STEP: 1, B.ON_NATURAL_END: 2, B.NEW_RUN: 4}


class HasMode(Protocol):
    """Anything queued with a delivery mode (a pending entry)."""

    @property
    def mode(self) -> DeliveryMode:
        """How the entry was delivered."""


def eligible_at(mode: DeliveryMode, boundary: DeliveryBoundary, current_run_id: str | None) -> bool:
    """May an entry delivered with ``mode`` be consumed at a ``boundary`` freeze of that run?"""
    if B.RESUME_INPUT in (mode.boundary, boundary):
        if mode.boundary != boundary:
            return False
    elif _PRECEDENCE[mode.boundary] > _PRECEDENCE[boundary]:
        return False
    if mode.target_run_id is None:
        return True
    if boundary == B.NEW_RUN:
        return mode.fallback_to_new_run
    return mode.target_run_id == current_run_id


def skippable(mode: DeliveryMode, boundary: DeliveryBoundary) -> bool:
    """An ineligible entry that the scan may pass over without stopping."""
    if boundary != B.NEW_RUN:
        return mode.boundary == B.NEW_RUN
    return mode.boundary != B.NEW_RUN and not mode.fallback_to_new_run


@dataclass(frozen=True)
class Scan:
    """A selection, the index the scan stopped at (None when it ran off the queue's end), and
    the first entry it passed over as skippable (None when it skipped none)."""

    selected: list[int]
    stopped_at: int | None
    first_skipped: int | None


def scan_for_freeze(
    pending: Sequence[HasMode], boundary: DeliveryBoundary, current_run_id: str | None = None
) -> Scan:
    """The scan of docs/semantics.md §3.1 over the queue: what it selects, where it stops and
    the first entry it passes over."""
    selected: list[int] = []
    skipped: int | None = None
    for index, entry in enumerate(pending):
        mode = entry.mode
        if not eligible_at(mode, boundary, current_run_id):
            if not mode.barrier and skippable(mode, boundary):
                skipped = index if skipped is None else skipped
                continue
            return Scan(selected, index, skipped)
        if mode.barrier and skipped is not None:
            return Scan(selected, index, skipped)
        is_one = mode.granularity == DeliveryGranularity.ONE
        if selected and is_one:
            return Scan(selected, index, skipped)
        selected.append(index)
        if mode.barrier or is_one:
            return Scan(selected, index, skipped)
    return Scan(selected, None, skipped)


def select_for_freeze(
    pending: Sequence[HasMode], boundary: DeliveryBoundary | str, current_run_id: str | None = None
) -> list[int]:
    """Indexes, in queue order, of the entries a ``boundary`` freeze consumes."""
    return scan_for_freeze(pending, DeliveryBoundary(boundary), current_run_id).selected
