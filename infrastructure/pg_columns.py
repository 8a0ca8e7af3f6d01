"""Whole columns as PostgreSQL array parameters, dumped in one step (ADR 0024).

psycopg dumps a Python list by looking at its items to choose an array type and a dumper for
each item: on the store's insert, with eight lists of one or two items, that search cost more
CPU than the rest of the statement. A column here is a list whose type names its array type
(``Uuids``: ``uuid[]``, ``Int8s``: ``bigint[]``, ``Texts``: ``text[]``, ``Byteas``:
``bytea[]``), and one psycopg ``Dumper`` writes it straight in PostgreSQL's binary array format
(``array_recv``: dimensions, null flag, element type, length and lower bound, then each element
as its length and its binary value). Bind them as binary parameters (``%b``). No item may be
``None`` (the columns they fill are ``NOT NULL``): that, or an item of the wrong type, raises
``psycopg.DataError`` naming the column, and nothing is sent.
"""

from __future__ import annotations

import struct
import uuid
from abc import ABCMeta, abstractmethod
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper

_ONE_DIMENSION = struct.Struct("!iiiii")  # dimensions, has nulls, element oid, length, lower bound
_NO_DIMENSION = struct.Struct("!iii")  # an empty array: no dimensions, no nulls, element oid
_LENGTH = struct.Struct("!i")
_INT8 = struct.Struct("!q")


class Column(list[Any], metaclass=ABCMeta):
    """The values of one column, to bind as one array parameter (a subclass names its type)."""

    element_oid = 0  # PostgreSQL's oid of the element type
    array_oid = 0  # and of its array type
    kinds: tuple[type, ...] = ()  # the Python types of its values

    @abstractmethod
    def encoded(self, value: Any, encoding: str) -> bytes:
        """``value`` in the element type's binary format."""

    def items(self, encoding: str) -> list[bytes]:
        """Each value in the element type's binary format; ``psycopg.DataError`` for a value
        of another type."""
        for value in self:
            if not isinstance(value, self.kinds) or isinstance(value, bool):
                raise psycopg.DataError(
                    f"{type(self).__name__} holds {type(value).__name__} {value!r:.60}: "
                    f"not a value of its element type (oid {self.element_oid})"
                )
        return [self.encoded(value, encoding) for value in self]


class Uuids(Column):
    """``uuid[]``: ``uuid.UUID`` values."""

    element_oid, array_oid, kinds = 2950, 2951, (uuid.UUID,)

    def encoded(self, value: uuid.UUID, encoding: str) -> bytes:
        """The 16 bytes of the uuid."""
        return value.bytes


class Int8s(Column):
    """``bigint[]``: ints in -2**63 .. 2**63-1."""

    element_oid, array_oid, kinds = 20, 1016, (int,)

    def encoded(self, value: int, encoding: str) -> bytes:
        """8 bytes, big-endian, signed."""
        try:
            return _INT8.pack(value)
        except struct.error:
            raise psycopg.DataError(f"Int8s holds {value}: out of bigint's range") from None


class Texts(Column):
    """``text[]``: strs, in the connection's encoding."""

    element_oid, array_oid, kinds = 25, 1009, (str,)

    def encoded(self, value: str, encoding: str) -> bytes:
        """The text in the connection's encoding."""
        return value.encode(encoding)


class Byteas(Column):
    """``bytea[]``: bytes (or any bytes-like value)."""

    element_oid, array_oid, kinds = 17, 1001, (bytes, bytearray, memoryview)

    def encoded(self, value: bytes, encoding: str) -> bytes:
        """The bytes as they are."""
        return bytes(value)


def array_bytes(column: Column, encoding: str = "utf-8") -> bytes:
    """``column`` in PostgreSQL's binary array format."""
    items = column.items(encoding)
    if not items:
        return _NO_DIMENSION.pack(0, 0, column.element_oid)
    parts = [_ONE_DIMENSION.pack(1, 0, column.element_oid, len(items), 1)]
    for item in items:
        parts.append(_LENGTH.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


class ColumnDumper(Dumper):
    """Dumps a ``Column`` subclass as its array type, binary."""

    format = pq.Format.BINARY

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self.encoding = "utf-8" if self.connection is None else self.connection.info.encoding

    def dump(self, obj: Any) -> bytes:
        """``obj`` as a binary array."""
        return array_bytes(obj, self.encoding)


def register_columns(context: AdaptContext) -> None:
    """Make ``context`` (a connection or a cursor) dump the column types."""
    for column in (Uuids, Int8s, Texts, Byteas):
        dumper = type(
            f"{column.__name__}Dumper", (ColumnDumper,), {"oid": column.array_oid, "column": column}
        )
        context.adapters.register_dumper(column, dumper)
