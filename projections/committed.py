"""view_committed: what the model read and wrote, by seq; hidden messages stay, marked."""

from __future__ import annotations

from . import payloads as pl
from .changes import Change, Insert, Projection, Update, json_text


def _row(
    tid: str,
    seq: int,
    message: pl.MessageJson,
    run_id: str,
    kind: str,
    boundary: str | None,
    at: str,
) -> dict[str, object]:
    return {
        "thread_id": tid,
        "seq": seq,
        "message_id": message["id"],
        "role": message["role"],
        "message": json_text(message),
        "run_id": run_id,
        "kind": kind,
        "boundary": boundary,
        "visible": True,
        "committed_at": at,
    }


def _frozen(p: pl.PendingMessagesFrozen, at: str, position: int) -> list[Change]:
    tid, run_id, boundary = p["thread_id"], p["run_id"], p["boundary"]
    return [
        Insert("committed", _row(tid, f["seq"], f["message"], run_id, "input", boundary, at))
        for f in p["messages"]
    ]


def _outputs(p: pl.RunOutputCommitted, at: str, position: int) -> list[Change]:
    tid, run_id = p["thread_id"], p["run_id"]
    return [
        Insert("committed", _row(tid, o["seq"], o["message"], run_id, "output", None, at))
        for o in p["messages"]
    ]


def _hidden(p: pl.CommittedMessageHidden, at: str, position: int) -> list[Change]:
    return [Update("committed", (p["thread_id"], p["seq"]), {"visible": False})]


BY_EVENT_TYPE: dict[str, Projection] = {
    "PendingMessagesFrozen": _frozen,
    "RunOutputCommitted": _outputs,
    "CommittedMessageHidden": _hidden,
}
