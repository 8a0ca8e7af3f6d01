"""view_checkpoints: one row per commit into the committed zone (a freeze, or outputs)."""

from __future__ import annotations

from threadbox.domain import events as ev

from .changes import Change, Insert


def project(event: ev.AnyThreadEvent, position: int) -> list[Change]:
    base = {
        "thread_id": event.thread_id,
        "version": event.version,
        "at": event.timestamp.isoformat(),
    }
    match event:
        case ev.PendingMessagesFrozen(run_id=run_id, boundary=boundary, messages=frozen):
            row = {
                **base,
                "run_id": run_id,
                "kind": "input",
                "boundary": boundary.value,
                "first_seq": event.first_seq,
                "last_seq": event.last_seq,
                "message_ids": [f.message.id for f in frozen],
            }
            return [Insert("checkpoints", row)]
        case ev.RunOutputCommitted(run_id=run_id, messages=outputs):
            row = {
                **base,
                "run_id": run_id,
                "kind": "output",
                "boundary": None,
                "first_seq": outputs[0].seq,
                "last_seq": outputs[-1].seq,
                "message_ids": [o.message.id for o in outputs],
            }
            return [Insert("checkpoints", row)]
        case _:
            return []
