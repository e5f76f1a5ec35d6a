"""Policies: the YAML language, its loader and lints, and the compiled model the core evaluates.

A leaf layer: it imports nothing from lapse but `lapse.errors`.
"""

from lapse.policy.durations import Duration
from lapse.policy.loader import (
    PolicyCheck,
    check_policy,
    inspect_policy,
    load_policy,
    load_policy_file,
)
from lapse.policy.model import Policy
from lapse.policy.presets import UnknownPreset, load_preset, preset_names, resolve_policy
from lapse.policy.render import describe_condition, describe_policy

__all__ = [
    "Duration",
    "Policy",
    "PolicyCheck",
    "UnknownPreset",
    "check_policy",
    "describe_condition",
    "describe_policy",
    "inspect_policy",
    "load_policy",
    "load_policy_file",
    "load_preset",
    "preset_names",
    "resolve_policy",
]
