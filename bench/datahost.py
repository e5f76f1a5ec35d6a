"""The host database of the data benchmarks: an email-marketing product's tables (SQLite or
PostgreSQL), filled fast in SQL, and the same tables mapped with the SQLAlchemy ORM for the
baseline (a row-by-row cascade).

Rows are generated in *blocks* of exactly 1,000: one contact list, one template, one campaign with
its report and 36 timeline events, 160 contacts, their 160 list memberships and 640 contact
actions (opens, clicks...). A block belongs to one account; blocks of different accounts
interleave (`Owners`), so an account's rows are spread over every table as they would be after
years of use, not stored contiguously. Each account also has 1 `accounts` row, 5 users and 2 API
keys. Tables reach the account either by an `account_id` column or through their parent (contact
actions and list memberships through contacts, campaign events through campaigns), and every
foreign key column is indexed, as a host with deletions in mind has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy import Table as SqlTable
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, registry, relationship

from lapse.data.sql import Table

BLOCK = 1000
PER_BLOCK = {
    "contact_lists": 1,
    "templates": 1,
    "campaigns": 1,
    "reports": 1,
    "campaign_events": 36,
    "contacts": 160,
    "list_memberships": 160,
    "contact_actions": 640,
}
PER_ACCOUNT = {"accounts": 1, "users": 5, "api_keys": 2}
assert sum(PER_BLOCK.values()) == BLOCK

metadata = MetaData()
accounts = SqlTable(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200)),
    Column("plan", String(20)),
    Column("created_at", DateTime(timezone=True)),
)
users = SqlTable(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("email", String(200)),
    Column("role", String(20)),
    Column("password_hash", String(100)),
)
api_keys = SqlTable(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("prefix", String(12)),
    Column("secret_hash", String(64)),
)
contact_lists = SqlTable(
    "contact_lists",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(200)),
    Column("created_at", DateTime(timezone=True)),
)
templates = SqlTable(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(200)),
    Column("body", Text),
)
contacts = SqlTable(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("email", String(200)),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("subscribed", Boolean),
    Column("created_at", DateTime(timezone=True)),
)
list_memberships = SqlTable(
    "list_memberships",
    metadata,
    Column("list_id", Integer, ForeignKey("contact_lists.id"), primary_key=True),
    Column("contact_id", Integer, ForeignKey("contacts.id"), primary_key=True, index=True),
    Column("subscribed_at", DateTime(timezone=True)),
)
campaigns = SqlTable(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("list_id", Integer, ForeignKey("contact_lists.id"), nullable=False, index=True),
    Column("template_id", Integer, ForeignKey("templates.id"), nullable=False, index=True),
    Column("subject", String(200)),
    Column("sent_at", DateTime(timezone=True)),
)
campaign_events = SqlTable(
    "campaign_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
    Column("event", String(20)),
    Column("at", DateTime(timezone=True)),
)
contact_actions = SqlTable(
    "contact_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=False, index=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
    Column("action", String(20)),
    Column("at", DateTime(timezone=True)),
)
reports = SqlTable(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False, index=True),
    Column("sends", Integer),
    Column("opens", Integer),
    Column("clicks", Integer),
    Column("data", JSON),
)
Index("ix_list_memberships_list", list_memberships.c.list_id)


#: tables reaching the account through a parent: (column, parent)
THROUGH = {
    "list_memberships": ("contact_id", "contacts"),
    "contact_actions": ("contact_id", "contacts"),
    "campaign_events": ("campaign_id", "campaigns"),
}
SECRET = {"users": "password_hash", "api_keys": "secret_hash"}


def account_queries(account_id: str) -> list[tuple[str, Any]]:
    """Hand-written SELECTs of one account's rows, table by table (secrets left out)."""
    from sqlalchemy import select

    out = []
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if c.name != SECRET.get(table.name)]
        if table.name == "accounts":
            stmt = select(*columns).where(table.c.id == account_id)
        elif table.name in THROUGH:
            column, parent_name = THROUGH[table.name]
            parent = metadata.tables[parent_name]
            stmt = (
                select(*columns)
                .join(parent, table.c[column] == parent.c.id)
                .where(parent.c.account_id == account_id)
            )
        else:
            stmt = select(*columns).where(table.c.account_id == account_id)
        out.append((table.name, stmt))
    return out


