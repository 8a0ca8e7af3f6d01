"""view_threads: one summary row per thread (version, counts, runs, updated_at)."""

from __future__ import annotations

from threadbox.domain import events as ev

from .changes import Change, Increment, Insert, Update


def project(event: ev.AnyThreadEvent, position: int) -> list[Change]:
    key = (event.thread_id,)
    at = event.timestamp.isoformat()
    if isinstance(event, ev.ThreadOpened):
        row = {
            "thread_id": event.thread_id,
            "version": event.version,
            "pending_count": 0,
            "committed_count": 0,
            "running_run_id": None,
            "waiting_run_id": None,
            "latest_run_id": None,
            "updated_at": at,
        }
        return [Insert("threads", row)]
    changes: list[Change] = [Update("threads", key, {"version": event.version, "updated_at": at})]
    match event:
        case ev.MessagesDelivered(messages=delivered):
            changes.append(Increment("threads", key, "pending_count", len(delivered)))
        case ev.PendingMessageRetracted():
            changes.append(Increment("threads", key, "pending_count", -1))
        case ev.PendingMessagesExpired(pending_ids=ids):
            changes.append(Increment("threads", key, "pending_count", -len(ids)))
        case ev.PendingMessagesFrozen(messages=frozen, last_seq=last):
            changes.append(Increment("threads", key, "pending_count", -len(frozen)))
            changes.append(Update("threads", key, {"committed_count": last}))
        case ev.RunOutputCommitted(messages=outputs):
            changes.append(Update("threads", key, {"committed_count": outputs[-1].seq}))
        case ev.RunStarted(run_id=run_id):
            runs = {"running_run_id": run_id, "waiting_run_id": None, "latest_run_id": run_id}
            changes.append(Update("threads", key, runs))
        case ev.RunResumed(run_id=run_id):
            changes.append(
                Update("threads", key, {"running_run_id": run_id, "waiting_run_id": None})
            )
        case ev.RunSuspended(run_id=run_id):
            changes.append(
                Update("threads", key, {"running_run_id": None, "waiting_run_id": run_id})
            )
        case ev.RunFinished():
            changes.append(Update("threads", key, {"running_run_id": None, "waiting_run_id": None}))
        case _:
            pass  # the version and updated_at above are all this event changes here
    return changes
