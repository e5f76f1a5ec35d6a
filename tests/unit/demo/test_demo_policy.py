"""The demo policy runs the three presets' flows unchanged: each flow equals its preset's."""

from __future__ import annotations

import pytest

from lapse.notify.templates import TemplateRenderer
from lapse.policy import load_preset
from lapse.policy.model import Policy

DEMO = "email-service-demo"
PRESETS = ("inactivity-cleanup", "staged-expiry", "account-locks")


@pytest.fixture(scope="module")
def demo() -> Policy:
    return load_preset(DEMO)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_flow_of_the_preset_is_in_the_demo_policy_unchanged(
    demo: Policy, preset: str
) -> None:
    original = load_preset(preset)
    for name, flow in original.flows.items():
        assert demo.flows[name] == flow, f"flow {name} drifted from preset {preset}"


def test_the_demo_policy_has_no_other_flow(demo: Policy) -> None:
    names = [name for preset in PRESETS for name in load_preset(preset).flows]
    assert sorted(demo.flows) == sorted(names)
    assert len(names) == len(set(names))  # no two presets share a flow name


@pytest.mark.parametrize("preset", PRESETS)
def test_the_demo_policy_declares_what_each_preset_declares(demo: Policy, preset: str) -> None:
    original = load_preset(preset)
    assert original.actions <= demo.actions
    assert original.kinds <= demo.kinds
    assert original.signals <= demo.signals
    assert original.events <= demo.events
    assert original.categories <= demo.categories
    for name, spec in original.facts.items():
        assert demo.facts[name] == spec  # same type and default: the conditions mean the same
    assert (demo.timezone_name, demo.resolution) == (original.timezone_name, original.resolution)


def test_each_kind_runs_exactly_the_flows_its_preset_runs(demo: Policy) -> None:
    expected: dict[str, set[str]] = {}
    for preset in PRESETS:
        original = load_preset(preset)
        for kind in original.kinds:
            expected.setdefault(kind, set()).update(f.name for f in original.flows_for(kind))
    assert {kind: {f.name for f in demo.flows_for(kind)} for kind in demo.kinds} == expected


def test_the_demo_policy_loads_with_only_waived_lints_and_its_templates_ship(
    demo: Policy,
) -> None:
    assert {p.severity for p in demo.problems} <= {"waived"}
    assert TemplateRenderer().problems(demo) == []
