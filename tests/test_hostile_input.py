"""Hostile input through the Python API: generated messages, modes, ids and JSON-ish bodies (huge
strings, deep nesting, lone surrogates, control characters, wrong types, unknown fields). Every
call is either accepted or raises a ``ThreadboxError`` subclass, and a rejected call writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import threadbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadbox import DeliveryMode, Mailbox, Message
from threadbox.errors import ThreadboxError

THREAD = "hostile"
RUN = "run-1"

text = st.text(st.characters(exclude_categories=[]), max_size=40)  # surrogates, controls
wrong_types = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=8), st.just([])
)
ids = st.one_of(
    st.sampled_from(["p-1", "p-2", "m-1", RUN, "", " ", "x" * 201, "a\x00b", "\ud800", "é"]),
    text,
    wrong_types,
)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for n in range(depth):
        value = {"k": value} if n % 2 else [value]
    return value


json_ish = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(text, st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)
hostile_json = st.one_of(
    json_ish,
    st.integers(min_value=1, max_value=600).map(nested),
    st.sampled_from(["x" * 2_000_000, b"\xff\xfe", "\udcff", "ok\x07\x1b[31m"]),
)
part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(text, hostile_json)}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["image", "document", "tool_use", "nope"])},
        optional={"source": hostile_json, "id": ids, "name": text, "input": hostile_json},
    ),
    hostile_json,
)
well_formed = st.fixed_dictionaries(  # valid in shape, hostile in its values
    {
        "role": st.just("user"),
        "content": st.lists(
            st.fixed_dictionaries({"type": st.just("text"), "text": text}), min_size=1, max_size=2
        ),
        "metadata": st.dictionaries(text, json_ish, max_size=3),
    }
)
message = st.one_of(
    well_formed,
    st.builds(Message.user, text, id=st.one_of(st.none(), st.sampled_from(["p-1", "m-1", "new"]))),
    st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), hostile_json)},
        optional={
            "id": ids,
            "content": st.one_of(st.lists(part, max_size=3), hostile_json),
            "tool_call_id": ids,
            "visibility": st.one_of(st.sampled_from(["all", "internal"]), hostile_json),
            "metadata": hostile_json,
            "unknown_field": hostile_json,
        },
    ),
    hostile_json,
)
messages = st.one_of(st.lists(message, max_size=3), hostile_json)
mode = st.one_of(
    st.none(),
    st.sampled_from([DeliveryMode.next_step(), DeliveryMode.resume_input(RUN)]),
    st.fixed_dictionaries(
        {},
        optional={
            "boundary": st.one_of(st.sampled_from(["interrupt", "next_step", "new_run"]), text),
            "granularity": st.one_of(st.just("one"), hostile_json),
            "barrier": hostile_json,
            "target_run_id": ids,
            "fallback_to_new_run": hostile_json,
            "extra": hostile_json,
        },
    ),
    hostile_json,
)
thread_ids = st.one_of(st.just(THREAD), ids)
numbers = st.one_of(st.integers(min_value=-5, max_value=10**20), wrong_types, text)


def calls(mb: Mailbox) -> st.SearchStrategy[tuple[str, Callable[[], Any]]]:
    """One API call with hostile arguments, named for the failure message."""

    def call(name: str, *args: st.SearchStrategy[Any], **kwargs: st.SearchStrategy[Any]) -> Any:
        method = getattr(mb, name)
        return st.tuples(st.tuples(*args), st.fixed_dictionaries(kwargs)).map(
            lambda a: (f"{name}{a[0]!r:.300}{a[1]!r:.300}", lambda: method(*a[0], **a[1]))
        )

    return st.one_of(
        call("deliver", thread_ids, messages, mode),
        call("edit", thread_ids, ids, message, expected_revision=numbers),
        call("retract", thread_ids, ids, expected_revision=numbers),
        call("reorder", thread_ids, st.one_of(st.lists(ids, max_size=4), hostile_json)),
        call("freeze", thread_ids, st.one_of(text, hostile_json), ids, expected_version=numbers),
        call("submit", thread_ids, messages, mode, ids),
        call("suspend_run", thread_ids, ids, st.one_of(text, hostile_json)),
        call(
            "finish_run",
            thread_ids,
            ids,
            st.one_of(text, hostile_json),
            st.one_of(text, wrong_types),
        ),
        call("commit_output", thread_ids, ids, messages),
        call("hide", thread_ids, ids, st.one_of(text, hostile_json)),
        call("committed", thread_ids, after_seq=numbers, limit=st.one_of(st.none(), numbers)),
        call("thread", thread_ids, at_version=st.one_of(st.none(), numbers)),
        call("history", thread_ids, after_version=numbers),
        call("threads_with_pending", limit=numbers, after=st.one_of(st.none(), ids)),
    )


ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # all but surrogates


def deliveries(mb: Mailbox) -> st.SearchStrategy[tuple[str, Callable[[], Any]]]:
    """A user message with hostile text, delivered to steer or queue: always accepted."""
    steering = st.sampled_from(
        [None, DeliveryMode.interrupt(), DeliveryMode.next_step(), DeliveryMode.on_natural_end()]
    )
    return st.tuples(ANY_TEXT, steering).map(
        lambda a: ("deliver", lambda: mb.deliver(THREAD, [Message.user(a[0])], a[1]))
    )


def shaped_calls(mb: Mailbox) -> st.SearchStrategy[tuple[str, Callable[[], Any]]]:
    """Calls right in shape with hostile text in them, on the running run: mostly accepted, so
    a barrage mixing them with hostile calls writes as well as refuses."""
    return st.one_of(
        deliveries(mb),
        st.just(("freeze", lambda: mb.freeze(THREAD, "next_step", RUN))),
        ANY_TEXT.map(
            lambda t: (
                "commit_output",
                lambda: mb.commit_output(THREAD, RUN, [Message.assistant(t)]),
            )
        ),
    )


@pytest.fixture(params=["memory", "sqlite"])
def hostile_mailbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mailbox]:
    """A thread with a running run and two pending messages, for calls to reach deep checks."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'threadbox.db'}"
    with threadbox.open(url) as mb:
        mb.deliver(THREAD, [Message.user("start", id="m-1")])
        mb.freeze(THREAD, "new_run", RUN)
        mb.deliver(THREAD, [Message.user("one", id="p-1"), Message.user("two", id="p-2")])
        yield mb


