"""view_committed: what the model read and wrote, by seq; hidden messages stay, marked."""

from __future__ import annotations

from threadbox.domain import events as ev
from threadbox.domain.values import Message

from .changes import Change, Insert, Update


def _row(
    tid: str, seq: int, message: Message, run_id: str, kind: str, boundary: str | None, at: str
) -> dict[str, object]:
    return {
        "thread_id": tid,
        "seq": seq,
        "message_id": message.id,
        "role": message.role.value,
        "message": message.model_dump(mode="json"),
        "run_id": run_id,
        "kind": kind,
        "boundary": boundary,
        "visible": True,
        "committed_at": at,
    }


def project(event: ev.AnyThreadEvent, position: int) -> list[Change]:
    tid = event.thread_id
    at = event.timestamp.isoformat()
    match event:
        case ev.PendingMessagesFrozen(run_id=run_id, boundary=boundary, messages=frozen):
            return [
                Insert(
                    "committed", _row(tid, f.seq, f.message, run_id, "input", boundary.value, at)
                )
                for f in frozen
            ]
        case ev.RunOutputCommitted(run_id=run_id, messages=outputs):
            return [
                Insert("committed", _row(tid, o.seq, o.message, run_id, "output", None, at))
                for o in outputs
            ]
        case ev.CommittedMessageHidden(seq=seq):
            return [Update("committed", (tid, seq), {"visible": False})]
        case _:
            return []
