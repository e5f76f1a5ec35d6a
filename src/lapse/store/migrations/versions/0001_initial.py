"""Initial schema: accounts and their inputs, cases, outbox, audit chain, tombstones, tokens.

Revision ID: 0001
Revises:
Create Date: 2026-06-01

Self-contained on purpose: the column types are spelled out here rather than imported from
`lapse.store.tables`, so later changes to the declared tables never rewrite this migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# timestamps: timestamptz on PostgreSQL, fixed-width ISO-8601 UTC text on SQLite
TS = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
# JSON: jsonb on PostgreSQL; TEXT on SQLite (a column declared JSON gets NUMERIC affinity there,
# which would turn stored JSON numbers such as 1.0 into other values)
JSON = sa.Text().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
ID = sa.String(200)
NAME = sa.String(200)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["accounts.id"],
        name=f"fk_{table}_account_id_accounts",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", NAME, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("address", sa.String(320)),
        sa.Column("deleted_at", TS),
        sa.Column("state", sa.String(40), nullable=False),
        sa.Column("next_due_at", TS),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("claim_expires_at", TS),
        sa.Column("wake_signals", JSON),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"),
        sa.Column("cases", JSON, nullable=False),
        sa.Column("armed_from", JSON, nullable=False),
        sa.Column("last_events", JSON, nullable=False),
        sa.Column("legal_hold", JSON),
        sa.Column("case_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
    )
    op.create_index("ix_accounts_state", "accounts", ["state"])
    op.create_index("ix_accounts_next_due_at", "accounts", ["next_due_at"])

    op.create_table(
        "members",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "email", name="pk_members"),
        _account_fk("members"),
    )
    op.create_table(
        "signals",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "name", name="pk_signals"),
        _account_fk("signals"),
    )
    op.create_table(
        "facts",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("value", JSON, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "name", name="pk_facts"),
        _account_fk("facts"),
    )
    op.create_table(
        "events",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("at", TS),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "event_id", name="pk_events"),
        _account_fk("events"),
    )
    op.create_table(
        "cases",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("case_id", sa.String(220), nullable=False),
        sa.Column("flow", NAME, nullable=False),
        sa.Column("phase_index", sa.Integer(), nullable=False),
        sa.Column("phase", NAME),
        sa.Column("state", sa.String(40)),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("deadline", TS),
        sa.Column("destruct", sa.String(20), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "case_id", name="pk_cases"),
        _account_fk("cases"),
    )
    op.create_index("ix_cases_flow", "cases", ["flow"])
    op.create_index("ix_cases_deadline", "cases", ["deadline"])

    op.create_table(
        "outbox",
        sa.Column("id", SERIAL, nullable=False, autoincrement=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("case_id", sa.String(220), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("recipient", sa.String(320)),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("claim_expires_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
        sa.Column("last_error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    )
    op.create_index("ix_outbox_claim", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_account", "outbox", ["account_id", "case_id", "name"])

    op.create_table(
        "audit",
        sa.Column("seq", SERIAL, nullable=False, autoincrement=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("kind", sa.String(80), nullable=False),
        sa.Column("case_id", sa.String(220)),
        sa.Column("flow", NAME),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit"),
    )
    op.create_index("ix_audit_account_id", "audit", ["account_id"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )

    op.create_table(
        "tombstones",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("deleted_at", TS, nullable=False),
        sa.Column("flow", NAME, nullable=False),
        sa.Column("case_id", sa.String(220), nullable=False),
        sa.Column("address_hash", sa.String(64)),
        sa.Column("address_mode", sa.String(20), nullable=False),
        sa.Column("retired_until", TS),
        sa.Column("receipt", JSON, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_tombstones"),
    )
    op.create_index("ix_tombstones_address_hash", "tombstones", ["address_hash"])

    op.create_table(
        "notifications",
        sa.Column("id", SERIAL, nullable=False, autoincrement=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("case_id", sa.String(220), nullable=False),
        sa.Column("template", NAME, nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("read_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_account", "notifications", ["account_id", "created_at"])

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS),
        sa.Column("revoked_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )


def downgrade() -> None:
    for table in (
        "api_tokens",
        "notifications",
        "tombstones",
        "audit_head",
        "audit",
        "outbox",
        "cases",
        "events",
        "facts",
        "signals",
        "members",
        "accounts",
    ):
        op.drop_table(table)