def registered() -> list[Table]:
    """How lapse is told about these tables (categories as the account-locks preset purges)."""
    return [
        Table("accounts", account="id", category="account"),
        Table("users", account="account_id", category="users", exclude=("password_hash",)),
        Table("api_keys", account="account_id", category="api_keys", exclude=("secret_hash",)),
        Table("contact_lists", account="account_id", category="contacts"),
        Table("templates", account="account_id", category="templates"),
        Table("contacts", account="account_id", category="contacts"),
        Table("list_memberships", through="contacts", category="contacts"),
        Table("contact_actions", through="contacts", category="contact_actions"),
        Table("campaigns", account="account_id", category="campaigns"),
        Table("campaign_events", through="campaigns", category="campaign_timelines"),
        Table("reports", account="account_id", category="reports"),
    ]


@dataclass(frozen=True)
class Owners:
    """Which account owns each block: `weights` slots per period, in order; a slot group with
    `members > 1` is shared round-robin by accounts `name-0` ... `name-(members-1)`."""

    groups: tuple[tuple[str, int, int], ...]  # (name, slots per period, members)

    @property
    def period(self) -> int:
        return sum(slots for _, slots, _ in self.groups)

    def accounts(self) -> list[str]:
        out = []
        for name, _, members in self.groups:
            out.extend([name] if members == 1 else [f"{name}-{i}" for i in range(members)])
        return out

    def blocks_of(self, periods: int) -> dict[str, int]:
        """Blocks per account when `periods` periods are generated."""
        out: dict[str, int] = {}
        for name, slots, members in self.groups:
            if members == 1:
                out[name] = slots * periods
                continue
            turns = slots * periods  # handed round-robin to the members
            for i in range(members):
                out[f"{name}-{i}"] = turns // members + (1 if i < turns % members else 0)
        return out

    def sql(self, block: str) -> str:
        """An SQL expression: the owner of block number `block` (an SQL integer, from 1)."""
        period = self.period
        slot = f"(({block}) - 1) % {period}"
        turn = f"((({block}) - 1) / {period})"
        cases = []
        upto = 0
        for name, slots, members in self.groups:
            start = upto
            upto += slots
            if members == 1:
                owner = f"'{name}'"
            else:
                index = f"(({turn}) * {slots} + ({slot}) - {start}) % {members}"
                owner = f"'{name}-' || CAST({index} AS VARCHAR(12))"
            cases.append(f"WHEN {slot} < {upto} THEN {owner}")
        return f"CASE {' '.join(cases)} END"


