"""view_pending: the pending queue of each thread, in position order."""

from __future__ import annotations

from . import payloads as pl
from .changes import AppendPending, Change, Delete, Projection, Renumber, Update, json_text


def _delivered(p: pl.MessagesDelivered, at: str, position: int) -> list[Change]:
    tid = p["thread_id"]
    rows = [
        {
            "thread_id": tid,
            "pending_id": d["message"]["id"],
            "revision": 1,
            "mode": json_text(d["mode"]),
            "message": json_text(d["message"]),
            "delivered_at": at,
            "updated_at": at,
        }
        for d in p["messages"]
    ]
    return [AppendPending(tid, rows)]


def _edited(p: pl.PendingMessageEdited, at: str, position: int) -> list[Change]:
    values = {"message": json_text(p["message"]), "revision": p["revision"], "updated_at": at}
    return [Update("pending", (p["thread_id"], p["pending_id"]), values)]


def _retracted(p: pl.PendingMessageRetracted, at: str, position: int) -> list[Change]:
    tid = p["thread_id"]
    return [Delete("pending", (tid, p["pending_id"])), Renumber(tid)]


def _reordered(p: pl.PendingQueueReordered, at: str, position: int) -> list[Change]:
    tid = p["thread_id"]
    return [
        Update("pending", (tid, pending_id), {"position": n})
        for n, pending_id in enumerate(p["order"], start=1)
    ]


def _expired(p: pl.PendingMessagesExpired, at: str, position: int) -> list[Change]:
    tid = p["thread_id"]
    return [*(Delete("pending", (tid, i)) for i in p["pending_ids"]), Renumber(tid)]


def _frozen(p: pl.PendingMessagesFrozen, at: str, position: int) -> list[Change]:
    tid = p["thread_id"]
    return [*(Delete("pending", (tid, f["message"]["id"])) for f in p["messages"]), Renumber(tid)]


BY_EVENT_TYPE: dict[str, Projection] = {
    "MessagesDelivered": _delivered,
    "PendingMessageEdited": _edited,
    "PendingMessageRetracted": _retracted,
    "PendingQueueReordered": _reordered,
    "PendingMessagesExpired": _expired,
    "PendingMessagesFrozen": _frozen,
}
