"""``threadbox.aio``: the mailbox for asyncio programs (API.md §5, ADR 0020).

``threadbox.aio.open(url)`` gives an ``AsyncMailbox``: every ``Mailbox`` method under the same
name and arguments, as a coroutine; ``follow`` and ``watch`` as async iterators. Store I/O never
runs on the event loop's thread: calls run on a bounded thread pool of the mailbox's own, waits
(``wait_for_work``, ``start_run(wait=True)``, ``Run.resume``) and iterators on threads of their
own, and every subscriber shares one listener (LISTEN/NOTIFY on PostgreSQL, a 50 ms poll on
SQLite and memory). Closing the mailbox ends its iterators and waits at once.

```python
import threadbox.aio

async with threadbox.aio.open("sqlite:///./threadbox.db") as amb:
    await amb.deliver("t1", [threadbox.Message.user("hi")])
    async for item in amb.follow(timeout=1.0):
        print(item.position, item.event.type)
```
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from threadbox.domain.records import (
    Checkpoint,
    CommittedMessage,
    FreezeResult,
    PendingEntry,
    RecordedEvent,
    RunRecord,
    Termination,
    ThreadState,
    ThreadSummary,
)
from threadbox.domain.values import DeliveryBoundary, DeliveryMode, Message

if TYPE_CHECKING:
    from threadbox.application.agent import Run as SyncRun
    from threadbox.application.mailbox import Mailbox
    from threadbox.application.ports import Doorbell, VerifyReport
    from threadbox.application.settings import Settings
    from threadbox.application.subscriptions import LogItem

__all__ = ["AsyncMailbox", "AsyncRun", "AsyncViews", "Run", "open"]

T = TypeVar("T")

DEFAULT_WORKERS = 4
"""Threads of an ``AsyncMailbox``'s pool for its calls (iterators and waits have their own)."""

BUFFER = 1000
"""Items an iterator's thread reads ahead of the ``async for`` consuming them, at most."""

log = logging.getLogger("threadbox.aio")
LISTEN_SLICE = 0.25  # the shared listener checks for close this often (seconds)


class _Closed(Exception):
    """Raised inside a subscriber's wait when its mailbox closes (or its caller went away)."""


class _SharedDoorbell:
    """One listener for every subscriber of an ``AsyncMailbox``.

    A thread waits on the store's own doorbell (one LISTEN connection on PostgreSQL) and counts
    the wake-ups; each subscriber's ``Doorbell`` waits for that count to move past what it saw.
    ``close()`` and ``stop(thread)`` make the waits raise ``_Closed``, so that the blocking
    iterators and waits running on threads end at once.
    """

    def __init__(self, base: Callable[[], Doorbell]) -> None:
        self._base = base
        self._cond = threading.Condition()
        self._generation = 0
        self._closing = False
        self._stopped: set[threading.Thread] = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def subscriber(self) -> Doorbell:
        """A doorbell for one subscriber (the ``Mailbox``'s doorbell factory)."""
        return _Subscriber(self)

    def _start(self) -> None:
        with self._cond:
            if self._closing:
                raise _Closed
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="threadbox-aio-listener", daemon=True
                )
                self._thread.start()
        self._ready.wait()

    def _listen(self) -> None:
        bell: Doorbell | None = None
        failing = False
        try:
            while not self._closing:
                try:
                    if bell is None:
                        bell = self._base()
                        bell.listen()
                        self._ready.set()
                    rang = bell.wait(LISTEN_SLICE)
                    failing = False
                except Exception:  # the store is away: subscribers read (and raise) anyway
                    if not failing:  # said once per outage, not every slice
                        log.warning("listening for new events failed; retrying", exc_info=True)
                    failing = True
                    self._ready.set()
                    if bell is not None:
                        bell.close()
                        bell = None
                    time.sleep(LISTEN_SLICE)
                    rang = True
                if rang:
                    with self._cond:
                        self._generation += 1
                        self._cond.notify_all()
        finally:
            self._ready.set()
            if bell is not None:
                bell.close()

    def generation(self) -> int:
        """The wake-ups counted so far (after ``_start``)."""
        self._start()
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until the count passes ``seen`` or ``timeout`` seconds pass; the count then
        (``seen`` when it did not move)."""
        me = threading.current_thread()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closing or me in self._stopped:
                    self._stopped.discard(me)
                    raise _Closed
                if self._generation > seen:
                    return self._generation
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._generation
                self._cond.wait(None if left == math.inf else left)

    def stop(self, thread: threading.Thread) -> None:
        """Make the waits of ``thread`` raise ``_Closed`` (threads, not their reusable
        idents: a stop request left by an ended thread never matches another)."""
        if not thread.is_alive():
            return
        with self._cond:
            self._stopped.add(thread)
            self._cond.notify_all()

    def forget(self, thread: threading.Thread) -> None:
        """``thread`` is ending: drop a stop request it did not see."""
        with self._cond:
            self._stopped.discard(thread)

    def close(self) -> threading.Thread | None:
        """End every wait now and the listener within ``LISTEN_SLICE``; returns its thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            return self._thread


