"""view_checkpoints: one row per commit into the committed zone (a freeze, or outputs)."""

from __future__ import annotations

from . import payloads as pl
from .changes import Change, Insert, Projection


def _frozen(p: pl.PendingMessagesFrozen, at: str, position: int) -> list[Change]:
    row = {
        "thread_id": p["thread_id"],
        "version": p["version"],
        "at": at,
        "run_id": p["run_id"],
        "kind": "input",
        "boundary": p["boundary"],
        "first_seq": p["first_seq"],
        "last_seq": p["last_seq"],
        "message_ids": [f["message"]["id"] for f in p["messages"]],
    }
    return [Insert("checkpoints", row)]


def _outputs(p: pl.RunOutputCommitted, at: str, position: int) -> list[Change]:
    outputs = p["messages"]
    row = {
        "thread_id": p["thread_id"],
        "version": p["version"],
        "at": at,
        "run_id": p["run_id"],
        "kind": "output",
        "boundary": None,
        "first_seq": outputs[0]["seq"],
        "last_seq": outputs[-1]["seq"],
        "message_ids": [o["message"]["id"] for o in outputs],
    }
    return [Insert("checkpoints", row)]


BY_EVENT_TYPE: dict[str, Projection] = {
    "PendingMessagesFrozen": _frozen,
    "RunOutputCommitted": _outputs,
}
