"""PostgreSQL connection pools that fail fast when the server is down (ADR 0015).

psycopg_pool waits ``timeout`` seconds for a connection whenever it has none, and eventsourcing
retries every recorder call 10 times on a connection error: with the server stopped, one deliver
waited ~70 s before its 500. ``FailFast`` pools remember that their latest connection attempt
failed; while that holds and no connection is idle, a request waits ``DOWN_WAIT`` seconds at most
(long enough for the pool's own attempt to fail when the server refuses) and then raises
``StoreUnavailable`` — which no recorder retries. A connection that comes back
clears it. ``reconnect_timeout`` is short, so the pool's own background reconnection (which backs
off 1, 2, 4 … s) gives up quickly and the next request starts a fresh attempt: a server that
comes back is used within seconds.

Every connection also gets a libpq ``connect_timeout`` (a host that drops packets) and a
``statement_timeout`` (a server that hangs), so no request waits on the database unbounded.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool, PoolTimeout
from threadbox.domain.errors import StoreUnavailable

DOWN_WAIT = 0.5  # seconds a request waits for a connection while the server is known down
RECONNECT_TIMEOUT = 5.0  # seconds the pool's background reconnection keeps trying


def timeout_options(statement_timeout: float) -> str:
    """libpq ``options`` that bound every statement (0: unbounded)."""
    return f"-c statement_timeout={round(statement_timeout * 1000)}"


_FAIL_FAST: dict[type[Any], type[ConnectionPool[Any]]] = {}


def fail_fast(base: type[ConnectionPool[Any]]) -> type[ConnectionPool[Any]]:
    """``base`` (a psycopg_pool ``ConnectionPool`` class) failing fast: see the module. One
    direct subclass, so that a pool built elsewhere can take it as its ``__class__``."""
    if base in _FAIL_FAST:
        return _FAIL_FAST[base]

    class FailFast(base):  # type: ignore[valid-type,misc]
        _threadbox_down: str | None = None  # why the latest connection attempt failed

        def _connect(self, timeout: float | None = None) -> Any:
            try:
                conn = super()._connect(timeout)
            except Exception as error:
                self._threadbox_down = " ".join(str(error).split()) or type(error).__name__
                raise
            self._threadbox_down = None
            return conn

        def getconn(self, timeout: float | None = None) -> Any:
            """A connection, or ``StoreUnavailable``: after ``DOWN_WAIT`` seconds when a
            connection attempt has failed (now or before), else after ``timeout``."""
            wait = self.timeout if timeout is None else timeout
            first = min(wait, DOWN_WAIT)
            try:
                return super().getconn(first)
            except PoolTimeout as error:
                if self._threadbox_down is not None or wait <= first:
                    raise self._unavailable(first) from error
            try:
                return super().getconn(wait - first)  # busy, not down: wait the rest
            except PoolTimeout as error:
                raise self._unavailable(wait) from error

        def _unavailable(self, waited: float) -> StoreUnavailable:
            down = self._threadbox_down
            if down is not None:
                return StoreUnavailable(f"PostgreSQL cannot be reached: {down}"[:300])
            return StoreUnavailable(f"no PostgreSQL connection was free within {waited:g} s")

    FailFast.__name__ = FailFast.__qualname__ = f"FailFast{base.__name__}"
    _FAIL_FAST[base] = FailFast
    return FailFast


FailFastPool = fail_fast(ConnectionPool)
"""A psycopg_pool ``ConnectionPool`` that fails fast (the views' pool)."""


def make_fail_fast(pool: ConnectionPool[Any], connect_timeout: float, options: str) -> None:
    """Turn a pool built elsewhere (eventsourcing's, not opened yet) into a fail-fast one of
    the same class, with the connection timeouts."""
    pool.__class__ = fail_fast(type(pool))
    pool.reconnect_timeout = RECONNECT_TIMEOUT
    if isinstance(pool.kwargs, dict):
        pool.kwargs["connect_timeout"] = max(1, round(connect_timeout))
        pool.kwargs["options"] = options
