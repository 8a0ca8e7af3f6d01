"""Projections: the views of SEMANTICS §6 as pure functions of events to row changes."""

from __future__ import annotations

from threadbox.domain.events import AnyThreadEvent

from . import checkpoints, committed, pending, runs, threads
from .changes import Change

PROJECTIONS = (
    threads.project,
    pending.project,
    committed.project,
    runs.project,
    checkpoints.project,
)


def changes_for(event: AnyThreadEvent, position: int) -> list[Change]:
    """Every view's row changes for one event at its log position."""
    return [change for project in PROJECTIONS for change in project(event, position)]
