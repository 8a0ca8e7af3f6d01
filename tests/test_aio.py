"""``threadbox.aio`` (API.md §5): the AsyncMailbox has every Mailbox method as a coroutine,
``follow``/``watch`` as async iterators, and closing it ends what is still open."""

from __future__ import annotations

import asyncio
import inspect
import logging
import multiprocessing
import threading
import time
import warnings
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
import threadbox
import threadbox.aio
from threadbox import DeliveryMode, LogItem, Mailbox, Message, RecordedEvent
from threadbox.aio import AsyncMailbox
from threadbox.errors import InvalidInput, RevisionConflict, ThreadNotFound

T = TypeVar("T")

# API.md §1 and §4: the Mailbox methods an AsyncMailbox must have under the same name.
API_METHODS = [
    "deliver", "edit", "retract", "reorder", "freeze", "submit", "suspend_run", "finish_run",
    "commit_output", "hide", "pending", "committed", "runs", "run", "checkpoints", "thread",
    "history", "threads_with_pending", "head", "follow", "watch", "wait_for_work",
]  # fmt: skip
ITERATORS = {"follow", "watch"}


def aio_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("threadbox-aio")]


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value)
    }


def test_every_mailbox_method_is_a_coroutine_with_the_same_arguments() -> None:
    names = (public_methods(Mailbox) - {"close"}) | set(API_METHODS)
    assert set(API_METHODS) <= names
    for name in sorted(names):
        ours = getattr(AsyncMailbox, name, None)
        assert ours is not None, f"AsyncMailbox has no {name}"
        if name in ITERATORS:
            assert inspect.isasyncgenfunction(ours), name
        else:
            assert inspect.iscoroutinefunction(ours), name
        theirs = inspect.signature(getattr(Mailbox, name)).parameters
        mine = inspect.signature(ours).parameters
        assert [(p.name, p.kind, p.default) for p in mine.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name
    for name in ("catch_up", "rebuild", "verify"):
        assert inspect.iscoroutinefunction(getattr(threadbox.aio.AsyncViews, name)), name


def test_commands_and_reads_answer_as_the_mailbox_does(store_url: str) -> None:
    async def main() -> None:
        async with threadbox.aio.open(store_url) as amb:
            [entry] = await amb.deliver("t", [Message.user("plan", id="ask")])
            edited = await amb.edit("t", "ask", Message.user("plan Lisbon"), expected_revision=1)
            assert edited.revision == entry.revision + 1
            with pytest.raises(RevisionConflict):
                await amb.edit("t", "ask", Message.user("stale"), expected_revision=1)
            started = await amb.freeze("t", "new_run")
            assert [c.message.id for c in started.committed] == ["ask"]
            run_id = started.run_id
            await amb.deliver("t", [Message.user("later", id="later")], DeliveryMode.next_step())
            stepped = await amb.freeze("t", "next_step", run_id)
            assert [c.message.id for c in stepped.committed] == ["later"]
            [out] = await amb.commit_output("t", run_id, [Message.assistant("Day 1", id="a1")])
            assert out.seq == 3
            assert await amb.finish_run("t", run_id) == []
            await amb.hide("t", "a1", "wrong")

            texts = [m.message.text for m in await amb.committed("t", include_hidden=True)]
            assert texts == ["plan Lisbon", "later", "Day 1"]
            assert [m.message.id for m in await amb.committed("t")] == ["ask", "later"]
            state = await amb.thread("t")
            assert (state.version, state.running_run_id) == (len(await amb.history("t")), None)
            assert [r.run_id for r in await amb.runs("t")] == [run_id]
            assert (await amb.run(run_id)).status == "done"
            assert len(await amb.checkpoints("t")) == 3
            assert await amb.pending("t") == []
            assert await amb.threads_with_pending() == []
            assert (await amb.views.verify()).ok
            with pytest.raises(ThreadNotFound):
                await amb.committed("nobody")

            mb = await amb.sync()  # the same store, read by the blocking mailbox
            assert await asyncio.to_thread(mb.history, "t") == await amb.history("t")
            assert await amb.head() == await asyncio.to_thread(mb.head)

    run(main())
    assert aio_threads() == []


def test_follow_and_watch_are_async_iterators_over_the_log(store_url: str) -> None:
    async def main() -> None:
        async with threadbox.aio.open(store_url) as amb:
            assert [i async for i in amb.follow()] == []
            for n in range(7):
                await amb.deliver(f"t{n % 2}", [Message.user(str(n), id=f"m{n}")])
            mb = await amb.sync()
            # 7 deliveries, 2 of them opening their thread (PostgreSQL: an older transaction
            # of another test may keep the newest unreadable for a moment, hence the timeout)
            expected = await asyncio.to_thread(lambda: list(mb.follow(limit=9, timeout=30)))
            items = [i async for i in amb.follow(limit=9, timeout=30)]
            assert items == expected
            assert len(items) == 9
            assert [i async for i in amb.follow(items[3].position, limit=2)] == items[4:6]
            assert [e async for e in amb.watch("t0", timeout=0.5)] == await amb.history("t0")
            assert [e.version async for e in amb.watch("t0", 3)] == [4, 5]  # opened + 4 deliveries

            head = await amb.head()

            async def first_new() -> list[LogItem]:
                return [i async for i in amb.follow(head, limit=1, timeout=30)]

            follower = asyncio.create_task(first_new())
            await asyncio.sleep(0.2)
            await amb.deliver("t9", [Message.user("new", id="new")])
            [item] = await asyncio.wait_for(follower, 30)
            assert (item.thread_id, item.event.type) == ("t9", "ThreadOpened")

    run(main())
    assert aio_threads() == []


def write_in_process(url: str, writer: int, count: int) -> list[str]:
    """Another OS process: ``count`` deliveries to a thread of its own and a shared one."""
    ids: list[str] = []
    with threadbox.open(url) as mb:
        for n in range(count):
            message_id = f"w{writer}-m{n}"
            mb.deliver(("shared", f"w{writer}")[n % 2], [Message.user("x", id=message_id)])
            ids.append(message_id)
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_async_follow_sees_each_event_once_in_commit_order_while_processes_write(
    store_url: str,
) -> None:
    writers, per_writer = 3, 40

    async def main() -> tuple[list[LogItem], list[LogItem], list[str]]:
        async with threadbox.aio.open(store_url) as amb:
            await amb.deliver("before", [Message.user("first", id="m0")])
            start = await amb.head()
            followed: list[LogItem] = []
            total = 0

            async def follow() -> None:
                async for item in amb.follow(start, timeout=None):
                    followed.append(item)
                    if total and len(followed) >= total:
                        return

            follower = asyncio.create_task(follow())
            context = multiprocessing.get_context("spawn")
            with context.Pool(writers) as pool:
                jobs = [
                    pool.apply_async(write_in_process, (store_url, w, per_writer))
                    for w in range(writers)
                ]
                written = await asyncio.to_thread(
                    lambda: [i for job in jobs for i in job.get(timeout=240)]
                )
            mb = await amb.sync()
            log = await asyncio.to_thread(lambda: list(mb.follow(start)))
            total = len(log)
            if len(followed) < total:
                await asyncio.wait_for(follower, 60)
            else:
                follower.cancel()
            return followed, log, written

    followed, log, written = run(main())
    assert [i.position for i in followed] == [i.position for i in log]
    delivered = [
        i.event.data["messages"][0]["message"]["id"]
        for i in followed
        if i.event.type == "MessagesDelivered"
    ]
    assert sorted(delivered) == sorted(written)
    assert aio_threads() == []


def steer_later(url: str, delay: float) -> None:
    """Another OS process: deliver a next-step message to thread ``t`` after ``delay``."""
    time.sleep(delay)
    with threadbox.open(url) as mb:
        mb.deliver("t", [Message.user("steer")], DeliveryMode.next_step())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_wait_for_work_and_watch_wake_on_another_process_commit(store_url: str) -> None:
    async def main() -> None:
        async with threadbox.aio.open(store_url) as amb:
            await amb.deliver("t", [Message.user("go")])
            await amb.freeze("t", "new_run", "r1")
            assert await amb.wait_for_work("t", "next_step", "r1", timeout=0.1) is False
            version = (await amb.thread("t")).version

            async def next_event() -> list[RecordedEvent]:
                async for event in amb.watch("t", version, timeout=60):
                    return [event]
                return []

            watcher = asyncio.create_task(next_event())
            context = multiprocessing.get_context("spawn")
            writer = context.Process(target=steer_later, args=(store_url, 0.5))
            writer.start()
            try:
                assert await amb.wait_for_work("t", "next_step", "r1", timeout=60) is True
            finally:
                await asyncio.to_thread(writer.join, 60)
            [event] = await asyncio.wait_for(watcher, 60)
            assert (event.version, event.type) == (version + 1, "MessagesDelivered")

    run(main())
    assert aio_threads() == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "memory"])
