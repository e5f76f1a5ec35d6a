"""The database schema: SQLAlchemy Core tables, one definition for SQLite and PostgreSQL.

Timestamps are always aware UTC datetimes in Python. PostgreSQL stores them as `timestamptz`;
SQLite as fixed-width ISO-8601 text (`2024-01-01T00:00:00.000000+00:00`), which sorts and compares
like the instants it names, so due-time indexes and range queries work on both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Boolean,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

from lapse.errors import InvalidInput

#: constraint names are fixed so migrations and the declared tables agree on both databases
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


_TEXT_CACHE: dict[datetime, str] = {}


def to_text(value: datetime) -> str:
    """The fixed-width UTC text SQLite stores for a timestamp (refuses naive datetimes)."""
    # cached like lapse.store.codec.ts: isoformat() is slow next to a dict lookup
    text = _TEXT_CACHE.get(value) if value.tzinfo is not None else None
    if text is not None:
        return text
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"timestamp {value.isoformat()} has no time zone")
        value = value.astimezone(UTC)
    text = value.isoformat(timespec="microseconds")
    if len(_TEXT_CACHE) >= 8192:
        _TEXT_CACHE.clear()
    _TEXT_CACHE[value] = text
    return text


def to_utc(value: datetime) -> datetime:
    """The same instant with `datetime.UTC` as its zone (refuses naive datetimes)."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"timestamp {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


_from_text = datetime.fromisoformat


class Timestamp(TypeDecorator[datetime]):
    """An aware UTC datetime: `timestamptz` on PostgreSQL, fixed-width ISO text on SQLite."""

    impl = String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(String(32))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return to_utc(value)
        return to_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _from_text(value)
        result: datetime = value
        return result if result.tzinfo is UTC else result.astimezone(UTC)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Json(TypeDecorator[Any]):
    """JSON: `jsonb` on PostgreSQL, TEXT on SQLite; None is SQL NULL, not the JSON literal.

    Not SQLAlchemy's JSON type on SQLite: a column declared JSON has NUMERIC affinity there, so
    SQLite would turn the stored text `1.0` into the integer 1 and `12345678901234567890` into a
    float, and the value would not come back as it was written.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return _dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.loads(value)


Id = String(200)  # account ids: 1 to 200 characters (lapse.core.inputs.new_account)
Name = String(200)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kind", Name, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("address", String(320)),
    Column("deleted_at", Timestamp()),
    Column("state", String(40), nullable=False, index=True),
    Column("next_due_at", Timestamp(), index=True),
    Column("claimed_by", String(200)),
    Column("claim_expires_at", Timestamp()),
    Column("wake_signals", Json()),  # JSON list of signal names, NULL when empty
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("cases", Json(), nullable=False),
    Column("armed_from", Json(), nullable=False),
    Column("last_events", Json(), nullable=False),
    Column("legal_hold", Json()),
    Column("case_seq", Integer, nullable=False, server_default="0"),
)

members = Table(
    "members",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("email", String(320), primary_key=True),
    Column("role", String(40), nullable=False),
    Column("position", Integer, nullable=False),  # keeps the members tuple in its order
)

signals = Table(
    "signals",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("name", Name, primary_key=True),
    Column("last_seen", Timestamp(), nullable=False),
    # SQLite: stored by its key, the only way it is read or written (migration 0006)
    sqlite_with_rowid=False,
)

facts = Table(
    "facts",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("name", Name, primary_key=True),
    Column("value", Json(), nullable=False),
    Column("changed_at", Timestamp(), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("name", Name, nullable=False),
    Column("at", Timestamp()),
    Column("received_at", Timestamp(), nullable=False),
    Index("ix_events_received_at", "received_at"),  # the event-id retention prunes by it
)

cases = Table(
    "cases",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("case_id", String(220), primary_key=True),
    Column("flow", Name, nullable=False, index=True),
    Column("phase_index", Integer, nullable=False),
    Column("started_at", Timestamp(), nullable=False),
    Column("destruct", String(20), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("account_id", Id, nullable=False),
    Column("case_id", String(220), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("recipient", String(320)),
    Column("kind", String(20), nullable=False),  # notice, host, purge, delete
    Column("name", String(400), nullable=False),  # notice key or hook name, for lookups
    Column("payload", Json(), nullable=False),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp()),
    Column("claimed_by", String(200)),
    Column("claim_expires_at", Timestamp()),
    Column("created_at", Timestamp(), nullable=False),
    Column("delivered_at", Timestamp()),
    Column("last_error", Text),
    Index("ix_outbox_claim", "status", "next_attempt_at"),
    Index("ix_outbox_account", "account_id", "case_id", "name"),
)

audit = Table(
    "audit",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("account_id", Id, nullable=False, index=True),
    Column("at", Timestamp(), nullable=False),
    Column("recorded_at", Timestamp(), nullable=False),
    Column("kind", String(80), nullable=False),
    Column("case_id", String(220)),
    Column("flow", Name),
    Column("detail", Json(), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: a single row
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

tombstones = Table(
    "tombstones",
    metadata,
    Column("account_id", Id, primary_key=True),
    Column("deleted_at", Timestamp(), nullable=False),
    Column("flow", Name, nullable=False),
    Column("case_id", String(220), nullable=False),
    Column("address_hash", String(64), index=True),
    Column("address_mode", String(20), nullable=False),
    Column("retired_until", Timestamp()),
    Column("receipt", Json(), nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("account_id", Id, nullable=False),
    Column("case_id", String(220), nullable=False),
    Column("template", Name, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("read_at", Timestamp()),
    Index("ix_notifications_account", "account_id", "created_at"),
)

# a deletion or purge of one account's data in progress: claimed by one worker at a time, with
# each location's progress between batches (so a crash resumes it and counts rows once)
data_runs = Table(
    "data_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", Id, nullable=False, index=True),
    Column("case_id", String(220), nullable=False),
    Column("flow", Name, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("categories", Json(), nullable=False),
    Column("started_at", Timestamp(), nullable=False),
    Column("owner", String(200)),
    Column("lease_until", Timestamp()),
)

data_progress = Table(
    "data_progress",
    metadata,
    Column(
        "run_id",
        String(64),
        ForeignKey("data_runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("connector", Name, primary_key=True),
    Column("location", Name, primary_key=True),
    Column("category", Name, nullable=False),
    Column("removed", BigInteger, nullable=False, server_default="0"),
    Column("in_flight", Json()),
    Column("passes", Integer, nullable=False, server_default="0"),
    Column("started_at", Timestamp()),
    Column("finished_at", Timestamp()),
)

# the global deletion rate limit: when each deletion (an outbox row of kind "delete") started;
# kept with the outbox row it belongs to
deletion_starts = Table(
    "deletion_starts",
    metadata,
    Column(
        "outbox_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("account_id", Id, nullable=False),
    Column("started_at", Timestamp(), nullable=False, index=True),
)

# deletion and purge receipts: kept for good (counts only, no personal data)
receipts = Table(
    "receipts",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(64), nullable=False, unique=True),
    Column("account_id", Id, nullable=False, index=True),
    Column("case_id", String(220), nullable=False),
    Column("flow", Name, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("finished_at", Timestamp(), nullable=False),
    Column("body", Json(), nullable=False),
    Column("hash", String(64), nullable=False),
)

# the policies applied to this store, oldest first: the newest row is the active policy, and
# the documents of older ones let any process compute the deadlines of cases opened under them
policies = Table(
    "policies",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("name", Name, nullable=False),
    Column("version", String(100), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("applied_at", Timestamp(), nullable=False),
    Column("applied_by", Name, nullable=False),
    Column("mode", String(20), nullable=False),  # initial, automatic, keep, replan
    Column("close_removed", Boolean, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", Name, nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", Json(), nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("last_used_at", Timestamp()),
    Column("revoked_at", Timestamp()),
)

__all__ = [
    "Timestamp",
    "accounts",
    "api_tokens",
    "audit",
    "audit_head",
    "cases",
    "data_progress",
    "data_runs",
    "deletion_starts",
    "events",
    "facts",
    "members",
    "metadata",
    "notifications",
    "outbox",
    "policies",
    "receipts",
    "signals",
    "to_text",
    "to_utc",
    "tombstones",
]
