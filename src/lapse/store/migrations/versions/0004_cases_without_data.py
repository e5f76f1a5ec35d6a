"""The cases table keeps the columns listings query (flow, phase, state, deadline) and no longer
a second copy of the whole case: `accounts.cases` is the one the store reads. Writing that copy
cost a JSON document per opened or changed case, on the scheduler's hot path.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Self-contained, like 0001: the column types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.Text().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("data")


def downgrade() -> None:
    # the copy comes back from the accounts' own case lists
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("data", JSON, nullable=False, server_default="{}"))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "UPDATE cases SET data = c.value FROM accounts a, jsonb_array_elements(a.cases) c "
            "WHERE a.id = cases.account_id AND c.value->>'id' = cases.case_id"
        )
    else:
        op.execute(
            "UPDATE cases SET data = (SELECT c.value FROM accounts a, json_each(a.cases) c "
            "WHERE a.id = cases.account_id AND json_extract(c.value, '$.id') = cases.case_id)"
        )
