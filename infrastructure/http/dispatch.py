"""One thread hop per request: the blocking part of a route runs on a worker thread, once.

Mailbox calls block on the store, so they cannot run on the event loop. FastAPI would run a plain
``def`` endpoint in anyio's thread pool, and with it each plain ``def`` dependency and the
validation of the endpoint's answer: three hops per request, each an anyio capacity limiter,
cancel scope and queue (about 70 µs of CPU each here, ADR 0023). ``blocking_endpoint`` makes a
plain endpoint a coroutine that runs the whole endpoint in one call to ``Workers.call``: a queue
put, a worker thread, and one ``call_soon_threadsafe`` back (about 20 µs).

The semantics are anyio's: the call runs in a copy of the caller's context (the request id
reaches the log lines written on the worker), at most ``MAX_THREADS`` calls run at once (more
wait in the queue), and a task cancelled while its call runs waits for the call to end before
it takes the cancellation (a write is never abandoned half-way by a server shutting down).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import queue
import threading
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi.routing import APIRoute

T = TypeVar("T")

MAX_THREADS = 40  # as anyio's default thread limiter: blocking calls running at once


class _Call:
    """One blocking call: where its outcome goes, and whether it has one yet."""

    __slots__ = ("done", "future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.done = False

    def finish(self, result: Any, error: BaseException | None) -> None:
        """On the loop: record the outcome and hand it to whoever waits."""
        self.done = True
        if self.future.done():
            return  # the waiter was cancelled and is waiting for ``done`` on a new future
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)


Job = tuple[_Call, contextvars.Context, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class Workers:
    """Daemon threads taking blocking calls from one queue; a thread is started when a call
    finds none idle, up to ``max_threads``."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self.max_threads = max_threads
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs no thread has taken yet

    @property
    def threads(self) -> int:
        """Worker threads started so far."""
        return self._threads

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on a worker thread, in a copy of this context."""
        call = _Call(asyncio.get_running_loop())
        with self._lock:
            self._queued += 1
            short = self._queued > self._idle and self._threads < self.max_threads
        self._jobs.put((call, contextvars.copy_context(), function, args, kwargs))
        if short:
            self._start()
        try:
            result: T = await call.future
            return result
        except asyncio.CancelledError:
            while not call.done:  # the call runs on: wait for its end, then stay cancelled
                call.future = call.loop.create_future()
                try:
                    await call.future
                except asyncio.CancelledError:
                    continue
                except Exception:
                    break
            raise

    def _start(self) -> None:
        with self._lock:
            if self._threads >= self.max_threads:
                return
            self._threads += 1
            self._idle += 1  # counted idle until it takes its first job
            name = f"threadbox-request-{self._threads}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            call, context, function, args, kwargs = self._jobs.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            try:
                result, error = context.run(function, *args, **kwargs), None
            except BaseException as failed:  # handed to the awaiting task, as anyio does
                result, error = None, failed
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                call.loop.call_soon_threadsafe(call.finish, result, error)
            del call, context, function, args, kwargs, result, error  # no reference kept idle


_workers = Workers()  # the process-wide pool


def blocking_endpoint(endpoint: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """A coroutine function with ``endpoint``'s signature (its annotations resolved) that runs
    ``endpoint`` on a worker thread: FastAPI then solves the parameters and serialises the
    answer on the loop, with no hop of its own."""

    @functools.wraps(endpoint)
    async def run(**arguments: Any) -> T:
        return await _workers.call(endpoint, **arguments)

    hints = typing.get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()
        ],
        return_annotation=hints.get("return", signature.return_annotation),
    )
    return run


class OneHopRoute(APIRoute):
    """A route whose plain ``def`` endpoint runs on a worker thread in one hop
    (``blocking_endpoint``); a coroutine endpoint runs on the loop as given."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = blocking_endpoint(endpoint)
        super().__init__(path, endpoint, **options)
