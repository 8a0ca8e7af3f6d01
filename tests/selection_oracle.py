"""An independent reading of the freeze selection rule (docs/semantics.md §3 and §3.1), the
oracle the selection properties compare ``select_for_freeze`` with.

Written from the rule's text alone, on plain values (strings and booleans): it imports nothing
from threadbox, so a mistake in the library's eligibility, skippable rule or scan cannot hide
behind the same mistake here. Eligibility between boundaries is a table written out by hand
(every pair), not computed from precedences as the library does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BOUNDARIES = ("interrupt", "next_step", "on_natural_end", "resume_input", "new_run")

# May an entry delivered for the row's boundary be taken at a freeze of the column's boundary?
# §3: resume_input only meets resume_input; otherwise an earlier boundary falls through to any
# later one (interrupt < next_step < on_natural_end < new_run).
#                        freeze: interrupt next_step on_natural_end resume_input new_run
CASCADE: dict[str, tuple[bool, bool, bool, bool, bool]] = {
    "interrupt":      (True,     True,     True,          False,       True),
    "next_step":      (False,    True,     True,          False,       True),
    "on_natural_end": (False,    False,    True,          False,       True),
    "resume_input":   (False,    False,    False,         True,        False),
    "new_run":        (False,    False,    False,         False,       True),
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """A pending entry's delivery mode, as plain values (the field names of docs/semantics.md
    §3, shortened)."""

    boundary: str
    granularity: str = "batch"
    barrier: bool = False
    target: str | None = None
    fallback: bool = True


def eligible(entry: Entry, freeze: str, run: str | None) -> bool:
    """§3: the boundary table, then the target rule."""
    if not CASCADE[entry.boundary][BOUNDARIES.index(freeze)]:
        return False
    if entry.target is None:
        return True
    if freeze == "new_run":
        return entry.fallback  # a targeted entry reaches a new run only through its fallback
    return entry.target == run  # otherwise only the freezing run it targets takes it


def skippable(entry: Entry, freeze: str) -> bool:
    """§3.1, for an ineligible entry: (freeze ≠ new_run and entry is new_run) or
    (freeze = new_run, entry ≠ new_run and not fallback_to_new_run)."""
    if freeze != "new_run":
        return entry.boundary == "new_run"
    return entry.boundary != "new_run" and not entry.fallback


def select(queue: Sequence[Entry], freeze: str, run: str | None) -> list[int]:
    """§3.1's scan, step by step: the indexes a ``freeze`` of ``run`` consumes."""
    selected: list[int] = []
    skipped = False
    for index, entry in enumerate(queue):
        is_one = entry.granularity == "one"
        # 1. an ineligible entry: a barrier stops; a skippable one is passed over; else stop
        if not eligible(entry, freeze, run):
            if entry.barrier:
                break
            if skippable(entry, freeze):
                skipped = True
                continue
            break
        # 2. an eligible barrier never passes a skipped entry
        if entry.barrier and skipped:
            break
        # 3. a `one` entry is never added to a selection already started
        if selected and is_one:
            break
        # 4. take it; a barrier or a `one` entry ends the selection
        selected.append(index)
        if entry.barrier or is_one:
            break
    return selected
