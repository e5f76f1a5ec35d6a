"""The policies applied to the store: the newest row is the active policy, older rows keep the
documents open cases may have been opened under (see lapse.core.migrate).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Self-contained, like 0001: the column types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("seq", SERIAL, nullable=False, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("applied_at", TS, nullable=False),
        sa.Column("applied_by", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("close_removed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_policies"),
    )


def downgrade() -> None:
    op.drop_table("policies")