class _Subscriber:
    """One subscriber's ``Doorbell`` on a ``_SharedDoorbell``."""

    def __init__(self, shared: _SharedDoorbell) -> None:
        self._shared = shared
        self._seen = 0

    def listen(self) -> None:
        """Start the shared listener (once) and remember its count: no commit after is missed."""
        self._seen = self._shared.generation()

    def wait(self, timeout: float) -> bool:
        """``True`` on the listener's next wake-up, ``False`` after ``timeout`` seconds."""
        seen, self._seen = self._seen, self._shared.wait(self._seen, timeout)
        return self._seen > seen

    def close(self) -> None:
        """Nothing to release (the listener is the mailbox's)."""
        return None


class _Pump(Generic[T]):
    """A blocking iterator run on a thread of its own, read ahead up to ``BUFFER`` items, its
    items handed to the event loop in batches (one loop wake-up per batch)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        bell: _SharedDoorbell,
        source: Iterator[T],
        name: str,
    ) -> None:
        self._loop = loop
        self._bell = bell
        self._source = source
        self._cond = threading.Condition()
        self._items: collections.deque[T] = collections.deque()
        self._done = False
        self._stopping = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is reading
            self._loop.call_soon_threadsafe(self._ready.set)

    def _run(self) -> None:
        try:
            for item in self._source:
                with self._cond:
                    while len(self._items) >= BUFFER and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        break
                    self._items.append(item)
                    first = len(self._items) == 1
                if first:
                    self._wake()
        except _Closed:
            pass
        except BaseException as error:
            self._error = error
        finally:
            try:
                close = getattr(self._source, "close", None)
                if close is not None:
                    close()
            finally:
                self._bell.forget(threading.current_thread())
                with self._cond:
                    self._done = True
                self._wake()

    async def batch(self) -> list[T] | None:
        """The items read so far (waiting for one), or ``None`` once the iterator ended."""
        while True:
            with self._cond:
                if self._items:
                    items = list(self._items)
                    self._items.clear()
                    self._cond.notify_all()
                    return items
                if self._done:
                    if self._error is not None:
                        raise self._error
                    return None
                self._ready.clear()
            await self._ready.wait()

    @property
    def ended(self) -> bool:
        """Has its thread ended?"""
        return not self._thread.is_alive()

    def stop(self) -> None:
        """End the thread: at its next item, or now if it waits for one."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._bell.stop(self._thread)

    async def join(self) -> None:
        """Wait (without blocking the loop) until the thread has ended."""
        while True:
            with self._cond:
                if self._done:
                    break
                self._ready.clear()
            await self._ready.wait()
        await asyncio.sleep(0)
        self._thread.join()  # it has left its loop: this returns at once