def create(url: str) -> Engine:
    """Create the schema in an empty database; the engine (SQLite: WAL journal, the host's
    choice for a database read while written)."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    metadata.create_all(engine)
    return engine


def _series(dialect: str, count: int) -> tuple[str, str]:
    """(prefix, FROM clause) yielding n = 1..count."""
    if dialect == "postgresql":
        return "", f"generate_series(1, {count}) AS seq(n)"
    return (
        f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count}) ",
        "seq",
    )


def _ts(dialect: str, minutes: str) -> str:
    if dialect == "postgresql":
        return f"(TIMESTAMPTZ '2023-01-01 00:00:00+00' + ({minutes}) * INTERVAL '1 minute')"
    return f"datetime('2023-01-01 00:00:00', '+' || ({minutes}) || ' minutes')"


def _json(dialect: str, expr: str) -> str:
    return f"CAST({expr} AS JSON)" if dialect == "postgresql" else expr


def populate(engine: Engine, owners: Owners, periods: int) -> dict[str, int]:
    """Fill the (empty) tables: `periods` periods of blocks; rows per account (all tables)."""
    dialect = engine.dialect.name
    blocks = owners.period * periods
    owner = owners.sql
    inserts: list[tuple[str, int, str, str]] = [
        # (table, rows, columns, SELECT list over n; the block of row n is (n - 1) / per + 1)
        (
            "contact_lists",
            blocks,
            "id, account_id, name, created_at",
            f"n, {owner('n')}, 'List ' || n, {_ts(dialect, 'n % 100000')}",
        ),
        (
            "templates",
            blocks,
            "id, account_id, name, body",
            f"n, {owner('n')}, 'Template ' || n, "
            "'<html><body><h1>Hello {{first_name}}</h1><p>News number ' || n "
            "|| '</p></body></html>'",
        ),
        (
            "campaigns",
            blocks,
            "id, account_id, list_id, template_id, subject, sent_at",
            f"n, {owner('n')}, n, n, 'Spring newsletter #' || n, {_ts(dialect, 'n % 200000')}",
        ),
        (
            "reports",
            blocks,
            "id, account_id, campaign_id, sends, opens, clicks, data",
            f"n, {owner('n')}, n, 160, n % 97, n % 13, "
            + _json(
                dialect,
                '\'{"bounces": \' || (n % 7) || \', "complaints": 0, "domains": ["example.com"]}\'',
            ),
        ),
        (
            "campaign_events",
            blocks * 36,
            "id, campaign_id, event, at",
            "n, (n - 1) / 36 + 1, "
            "CASE n % 4 WHEN 0 THEN 'created' WHEN 1 THEN 'scheduled' WHEN 2 THEN 'sending' "
            f"ELSE 'sent' END, {_ts(dialect, 'n % 300000')}",
        ),
        (
            "contacts",
            blocks * 160,
            "id, account_id, email, first_name, last_name, subscribed, created_at",
            f"n, {owner('(n - 1) / 160 + 1')}, 'contact' || n || '@example.com', "
            "'First' || (n % 1000), 'Last' || (n % 5000), (n % 10 <> 0), "
            f"{_ts(dialect, 'n % 400000')}",
        ),
        (
            "list_memberships",
            blocks * 160,
            "list_id, contact_id, subscribed_at",
            f"(n - 1) / 160 + 1, n, {_ts(dialect, 'n % 400000')}",
        ),
        (
            "contact_actions",
            blocks * 640,
            "id, contact_id, campaign_id, action, at",
            "n, (n - 1) / 4 + 1, (n - 1) / 640 + 1, "
            "CASE n % 3 WHEN 0 THEN 'open' WHEN 1 THEN 'click' ELSE 'unsubscribe' END, "
            f"{_ts(dialect, 'n % 500000')}",
        ),
    ]
    names = owners.accounts()
    with engine.begin() as conn:
        conn.execute(
            accounts.insert(),
            [{"id": name, "name": f"Account {name}", "plan": "pro"} for name in names],
        )
        conn.execute(
            users.insert(),
            [
                {
                    "id": i * 5 + j + 1,
                    "account_id": name,
                    "email": f"user{j}@{name}.example",
                    "role": "admin" if j == 0 else "member",
                    "password_hash": "x" * 60,
                }
                for i, name in enumerate(names)
                for j in range(5)
            ],
        )
        conn.execute(
            api_keys.insert(),
            [
                {
                    "id": i * 2 + j + 1,
                    "account_id": name,
                    "prefix": f"key{j}",
                    "secret_hash": "s" * 64,
                }
                for i, name in enumerate(names)
                for j in range(2)
            ],
        )
        for table, rows, columns, values in inserts:
            prefix, source = _series(dialect, rows)
            conn.execute(
                text(f"{prefix}INSERT INTO {table} ({columns}) SELECT {values} FROM {source}")
            )
    # settle the database as years of use would have left it: statistics gathered, nothing
    # left for a vacuum, a checkpoint or the WAL to do during the measurements
    if dialect == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    per_account = {name: count * BLOCK for name, count in owners.blocks_of(periods).items()}
    return {name: per_account.get(name, 0) + sum(PER_ACCOUNT.values()) for name in names}


def count_rows(engine: Engine, account_ids: Sequence[str]) -> int:
    """Rows of the accounts in every table, by hand-written SQL (not through lapse)."""
    ids = ", ".join(f"'{a}'" for a in account_ids)
    queries = []
    for table in metadata.sorted_tables:
        if table.name in THROUGH:
            column, parent = THROUGH[table.name]
            queries.append(
                f"SELECT count(*) FROM {table.name} c JOIN {parent} p ON c.{column} = p.id "
                f"WHERE p.account_id IN ({ids})"
            )
        else:
            owner = "id" if table.name == "accounts" else "account_id"
            queries.append(f"SELECT count(*) FROM {table.name} WHERE {owner} IN ({ids})")
    with engine.connect() as conn:
        return sum(int(conn.execute(text(q)).scalar_one()) for q in queries)


def delete_statements(account_id: str) -> list[str]:
    """One DELETE per table removing the account's rows, children before parents: what the
    database itself spends on the deletion, as one transaction with no batches."""
    out = []
    for table in reversed(metadata.sorted_tables):
        if table.name == "accounts":
            out.append(f"DELETE FROM accounts WHERE id = '{account_id}'")
        elif table.name in THROUGH:
            column, parent = THROUGH[table.name]
            out.append(
                f"DELETE FROM {table.name} WHERE {column} IN "
                f"(SELECT id FROM {parent} WHERE account_id = '{account_id}')"
            )
        else:
            out.append(f"DELETE FROM {table.name} WHERE account_id = '{account_id}'")
    return out


# --- the ORM mapping of the baseline ----------------------------------------------------------


class Account:
    pass


class User:
    pass


class ApiKey:
    pass


class ContactList:
    pass


class Template:
    pass


class Contact:
    pass


class ListMembership:
    pass


class Campaign:
    pass


class CampaignEvent:
    pass


class ContactAction:
    pass


class Report:
    pass


_mapped: list[Any] = []


def orm_mapped() -> None:
    """Map the tables the way an ORM application does: every parent owns its children with
    `cascade="all, delete-orphan"`, so `session.delete(account)` removes everything."""
    if _mapped:
        return
    reg = registry()

    def owned(child: type) -> Any:
        return relationship(child, cascade="all, delete-orphan")

    for cls, table in (
        (User, users),
        (ApiKey, api_keys),
        (Template, templates),
        (ListMembership, list_memberships),
        (CampaignEvent, campaign_events),
        (ContactAction, contact_actions),
        (Report, reports),
    ):
        reg.map_imperatively(cls, table)
    reg.map_imperatively(
        ContactList,
        contact_lists,
        properties={"memberships": owned(ListMembership)},
    )
    reg.map_imperatively(
        Contact,
        contacts,
        properties={
            "memberships": owned(ListMembership),
            "actions": owned(ContactAction),
        },
    )
    reg.map_imperatively(
        Campaign,
        campaigns,
        properties={
            "events": owned(CampaignEvent),
            "actions": owned(ContactAction),
            "reports": owned(Report),
            "list": relationship(ContactList),
            "template": relationship(Template),
        },
    )
    reg.map_imperatively(
        Account,
        accounts,
        properties={
            "users": owned(User),
            "api_keys": owned(ApiKey),
            "lists": owned(ContactList),
            "templates": owned(Template),
            "contacts": owned(Contact),
            "campaigns": owned(Campaign),
            "reports": owned(Report),
        },
    )
    reg.configure()
    _mapped.append(reg)


def orm_engine(url: str) -> Engine:
    """An engine as an ORM application opens it (SQLite: foreign keys enforced)."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _fk(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

    return engine


def orm_delete(engine: Engine, account_id: str) -> None:
    """The baseline: load the account, `session.delete()` it and commit (the ORM cascade)."""
    orm_mapped()
    with Session(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        session.delete(account)
        session.commit()
