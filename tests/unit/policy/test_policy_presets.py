"""Presets: the shipped ones load cleanly; names and errors are clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from lapse.errors import PolicyError
from lapse.policy import UnknownPreset, load_preset, preset_names, resolve_policy
from lapse.policy import presets as presets_module

VALID = "version: 1\nname: {name}\n"


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_loads_without_errors(name: str) -> None:
    policy = load_preset(name)
    assert policy.name == name
    assert policy.source == f"presets/{name}.yaml"
    assert all(p.severity == "waived" for p in policy.problems)  # type: ignore[attr-defined]


def test_shipped_preset_names_are_sorted() -> None:
    names = preset_names()
    assert names == sorted(names)


@pytest.fixture
def preset_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(presets_module, "_directory", lambda: tmp_path)
    return tmp_path


def test_names_come_from_yaml_files(preset_dir: Path) -> None:
    (preset_dir / "b-policy.yaml").write_text(VALID.format(name="b-policy"))
    (preset_dir / "a.yaml").write_text(VALID.format(name="a"))
    (preset_dir / "notes.txt").write_text("not a preset")
    (preset_dir / "Bad Name.yaml").write_text("ignored")
    assert preset_names() == ["a", "b-policy"]
    assert load_preset("a").name == "a"


def test_unknown_preset_lists_the_available_ones(preset_dir: Path) -> None:
    (preset_dir / "a.yaml").write_text(VALID.format(name="a"))
    (preset_dir / "b.yaml").write_text(VALID.format(name="b"))
    with pytest.raises(UnknownPreset) as caught:
        load_preset("../a")
    assert str(caught.value) == "no preset named '../a'; available presets: a, b"
    assert caught.value.code == "unknown-preset"


def test_unknown_preset_when_none_are_installed(preset_dir: Path) -> None:
    with pytest.raises(UnknownPreset, match=r"^no preset named 'a'; no presets are installed$"):
        load_preset("a")


def test_an_invalid_preset_raises_policy_error(preset_dir: Path) -> None:
    (preset_dir / "bad.yaml").write_text("version: 1\n")
    with pytest.raises(PolicyError) as caught:
        load_preset("bad")
    assert [str(p) for p in caught.value.problems] == [
        "presets/bad.yaml:1:1: missing required key 'name'"
    ]


def test_resolve_a_file_or_a_preset(
    preset_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (preset_dir / "shipped.yaml").write_text(VALID.format(name="shipped"))
    elsewhere = tmp_path_factory.mktemp("files")
    (elsewhere / "mine.yaml").write_text(VALID.format(name="mine"))
    (elsewhere / "shipped").mkdir()  # a directory is not a policy file
    monkeypatch.chdir(elsewhere)
    assert resolve_policy("mine.yaml").name == "mine"
    assert resolve_policy(str(elsewhere / "mine.yaml")).source == str(elsewhere / "mine.yaml")
    assert resolve_policy("shipped").name == "shipped"
    with pytest.raises(UnknownPreset) as caught:
        resolve_policy("missing.yaml")
    assert str(caught.value) == (
        "no policy file or preset named 'missing.yaml'; available presets: shipped"
    )
