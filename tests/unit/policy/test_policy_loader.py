"""The loader's API: what a loaded Policy holds, and how problems are raised or returned."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lapse.errors import PolicyError
from lapse.policy import (
    Duration,
    check_policy,
    inspect_policy,
    load_policy,
    load_policy_file,
)
from lapse.policy.model import FactSpec

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_policy_holds_everything_it_declares() -> None:
    text = (FIXTURES / "full.yaml").read_text()
    policy = load_policy(text, "full.yaml")
    assert (policy.name, policy.version, policy.description) == (
        "inactivity-cleanup",
        "3",
        "Delete accounts nobody uses any more.",
    )
    assert policy.timezone == ZoneInfo("Europe/Brussels")
    assert policy.timezone_name == "Europe/Brussels"
    assert policy.resolution == Duration(hours=1)
    assert policy.action_order == (
        "login",
        "view",
        "export",
        "view_reports",
        "send_campaign",
        "api",
        "edit",
        "renew",
    )
    assert policy.actions == frozenset(policy.action_order)
    assert policy.kinds == frozenset({"standard", "test"})
    assert policy.signals == frozenset({"login", "campaign_sent", "api_request"})
    assert policy.facts == {
        "subscription_active": FactSpec(name="subscription_active", type="bool", default=False),
        "contacts": FactSpec(name="contacts", type="number"),
        "plan_contact_limit": FactSpec(name="plan_contact_limit", type="number", default=1000),
        "subscription_expires_at": FactSpec(
            name="subscription_expires_at",
            type="timestamp",
            default=datetime(2030, 1, 1, tzinfo=UTC),
        ),
        "plan": FactSpec(name="plan", type="string", default="free"),
    }
    assert policy.events == frozenset(
        {"contacted_sales", "payment_failed", "payment_succeeded", "tos_violation"}
    )
    assert policy.categories == frozenset({"campaigns", "contacts", "reports"})
    assert list(policy.flows) == ["inactivity", "contact-limit", "payment", "tos"]
    assert policy.waive == frozenset()
    assert policy.source == "full.yaml"
    assert policy.digest == hashlib.sha256(text.encode()).hexdigest()
    assert [str(p).rsplit(" ", 1)[-1] for p in policy.problems] == ["[deletion-without-notice]"]


def test_defaults_of_a_minimal_policy() -> None:
    policy = load_policy("version: v2.1\nname: a\n")
    assert (policy.version, policy.description, policy.timezone_name) == ("v2.1", "", "UTC")
    assert policy.timezone == ZoneInfo("UTC")
    assert policy.resolution == Duration(hours=1)
    assert policy.source == "<policy>"
    assert (policy.actions, policy.kinds, policy.facts, policy.flows, policy.events) == (
        frozenset(),
        frozenset(),
        {},
        {},
        frozenset(),
    )


def test_custom_resolution_including_zero() -> None:
    assert load_policy("version: 1\nname: a\nresolution: 0 minutes\n").resolution == Duration()
    assert load_policy("version: 1\nname: a\nresolution: 5 minutes\n").resolution == Duration(
        minutes=5
    )


BROKEN = textwrap.dedent(
    """\
    version: 1
    name: broken
    timezone: Mars/Olympus
    actions: [login, send]
    kinds: [standard]
    categories: [reports]
    flows:
      a:
        reason: structure
        starts_on: go
        phases: [{name: p, lasts: forever}]
      b:
        reason: references
        applies_to: {kind: premium}
        starts_on: go
        phases: [{name: p, lasts: 1 day, deny: [sned], banner: "{nope}"}]
        outcome: delete
      b:
        reason: duplicate
    """
)


def test_every_problem_is_reported_at_once() -> None:
    expected = [
        "b.yaml:3:11: timezone: unknown time zone 'Mars/Olympus'; expected an IANA name such as "
        "'Europe/Brussels' or 'UTC'",
        "b.yaml:11:31: flows.a.phases[0].lasts: expected a duration such as '30 days' or "
        "'1 month', found 'forever'",
        "b.yaml:14:24: flows.b.applies_to.kind: unknown kind 'premium'; declared kinds: standard",
        "b.yaml:16:45: flows.b.phases[0].deny[0]: unknown action 'sned'; declared actions: "
        "login, send [unknown-action]",
        "b.yaml:16:60: flows.b.phases[0].banner: unknown placeholder '{nope}'; expected one of: "
        "{deadline}, {time_left}, {reason}, {flow}, {phase}",
        "b.yaml:17:14: flows.b.outcome: outcome delete runs without any notice before it "
        "[deletion-without-notice]",
        "b.yaml:18:3: flows.b: duplicate key 'b' (first at line 12)",
    ]
    assert [str(p) for p in check_policy(BROKEN, "b.yaml")] == expected
    with pytest.raises(PolicyError) as caught:
        load_policy(BROKEN, "b.yaml")
    assert [str(p) for p in caught.value.problems] == expected
    assert str(caught.value).splitlines() == ["7 errors in policy:"] + [
        f"  {line}" for line in expected
    ]


def test_inspect_separates_errors_from_waived_lints() -> None:
    text = "version: 1\nname: a\nflows:\n  f:\n    reason: r\n    starts_on: go\n"
    waived = text + "    outcome: delete\n    waive: [deletion-without-notice]\n"
    result = inspect_policy(waived)
    assert result.policy is not None
    assert [p.severity for p in result.problems] == ["waived"]
    assert result.errors == ()
    result = inspect_policy(text + "    outcome: delete\n")
    assert result.policy is None
    assert [p.code for p in result.errors] == ["deletion-without-notice"]


def test_load_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nname: a\nflows: {f: {reason: r}}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3:12: flows.f: a flow needs one of starts_when or starts_on, found neither"
    ]
    path.write_text("version: 1\nname: a\n", encoding="utf-8")
    assert load_policy_file(str(path)).source == str(path)
    with pytest.raises(FileNotFoundError):
        load_policy_file(tmp_path / "missing.yaml")