def test_close_ends_open_iterators_and_waits_without_a_warning_or_a_thread(
    store_url: str,
) -> None:
    async def main() -> tuple[list[Any], float]:
        amb = threadbox.aio.open(store_url)
        await amb.deliver("t", [Message.user("go")])
        await amb.freeze("t", "new_run", "r1")

        async def drain(iterator: Any) -> list[Any]:
            return [x async for x in iterator]

        tasks = [
            asyncio.create_task(drain(amb.follow(timeout=None))),
            asyncio.create_task(drain(amb.watch("t", timeout=None))),
            asyncio.create_task(amb.wait_for_work("t", "next_step", "r1", timeout=None)),
            asyncio.create_task(amb.wait_for_work("t", "next_step", "r1", timeout=None)),
        ]
        await asyncio.sleep(0.3)
        assert aio_threads()  # the iterators and the waits are on threads of their own
        tasks[3].cancel()  # a cancelled wait's thread ends too
        started = time.monotonic()
        await amb.close()
        results = await asyncio.wait_for(asyncio.gather(*tasks[:3]), 10)
        return results, time.monotonic() - started

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (followed, watched, waited), _ = run(main())
    assert [i.event.type for i in followed][-1] == "PendingMessagesFrozen"
    assert [e.version for e in watched] == [1, 2, 3, 4]
    assert waited is False
    assert aio_threads() == []
    assert [str(w.message) for w in caught] == []


