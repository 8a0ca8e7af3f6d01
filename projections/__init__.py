"""Projections: the views of docs/semantics.md §6 as pure functions of stored event payloads to row
changes (see ``payloads.py``: the projections never build pydantic events)."""

from __future__ import annotations

from typing import Any

from . import checkpoints, committed, pending, runs, threads
from .changes import Change, Projection
from .payloads import PAYLOAD_TYPES, view_timestamp

PROJECTIONS = (threads, pending, committed, runs, checkpoints)

# For each event type, its projections in view order: one lookup per event.
_BY_EVENT: dict[str, tuple[Projection, ...]] = {
    name: tuple(m.BY_EVENT_TYPE[name] for m in PROJECTIONS if name in m.BY_EVENT_TYPE)
    for name in PAYLOAD_TYPES
}


def changes_for(event_type: str, payload: dict[str, Any], position: int) -> list[Change]:
    """Every view's row changes for one event (its type name and stored payload, upcast) at
    its log position. Each projection reads the payload as its type's ``TypedDict``."""
    try:
        projections = _BY_EVENT[event_type]
    except KeyError:
        raise ValueError(f"no projection knows the event type {event_type!r}") from None
    at = view_timestamp(payload["timestamp"])
    changes: list[Change] = []
    for project in projections:
        changes.extend(project(payload, at, position))
    return changes
