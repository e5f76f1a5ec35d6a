"""The compiled model's own behaviour: notices, restrictions, flow and policy helpers."""

from __future__ import annotations

from collections.abc import Callable

from lapse.policy import Duration
from lapse.policy.model import NoticeRule, Phase, Policy

Load = Callable[[str], Policy]


def notice(at: str, offset: Duration = Duration()) -> NoticeRule:
    return NoticeRule(key="p/t", at=at, offset=offset, to="admins", template="t")  # type: ignore[arg-type]


def test_notice_describe() -> None:
    assert notice("start").describe() == "at start"
    assert notice("after_start", Duration(days=3)).describe() == "3 days after start"
    assert notice("before_end", Duration(weeks=1)).describe() == "1 week before end"


def test_phase_denies() -> None:
    actions = frozenset({"login", "view", "send"})
    assert Phase(name="a", index=0, lasts=None).denies(actions) == frozenset()
    deny = Phase(name="a", index=0, lasts=None, deny=frozenset({"send", "other"}))
    assert deny.denies(actions) == frozenset({"send"})
    allow = Phase(name="a", index=0, lasts=None, allow_only=frozenset({"login"}))
    assert allow.denies(actions) == frozenset({"view", "send"})


def test_flow_helpers(load: Load) -> None:
    policy = load(
        """
        by-condition:
          reason: r
          applies_to: {kind: standard}
          starts_when: {age: 1 day}
          phases:
            - name: a
              lasts: 10 days
              notices: [{at: start, to: admins, template: s}]
            - name: b
              lasts: 1 month
              notices:
                - {at: 3 days before end, to: admins, template: short}
                - {at: 1 week before end, to: admins, template: long}
                - {at: 2 days after start, to: admins, template: after}
            - {name: c}
        with-stop:
          reason: r
          starts_when: {age: 1 day}
          stops_on: contacted
          phases: [{name: a, lasts: 1 day}]
        by-event:
          reason: r
          starts_on: go
          stops_when: {age: 2 days}
        irreversible:
          reason: r
          starts_when: {age: 1 day}
          irreversible: true
          phases: [{name: a}]
        """
    )
    flows = policy.flows
    assert [f.default_stop for f in flows.values()] == [True, False, False, False]
    assert [f.timed_phase_count for f in flows.values()] == [2, 1, 0, 0]
    assert [f.notice_lead for f in flows.values()] == [Duration(weeks=1), None, None, None]
    assert flows["by-condition"].applies("standard")
    assert not flows["by-condition"].applies("test")
    assert flows["by-event"].applies("test")
    assert [f.name for f in policy.flows_for("test")] == ["with-stop", "by-event", "irreversible"]
    assert policy.flows_for("test") is policy.flows_for("test")
    assert [f.name for f in policy.flows_for("standard")] == list(flows)
    assert [f.name for f in policy.flows_for_event("go")] == ["by-event"]
    assert [f.name for f in policy.flows_for_event("contacted")] == ["with-stop"]
    assert policy.flows_for_event("nothing") == ()
    # no phase to name one: active, unless irreversible
    assert (flows["by-event"].state_in(None), flows["irreversible"].state_in(None)) == (
        "active",
        "suspended",
    )
