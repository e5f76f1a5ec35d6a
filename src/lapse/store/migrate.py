"""Bring a database's schema to the current version with the migrations shipped in the package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from lapse.store.sql import create_db_engine

SCRIPT_LOCATION = "lapse.store:migrations"  # alembic resolves package:folder, so no alembic.ini


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser escapes
    return config


def migrate(
    url: str,
    revision: str = "head",
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> None:
    """Upgrade the database at `url` to `revision` (the newest by default); `progress` is told
    (revisions applied, revisions to apply, the revision just applied) after each one."""
    config = _config(url)
    engine = create_db_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            if progress is not None:
                config.attributes["on_version_apply"] = _counting(config, conn, revision, progress)
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _counting(
    config: Config, conn: Connection, revision: str, progress: Callable[[int, int, str], None]
) -> Callable[..., None]:
    """An alembic `on_version_apply` hook that reports each applied revision to `progress`."""
    current = MigrationContext.configure(conn).get_current_revision()
    script = ScriptDirectory.from_config(config)
    total = sum(1 for _ in script.iterate_revisions(revision, current))
    applied = 0

    def hook(*, step: Any, **_: Any) -> None:
        nonlocal applied
        applied += 1
        progress(applied, total, str(step.up_revision_id))

    return hook


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
