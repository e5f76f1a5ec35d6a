"""The cases table keeps only what lapse reads from it: which flow and phase index each open case
is at (account listings by flow and phase, counts per phase, the outbox's undelivered-notice
join). The phase name, state and deadline columns were meant for SQL reporting but no writer
ever filled them (they need the policy, which the store does not have), so they were always
NULL while the deadline index still cost a write per opened or moved case. The phase name
follows from the flow and phase index under the account's policy; deadlines, states and time
left are what `status` and the admin UI compute from the case itself.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Self-contained, like 0001: the column types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
NAME = sa.String(200)


def upgrade() -> None:
    op.drop_index("ix_cases_deadline", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("deadline")
        batch.drop_column("state")
        batch.drop_column("phase")


def downgrade() -> None:
    # back as they were: empty (no writer filled them before 0007 either)
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("phase", NAME))
        batch.add_column(sa.Column("state", sa.String(40)))
        batch.add_column(sa.Column("deadline", TS))
    op.create_index("ix_cases_deadline", "cases", ["deadline"])
