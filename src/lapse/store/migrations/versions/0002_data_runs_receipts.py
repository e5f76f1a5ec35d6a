"""Data runs (resumable deletions and purges of an account's data) and their receipts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-06-15

Self-contained, like 0001: the column types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
JSON = sa.Text().with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
ID = sa.String(200)
NAME = sa.String(200)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "data_runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("case_id", sa.String(220), nullable=False),
        sa.Column("flow", NAME, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("categories", JSON, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("lease_until", TS),
        sa.PrimaryKeyConstraint("id", name="pk_data_runs"),
    )
    op.create_index("ix_data_runs_account_id", "data_runs", ["account_id"])

    op.create_table(
        "data_progress",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("connector", NAME, nullable=False),
        sa.Column("location", NAME, nullable=False),
        sa.Column("category", NAME, nullable=False),
        sa.Column("removed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("in_flight", JSON),
        sa.Column("passes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.PrimaryKeyConstraint("run_id", "connector", "location", name="pk_data_progress"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["data_runs.id"],
            name="fk_data_progress_run_id_data_runs",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "receipts",
        sa.Column("seq", SERIAL, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("case_id", sa.String(220), nullable=False),
        sa.Column("flow", NAME, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_receipts"),
        sa.UniqueConstraint("id", name="uq_receipts_id"),
    )
    op.create_index("ix_receipts_account_id", "receipts", ["account_id"])


def downgrade() -> None:
    op.drop_table("receipts")
    op.drop_table("data_progress")
    op.drop_table("data_runs")
