"""`lapse policy check` and `lapse policy show` through Typer's test runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lapse import cli
from lapse.policy import describe_policy, load_preset, preset_names
from lapse.policy import presets as presets_module

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("ok.yaml").write_text(
        "version: 1\nname: ok\nflows:\n  f:\n    reason: r\n    starts_on: go\n"
        "    outcome: delete\n    waive: [deletion-without-notice]\n"
    )
    Path("none.yaml").write_text("version: 1\nname: none\n")
    Path("bad.yaml").write_text("version: 1\nname: Bad\ncolour: red\n")
    Path("binary.yaml").write_bytes(b"\xff\xfe\x00")
    Path("folder").mkdir()
    return tmp_path


def test_check_valid_files(files: Path) -> None:
    result = runner.invoke(cli.app, ["policy", "check", "ok.yaml", "none.yaml"])
    assert result.exit_code == 0
    assert result.stdout == (
        "ok.yaml:7:14: flows.f.outcome: waived: outcome delete runs without any notice before "
        "it [deletion-without-notice]\n"
        "ok: ok.yaml (1 flow)\n"
        "ok: none.yaml (0 flows)\n"
    )


def test_check_reports_every_error_and_exits_1(files: Path) -> None:
    result = runner.invoke(cli.app, ["policy", "check", "bad.yaml", "none.yaml"])
    assert result.exit_code == 1
    assert result.stdout == (
        "bad.yaml:2:7: name: expected a policy name (lower case letters, digits and '-', "
        "starting with a letter or digit), found 'Bad'\n"
        "bad.yaml:3:1: colour: unknown key 'colour'; expected one of: version, name, "
        "description, timezone, resolution, actions, kinds, signals, facts, events, categories, "
        "waive, templates, flows\n"
        "ok: none.yaml (0 flows)\n"
    )


def test_check_unreadable_files_exit_2(files: Path) -> None:
    result = runner.invoke(
        cli.app, ["policy", "check", "missing.yaml", "bad.yaml", "binary.yaml", "folder"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: missing.yaml: no such file\n"
        "error: binary.yaml: not UTF-8 text\n"
        "error: folder: cannot read: Is a directory\n"
    )
    assert result.stdout.count("\n") == 2  # bad.yaml's problems are still printed


def test_check_needs_a_file() -> None:
    result = runner.invoke(cli.app, ["policy", "check"])
    assert result.exit_code == 2
    assert "Missing argument 'FILE'" in result.output


def test_show_a_file(files: Path) -> None:
    result = runner.invoke(cli.app, ["policy", "show", "ok.yaml"])
    assert result.exit_code == 0
    assert result.stdout.startswith("ok (version 1)\nSource: ok.yaml (sha256 ")
    assert "Flow f\n" in result.stdout


@pytest.mark.parametrize("name", preset_names())
def test_show_a_preset(name: str) -> None:
    result = runner.invoke(cli.app, ["policy", "show", name])
    assert result.exit_code == 0
    assert result.stdout == describe_policy(load_preset(name))


def test_show_an_invalid_file_exits_1(files: Path) -> None:
    result = runner.invoke(cli.app, ["policy", "show", "bad.yaml"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[1].startswith("bad.yaml:3:1: colour: unknown key")


def test_show_an_unknown_name_exits_2(
    files: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    empty = tmp_path_factory.mktemp("presets")
    (empty / "only.yaml").write_text("version: 1\nname: only\n")
    monkeypatch.setattr(presets_module, "_directory", lambda: empty)
    result = runner.invoke(cli.app, ["policy", "show", "nope"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no policy file or preset named 'nope'; available presets: only\n"
    )


def test_help_lists_the_policy_commands() -> None:
    result = runner.invoke(cli.app, ["policy", "--help"])
    assert result.exit_code == 0
    assert "check" in result.stdout
    assert "show" in result.stdout


def test_main_runs_the_app(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["lapse", "policy", "show", str(FIXTURES / "full.yaml")])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("inactivity-cleanup (version 3)\n")
