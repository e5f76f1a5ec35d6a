"""The operational commands on PostgreSQL: nothing migrates implicitly, `lapse migrate` does."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from lapse import cli
from lapse.store.migrate import head_revision

HEAD = head_revision()  # the newest migration shipped


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database."""
    name = f"lapse_cli_{os.getpid()}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_commands_need_a_migrated_postgres(
    runner: CliRunner, env: dict[str, str], empty_postgres: str
) -> None:
    shown = make_url(empty_postgres).render_as_string(hide_password=True)
    before = runner.invoke(cli.app, ["account", "show", "a", "--database", empty_postgres])
    assert before.exit_code == 2
    assert before.stderr == (
        f"error: the database {shown} is at schema revision none, this lapse needs {HEAD}: "
        "run `lapse migrate`\n"
    )
    migrated = runner.invoke(cli.app, ["migrate", "--database", empty_postgres])
    assert migrated.exit_code == 0, migrated.output
    assert migrated.stdout == f"{shown}: at revision {HEAD} (head {HEAD}), upgraded from empty\n"
    after = runner.invoke(cli.app, ["account", "show", "a", "--database", empty_postgres])
    assert after.exit_code == 1
    assert after.stderr == "error: no account 'a'\n"
    token = runner.invoke(
        cli.app, ["token", "create", "ops", "--scope", "admin", "--database", empty_postgres]
    )
    assert token.exit_code == 0, token.output
    assert "ops" in runner.invoke(cli.app, ["token", "list", "-d", empty_postgres]).stdout
