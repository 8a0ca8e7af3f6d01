"""view_runs: one row per (thread, run), with what each freeze and output added to it."""

from __future__ import annotations

from . import payloads as pl
from .changes import Change, Extend, Increment, Insert, Projection, Update


def _started(p: pl.RunStarted, at: str, position: int) -> list[Change]:
    row: dict[str, object] = {
        "thread_id": p["thread_id"],
        "run_id": p["run_id"],
        "status": "running",
        "termination": None,
        "detail": None,
        "trigger_message_ids": [],
        "input_ranges": [],
        "output_message_ids": [],
        "freeze_count": 0,
        "started_at": at,
        "finished_at": None,
        "started_position": position,
    }
    return [Insert("runs", row)]


def _resumed(p: pl.RunResumed, at: str, position: int) -> list[Change]:
    return [Update("runs", (p["thread_id"], p["run_id"]), {"status": "running"})]


def _suspended(p: pl.RunSuspended, at: str, position: int) -> list[Change]:
    return [Update("runs", (p["thread_id"], p["run_id"]), {"status": "waiting"})]


def _finished(p: pl.RunFinished, at: str, position: int) -> list[Change]:
    values = {
        "status": "done",
        "termination": p["termination"],
        "detail": p["detail"],
        "finished_at": at,
    }
    return [Update("runs", (p["thread_id"], p["run_id"]), values)]


def _frozen(p: pl.PendingMessagesFrozen, at: str, position: int) -> list[Change]:
    key = (p["thread_id"], p["run_id"])
    return [
        Extend("runs", key, "trigger_message_ids", [f["message"]["id"] for f in p["messages"]]),
        Extend("runs", key, "input_ranges", [[p["first_seq"], p["last_seq"]]]),
        Increment("runs", key, "freeze_count", 1),
    ]


def _outputs(p: pl.RunOutputCommitted, at: str, position: int) -> list[Change]:
    ids = [o["message"]["id"] for o in p["messages"]]
    return [Extend("runs", (p["thread_id"], p["run_id"]), "output_message_ids", ids)]


BY_EVENT_TYPE: dict[str, Projection] = {
    "RunStarted": _started,
    "RunResumed": _resumed,
    "RunSuspended": _suspended,
    "RunFinished": _finished,
    "PendingMessagesFrozen": _frozen,
    "RunOutputCommitted": _outputs,
}
