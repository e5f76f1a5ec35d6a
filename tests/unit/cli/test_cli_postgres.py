"""The operational commands on PostgreSQL: nothing migrates implicitly, `lapse migrate` does."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

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


@pytest.mark.postgres
def test_simulate_and_apply_on_postgres(
    runner: CliRunner,
    env: dict[str, str],
    database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_cli_policy_versions import V2, prepare

    from lapse.runtime.bootstrap import build
    from lapse.runtime.settings import load_settings

    url = database("postgres")
    monkeypatch.setenv("LAPSE_DATABASE_URL", url)
    monkeypatch.setenv("LAPSE_POLICY", "inactivity-cleanup")
    v2 = tmp_path / "v2.yaml"
    v2.write_text(V2)
    services = build(load_settings())
    services.engine.deliver_inline = True
    try:
        prepare(services.engine)
        simulated = runner.invoke(cli.app, ["simulate", str(v2), "--mode", "replan"])
        assert simulated.exit_code == 0, simulated.output
        assert "1: 16 days earlier" in simulated.stdout
        shown = runner.invoke(cli.app, ["account", "show", "acme", "--policy", str(v2)])
        assert shown.exit_code == 0  # read-only, with the policy it is given: nothing recorded
        applied = runner.invoke(cli.app, ["policy", "apply", str(v2), "--replan", "--by", "ops"])
        assert applied.exit_code == 0, applied.output
        assert "1 open case migrated (deadlines re-planned) in 1 account" in applied.stdout
        services.engine.refresh_policy()
        (case,) = services.engine.status("acme").cases
        assert case.deadline is not None
        assert case.deadline.isoformat() == "2025-02-14T09:00:00+00:00"
        assert case.policy_version == "2"
    finally:
        services.close()
