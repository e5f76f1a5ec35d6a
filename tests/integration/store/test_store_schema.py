"""The migrations and the declared tables describe the same database, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.pool import NullPool

from lapse.store import codec
from lapse.store.base import StoredPolicy
from lapse.store.migrate import _config, current_revision, head_revision, migrate
from lapse.store.sql import SqlStore, create_db_engine
from lapse.store.tables import metadata

from .helpers import DAY, T0, account, case, create


def test_migrated_schema_equals_declared_tables(store_url: str) -> None:
    engine = create_db_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
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
    assert current_revision(store_url) == head_revision() == "0008"


def test_migration_0004_drops_the_case_copy_and_its_downgrade_restores_it(
    store_url: str,
) -> None:
    store = SqlStore(create_db_engine(store_url))
    try:
        with store.unit() as unit:
            unit.write(create(account("a1", cases=(case("a1"), case("a1", n=2)))))
    finally:
        store.close()
    config = _config(store_url)
    engine = create_db_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0003")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT case_id, data FROM cases ORDER BY case_id")).all()
        restored = {
            case_id: codec.decode_case(data if isinstance(data, dict) else json.loads(data))
            for case_id, data in rows
        }
        assert restored == {"inactivity#1": case("a1"), "inactivity#2": case("a1", n=2)}
        migrate(store_url)
        with engine.connect() as conn:
            assert "data" not in {c["name"] for c in inspect(conn).get_columns("cases")}
            count = conn.execute(text("SELECT count(*) FROM cases")).scalar()
        assert count == 2
    finally:
        engine.dispose()


def test_migration_0005_adds_the_policies_and_its_downgrade_drops_them(store_url: str) -> None:
    store = SqlStore(create_db_engine(store_url))
    try:
        store.record_policy(
            StoredPolicy(
                name="p",
                version="1",
                digest="d" * 64,
                source="version: 1\n",
                applied_at=T0,
                applied_by="ops",
                mode="initial",
            ),
            [],
        )
    finally:
        store.close()
    config = _config(store_url)
    engine = create_db_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0004")
        assert current_revision(store_url) == "0004"
        with engine.connect() as conn:
            assert "policies" not in inspect(conn).get_table_names()
        migrate(store_url)
        with engine.connect() as conn:
            assert "policies" in inspect(conn).get_table_names()
            count = conn.execute(text("SELECT count(*) FROM policies")).scalar()
        assert count == 0  # the history went with the table; the next start records the policy
    finally:
        engine.dispose()


def _signals_without_rowid(conn: Connection) -> bool:
    sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'signals'")).scalar()
    return "WITHOUT ROWID" in str(sql)


def test_sqlite_signals_are_stored_by_their_key_as_declared(store_url: str) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("WITHOUT ROWID is SQLite's; PostgreSQL has no such table option")
    engine = create_db_engine(store_url)
    declared = create_db_engine("sqlite://")
    try:
        with engine.connect() as conn:
            assert _signals_without_rowid(conn)
        metadata.create_all(declared)
        with declared.connect() as conn:
            assert _signals_without_rowid(conn)
    finally:
        engine.dispose()
        declared.dispose()


def test_migration_0006_keeps_the_signals_and_its_downgrade_restores_rowids(
    store_url: str,
) -> None:
    store = SqlStore(create_db_engine(store_url))
    try:
        with store.unit() as unit:
            unit.write(create(account("a1")))
    finally:
        store.close()
    config = _config(store_url)
    engine = create_db_engine(store_url, poolclass=NullPool)
    select = text("SELECT account_id, name, last_seen FROM signals ORDER BY name")
    try:
        with engine.connect() as conn:
            before = conn.execute(select).all()
        assert [row[1] for row in before] == ["login", "sent"]
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")
        with engine.connect() as conn:
            assert conn.execute(select).all() == before
            if engine.dialect.name == "sqlite":
                assert not _signals_without_rowid(conn)
        migrate(store_url)
        with engine.connect() as conn:
            assert conn.execute(select).all() == before
            if engine.dialect.name == "sqlite":
                assert _signals_without_rowid(conn)
        # the key and the cascade came along: a report upserts, a deletion cascades
        store = SqlStore(create_db_engine(store_url))
        try:
            result = store.record_signals([("a1", "login", T0)], resolution=DAY, now=T0)
            assert result.written == 1
        finally:
            store.close()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM accounts WHERE id = 'a1'"))
            assert conn.execute(text("SELECT count(*) FROM signals")).scalar() == 0
    finally:
        engine.dispose()