def test_an_iterator_left_early_ends_its_thread(store_url: str) -> None:
    async def main() -> list[str]:
        async with threadbox.aio.open(store_url) as amb:
            for n in range(5):
                await amb.deliver("t", [Message.user(str(n))])
            iterator = amb.follow(timeout=None)
            async for _ in iterator:
                break
            await iterator.aclose()
            deadline = time.monotonic() + 10
            while "threadbox-aio-follow" in aio_threads() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return aio_threads()

    assert "threadbox-aio-follow" not in run(main())
    assert aio_threads() == []


def test_bad_input_fails_with_the_field_named(tmp_path: Any) -> None:
    with pytest.raises(InvalidInput) as raised:
        threadbox.aio.open("sqlite://")
    assert raised.value.field == "url"
    with pytest.raises(InvalidInput) as raised:
        threadbox.aio.open("memory://", max_workers=0)
    assert raised.value.field == "max_workers"

    async def main() -> None:
        async with threadbox.aio.open(f"sqlite:///{tmp_path / 'x.db'}") as amb:
            await amb.deliver("t", [Message.user("one")])
            for call, field in [
                (lambda: amb.follow("garbage"), "after"),
                (lambda: amb.follow("", limit=0), "limit"),
                (lambda: amb.watch("t", -1), "after_version"),
            ]:
                with pytest.raises(InvalidInput) as bad:
                    [x async for x in call()]
                assert bad.value.field == field
            with pytest.raises(InvalidInput) as bad:
                await amb.wait_for_work("t", "sometime", timeout=0)
            assert bad.value.field == "boundary"
        with pytest.raises(RuntimeError, match="closed"):
            await amb.pending("t")

    run(main())


def test_the_store_opens_off_the_loop_and_a_missing_one_raises_there(tmp_path: Any) -> None:
    from threadbox.errors import StoreNotFound

    missing = tmp_path / "missing.db"
    amb = threadbox.aio.open(f"sqlite:///{missing}", create=False)  # no I/O yet

    async def main() -> None:
        with pytest.raises(StoreNotFound):
            await amb.pending("t")
        await amb.close()

    run(main())
    assert not missing.exists()
    assert aio_threads() == []


