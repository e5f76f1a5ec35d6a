"""lapse: an account lifecycle engine driven by a declarative policy.

The names below are imported lazily, so `import lapse` stays cheap and connects to nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lapse.errors import LapseError
    from lapse.policy import Policy, load_policy, load_policy_file, load_preset
    from lapse.runtime.clock import ManualClock, SystemClock
    from lapse.runtime.engine import Engine
    from lapse.store.memory import MemoryStore

__all__ = [
    "Engine",
    "LapseError",
    "ManualClock",
    "MemoryStore",
    "Policy",
    "SystemClock",
    "load_policy",
    "load_policy_file",
    "load_preset",
]

_WHERE = {
    "Engine": "lapse.runtime.engine",
    "LapseError": "lapse.errors",
    "ManualClock": "lapse.runtime.clock",
    "SystemClock": "lapse.runtime.clock",
    "MemoryStore": "lapse.store.memory",
    "Policy": "lapse.policy",
    "load_policy": "lapse.policy",
    "load_policy_file": "lapse.policy",
    "load_preset": "lapse.policy",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lapse' has no attribute {name!r}")
    return getattr(import_module(module), name)
