"""Which database errors mean "the store cannot be used now", and their translation into
``StoreUnavailable`` (HTTP 503 ``store_unavailable`` with ``Retry-After``).

The drivers raise one class for many causes: sqlite3's ``OperationalError`` is a read-only file,
a full disk or a busy lock, but also a missing table or a syntax error (a defect, which must stay
a 500 with its traceback). So an error counts as unavailability by what it is underneath
(eventsourcing wraps the driver's error, keeping it as ``__cause__``): a PostgreSQL connection,
pool, timeout or resource error, a PostgreSQL read-only transaction, or a SQLite result code of
the file or its locks.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from threadbox.domain.errors import StoreUnavailable

F = TypeVar("F", bound=Callable[..., Any])

# SQLite primary result codes of the file and its locks, not of the statement.
SQLITE_UNAVAILABLE = {
    3: "SQLITE_PERM",
    5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    8: "SQLITE_READONLY",
    10: "SQLITE_IOERR",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL",
}


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unavailability(error: BaseException) -> str | None:
    """Why ``error`` means the store cannot be used now (one line), or None when it does not."""
    for cause in _chain(error):
        if isinstance(cause, StoreUnavailable):
            return cause.reason
        if isinstance(
            cause,
            psycopg.OperationalError | psycopg.InterfaceError | pg_errors.ReadOnlySqlTransaction,
        ):
            return _one_line(f"PostgreSQL: {cause}")
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in SQLITE_UNAVAILABLE:
                return _one_line(f"SQLite: {cause}")
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


@contextmanager
def translated() -> Iterator[None]:
    """Raise ``StoreUnavailable`` for an error of the store's availability; others as they are."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as error:
        reason = unavailability(error)
        if reason is None:
            raise
        raise StoreUnavailable(reason) from error


def translating(function: F) -> F:
    """``translated()`` around a function, or around every step of a generator function."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator(*args: Any, **kwargs: Any) -> Any:
            with translated():
                yield from function(*args, **kwargs)

        return cast(F, generator)

    @functools.wraps(function)
    def plain(*args: Any, **kwargs: Any) -> Any:
        with translated():
            return function(*args, **kwargs)

    return cast(F, plain)
