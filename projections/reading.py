"""View rows into the records callers get back (the same for every backend)."""

from __future__ import annotations

from datetime import datetime

from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    PendingEntry,
    RunRecord,
    ThreadSummary,
)
from threadbox.domain.values import DeliveryMode, Message

from .changes import Row


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def pending_entry(row: Row) -> PendingEntry:
    return PendingEntry(
        pending_id=row["pending_id"],
        thread_id=row["thread_id"],
        position=row["position"],
        revision=row["revision"],
        message=Message.model_validate_json(row["message"]),
        mode=DeliveryMode.model_validate_json(row["mode"]),
        delivered_at=_at(row["delivered_at"]),
        updated_at=_at(row["updated_at"]),
    )


def committed_message(row: Row) -> CommittedMessage:
    return CommittedMessage(
        thread_id=row["thread_id"],
        seq=row["seq"],
        message=Message.model_validate_json(row["message"]),
        run_id=row["run_id"],
        kind=row["kind"],
        boundary=row["boundary"],
        visible=bool(row["visible"]),
        committed_at=_at(row["committed_at"]),
    )


def run_record(row: Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        thread_id=row["thread_id"],
        status=row["status"],
        termination=row["termination"],
        detail=row["detail"],
        trigger_message_ids=row["trigger_message_ids"],
        input_ranges=[tuple(r) for r in row["input_ranges"]],
        output_message_ids=row["output_message_ids"],
        freeze_count=row["freeze_count"],
        started_at=_at(row["started_at"]),
        finished_at=_at(row["finished_at"]) if row["finished_at"] else None,
    )


def thread_summary(row: Row) -> ThreadSummary:
    return ThreadSummary(
        thread_id=row["thread_id"],
        version=row["version"],
        pending_count=row["pending_count"],
        committed_count=row["committed_count"],
        running_run_id=row["running_run_id"],
        waiting_run_id=row["waiting_run_id"],
        latest_run_id=row["latest_run_id"],
        updated_at=_at(row["updated_at"]),
    )


def checkpoint(row: Row) -> Checkpoint:
    return Checkpoint(
        thread_id=row["thread_id"],
        run_id=row["run_id"],
        kind=row["kind"],
        boundary=row["boundary"],
        first_seq=row["first_seq"],
        last_seq=row["last_seq"],
        message_ids=row["message_ids"],
        version=row["version"],
        at=_at(row["at"]),
    )
