"""Progress bars on long commands (`audit verify`, `migrate`, `export`): drawn only when stdout
is a terminal, erased before the result; off a terminal the output is exactly what it was."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lapse import cli
from lapse.runtime.bootstrap import Services
from lapse.store.migrate import head_revision

HEAD = head_revision()


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands believe stdout is a terminal; rich draws into the captured output."""
    monkeypatch.setattr(cli, "interactive", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")


def test_off_a_terminal_the_output_has_no_bar(runner: CliRunner, services: Services) -> None:
    assert not cli.interactive()  # the runner's stdout is no terminal
    url = services.database_url
    migrated = runner.invoke(cli.app, ["migrate"])
    assert migrated.stdout == f"{url}: at revision {HEAD} (head {HEAD}), already up to date\n"
    services.engine.add_account("a", kind="standard")
    checked = len(services.store.audit(limit=10_000))
    verified = runner.invoke(cli.app, ["audit", "verify"])
    assert verified.stdout == f"ok: {checked} audit entries, the chain is intact\n"
    for result in (migrated, verified):
        assert "\x1b" not in result.output
        assert result.stderr == ""


def test_on_a_terminal_a_bar_shows_and_goes(
    runner: CliRunner, env: dict[str, str], terminal: None
) -> None:
    url = env["LAPSE_DATABASE_URL"]
    migrated = runner.invoke(cli.app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    count = int(HEAD or 0)  # revisions are numbered 0001, 0002...: all of them were applied
    assert f"revision {HEAD} ({count} of {count})" in migrated.stdout
    # the bar is erased (cursor up, line cleared) before the result line
    last = migrated.stdout.rsplit("\x1b[2K", 1)[1]
    assert last == f"{url}: at revision {HEAD} (head {HEAD}), upgraded from empty\n"
    verified = runner.invoke(cli.app, ["audit", "verify"])
    assert "checking the receipts" in verified.stdout
    assert verified.stdout.rsplit("\x1b[2K", 1)[1] == "ok: 0 audit entries, the chain is intact\n"
