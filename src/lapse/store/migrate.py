"""Bring a database's schema to the current version with the migrations shipped in the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from lapse.store.sql import create_db_engine

SCRIPT_LOCATION = "lapse.store:migrations"  # alembic resolves package:folder, so no alembic.ini


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser escapes
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (the newest by default)."""
    config = _config(url)
    engine = create_db_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None if it was never migrated)."""
    engine = create_db_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision shipped with this version of lapse."""
    return ScriptDirectory.from_config(_config("sqlite://")).get_current_head()
