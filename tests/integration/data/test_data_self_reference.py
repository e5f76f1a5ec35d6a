"""Tables with a foreign key to themselves (`folders.parent_id -> folders.id`), on SQLite and
PostgreSQL: deep chains and trees go leaves first whatever the batch size (a batch never takes
a row whose child is still there), directly under the account and through a parent table; rows
that can never go first (a cycle, a row of another account pointing at them) stop the deletion
with an error naming the table and the column; an unindexed self-reference is refused by
check(). Counted by hand-written SQL, independently of the connector."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
    update,
)

from lapse.data import ConnectorError, SqlTables
from lapse.data import Table as Registered
from lapse.data.base import Marker
from lapse.errors import ConfigError

metadata = MetaData()
owners = Table("s_owners", metadata, Column("id", String(64), primary_key=True))
folders = Table(
    "s_folders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("owner_id", String(64), ForeignKey("s_owners.id"), nullable=False, index=True),
    Column("parent_id", Integer, ForeignKey("s_folders.id"), index=True),  # NULL: a root
)
notes = Table(  # through folders; a thread's first note references itself (NOT NULL)
    "s_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("folder_id", Integer, ForeignKey("s_folders.id"), nullable=False, index=True),
    Column("reply_to", Integer, ForeignKey("s_notes.id"), nullable=False, index=True),
)
REGISTERED = [
    Registered("s_owners", account="id", category="owners"),
    Registered("s_folders", account="owner_id", category="folders"),
    Registered("s_notes", through="s_folders", category="notes"),
]
DEPTH = 40


class Ledger:
    """A ledger kept in memory, as lapse's store keeps it between batches."""

    def __init__(self) -> None:
        self.removed = 0
        self.in_flight: Marker = None
        self.steps = 0

    @property
    def run(self) -> str:
        return "run-1"

    def step(self, *, add: int, in_flight: Marker) -> None:
        self.removed += add
        self.in_flight = in_flight
        self.steps += 1


def _populate(url: str) -> dict[str, dict[str, int]]:
    """'gone': a chain DEPTH deep (the root has the lowest id, so the first rows a database
    returns are parents), a small tree beside it, and threads of notes in both; 'kept': the
    same, smaller. Returns the rows per table per owner."""
    engine = create_engine(url)
    metadata.create_all(engine)
    counts: dict[str, dict[str, int]] = {}
    fids = iter(range(1, 10_000))  # folders: the chain is 1..DEPTH, its root 1
    nids = iter(range(1, 10_000))
    with engine.begin() as conn:
        for owner, depth in (("gone", DEPTH), ("kept", 5)):
            conn.execute(owners.insert(), [{"id": owner}])
            made = {"s_owners": 1, "s_folders": 0, "s_notes": 0}
            chain: list[int] = []
            for level in range(depth):
                folder = next(fids)
                parent = chain[-1] if chain else None
                conn.execute(
                    folders.insert(), [{"id": folder, "owner_id": owner, "parent_id": parent}]
                )
                chain.append(folder)
                made["s_folders"] += 1
                # a thread in every third folder: a first note, then replies to the last one
                if level % 3 == 0:
                    first = next(nids)
                    thread = [first]
                    conn.execute(
                        notes.insert(), [{"id": first, "folder_id": folder, "reply_to": first}]
                    )
                    for _ in range(level % 7 + 1):
                        note = next(nids)
                        # replies live in any folder of the account, not only the thread's
                        where = chain[(note * 7) % len(chain)]
                        conn.execute(
                            notes.insert(),
                            [{"id": note, "folder_id": where, "reply_to": thread[-1]}],
                        )
                        thread.append(note)
                    made["s_notes"] += len(thread)
            root = next(fids)  # a tree: one root, three children, each with two children
            conn.execute(folders.insert(), [{"id": root, "owner_id": owner, "parent_id": None}])
            for _ in range(3):
                child = next(fids)
                conn.execute(
                    folders.insert(), [{"id": child, "owner_id": owner, "parent_id": root}]
                )
                for _ in range(2):
                    conn.execute(
                        folders.insert(),
                        [{"id": next(fids), "owner_id": owner, "parent_id": child}],
                    )
            made["s_folders"] += 10
            counts[owner] = made
    engine.dispose()
    return counts


