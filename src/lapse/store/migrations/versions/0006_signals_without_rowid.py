"""On SQLite, the signals table is stored by its primary key (WITHOUT ROWID): one B-tree instead
of a rowid table plus the index of (account_id, name). Signal ingestion reads and upserts rows
by that key only, so every lookup and write touched both trees; now it touches one, and a batch
dirties about half the pages it did. PostgreSQL is unchanged (its tables have no such option).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Self-contained, like 0001: the column types are spelled out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(*, with_rowid: bool) -> None:
    """Copy signals into a table of the other storage kind and put it in the old one's place."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "signals_rebuilt",
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("last_seen", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "name", name="pk_signals"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_signals_account_id_accounts",
            ondelete="CASCADE",
        ),
        sqlite_with_rowid=with_rowid,
    )
    op.execute(
        "INSERT INTO signals_rebuilt (account_id, name, last_seen) "
        "SELECT account_id, name, last_seen FROM signals"
    )
    op.drop_table("signals")  # nothing refers to signals: its rows go without a cascade
    op.rename_table("signals_rebuilt", "signals")


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
