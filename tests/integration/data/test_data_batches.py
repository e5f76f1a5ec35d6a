"""The SQL connector's batches on SQLite and PostgreSQL, by shapes the email-marketing schema of
the other data tests lacks: text keys that need quoting (quotes, backslashes, commas, braces),
a composite key, two levels of `through`, parents with more rows than a batch, and a run resumed
from a batch in flight (as this version records it, and as a list of keys as earlier ones did).
Counted by hand-written SQL, independently of the connector."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    func,
    select,
)

from lapse.data import SqlTables
from lapse.data import Table as Registered
from lapse.data.base import Marker

metadata = MetaData()
owners = Table("b_owners", metadata, Column("id", String(64), primary_key=True))
folders = Table(
    "b_folders",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner_id", String(64), ForeignKey("b_owners.id"), nullable=False, index=True),
)
files = Table(
    "b_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("folder_id", String(64), ForeignKey("b_folders.id"), nullable=False, index=True),
)
tags = Table(  # composite key, two levels below the account: tags -> files -> folders
    "b_tags",
    metadata,
    Column("file_id", Integer, ForeignKey("b_files.id"), nullable=False, index=True),
    Column("tag", String(64), nullable=False),
    PrimaryKeyConstraint("file_id", "tag"),
)
REGISTERED = [
    Registered("b_owners", account="id", category="owners"),
    Registered("b_folders", account="owner_id", category="folders"),
    Registered("b_files", through="b_folders", category="files"),
    Registered("b_tags", through="b_files", category="tags"),
]
AWKWARD = ['a"b', "c\\d", "e,f", "{g}", " h ", "NULL", "ü€", "", "'q'"]


class Ledger:
    """A ledger kept in memory, as lapse's store keeps it between batches."""

    def __init__(self, in_flight: Marker = None) -> None:
        self.removed = 0
        self.in_flight = in_flight
        self.steps = 0

    @property
    def run(self) -> str:
        return "run-1"

    def step(self, *, add: int, in_flight: Marker) -> None:
        self.removed += add
        self.in_flight = in_flight
        self.steps += 1


def _populate(url: str) -> dict[str, dict[str, int]]:
    """Two accounts; 'gone' has a folder with many more files than a batch; rows per table."""
    engine = create_engine(url)
    metadata.create_all(engine)
    counts: dict[str, dict[str, int]] = {}
    file_id = 0
    with engine.begin() as conn:
        for owner, folder_files in (("gone", [1, 25, 0, 3, 2]), ("kept", [2, 4])):
            conn.execute(owners.insert(), [{"id": owner}])
            made = {"b_owners": 1, "b_folders": 0, "b_files": 0, "b_tags": 0}
            for n, count in enumerate(folder_files):
                folder = f"{owner}/{AWKWARD[n % len(AWKWARD)]}{n}"
                conn.execute(folders.insert(), [{"id": folder, "owner_id": owner}])
                made["b_folders"] += 1
                for _ in range(count):
                    file_id += 1
                    conn.execute(files.insert(), [{"id": file_id, "folder_id": folder}])
                    rows = [{"file_id": file_id, "tag": t} for t in AWKWARD[: 1 + file_id % 4]]
                    conn.execute(tags.insert(), rows)
                    made["b_files"] += 1
                    made["b_tags"] += len(rows)
            counts[owner] = made
    engine.dispose()
    return counts


def _count(url: str, owner: str) -> dict[str, int]:
    engine = create_engine(url)
    in_folders = select(folders.c.id).where(folders.c.owner_id == owner)
    in_files = select(files.c.id).where(files.c.folder_id.in_(in_folders))
    queries = {
        "b_owners": select(func.count()).select_from(owners).where(owners.c.id == owner),
        "b_folders": select(func.count()).select_from(folders).where(folders.c.owner_id == owner),
        "b_files": select(func.count()).select_from(files).where(files.c.folder_id.in_(in_folders)),
        "b_tags": select(func.count()).select_from(tags).where(tags.c.file_id.in_(in_files)),
    }
    with engine.connect() as conn:
        found = {name: int(conn.execute(q).scalar_one()) for name, q in queries.items()}
    engine.dispose()
    return found


def _delete_all(connector: SqlTables, ledgers: dict[str, Ledger]) -> None:
    for location in connector.locations():  # children before parents
        connector.delete("gone", location, ledgers.setdefault(location.name, Ledger()))


@pytest.mark.parametrize("batch_size", [1, 4, 5000])
def test_batches_delete_every_row_once(host_url: str, batch_size: int) -> None:
    counts = _populate(host_url)
    connector = SqlTables("files", host_url, REGISTERED, batch_size=batch_size)
    try:
        assert [loc.name for loc in connector.locations()] == [
            "b_tags",
            "b_files",
            "b_folders",
            "b_owners",
        ]
        ledgers: dict[str, Ledger] = {}
        _delete_all(connector, ledgers)
    finally:
        connector.close()
    assert _count(host_url, "gone") == dict.fromkeys(counts["gone"], 0)
    assert _count(host_url, "kept") == counts["kept"]
    assert {name: ledger.removed for name, ledger in ledgers.items()} == counts["gone"]
    assert all(ledger.in_flight is None for ledger in ledgers.values())
    if batch_size == 4:  # 25 files of one folder and their tags: several batches per folder
        assert ledgers["b_files"].steps > counts["gone"]["b_files"] // 4


def _keys_of(url: str, owner: str, table: str) -> list[Any]:
    engine = create_engine(url)
    in_folders = select(folders.c.id).where(folders.c.owner_id == owner)
    in_files = select(files.c.id).where(files.c.folder_id.in_(in_folders))
    stmt: Any = (
        select(tags.c.file_id, tags.c.tag).where(tags.c.file_id.in_(in_files))
        if table == "b_tags"
        else select(folders.c.id).where(folders.c.owner_id == owner)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    engine.dispose()
    return [list(row) if len(row) > 1 else row[0] for row in rows]


@pytest.mark.parametrize("recorded_as", ["text", "list"])
@pytest.mark.parametrize("committed", [False, True])
def test_a_batch_in_flight_counts_once(host_url: str, recorded_as: str, committed: bool) -> None:
    """A run stopped with a batch in flight: whether that batch's delete had committed or not,
    the resumed run deletes the rest and the batch counts exactly once."""
    counts = _populate(host_url)
    connector = SqlTables("files", host_url, REGISTERED, batch_size=3)
    try:
        locations = {loc.name: loc for loc in connector.locations()}
        for table in ("b_tags", "b_folders"):
            if table == "b_folders":  # its files first, as a run does (the tags are gone)
                connector.delete("gone", locations["b_files"], Ledger())
            batch = _keys_of(host_url, "gone", table)[:3]
            marker: Marker = {"keys": json.dumps(batch)} if recorded_as == "text" else batch
            if committed:  # the batch went before the crash: only the ledger did not hear
                keys = [tuple(k) if isinstance(k, list) else k for k in batch]
                connector._delete_keys(connector._get(locations[table]), keys)
            ledger = Ledger(in_flight=marker)
            connector.delete("gone", locations[table], ledger)
            assert ledger.removed == counts["gone"][table], (table, ledger.removed)
            assert ledger.in_flight is None
    finally:
        connector.close()
    assert _count(host_url, "gone")["b_tags"] == 0
    assert _count(host_url, "gone")["b_folders"] == 0
    assert _count(host_url, "kept") == counts["kept"]
