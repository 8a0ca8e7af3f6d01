"""Columns bound as binary arrays (``infrastructure/pg_columns.py``, ADR 0024): PostgreSQL reads
back exactly the values sent, for any values of each type, empty columns included; a value of
another type is refused before anything is sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import pg_connect
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.rows import TupleRow
from threadbox.infrastructure.pg_columns import (
    Byteas,
    Column,
    Int8s,
    Texts,
    Uuids,
    array_bytes,
    register_columns,
)

pytestmark = pytest.mark.parametrize("backend", ["postgres"])

texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
COLUMNS: list[tuple[type[Column], str, Any]] = [
    (Uuids, "uuid", st.uuids()),
    (Int8s, "bigint", st.integers(-(2**63), 2**63 - 1)),
    (Texts, "text", texts),
    (Byteas, "bytea", st.binary()),
]


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[TupleRow]]:
    with pg_connect() as made:
        register_columns(made)
        yield made


def read_back(conn: psycopg.Connection[TupleRow], column: Column, sql_type: str) -> Any:
    """The array PostgreSQL received, as psycopg's own loaders read it, and its length."""
    row = conn.execute(
        f"SELECT %b::{sql_type}[] AS a, cardinality(%b::{sql_type}[])",  # type: ignore[arg-type]
        (column, column),
    ).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize(("kind", "sql_type", "values"), COLUMNS, ids=[c[1] for c in COLUMNS])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_postgresql_reads_back_the_values_sent(
    conn: psycopg.Connection[TupleRow],
    backend: str,
    kind: type[Column],
    sql_type: str,
    values: Any,
    data: st.DataObject,
) -> None:
    sent = data.draw(st.lists(values, max_size=6))
    got, length = read_back(conn, kind(sent), sql_type)
    assert length == len(sent)
    assert [bytes(v) if isinstance(v, memoryview) else v for v in got or []] == sent


def test_a_column_in_a_statement_with_other_columns(
    conn: psycopg.Connection[TupleRow], backend: str
) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    rows = conn.execute(
        "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])",
        (Uuids(ids), Int8s([1, 2**40]), Texts(["é", ""]), Byteas([b"\x00\xff", b""])),
    ).fetchall()
    assert rows == [(ids[0], 1, "é", b"\x00\xff"), (ids[1], 2**40, "", b"")]


@pytest.mark.parametrize(
    ("column", "match"),
    [
        (Uuids([str(uuid.uuid4())]), "Uuids holds str"),
        (Int8s([1, None]), "Int8s holds NoneType"),
        (Int8s([True]), "Int8s holds bool"),
        (Int8s([2**63]), "out of bigint's range"),
        (Texts([b"bytes"]), "Texts holds bytes"),
        (Byteas(["text"]), "Byteas holds str"),
    ],
)
def test_a_value_of_another_type_is_refused_naming_the_column(
    backend: str, column: Column, match: str
) -> None:
    with pytest.raises(psycopg.DataError, match=match):
        array_bytes(column)


def test_the_format_is_postgresqls_binary_array(backend: str) -> None:
    """One case spelled out byte by byte (array_recv: ndim, has-null, element oid, then each
    dimension's length and lower bound, then each element's length and bytes)."""
    assert array_bytes(Int8s([7])) == (
        b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x14"
        b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x08" + (7).to_bytes(8, "big")
    )
    assert array_bytes(Texts([])) == b"\x00\x00\x00\x00" * 2 + b"\x00\x00\x00\x19"
