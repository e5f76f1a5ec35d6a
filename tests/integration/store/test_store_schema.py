"""The migrations and the declared tables describe the same database, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from lapse.store.migrate import current_revision, head_revision
from lapse.store.sql import create_db_engine
from lapse.store.tables import metadata


def test_migrated_schema_equals_declared_tables(store_url: str) -> None:
    engine = create_db_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            inspector = inspect(conn)
            assert set(inspector.get_table_names()) >= set(metadata.tables)
            indexes = {i["name"] for i in inspector.get_indexes("outbox")}
            assert {"ix_outbox_claim", "ix_outbox_account"} <= indexes
            assert "ix_accounts_next_due_at" in {
                i["name"] for i in inspector.get_indexes("accounts")
            }
            uniques = inspector.get_unique_constraints("outbox")
            assert [u["column_names"] for u in uniques] == [["idempotency_key"]]
    finally:
        engine.dispose()


def test_database_is_at_head_revision(store_url: str) -> None:
    assert current_revision(store_url) == head_revision() == "0003"