def _count(url: str, owner: str) -> dict[str, int]:
    engine = create_engine(url)
    in_folders = select(folders.c.id).where(folders.c.owner_id == owner)
    queries = {
        "s_owners": select(func.count()).select_from(owners).where(owners.c.id == owner),
        "s_folders": select(func.count()).select_from(folders).where(folders.c.owner_id == owner),
        "s_notes": select(func.count()).select_from(notes).where(notes.c.folder_id.in_(in_folders)),
    }
    with engine.connect() as conn:
        found = {name: int(conn.execute(q).scalar_one()) for name, q in queries.items()}
    engine.dispose()
    return found


def _delete(connector: SqlTables, owner: str) -> dict[str, Ledger]:
    ledgers: dict[str, Ledger] = {}
    for location in connector.locations():  # children before parents
        connector.delete(owner, location, ledgers.setdefault(location.name, Ledger()))
    return ledgers


@pytest.mark.parametrize("batch_size", [1, 3, 5000])
def test_a_deep_chain_goes_leaves_first(host_url: str, batch_size: int) -> None:
    counts = _populate(host_url)
    connector = SqlTables("tree", host_url, REGISTERED, batch_size=batch_size)
    try:
        assert [loc.name for loc in connector.locations()] == ["s_notes", "s_folders", "s_owners"]
        ledgers = _delete(connector, "gone")
    finally:
        connector.close()
    assert _count(host_url, "gone") == dict.fromkeys(counts["gone"], 0)
    assert _count(host_url, "kept") == counts["kept"]
    assert {name: ledger.removed for name, ledger in ledgers.items()} == counts["gone"]
    assert all(ledger.in_flight is None for ledger in ledgers.values())
    if batch_size == 5000:
        # one batch per level of the chain at least: a batch takes only leaves
        assert ledgers["s_folders"].steps >= DEPTH


def _link(url: str, table: Table, row: int, **values: Any) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == row).values(**values))
    engine.dispose()


@pytest.mark.parametrize("blocked_by", ["a cycle", "another account"])
def test_rows_that_can_never_go_first_stop_with_a_clear_error(
    host_url: str, blocked_by: str
) -> None:
    counts = _populate(host_url)
    gone_root = 1  # the chain's root: the first folder made
    if blocked_by == "a cycle":
        _link(host_url, folders, gone_root, parent_id=DEPTH)  # the root under the deepest
    else:
        kept_root = DEPTH + 11  # kept's first folder
        _link(host_url, folders, kept_root, parent_id=gone_root)
    connector = SqlTables("tree", host_url, REGISTERED, batch_size=4)
    try:
        locations = {loc.name: loc for loc in connector.locations()}
        connector.delete("gone", locations["s_notes"], Ledger())
        ledger = Ledger()
        with pytest.raises(ConnectorError) as caught:
            connector.delete("gone", locations["s_folders"], ledger)
    finally:
        connector.close()
    message = str(caught.value)
    assert message.startswith("connector 'tree': table 's_folders': ")
    assert "through column 'parent_id'" in message
    left = _count(host_url, "gone")["s_folders"]
    assert f"{left} rows of account 'gone'" in message
    # everything that could go went, and was counted; the rest is intact
    assert ledger.removed == counts["gone"]["s_folders"] - left
    assert left == (DEPTH if blocked_by == "a cycle" else 1)
    assert _count(host_url, "kept") == counts["kept"]


def test_check_refuses_an_unindexed_self_reference(host_url: str) -> None:
    local = MetaData()
    Table("u_owners", local, Column("id", String(64), primary_key=True))
    Table(
        "u_items",
        local,
        Column("id", Integer, primary_key=True),
        Column("owner_id", String(64), ForeignKey("u_owners.id"), nullable=False, index=True),
        Column("parent_id", Integer, ForeignKey("u_items.id")),  # no index
    )
    engine = create_engine(host_url)
    local.create_all(engine)
    engine.dispose()
    connector = SqlTables(
        "items",
        host_url,
        [
            Registered("u_owners", account="id", category="owners"),
            Registered("u_items", account="owner_id", category="items"),
        ],
    )
    try:
        with pytest.raises(ConfigError) as caught:
            connector.check()
    finally:
        connector.close()
    message = str(caught.value)
    assert message.startswith("connector 'items': table 'u_items': column 'parent_id' ")
    assert "references the table itself (u_items.id)" in message
    assert message.endswith("create an index on u_items(parent_id)")
