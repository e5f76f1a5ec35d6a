"""When each deletion started, for the global deletion rate limit (LAPSE_DELETIONS_PER_MINUTE).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Self-contained, like 0001: the column types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deletion_starts",
        sa.Column("outbox_id", SERIAL, nullable=False, autoincrement=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("outbox_id", name="pk_deletion_starts"),
    )
    op.create_index("ix_deletion_starts_started_at", "deletion_starts", ["started_at"])


def downgrade() -> None:
    op.drop_table("deletion_starts")
