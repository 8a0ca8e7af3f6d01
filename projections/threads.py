"""view_threads: one summary row per thread (version, counts, runs, updated_at)."""

from __future__ import annotations

from . import payloads as pl
from .changes import Change, Increment, Insert, Projection, Update


def _touch(p: pl.ThreadEvent, at: str) -> Update:
    return Update("threads", (p["thread_id"],), {"version": p["version"], "updated_at": at})


def _opened(p: pl.ThreadOpened, at: str, position: int) -> list[Change]:
    row = {
        "thread_id": p["thread_id"],
        "version": p["version"],
        "pending_count": 0,
        "committed_count": 0,
        "running_run_id": None,
        "waiting_run_id": None,
        "latest_run_id": None,
        "updated_at": at,
    }
    return [Insert("threads", row)]


def _touched(p: pl.ThreadEvent, at: str, position: int) -> list[Change]:
    return [_touch(p, at)]  # the version and updated_at are all this event changes here


def _pending_count(p: pl.ThreadEvent, at: str, delta: int) -> list[Change]:
    return [_touch(p, at), Increment("threads", (p["thread_id"],), "pending_count", delta)]


def _delivered(p: pl.MessagesDelivered, at: str, position: int) -> list[Change]:
    return _pending_count(p, at, len(p["messages"]))


def _retracted(p: pl.PendingMessageRetracted, at: str, position: int) -> list[Change]:
    return _pending_count(p, at, -1)


def _expired(p: pl.PendingMessagesExpired, at: str, position: int) -> list[Change]:
    return _pending_count(p, at, -len(p["pending_ids"]))


def _frozen(p: pl.PendingMessagesFrozen, at: str, position: int) -> list[Change]:
    key = (p["thread_id"],)
    return [
        *_pending_count(p, at, -len(p["messages"])),
        Update("threads", key, {"committed_count": p["last_seq"]}),
    ]


def _outputs(p: pl.RunOutputCommitted, at: str, position: int) -> list[Change]:
    count = {"committed_count": p["messages"][-1]["seq"]}
    return [_touch(p, at), Update("threads", (p["thread_id"],), count)]


def _runs(p: pl.ThreadEvent, at: str, values: dict[str, object]) -> list[Change]:
    return [_touch(p, at), Update("threads", (p["thread_id"],), values)]


def _started(p: pl.RunStarted, at: str, position: int) -> list[Change]:
    run_id = p["run_id"]
    return _runs(p, at, {"running_run_id": run_id, "waiting_run_id": None, "latest_run_id": run_id})


def _resumed(p: pl.RunResumed, at: str, position: int) -> list[Change]:
    return _runs(p, at, {"running_run_id": p["run_id"], "waiting_run_id": None})


def _suspended(p: pl.RunSuspended, at: str, position: int) -> list[Change]:
    return _runs(p, at, {"running_run_id": None, "waiting_run_id": p["run_id"]})


def _finished(p: pl.RunFinished, at: str, position: int) -> list[Change]:
    return _runs(p, at, {"running_run_id": None, "waiting_run_id": None})


BY_EVENT_TYPE: dict[str, Projection] = {
    **{name: _touched for name in pl.PAYLOAD_TYPES},
    "ThreadOpened": _opened,
    "MessagesDelivered": _delivered,
    "PendingMessageRetracted": _retracted,
    "PendingMessagesExpired": _expired,
    "PendingMessagesFrozen": _frozen,
    "RunOutputCommitted": _outputs,
    "RunStarted": _started,
    "RunResumed": _resumed,
    "RunSuspended": _suspended,
    "RunFinished": _finished,
}
