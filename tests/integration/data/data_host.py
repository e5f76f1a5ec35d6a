"""A host product's database for the data tests: a small email-marketing schema (SQLite or
PostgreSQL), rows generated per account, and independent queries and checksums to compare with.

The queries here are written by hand in SQL, not through lapse's connector: "nothing is left"
and "nothing else changed" are checked by something other than the code under test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
)
from sqlalchemy import func as sql_func

from lapse.data.sql import Table as Registered

metadata = MetaData()
T = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200)),
    Column("created_at", DateTime(timezone=True)),
)
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("email", String(200)),
    Column("role", String(20)),
    Column("password_hash", String(100)),
)
contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("email", String(200)),
    Column("name", String(200)),
    Column("subscribed", Boolean),
    Column("created_at", DateTime(timezone=True)),
)
contact_actions = Table(
    "contact_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False, index=True),
    Column("action", String(20)),
    Column("at", DateTime(timezone=True)),
)
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("subject", String(200)),
    Column("sent_at", DateTime(timezone=True)),
)
campaign_timelines = Table(
    "campaign_timelines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
    Column("event", String(40)),
    Column("at", DateTime(timezone=True)),
)
reports = Table(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), index=True),
    Column("opens", Integer),
    Column("clicks", Integer),
    Column("data", JSON),
)
templates = Table(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(200)),
    Column("body", Text),
)
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("prefix", String(12)),
    Column("secret_hash", String(64)),
)
payment_methods = Table(
    "payment_methods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("brand", String(20)),
    Column("last4", String(4)),
    Column("expires", Date),
)

#: how lapse is told about these tables: (table, keyword arguments of lapse.data.Table)
REGISTERED: list[tuple[str, dict[str, Any]]] = [
    ("accounts", {"account": "id", "category": "account"}),
    ("users", {"account": "account_id", "category": "users", "exclude": ("password_hash",)}),
    ("contacts", {"account": "account_id", "category": "contacts"}),
    ("contact_actions", {"through": "contacts", "category": "contact_actions"}),
    ("campaigns", {"account": "account_id", "category": "campaigns"}),
    ("campaign_timelines", {"through": "campaigns", "category": "campaign_timelines"}),
    ("reports", {"account": "account_id", "category": "reports"}),
    ("templates", {"account": "account_id", "category": "templates"}),
    ("api_keys", {"account": "account_id", "category": "api_keys", "exclude": ("secret_hash",)}),
    ("payment_methods", {"account": "account_id", "category": "payment_details"}),
]
CATEGORY = {name: spec["category"] for name, spec in REGISTERED}

#: through which parent a table reaches the account (the others have account_id, or are accounts)
PARENT = {
    "contact_actions": ("contact_id", "contacts"),
    "campaign_timelines": ("campaign_id", "campaigns"),
}


def _rows_query(table: str, account_id: str) -> Any:
    """Every row of one account in `table`, by the declared schema (not by lapse's reflection)."""
    t = metadata.tables[table]
    if table == "accounts":
        return select(t).where(t.c.id == account_id)
    if table in PARENT:
        column, parent_name = PARENT[table]
        parent = metadata.tables[parent_name]
        return (
            select(t)
            .join(parent, parent.c.id == t.c[column])
            .where(parent.c.account_id == account_id)
        )
    return select(t).where(t.c.account_id == account_id)


def registered() -> list[Registered]:
    """The tables as lapse.data.Table values."""
    return [Registered(name, **spec) for name, spec in REGISTERED]


def config(url: str, *, batch_size: int = 50, name: str = "app") -> dict[str, Any]:
    """A connectors configuration document for this database."""
    tables = []
    for table, spec in REGISTERED:
        item: dict[str, Any] = {"table": table}
        item.update({k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()})
        tables.append(item)
    return {
        "version": 1,
        "connectors": [
            {"name": name, "kind": "sql", "url": url, "batch_size": batch_size, "tables": tables}
        ],
    }


def create(url: str) -> None:
    """Create the schema."""
    engine = create_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def populate(
    url: str,
    account_id: str,
    *,
    contacts_n: int = 12,
    actions: int = 3,
    campaigns_n: int = 4,
    events: int = 5,
) -> dict[str, int]:
    """Insert one account's rows (deterministic values); returns the rows per table."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            base = _next_id(conn)
            rows = generate(account_id, base, contacts_n, actions, campaigns_n, events)
            for table, values in rows.items():
                for chunk in _chunks(values, 5000):
                    conn.execute(insert(metadata.tables[table]), chunk)
    finally:
        engine.dispose()
    return {table: len(values) for table, values in rows.items()}


def _next_id(conn: Any) -> int:
    highest = 0
    for table in metadata.sorted_tables:
        if table.name in ("accounts", "api_keys"):
            continue
        value = conn.execute(select(sql_func.max(table.c.id))).scalar()
        highest = max(highest, int(value or 0))
    return highest + 1


def _chunks(items: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate(
    account_id: str, base: int, contacts_n: int, actions: int, campaigns_n: int, events: int
) -> dict[str, list[dict[str, Any]]]:
    """The rows of one account, ids from `base` up."""
    ids = iter(range(base, base + 10_000_000))
    out: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in REGISTERED}
    out["accounts"].append({"id": account_id, "name": f"Account {account_id}", "created_at": T})
    for i in range(2):
        out["users"].append(
            {
                "id": next(ids),
                "account_id": account_id,
                "email": f"user{i}@{account_id}.example",
                "role": "admin" if i == 0 else "member",
                "password_hash": f"hash-{account_id}-{i}",
            }
        )
    for i in range(contacts_n):
        contact = next(ids)
        out["contacts"].append(
            {
                "id": contact,
                "account_id": account_id,
                "email": f"c{i}@{account_id}.example",
                "name": f'Contact "{i}", {account_id}' if i % 5 == 0 else f"Contact {i}",
                "subscribed": i % 3 != 0,
                "created_at": T + timedelta(minutes=i),
            }
        )
        for j in range(actions):
            out["contact_actions"].append(
                {
                    "id": next(ids),
                    "contact_id": contact,
                    "action": ("open", "click", "bounce")[j % 3],
                    "at": T + timedelta(hours=j, minutes=i),
                }
            )
    for i in range(campaigns_n):
        campaign = next(ids)
        out["campaigns"].append(
            {
                "id": campaign,
                "account_id": account_id,
                "subject": f"Campaign {i}\nsecond line",
                "sent_at": None if i == 0 else T + timedelta(days=i),
            }
        )
        for j in range(events):
            out["campaign_timelines"].append(
                {"id": next(ids), "campaign_id": campaign, "event": f"step-{j}", "at": T}
            )
        out["reports"].append(
            {
                "id": next(ids),
                "account_id": account_id,
                "campaign_id": campaign,
                "opens": 10 * i,
                "clicks": i,
                "data": {"country": "BE", "rate": 0.5, "tags": ["a", "b"]},
            }
        )
    for i in range(2):
        out["templates"].append(
            {"id": next(ids), "account_id": account_id, "name": f"t{i}", "body": "<p>héllo</p>"}
        )
    out["api_keys"].append(
        {
            "id": f"key-{account_id}",
            "account_id": account_id,
            "prefix": "lk_",
            "secret_hash": "s" * 64,
        }
    )
    out["payment_methods"].append(
        {
            "id": next(ids),
            "account_id": account_id,
            "brand": "visa",
            "last4": "4242",
            "expires": date(2027, 12, 31),
        }
    )
    return out


def rows_of(url: str, account_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the account per table, sorted, by independent queries."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: sorted(
                    (tuple(row) for row in conn.execute(_rows_query(table, account_id))), key=repr
                )
                for table, _ in REGISTERED
            }
    finally:
        engine.dispose()


def counts(url: str, account_id: str) -> dict[str, int]:
    """Rows of the account per table."""
    return {table: len(rows) for table, rows in rows_of(url, account_id).items()}


def checksums(url: str, account_ids: Sequence[str]) -> dict[tuple[str, str], str]:
    """A SHA-256 of each account's rows in each table."""
    out = {}
    for account_id in account_ids:
        for table, rows in rows_of(url, account_id).items():
            out[(table, account_id)] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


def total_rows(url: str) -> int:
    """Rows in the whole database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sum(
                int(conn.execute(select(sql_func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables
            )
    finally:
        engine.dispose()
