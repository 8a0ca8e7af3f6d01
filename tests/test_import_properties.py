"""Import, fed generated event streams (issue 9 finding 1; ADR 0011): histories decided from
random commands, exported, then often damaged (an event dropped, swapped, repeated, retyped,
a field or a nested message changed, an event forged at the end). Whatever the file, the import
either accepts it — and then every thread loads, its state agrees with the views, the audit and
``views verify`` pass and the thread takes new commands — or refuses it and writes nothing. An
undamaged history is always accepted, whole or in two parts."""

from __future__ import annotations

import tempfile
import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest
import threadbox
from conftest import drop_schema, pg_store_url
from decide_support import IDS, RUNS, T0, commands
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from threadbox import Mailbox, Message
from threadbox.application import transfer
from threadbox.audit import audit
from threadbox.domain.decide import decide
from threadbox.domain.errors import ThreadboxError
from threadbox.domain.events import EVENT_TYPES
from threadbox.domain.thread import Thread, apply_event
from threadbox.errors import ImportRefused
from threadbox.infrastructure.codec import archived_of, encode_event

Record = dict[str, Any]

DAMAGES = ["none", "none", "drop", "swap", "repeat", "field", "message", "retype", "forge"]
VALUES: list[Any] = [None, True, False, 0, 1, -1, 2, 2**63, "x", "", " ", "m0", "r1", [], {}]
VALUES += [["m0"], "garbage", "2026-01-01T00:00:00", "2026-01-01T00:00:00Z", 1.5, "\x00"]


@st.composite
def history(draw: st.DrawFn, thread_id: str) -> list[Record]:
    """The export lines of a thread decided from random commands (refused ones write nothing)."""
    state = Thread(thread_id)
    records: list[Record] = []
    for step in range(draw(st.integers(1, 30))):
        command = draw(commands(state))
        try:
            events = decide(state, command, T0 + timedelta(seconds=step))
        except ThreadboxError:
            continue
        for decided in events:
            apply_event(state, decided)
            archived = archived_of(encode_event(decided))
            records.append(
                {
                    "thread_id": archived.thread_id,
                    "version": archived.version,
                    "type": archived.type,
                    "topic": archived.topic,
                    "timestamp": archived.payload["timestamp"],
                    "state": archived.payload,
                }
            )
    return records


def renumbered(records: list[Record]) -> list[Record]:
    """Versions 1..n again, after events moved (so that only the content is wrong)."""
    for version, record in enumerate(records, start=1):
        record["version"] = record["state"]["version"] = version
    return records


@st.composite
def damaged(draw: st.DrawFn, records: list[Record]) -> tuple[str, list[Record]]:
    """One damage done to a thread's lines (or none): what was done, and the lines."""
    damage = draw(st.sampled_from(DAMAGES))
    if damage == "none" or not records:
        return "none", records
    i = draw(st.integers(0, len(records) - 1))
    record = records[i]
    state = record["state"]
    if damage == "drop":
        return damage, renumbered(records[:i] + records[i + 1 :])
    if damage == "swap" and i + 1 < len(records):
        records[i], records[i + 1] = records[i + 1], records[i]
        return damage, renumbered(records)
    if damage == "repeat":
        copy = orjson.loads(orjson.dumps(record))
        return damage, renumbered([*records[: i + 1], copy, *records[i + 1 :]])
    fields = [k for k in state if k not in ("_v", "thread_id", "version", "timestamp")]
    if damage == "field" and fields:
        state[draw(st.sampled_from(fields))] = draw(st.sampled_from(VALUES))
        return damage, records
    messages = state.get("messages") or []
    if damage == "message" and messages:
        item = draw(st.sampled_from(messages))
        key = draw(st.sampled_from([*item.keys(), "message.id", "message.role"]))
        value = draw(st.sampled_from([*VALUES, *IDS[:3], "assistant", "user"]))
        if key.startswith("message."):
            item["message"][key.split(".")[1]] = value
        else:
            item[key] = value
        return damage, records
    if damage == "retype":
        name = draw(st.sampled_from(sorted(EVENT_TYPES)))
        record["type"], record["topic"] = name, f"threadbox.domain.events:{name}"
        return damage, records
    return "forge", [*records, draw(forgery(records))]


