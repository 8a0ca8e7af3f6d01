"""view_runs: one row per (thread, run), with what each freeze and output added to it."""

from __future__ import annotations

from threadbox.domain import events as ev

from .changes import Change, Extend, Increment, Insert, Update


def project(event: ev.AnyThreadEvent, position: int) -> list[Change]:
    tid = event.thread_id
    at = event.timestamp.isoformat()
    match event:
        case ev.RunStarted(run_id=run_id):
            row: dict[str, object] = {
                "thread_id": tid,
                "run_id": run_id,
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
        case ev.RunResumed(run_id=run_id):
            return [Update("runs", (tid, run_id), {"status": "running"})]
        case ev.RunSuspended(run_id=run_id):
            return [Update("runs", (tid, run_id), {"status": "waiting"})]
        case ev.RunFinished(run_id=run_id, termination=termination, detail=detail):
            values = {
                "status": "done",
                "termination": termination.value,
                "detail": detail,
                "finished_at": at,
            }
            return [Update("runs", (tid, run_id), values)]
        case ev.PendingMessagesFrozen(
            run_id=run_id, messages=frozen, first_seq=first, last_seq=last
        ):
            key = (tid, run_id)
            return [
                Extend("runs", key, "trigger_message_ids", [f.message.id for f in frozen]),
                Extend("runs", key, "input_ranges", [[first, last]]),
                Increment("runs", key, "freeze_count", 1),
            ]
        case ev.RunOutputCommitted(run_id=run_id, messages=outputs):
            ids = [o.message.id for o in outputs]
            return [Extend("runs", (tid, run_id), "output_message_ids", ids)]
        case _:
            return []
