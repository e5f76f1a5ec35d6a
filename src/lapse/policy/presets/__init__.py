"""Policies shipped with lapse: `src/lapse/policy/presets/<name>.yaml`, loaded by name."""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from lapse.errors import LapseError
from lapse.policy.loader import load_policy, load_policy_file
from lapse.policy.model import Policy

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


class UnknownPreset(LapseError):
    """No preset (and no policy file) has this name."""

    code = "unknown-preset"


def _directory() -> Traversable:
    return resources.files(__name__)


def preset_names() -> list[str]:
    """The names of the shipped presets, sorted."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _directory().iterdir()
        if entry.name.endswith(".yaml") and _NAME.match(entry.name.removesuffix(".yaml"))
    )


def _available() -> str:
    names = preset_names()
    return f"available presets: {', '.join(names)}" if names else "no presets are installed"


def load_preset(name: str) -> Policy:
    """The preset policy `name`; UnknownPreset lists the available ones."""
    if name not in preset_names():
        raise UnknownPreset(f"no preset named {name!r}; {_available()}")
    text = _directory().joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return load_policy(text, source=f"presets/{name}.yaml")


def resolve_policy(file_or_preset: str) -> Policy:
    """Load `file_or_preset` as a file if one exists at that path, else as a preset name."""
    if Path(file_or_preset).is_file():
        return load_policy_file(file_or_preset)
    if file_or_preset in preset_names():
        return load_preset(file_or_preset)
    raise UnknownPreset(f"no policy file or preset named {file_or_preset!r}; {_available()}")