@st.composite
def forgery(draw: st.DrawFn, records: list[Record]) -> Record:
    """An event written at the thread's next version past the decisions."""
    ids, runs = draw(st.sampled_from(IDS[:4])), draw(st.sampled_from(RUNS[:2]))
    output = Message.assistant("forged", id=ids).model_dump(mode="json")
    payloads: dict[str, dict[str, Any]] = {
        "PendingMessageRetracted": {"pending_id": ids, "revision": 1},
        "PendingMessagesExpired": {"run_id": runs, "pending_ids": [ids]},
        "RunFinished": {"run_id": runs, "termination": "natural_end", "detail": None},
        "RunSuspended": {"run_id": runs, "reason": "forged"},
        "RunResumed": {"run_id": runs, "boundary": "resume_input"},
        "RunStarted": {"run_id": runs, "boundary": "new_run"},
        "CommittedMessageHidden": {
            "message_id": ids,
            "seq": draw(st.integers(1, 3)),
            "reason": "x",
        },
        "RunOutputCommitted": {"run_id": runs, "messages": [{"seq": 1, "message": output}]},
        "PendingQueueReordered": {"order": [ids]},
    }
    name = draw(st.sampled_from(sorted(payloads)))
    last = records[-1]
    version = last["version"] + 1
    head = {"_v": 1, "thread_id": last["thread_id"], "version": version}
    state = {**head, "timestamp": last["timestamp"], **payloads[name]}
    if name == "RunFinished":
        state["_v"] = 2
    return {
        "thread_id": last["thread_id"],
        "version": version,
        "type": name,
        "topic": f"threadbox.domain.events:{name}",
        "timestamp": last["timestamp"],
        "state": state,
    }


@st.composite
def files(draw: st.DrawFn) -> tuple[list[str], list[list[Record]]]:
    """One or two threads' lines, each perhaps damaged: the damages and the streams."""
    done, streams = [], []
    for thread_id in ("a", "b")[: draw(st.integers(1, 2))]:
        damage, records = draw(damaged(draw(history(thread_id))))
        done.append(damage)
        streams.append(records)
    return done, streams


def lines_of(streams: list[list[Record]]) -> list[bytes]:
    return [orjson.dumps(r) + b"\n" for records in streams for r in records]


def imported(mailbox: Mailbox, lines: list[bytes]) -> int:
    archive = transfer.archive_of(mailbox.store)
    streams = transfer.read_streams(archive, lines, 0)
    return transfer.import_streams(mailbox.store, mailbox.views, streams)


def check_accepted(mailbox: Mailbox, thread_ids: list[str]) -> None:
    """An accepted file left a store that folds, whose views agree with the states and the
    log, and whose threads take new commands."""
    report = audit(mailbox.store, mailbox.views)
    assert report.ok, report.problems
    for thread_id in thread_ids:
        state = mailbox.thread(thread_id)
        assert [e.pending_id for e in mailbox.pending(thread_id)] == [
            e.pending_id for e in state.pending
        ]
        committed = mailbox.committed(thread_id, include_hidden=True)
        assert [c.seq for c in committed] == list(range(1, state.committed_count + 1))
        assert mailbox.runs(thread_id) == state.runs
        mailbox.deliver(thread_id, [Message.user("after the import", id=f"new-{uuid.uuid4()}")])
    assert mailbox.views.verify().ok


def check_import(
    mailbox: Mailbox, damages: list[str], streams: list[list[Record]], cut: int
) -> None:
    thread_ids = [records[0]["thread_id"] for records in streams if records]
    lines = lines_of(streams)
    if all(d == "none" for d in damages):
        # An undamaged history is accepted: in two parts, the second continuing the first.
        first = [orjson.dumps(r) + b"\n" for records in streams for r in records[:cut]]
        rest = [orjson.dumps(r) + b"\n" for records in streams for r in records[cut:]]
        assert imported(mailbox, first) + imported(mailbox, rest) == len(lines)
        check_accepted(mailbox, thread_ids)
        return
    try:
        written = imported(mailbox, lines)
    except ImportRefused as refused:
        event(f"{'+'.join(damages)}: refused")
        assert refused.problems and all(p.startswith("line ") for p in refused.problems)
        assert mailbox.store.count_after("") == 0, "a refused file writes nothing"
        assert mailbox.views.verify().ok
        return
    event(f"{'+'.join(damages)}: accepted")
    assert written == len(lines)
    check_accepted(mailbox, thread_ids)


SETTINGS = {
    "memory": settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)),
    "sqlite": settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck)),
    "postgres": settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck)),
}


@pytest.mark.parametrize("backend", list(SETTINGS))
def test_an_import_is_accepted_and_folds_or_is_refused_and_writes_nothing(backend: str) -> None:
    @SETTINGS[backend]
    @given(files(), st.integers(0, 20))
    def run(file: tuple[list[str], list[list[Record]]], cut: int) -> None:
        damages, streams = file
        if backend == "memory":
            with threadbox.open("memory://") as mailbox:
                check_import(mailbox, damages, streams, cut)
        elif backend == "sqlite":
            with (
                tempfile.TemporaryDirectory() as workdir,
                threadbox.open(f"sqlite:///{workdir}/threadbox.db") as mailbox,
            ):
                check_import(mailbox, damages, streams, cut)
        else:
            schema = f"t_{uuid.uuid4().hex[:16]}"
            try:
                with threadbox.open(pg_store_url(schema)) as mailbox:
                    check_import(mailbox, damages, streams, cut)
            finally:
                drop_schema(schema)

    run()
