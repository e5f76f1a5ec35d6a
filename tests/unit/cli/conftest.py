"""CLI tests run the Typer app in process on a temporary SQLite file with a manual clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lapse.runtime.bootstrap import Services, build
from lapse.runtime.settings import load_settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """LAPSE_* settings for the commands: a fresh SQLite file, a preset, a manual clock."""
    for name in list(os.environ):
        if name.startswith("LAPSE_"):
            monkeypatch.delenv(name)
    values = {
        "LAPSE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "LAPSE_POLICY": "account-locks",
        "LAPSE_CLOCK": "manual",
        "LAPSE_CLOCK_START": "2025-01-31T09:00:00Z",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def runner() -> CliRunner:
    """Typer's test runner."""
    return CliRunner()


@pytest.fixture
def services(env: dict[str, str]) -> Iterator[Services]:
    """The same database wired in process, to prepare accounts for the commands."""
    wired = build(load_settings())
    wired.engine.deliver_inline = True
    yield wired
    wired.store.close()  # type: ignore[attr-defined]
