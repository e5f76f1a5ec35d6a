"""`lapse simulate` and `lapse policy apply`, and `lapse serve` refusing a policy that would move
open cases (SQLite here; test_cli_postgres.py runs them on PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lapse import cli
from lapse.policy.durations import Duration, subtract
from lapse.runtime.bootstrap import Services, build
from lapse.runtime.engine import Engine
from lapse.runtime.settings import load_settings

TEXT = resources.files("lapse.policy.presets").joinpath("inactivity-cleanup.yaml").read_text()
V2 = TEXT.replace("version: 1", "version: 2").replace("lasts: 30 days", "lasts: 14 days")


@pytest.fixture
def v2(tmp_path: Path) -> str:
    """The inactivity preset with a 14-day grace period, as version 2, in a file."""
    path = tmp_path / "inactivity-v2.yaml"
    path.write_text(V2)
    return str(path)


@pytest.fixture
def in_grace(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """The inactivity preset (v1) on the CLI's database, `acme` 3 days into its grace period
    (30 days from 31 January 2025, 09:00: until 2 March)."""
    monkeypatch.setenv("LAPSE_POLICY", "inactivity-cleanup")
    services = build(load_settings())
    services.engine.deliver_inline = True
    prepare(services.engine)
    yield services
    services.close()


def prepare(engine: Engine) -> None:
    """`acme` 3 days into its grace period."""
    engine.add_account(
        "acme",
        kind="standard",
        created_at=subtract(engine.clock.now(), Duration(months=12)),
        members=[("ann@acme.example", "admin")],
    )
    engine.run_until(engine.clock.now() + timedelta(days=3))


def test_simulate_shows_both_modes_and_writes_nothing(
    runner: CliRunner, in_grace: Services, v2: str
) -> None:
    audit = len(in_grace.store.audit(limit=10_000))
    result = runner.invoke(cli.app, ["simulate", v2])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"simulate inactivity-cleanup v1 (active) -> inactivity-cleanup v2 ({v2})" in out
    assert "1 account, 1 open case, 1 opened under another version than v2" in out
    assert f"deadlines kept (lapse policy apply {v2} --keep-deadlines):" in out
    assert f"deadlines re-planned (lapse policy apply {v2} --replan):" in out
    assert "1: 16 days earlier" in out
    assert "acme: 2025-03-02 09:00 UTC -> 2025-02-14 09:00 UTC" in out
    assert len(in_grace.store.audit(limit=10_000)) == audit
    replan = runner.invoke(cli.app, ["simulate", v2, "--mode", "replan", "--json"])
    assert replan.exit_code == 0, replan.output
    body = json.loads(replan.stdout)
    assert body["current"]["version"] == "1"
    assert body["proposed"]["version"] == "2"
    (mode,) = body["modes"]
    assert mode["mode"] == "replan"
    (line,) = mode["phases"]
    assert (line["flow"], line["phase"], line["moved"]) == ("inactivity", "grace", 1)
    assert line["earliest_seconds"] == -16 * 86400
    assert line["samples"][0]["deadline_after"] == "2025-02-14T09:00:00Z"
    keep = runner.invoke(cli.app, ["simulate", v2, "--mode", "keep"])
    assert "deadlines re-planned" not in keep.stdout
    assert "│ -" in keep.stdout  # no deadline moves
    same = runner.invoke(cli.app, ["simulate", "inactivity-cleanup"])
    assert "this is the active policy: nothing would change" in same.stdout


def test_simulate_bad_input(runner: CliRunner, in_grace: Services, tmp_path: Path) -> None:
    mode = runner.invoke(cli.app, ["simulate", "inactivity-cleanup", "--mode", "later"])
    assert mode.exit_code == 2
    assert mode.stderr == "error: --mode 'later': expected keep or replan\n"
    missing = runner.invoke(cli.app, ["simulate", "nonexistent"])
    assert missing.exit_code == 2
    assert "no policy file or preset named 'nonexistent'" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(V2.replace("lasts: 14 days", "lasts: 14 dayz"))
    invalid = runner.invoke(cli.app, ["simulate", str(broken)])
    assert invalid.exit_code == 1
    assert f"{broken}:" in invalid.stderr
    assert "phases[0].lasts" in invalid.stderr


def test_serve_refuses_then_apply_keeps_deadlines(
    runner: CliRunner, in_grace: Services, v2: str
) -> None:
    refused = runner.invoke(cli.app, ["serve", "--policy", v2])
    assert refused.exit_code == 2
    assert refused.stderr.startswith(
        "error: the database's active policy is inactivity-cleanup v1 (applied 2025-01-31 09:00 "
        "UTC by lapse "
    )
    assert (
        f"this process was started with inactivity-cleanup v2 ({v2}), and 1 open case opened "
        "under another version would be affected" in refused.stderr
    )
    assert f"`lapse simulate {v2}`" in refused.stderr
    neither = runner.invoke(cli.app, ["policy", "apply", v2])
    assert neither.exit_code == 2
    assert neither.stderr == "error: give exactly one of --keep-deadlines and --replan\n"
    both = runner.invoke(cli.app, ["policy", "apply", v2, "--keep-deadlines", "--replan"])
    assert both.exit_code == 2
    applied = runner.invoke(cli.app, ["policy", "apply", v2, "--keep-deadlines", "--by", "ops"])
    assert applied.exit_code == 0, applied.output
    assert applied.stdout == (
        "applied inactivity-cleanup v2 (was inactivity-cleanup v1): 1 open case migrated "
        "(deadlines kept) in 1 account\n"
    )
    again = runner.invoke(cli.app, ["policy", "apply", v2, "--keep-deadlines", "--by", "ops"])
    assert again.stdout == (
        "inactivity-cleanup v2 was already the active policy: 0 open cases migrated "
        "(deadlines kept) in 0 accounts\n"
    )
    active = in_grace.store.active_policy()
    assert active is not None
    assert (active.version, active.mode, active.applied_by) == ("2", "keep", "ops")
    shown = runner.invoke(cli.app, ["account", "show", "acme"])
    assert shown.exit_code == 0, shown.output
    assert "2025-03-02 09:00 UTC" in shown.stdout  # the deadline kept
    assert "moved from policy version 1 to 2 (deadline kept" in shown.stdout
    assert "policy version 1 -> 2: the deadline was kept" in shown.stdout


def test_apply_replan_and_removed_phases(
    runner: CliRunner, in_grace: Services, tmp_path: Path
) -> None:
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(V2.replace("name: grace", "name: warning"))
    blocked = runner.invoke(cli.app, ["policy", "apply", str(renamed), "--replan"])
    assert blocked.exit_code == 1
    assert blocked.stderr.startswith(
        "error: 1 open case cannot be migrated to inactivity-cleanup v2; nothing was changed."
    )
    assert "acme/inactivity#1: version 2 of its flow has no phase 'grace'" in blocked.stderr
    preview = runner.invoke(cli.app, ["simulate", str(renamed), "--mode", "replan"])
    assert "1 case cannot be migrated (apply refuses; --close-removed closes them):" in (
        preview.stdout
    )
    closing = runner.invoke(
        cli.app, ["simulate", str(renamed), "--mode", "replan", "--close-removed"]
    )
    assert "1 case close:" in closing.stdout
    closed = runner.invoke(
        cli.app, ["policy", "apply", str(renamed), "--replan", "--close-removed"]
    )
    assert closed.exit_code == 0, closed.output
    assert closed.stdout.endswith(
        "0 open cases migrated (deadlines re-planned) in 1 account, 1 closed\n"
    )
    assert in_grace.engine.account("acme").cases == ()