class AsyncRun:
    """One run of an agent on a thread, started by ``AsyncMailbox.start_run`` (API.md §6): the
    members of ``threadbox.Run``, its methods as coroutines. ``threadbox.aio.Run`` is this
    class.

    ``interrupted`` turns true as soon as another writer (any process) commits an interrupt
    that ends this run: a watch of the thread pushes it (PostgreSQL LISTEN/NOTIFY, a 50 ms
    poll on SQLite and memory), with no call to make; ``step``, ``output`` and ``end`` then
    raise ``RunInterrupted``. ``async with run`` (or ``await run.close()``) stops the watch;
    ``finish`` and closing the mailbox stop it too.
    """

    def __init__(self, mailbox: AsyncMailbox, run: SyncRun) -> None:
        """The async face of ``run`` (``AsyncMailbox.start_run`` makes it)."""
        self._mailbox = mailbox
        self._run = run
        self.id: str = run.id
        """The run's id."""
        self.thread_id: str = run.thread_id
        """The thread it runs on."""
        self.inputs: list[CommittedMessage] = run.inputs
        """What its first freeze committed: the messages that started it."""

    @property
    def interrupted(self) -> bool:
        """Did another writer's interrupt end this run (pushed, within ~100 ms of its commit)?"""
        return self._run.interrupted

    @property
    def by_run_id(self) -> str | None:
        """The run whose interrupt ended this one, once ``interrupted``."""
        return self._run.by_run_id

    async def step(self) -> list[CommittedMessage]:
        """Freeze at ``next_step`` for this run: the messages to add before the next model call
        (``[]`` when none are waiting)."""
        return await self._mailbox._call(self._run.step)

    async def output(self, messages: Sequence[Message | dict[str, Any]]) -> list[CommittedMessage]:
        """Commit the run's outputs (assistant, tool or system messages)."""
        return await self._mailbox._call(self._run.output, messages)

    async def end(self) -> list[CommittedMessage]:
        """Freeze at ``on_natural_end``: non-empty means the run goes on with these inputs;
        ``[]`` means it may ``finish()``."""
        return await self._mailbox._call(self._run.end)

    async def finish(
        self, termination: Termination | str = Termination.NATURAL_END, detail: str | None = None
    ) -> list[str]:
        """End the run; returns the ids of the pending entries that expired with it."""
        return await self._mailbox._call(self._run.finish, termination, detail)

    async def suspend(self, reason: str) -> None:
        """The run waits for ``resume_input`` work (``resume`` waits for it)."""
        await self._mailbox._call(self._run.suspend, reason)

    async def resume(self, timeout: float | None) -> list[CommittedMessage]:
        """Wait (event-driven) up to ``timeout`` seconds (``None``: for ever) for
        ``resume_input`` work for this run, then freeze it; ``[]`` at timeout, or when the
        mailbox closes first."""
        empty: list[CommittedMessage] = []
        return await self._mailbox._wait(functools.partial(self._run.resume, timeout), empty, "run")

    async def close(self) -> None:
        """Stop watching the thread for an interrupt (the run itself is left as it is)."""
        self._run.close()

    async def __aenter__(self) -> AsyncRun:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"threadbox.aio.Run(id={self.id!r}, thread_id={self.thread_id!r})"


Run = AsyncRun
"""``threadbox.aio.Run``: the async run of API.md §6 (``AsyncRun``)."""


class AsyncViews:
    """The read models of an ``AsyncMailbox``: ``catch_up``, ``rebuild`` and ``verify`` as
    coroutines (``Mailbox.views``)."""

    def __init__(self, mailbox: AsyncMailbox) -> None:
        self._mailbox = mailbox

    async def catch_up(self) -> None:
        """Apply the events the views have not seen yet (``Mailbox.views.catch_up``)."""
        mb = await self._mailbox.sync()
        await self._mailbox._call(mb.views.catch_up)

    async def rebuild(self) -> None:
        """Rebuild the views from the event log (``Mailbox.views.rebuild``)."""
        mb = await self._mailbox.sync()
        await self._mailbox._call(mb.views.rebuild)

    async def verify(self) -> VerifyReport:
        """Compare the views with a fold of the log (``Mailbox.views.verify``)."""
        mb = await self._mailbox.sync()
        report: VerifyReport = await self._mailbox._call(mb.views.verify)
        return report


