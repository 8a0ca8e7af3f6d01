"""The read rules of the application (``threadbox.application.queries``), which the HTTP and
command-line adapters only translate: internal messages left out with full pages, the
committed zone as it was at a version, the run a suspension returns."""

from __future__ import annotations

import pytest
from threadbox import DeliveryBoundary, Mailbox, Message, RunStatus
from threadbox.errors import InvalidInput, ThreadNotFound

T = "thread"


def note(message_id: str) -> Message:
    return Message.model_validate(
        {
            "id": message_id,
            "role": "system",
            "content": [{"type": "text", "text": "for the agent only"}],
            "visibility": "internal",
        }
    )


def commit_all(mailbox: Mailbox, messages: list[Message], run_id: str = "r1") -> None:
    mailbox.deliver(T, messages)
    mailbox.freeze(T, DeliveryBoundary.NEW_RUN, run_id)


def seqs_and_ids(mailbox: Mailbox, **options: object) -> list[tuple[int, str | None]]:
    return [(m.seq, m.message.id) for m in mailbox.committed(T, **options)]  # type: ignore[arg-type]


def test_leaving_internal_messages_out_still_fills_every_page(mailbox: Mailbox) -> None:
    messages = [Message.user("a", id="a"), note("n1"), note("n2"), Message.user("b", id="b")]
    commit_all(mailbox, [*messages, note("n3"), Message.user("c", id="c")])
    first = seqs_and_ids(mailbox, limit=2, include_internal=False)
    assert first == [(1, "a"), (4, "b")]
    rest = seqs_and_ids(mailbox, after_seq=4, limit=2, include_internal=False)
    assert rest == [(6, "c")]
    assert len(mailbox.committed(T)) == 6  # the Python API's default keeps them


def test_the_committed_zone_at_a_version_has_its_messages_and_hidings_of_then(
    mailbox: Mailbox,
) -> None:
    commit_all(mailbox, [Message.user("a", id="a"), Message.user("b", id="b")])
    mailbox.hide(T, "a", "typo")
    hidden_at = mailbox.thread(T).version
    mailbox.commit_output(T, "r1", [Message.assistant("done", id="out")])
    mailbox.hide(T, "b", "later")

    then = mailbox.committed(T, include_hidden=True, at_version=hidden_at)
    assert [(m.message.id, m.visible) for m in then] == [("a", False), ("b", True)]
    visible_then = mailbox.committed(T, at_version=hidden_at)
    assert [m.message.id for m in visible_then] == ["b"]
    now = mailbox.committed(T, include_hidden=True)
    assert [(m.message.id, m.visible) for m in now] == [("a", False), ("b", False), ("out", True)]


def test_a_version_the_thread_never_had_is_invalid(mailbox: Mailbox) -> None:
    commit_all(mailbox, [Message.user("a", id="a")])
    beyond = mailbox.thread(T).version + 1
    with pytest.raises(InvalidInput) as raised:
        mailbox.committed(T, at_version=beyond)
    assert raised.value.field == "at_version"
    with pytest.raises(ThreadNotFound):
        mailbox.committed("never-written", at_version=1)


def test_suspending_a_run_returns_it_waiting(mailbox: Mailbox) -> None:
    commit_all(mailbox, [Message.user("a", id="a")])
    run = mailbox.suspend_run(T, "r1", "needs approval")
    assert (run.run_id, run.thread_id, run.status) == ("r1", T, RunStatus.WAITING)
    assert run.trigger_message_ids == ["a"]
    assert mailbox.runs(T) == [run]
