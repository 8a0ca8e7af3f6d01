"""view_pending: the pending queue of each thread, in position order."""

from __future__ import annotations

from threadbox.domain import events as ev

from .changes import AppendPending, Change, Delete, Renumber, Update


def project(event: ev.AnyThreadEvent, position: int) -> list[Change]:
    tid = event.thread_id
    at = event.timestamp.isoformat()
    match event:
        case ev.MessagesDelivered(messages=delivered):
            rows = [
                {
                    "thread_id": tid,
                    "pending_id": d.message.id,
                    "revision": 1,
                    "mode": d.mode.model_dump(mode="json"),
                    "message": d.message.model_dump(mode="json"),
                    "delivered_at": at,
                    "updated_at": at,
                }
                for d in delivered
            ]
            return [AppendPending(tid, rows)]
        case ev.PendingMessageEdited(pending_id=pending_id, message=message, revision=revision):
            values = {
                "message": message.model_dump(mode="json"),
                "revision": revision,
                "updated_at": at,
            }
            return [Update("pending", (tid, pending_id), values)]
        case ev.PendingMessageRetracted(pending_id=pending_id):
            return [Delete("pending", (tid, pending_id)), Renumber(tid)]
        case ev.PendingQueueReordered(order=order):
            return [
                Update("pending", (tid, pending_id), {"position": n})
                for n, pending_id in enumerate(order, start=1)
            ]
        case ev.PendingMessagesExpired(pending_ids=ids):
            return [*(Delete("pending", (tid, i)) for i in ids), Renumber(tid)]
        case ev.PendingMessagesFrozen(messages=frozen):
            return [*(Delete("pending", (tid, f.message.id)) for f in frozen), Renumber(tid)]
        case _:
            return []