class AsyncMailbox:
    """A ``Mailbox`` for asyncio: the same methods, as coroutines. Open one with
    ``threadbox.aio.open(url)`` and use it with ``async with`` (or ``await amb.close()``).

    The store opens on ``async with`` (or the first call), on the mailbox's pool, not on the
    loop. Calls of several tasks run concurrently, up to ``max_workers`` at a time; each is the
    ``Mailbox`` call of the same name, with the same errors. ``close()`` waits for the calls in
    flight, ends every open ``follow``/``watch`` iterator (their ``async for`` ends normally) and
    every wait (``wait_for_work`` returns ``False``), then closes the store; no thread is left.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        env: Mapping[str, str] | None = None,
        create: bool = True,
        max_workers: int = DEFAULT_WORKERS,
    ) -> None:
        """A mailbox on ``url``, opened on first use (see ``threadbox.aio.open``)."""
        from concurrent.futures import ThreadPoolExecutor

        from threadbox.domain.errors import InvalidInput
        from threadbox.infrastructure.store import StoreLocation
        from threadbox.infrastructure.wiring import store_url

        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise InvalidInput(
                f"max_workers must be an integer >= 1, got {max_workers!r}", "max_workers"
            )
        self._url = store_url(url, env)
        StoreLocation.parse(self._url)  # a bad URL fails here, before any I/O
        self._options: dict[str, Any] = {"settings": settings, "env": env, "create": create}
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="threadbox-aio")
        self._bell: _SharedDoorbell | None = None
        self._mailbox: Mailbox | None = None
        self._opening: asyncio.Future[Mailbox] | None = None
        self._closed = False
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._pumps: set[_Pump[Any]] = set()
        self._waiters: set[threading.Thread] = set()
        self._runs: list[SyncRun] = []  # close() joins their watches
        self.views = AsyncViews(self)
        """The read models: ``await amb.views.catch_up()``, ``rebuild()``, ``verify()``."""

    # ---- plumbing ----------------------------------------------------------------------------

    def _open_sync(self) -> Mailbox:
        from threadbox.infrastructure.wiring import open_mailbox

        def shared(base: Callable[[], Doorbell]) -> Callable[[], Doorbell]:
            self._bell = _SharedDoorbell(base)
            return self._bell.subscriber

        return open_mailbox(self._url, doorbells=shared, **self._options)

    async def sync(self) -> Mailbox:
        """The ``Mailbox`` underneath (opened on the pool on first use). Its methods block:
        call them on a thread of yours, never on the event loop."""
        if self._closed:
            raise RuntimeError("this AsyncMailbox is closed")
        if self._mailbox is not None:
            return self._mailbox
        if self._opening is None:
            loop = asyncio.get_running_loop()
            self._opening = loop.run_in_executor(self._pool, self._open_sync)
        self._mailbox = await asyncio.shield(self._opening)
        return self._mailbox

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise RuntimeError("this AsyncMailbox is closed")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return await future

    async def _do(self, name: str, *args: Any, **kwargs: Any) -> Any:
        mb = await self.sync()
        return await self._call(getattr(mb, name), *args, **kwargs)

    async def _wait(self, fn: Callable[[], T], closed: T, name: str) -> T:
        """``fn()`` on a thread of its own (it waits on the doorbell); ``closed`` when the
        mailbox closes first (or the awaiting task is cancelled: its thread ends then)."""
        if self._closed:
            raise RuntimeError("this AsyncMailbox is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not future.done():
                (future.set_result if ok else future.set_exception)(value)

        def run() -> None:
            try:
                result: tuple[bool, Any] = (True, fn())
            except _Closed:
                result = (True, closed)
            except BaseException as error:
                result = (False, error)
            finally:
                if self._bell is not None:
                    self._bell.forget(threading.current_thread())
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, *result)

        thread = threading.Thread(target=run, name=f"threadbox-aio-{name}", daemon=True)
        self._waiters = {t for t in self._waiters if t.is_alive()} | {thread}
        thread.start()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if self._bell is not None:
                self._bell.stop(thread)  # close() joins it
            raise

    async def _iterate(self, source: Iterator[T], name: str) -> AsyncGenerator[T, None]:
        assert self._bell is not None  # opened: the doorbells were made
        pump = _Pump(asyncio.get_running_loop(), self._bell, source, f"threadbox-aio-{name}")
        self._pumps = {p for p in self._pumps if not p.ended} | {pump}
        try:
            while True:
                batch = await pump.batch()
                if batch is None:
                    return
                for item in batch:
                    yield item
        finally:
            pump.stop()  # close() joins its thread

    async def close(self) -> None:
        """Wait for the calls in flight, end the open iterators and waits, close the store and
        stop every thread of this mailbox. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._opening is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._opening)
        loop = asyncio.get_running_loop()
        for run in self._runs:  # their watches end by themselves (within 100 ms)
            run.close()
        for run in self._runs:
            await loop.run_in_executor(self._pool, run.watcher.join)
        self._runs.clear()
        listener = self._bell.close() if self._bell is not None else None
        for pump in list(self._pumps):
            pump.stop()
        await asyncio.gather(*(pump.join() for pump in list(self._pumps)))
        await asyncio.gather(*list(self._in_flight), return_exceptions=True)
        # The waits end on the closed doorbell, but one woken just before may still be reading:
        # the store closes after them (a SQLite connection closed under a read crashes Python).
        for thread in self._waiters:
            await loop.run_in_executor(self._pool, thread.join)
        self._waiters.clear()
        if self._mailbox is not None:
            await loop.run_in_executor(self._pool, self._mailbox.close)
        if listener is not None:
            await loop.run_in_executor(self._pool, listener.join)
        self._pool.shutdown(wait=True)  # every worker is idle: this returns at once

    async def __aenter__(self) -> AsyncMailbox:
        await self.sync()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- commands ----------------------------------------------------------------------------

    async def deliver(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None = None,
    ) -> list[PendingEntry]:
        """``Mailbox.deliver``: append messages to the thread's pending zone."""
        result: list[PendingEntry] = await self._do("deliver", thread_id, messages, mode)
        return result

    async def deliver_page(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None = None,
    ) -> tuple[list[PendingEntry], int]:
        """``Mailbox.deliver_page``: ``deliver``, with the thread version after it."""
        result: tuple[list[PendingEntry], int] = await self._do(
            "deliver_page", thread_id, messages, mode
        )
        return result

    async def edit(
        self,
        thread_id: str,
        pending_id: str,
        message: Message | dict[str, Any],
        *,
        expected_revision: int | None = None,
    ) -> PendingEntry:
        """``Mailbox.edit``: replace a pending message's content."""
        result: PendingEntry = await self._do(
            "edit", thread_id, pending_id, message, expected_revision=expected_revision
        )
        return result

    async def retract(
        self, thread_id: str, pending_id: str, *, expected_revision: int | None = None
    ) -> PendingEntry:
        """``Mailbox.retract``: take a pending message back."""
        result: PendingEntry = await self._do(
            "retract", thread_id, pending_id, expected_revision=expected_revision
        )
        return result

    async def reorder(
        self, thread_id: str, ordered_ids: Sequence[str], *, expected_version: int | None = None
    ) -> list[PendingEntry]:
        """``Mailbox.reorder``: put the pending zone in a new order."""
        result: list[PendingEntry] = await self._do(
            "reorder", thread_id, ordered_ids, expected_version=expected_version
        )
        return result

    async def reorder_page(
        self, thread_id: str, ordered_ids: Sequence[str], *, expected_version: int | None = None
    ) -> tuple[list[PendingEntry], int]:
        """``Mailbox.reorder_page``: ``reorder``, with the thread version after it."""
        result: tuple[list[PendingEntry], int] = await self._do(
            "reorder_page", thread_id, ordered_ids, expected_version=expected_version
        )
        return result

    async def freeze(
        self,
        thread_id: str,
        boundary: DeliveryBoundary | str,
        run_id: str | None = None,
        *,
        expected_version: int | None = None,
        rollback: bool = False,
    ) -> FreezeResult:
        """``Mailbox.freeze``: commit what a freeze at ``boundary`` selects, as ``run_id``'s
        inputs (``None`` at ``new_run``/``interrupt``: a generated id)."""
        result: FreezeResult = await self._do(
            "freeze",
            thread_id,
            boundary,
            run_id,
            expected_version=expected_version,
            rollback=rollback,
        )
        return result

    async def submit(
        self,
        thread_id: str,
        messages: Sequence[Message | dict[str, Any]],
        mode: DeliveryMode | dict[str, Any] | None,
        run_id: str,
    ) -> FreezeResult:
        """``Mailbox.submit``: deliver and freeze in one write, or nothing."""
        result: FreezeResult = await self._do("submit", thread_id, messages, mode, run_id)
        return result

    async def suspend_run(self, thread_id: str, run_id: str, reason: str) -> RunRecord:
        """``Mailbox.suspend_run``: the running run waits for ``resume_input`` work."""
        result: RunRecord = await self._do("suspend_run", thread_id, run_id, reason)
        return result

    async def finish_run(
        self,
        thread_id: str,
        run_id: str,
        termination: Termination | str = Termination.NATURAL_END,
        detail: str | None = None,
    ) -> list[str]:
        """``Mailbox.finish_run``: end the open run; the ids of the entries that expired."""
        result: list[str] = await self._do("finish_run", thread_id, run_id, termination, detail)
        return result

    async def commit_output(
        self, thread_id: str, run_id: str, messages: Sequence[Message | dict[str, Any]]
    ) -> list[CommittedMessage]:
        """``Mailbox.commit_output``: append the running run's outputs."""
        result: list[CommittedMessage] = await self._do(
            "commit_output", thread_id, run_id, messages
        )
        return result

    async def hide(self, thread_id: str, message_id: str, reason: str) -> None:
        """``Mailbox.hide``: tombstone a committed message."""
        await self._do("hide", thread_id, message_id, reason)

    # ---- reads -------------------------------------------------------------------------------

    async def pending(self, thread_id: str) -> list[PendingEntry]:
        """``Mailbox.pending``: the pending zone, in position order."""
        result: list[PendingEntry] = await self._do("pending", thread_id)
        return result

    async def pending_entry(self, thread_id: str, pending_id: str) -> PendingEntry:
        """``Mailbox.pending_entry``: one entry of the pending zone."""
        result: PendingEntry = await self._do("pending_entry", thread_id, pending_id)
        return result

    async def pending_page(self, thread_id: str) -> tuple[list[PendingEntry], int]:
        """``Mailbox.pending_page``: the pending zone and the version it was read at."""
        result: tuple[list[PendingEntry], int] = await self._do("pending_page", thread_id)
        return result

    async def committed(
        self,
        thread_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        include_hidden: bool = False,
        include_internal: bool = True,
        at_version: int | None = None,
    ) -> list[CommittedMessage]:
        """``Mailbox.committed``: the committed zone in seq order. The views' catch-up that a
        read may need runs on the pool: the loop keeps running meanwhile."""
        result: list[CommittedMessage] = await self._do(
            "committed",
            thread_id,
            after_seq=after_seq,
            limit=limit,
            include_hidden=include_hidden,
            include_internal=include_internal,
            at_version=at_version,
        )
        return result

    async def runs(
        self, thread_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[RunRecord]:
        """``Mailbox.runs``: the thread's runs in the order they started."""
        result: list[RunRecord] = await self._do("runs", thread_id, after=after, limit=limit)
        return result

    async def run(self, run_id: str) -> RunRecord:
        """``Mailbox.run``: the run with this id."""
        result: RunRecord = await self._do("run", run_id)
        return result

    async def checkpoints(
        self, thread_id: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[Checkpoint]:
        """``Mailbox.checkpoints``: every commit into the committed zone, in version order."""
        result: list[Checkpoint] = await self._do(
            "checkpoints", thread_id, after_version=after_version, limit=limit
        )
        return result

    async def threads_with_pending(
        self, *, limit: int = 100, after: str | None = None
    ) -> list[str]:
        """``Mailbox.threads_with_pending``: ids of the threads with pending work."""
        result: list[str] = await self._do("threads_with_pending", limit=limit, after=after)
        return result

    async def threads(
        self, *, has_pending: bool | None = None, limit: int = 100, after: str | None = None
    ) -> list[ThreadSummary]:
        """``Mailbox.threads``: thread summaries in thread id order."""
        result: list[ThreadSummary] = await self._do(
            "threads", has_pending=has_pending, limit=limit, after=after
        )
        return result

    async def thread(self, thread_id: str, *, at_version: int | None = None) -> ThreadState:
        """``Mailbox.thread``: the thread's state (or as it was at ``at_version``)."""
        result: ThreadState = await self._do("thread", thread_id, at_version=at_version)
        return result

    async def redacted(self, items: list[LogItem]) -> list[LogItem]:
        """``Mailbox.redacted``: followed items with internal and hidden content left out."""
        result: list[LogItem] = await self._do("redacted", items)
        return result

    async def history(
        self,
        thread_id: str,
        *,
        after_version: int = 0,
        limit: int | None = None,
        include_internal: bool = True,
    ) -> list[RecordedEvent]:
        """``Mailbox.history``: the thread's events after ``after_version``."""
        result: list[RecordedEvent] = await self._do(
            "history",
            thread_id,
            after_version=after_version,
            limit=limit,
            include_internal=include_internal,
        )
        return result

    # ---- subscriptions -----------------------------------------------------------------------

    async def head(self) -> str:
        """``Mailbox.head``: the position of the newest event (``""`` if none)."""
        result: str = await self._do("head")
        return result

    async def follow(
        self, after: str = "", *, limit: int | None = None, timeout: float | None = 0.0
    ) -> AsyncGenerator[LogItem, None]:
        """``Mailbox.follow`` as an async iterator (``async for item in amb.follow(...)``):
        every event committed after ``after``, each once, in commit order. It is read on a
        thread of its own, up to ``BUFFER`` items ahead; closing the mailbox ends it."""
        source = await self._do("follow", after, limit=limit, timeout=timeout)  # checks args
        async for item in self._iterate(source, "follow"):
            yield item

    async def watch(
        self, thread_id: str, after_version: int = 0, *, timeout: float | None = 0.0
    ) -> AsyncGenerator[RecordedEvent, None]:
        """``Mailbox.watch`` as an async iterator: the thread's events after
        ``after_version``, in version order; closing the mailbox ends it."""
        source = await self._do("watch", thread_id, after_version, timeout=timeout)
        async for event in self._iterate(source, "watch"):
            yield event

    async def wait_for_work(
        self,
        thread_id: str,
        boundary: DeliveryBoundary | str,
        run_id: str | None = None,
        *,
        timeout: float | None,
    ) -> bool:
        """``Mailbox.wait_for_work``: ``True`` once a freeze at ``boundary`` would select an
        entry, ``False`` at timeout, or when the mailbox closes first."""
        mb = await self.sync()
        wait = functools.partial(mb.wait_for_work, thread_id, boundary, run_id, timeout=timeout)
        return await self._wait(wait, False, "wait")

    # ---- running an agent --------------------------------------------------------------------

    async def start_run(
        self,
        thread_id: str,
        run_id: str | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        interrupt: bool = False,
        rollback: bool = False,
    ) -> AsyncRun | None:
        """``Mailbox.start_run``: freeze at ``new_run`` (``interrupt=True``: at ``interrupt``,
        with ``rollback``) and return the run when the freeze committed a message, ``None``
        when there was nothing to start. ``wait=True`` first waits (event-driven, on a thread
        of its own) up to ``timeout`` seconds; closing the mailbox ends the wait (``None``)."""
        mb = await self.sync()
        start = functools.partial(
            mb.start_run,
            thread_id,
            run_id,
            wait=wait,
            timeout=timeout,
            interrupt=interrupt,
            rollback=rollback,
        )
        if wait is True:
            started = await self._wait(start, None, "start")
        else:
            started = await self._call(start)
        if started is None:
            return None
        self._runs = [r for r in self._runs if r.watcher.is_alive()]
        self._runs.append(started)
        return AsyncRun(self, started)


def open(
    url: str | None = None,
    *,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    create: bool = True,
    max_workers: int = DEFAULT_WORKERS,
) -> AsyncMailbox:
    """An ``AsyncMailbox`` on ``url``, with the arguments of ``threadbox.open``; use it as
    ``async with threadbox.aio.open(url) as amb``. Nothing is opened yet (no I/O on the
    loop): the store opens on ``async with`` or the first call, and raises there
    (``StoreNotFound`` with ``create=False``). ``max_workers`` bounds the threads that run
    its calls (iterators and waits run on threads of their own)."""
    return AsyncMailbox(url, settings=settings, env=env, create=create, max_workers=max_workers)