# One mailbox per test; the examples of a test run one after another on it, so each call meets
# what the earlier ones left.
barrage = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(barrage, max_examples=300)
@given(data=st.data())
def test_hostile_calls_are_accepted_or_refused_with_a_typed_error_writing_nothing(
    hostile_mailbox: Mailbox, data: st.DataObject
) -> None:
    name, call = data.draw(calls(hostile_mailbox))
    before = hostile_mailbox.store.committed_head()
    try:
        call()
    except ThreadboxError:
        assert hostile_mailbox.store.committed_head() == before, f"{name} wrote before refusing"
    except Exception as e:
        pytest.fail(f"{name} raised {type(e).__name__}: {e!s:.300}")


@settings(barrage, max_examples=8)
@given(data=st.data())
def test_what_the_barrage_left_reads_back_the_same_from_the_log_and_the_views(
    hostile_mailbox: Mailbox, data: st.DataObject
) -> None:
    mixed = st.one_of(calls(hostile_mailbox), shaped_calls(hostile_mailbox))
    barrage = [
        data.draw(deliveries(hostile_mailbox)),  # at least one write to compare
        *data.draw(st.lists(mixed, min_size=20, max_size=40)),
    ]
    before = hostile_mailbox.store.committed_head()
    for _name, call in data.draw(st.permutations(barrage)):
        with contextlib.suppress(ThreadboxError):  # refusals: the test above checks them
            call()
    assert hostile_mailbox.store.committed_head() > before, "the barrage wrote nothing to compare"
    report = hostile_mailbox.views.verify()
    assert report.ok, report.differences[:5]
    from_log = Mailbox(hostile_mailbox.store, hostile_mailbox.views).pending(THREAD)
    assert hostile_mailbox.pending(THREAD) == from_log  # what was accepted is what was stored
