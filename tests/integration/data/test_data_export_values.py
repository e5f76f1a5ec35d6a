"""How an export spells values, value by value rather than column by column: PostgreSQL JSONB
(a number in one row, an object or a list in the next), BOOLEAN, BYTEA, NUMERIC, UUID, dates and
arrays; SQLite's loose typing (one untyped column holding an integer, text, a blob, a float and
NULL). No Python repr ever reaches the CSV."""

from __future__ import annotations

import base64
import csv
import io
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import create_engine, text

from lapse.data import SqlTables, Table, write_archive

AT = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)
ID = UUID("12345678-1234-5678-1234-567812345678")


def _export(url: str, table: str) -> list[list[str]]:
    connector = SqlTables("app", url, [Table(table, account="account_id", category="misc")])
    try:
        out = io.BytesIO()
        write_archive(
            connector.export("acme", connector.locations()),
            out,
            account_id="acme",
            generated_at=AT,
        )
    finally:
        connector.close()
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    raw = archive.read(f"app/{table}.csv").decode("utf-8")
    return list(csv.reader(io.StringIO(raw, newline="")))


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_postgres_values_are_spelled_by_their_own_type(host_url: str) -> None:
    engine = create_engine(host_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE typed (id int PRIMARY KEY, account_id text NOT NULL, j jsonb, "
                "flag boolean, bin bytea, amount numeric(10, 2), uid uuid, at timestamptz, "
                "day date, tags text[], days date[])"
            )
        )
        rows = [
            (1, "5", None, b"\x00\xff", Decimal("1.50"), ID, AT, date(2025, 1, 31), ["a"], None),
            (2, '{"k": 1}', True, b"", None, None, None, None, [], [date(2025, 2, 1)]),
            (3, '[1, "a"]', False, None, None, None, None, None, None, None),
            (4, '"s"', None, None, None, None, None, None, None, None),
            (5, "true", None, None, None, None, None, None, None, None),
            (6, "null", None, None, None, None, None, None, None, None),
        ]
        for row in rows:
            conn.execute(
                text(
                    "INSERT INTO typed VALUES (:id, 'acme', CAST(:j AS jsonb), :flag, :bin, "
                    ":amount, :uid, :at, :day, :tags, :days)"
                ),
                dict(
                    zip(
                        ["id", "j", "flag", "bin", "amount", "uid", "at", "day", "tags", "days"],
                        row,
                        strict=True,
                    )
                ),
            )
    engine.dispose()
    header, *got = _export(host_url, "typed")
    assert header == [
        "id",
        "account_id",
        "j",
        "flag",
        "bin",
        "amount",
        "uid",
        "at",
        "day",
        "tags",
        "days",
    ]
    assert got == [
        ["1", "acme", "5", "", "AP8=", "1.50", str(ID), "2025-01-31T09:00:00+00:00",
         "2025-01-31", '["a"]', ""],
        ["2", "acme", '{"k":1}', "true", "", "", "", "", "", "[]", '["2025-02-01"]'],
        ["3", "acme", '[1,"a"]', "false", "", "", "", "", "", "", ""],
        ["4", "acme", "s", "", "", "", "", "", "", "", ""],
        ["5", "acme", "true", "", "", "", "", "", "", "", ""],
        ["6", "acme", "", "", "", "", "", "", "", "", ""],
    ]  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_loose_typing_is_spelled_value_by_value(host_url: str) -> None:
    url = host_url
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE loose (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, v, w)")
        )
        values = [1, "x", b"\x00\x01", 2.5, None, "{'k': 1}"]
        for number, value in enumerate(values, start=1):
            conn.execute(
                text("INSERT INTO loose VALUES (:id, 'acme', :v, :w)"),
                {"id": number, "v": value, "w": value if number % 2 else None},
            )
        conn.execute(text("INSERT INTO loose VALUES (99, 'other', 'not exported', NULL)"))
    engine.dispose()
    header, *got = _export(url, "loose")
    blob = base64.b64encode(b"\x00\x01").decode()
    assert header == ["id", "account_id", "v", "w"]
    assert got == [
        ["1", "acme", "1", "1"],
        ["2", "acme", "x", ""],
        ["3", "acme", blob, blob],
        ["4", "acme", "2.5", ""],
        ["5", "acme", "", ""],
        ["6", "acme", "{'k': 1}", ""],  # a text value stays the text it is
    ]
    assert not any("b'" in cell for row in got for cell in row)