def interrupt_later(url: str, delay: float) -> None:
    """Another OS process: interrupt thread ``t``'s run after ``delay``, rolling back."""
    time.sleep(delay)
    with threadbox.open(url) as mb:
        mb.deliver("t", [Message.user("instead", id="instead")], DeliveryMode.interrupt())
        mb.freeze("t", "interrupt", "r2", rollback=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_async_run_is_interrupted_by_another_process_and_rolled_back(store_url: str) -> None:
    from threadbox.errors import RunInterrupted

    async def main() -> None:
        async with threadbox.aio.open(store_url) as amb:
            assert await amb.start_run("t") is None  # no thread, nothing to start
            await amb.deliver("t", [Message.user("go", id="go")])
            async with await amb.start_run("t", "r1") as run:  # type: ignore[union-attr]
                assert isinstance(run, threadbox.aio.Run)
                assert (run.id, [m.message.id for m in run.inputs]) == ("r1", ["go"])
                await amb.deliver("t", [Message.user("steer", id="s")], DeliveryMode.next_step())
                assert [m.message.id for m in await run.step()] == ["s"]
                assert await run.step() == []
                [out] = await run.output([Message.assistant("half done", id="half")])
                assert not run.interrupted
                context = multiprocessing.get_context("spawn")
                writer = context.Process(target=interrupt_later, args=(store_url, 0.3))
                writer.start()
                await asyncio.to_thread(writer.join, 60)
                deadline = time.monotonic() + 5  # a liveness bound: pushed, not polled by us
                while not run.interrupted and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert run.interrupted
                assert run.by_run_id == "r2"
                with pytest.raises(RunInterrupted) as raised:
                    await run.output([Message.assistant("too late")])
                assert (raised.value.run_id, raised.value.by_run_id) == ("r1", "r2")
            visible = [m.message.id for m in await amb.committed("t")]
            assert visible == ["go", "s", "instead"]  # the rollback hid "half"
            assert out.message.id == "half"

    run(main())
    assert aio_threads() == []


def test_async_run_loop_steers_queues_and_waits(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with threadbox.aio.open(store_url) as amb:
            waiting = asyncio.create_task(amb.start_run("t", wait=True, timeout=30))
            await asyncio.sleep(0.2)
            await amb.deliver("t", [Message.user("first", id="first")])
            run = await asyncio.wait_for(waiting, 30)
            assert run is not None and [m.message.id for m in run.inputs] == ["first"]
            await amb.deliver("t", [Message.user("queued", id="queued")])  # the next run's
            await run.output([Message.assistant("answer", id="answer")])
            assert await run.end() == []
            assert await run.finish() == []
            second = await amb.start_run("t")
            assert second is not None and [m.message.id for m in second.inputs] == ["queued"]
            await second.suspend("needs approval")
            resuming = asyncio.create_task(second.resume(30))
            await asyncio.sleep(0.2)
            await amb.deliver(
                "t", [Message.user("yes", id="yes")], DeliveryMode.resume_input(second.id)
            )
            assert [m.message.id for m in await asyncio.wait_for(resuming, 30)] == ["yes"]
            await second.finish()
            assert [r.status for r in await amb.runs("t")] == ["done", "done"]

            # closing the mailbox ends a start_run that waits for work, and the watch of a
            # run left open (quietly: nothing failed)
            await amb.deliver("t", [Message.user("third", id="third")])
            left_open = await amb.start_run("t")
            assert left_open is not None
            later = asyncio.create_task(amb.start_run("t", wait=True, timeout=None))
            await asyncio.sleep(0.2)
        assert await asyncio.wait_for(later, 10) is None

    with caplog.at_level(logging.WARNING):
        run(main())
    assert aio_threads() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("threadbox-run")]
    assert [r.getMessage() for r in caplog.records] == []


def test_an_iterator_reads_ahead_a_bounded_buffer(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threadbox.aio as aio

    monkeypatch.setattr(aio, "BUFFER", 5)

    async def main() -> tuple[int, int]:
        async with threadbox.aio.open(store_url) as amb:
            for n in range(40):
                await amb.deliver("t", [Message.user(str(n))])
            iterator = amb.follow(limit=41, timeout=30)
            first = await iterator.__anext__()
            await asyncio.sleep(0.3)  # the reading thread runs ahead as far as it may
            buffered = max(len(pump._items) for pump in amb._pumps)
            rest = [item async for item in iterator]
            assert first.event.type == "ThreadOpened"
            return buffered, 1 + len(rest)

    buffered, total = run(main())
    assert buffered <= 5
    assert total == 41
