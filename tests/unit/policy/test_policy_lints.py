"""Safety lints: each one, every offender at once, and waivers on the flow or the policy."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from lapse.policy import check_policy, load_policy
from lapse.policy.lints import lint_policy
from lapse.policy.model import Policy

Check = Callable[[str], list[str]]
Load = Callable[[str], Policy]


def test_unknown_action(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: go
          phases:
            - {name: a, lasts: 1 day, deny: [view, sned, export]}
            - {name: b, allow_only: [login, admin]}
        """
    ) == [
        "p.yaml:20:46: flows.f.phases[0].deny[1]: unknown action 'sned'; declared actions: "
        "login, view, send [unknown-action]",
        "p.yaml:20:52: flows.f.phases[0].deny[2]: unknown action 'export'; declared actions: "
        "login, view, send [unknown-action]",
        "p.yaml:21:39: flows.f.phases[1].allow_only[1]: unknown action 'admin'; declared "
        "actions: login, view, send [unknown-action]",
    ]


def test_unreachable_phase_reports_every_one(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: go
          phases:
            - {name: a, lasts: 1 day}
            - {name: open}
            - {name: b, lasts: 1 day}
            - {name: c}
        """
    ) == [
        "p.yaml:22:9: flows.f.phases[2]: phase 'b' can never be entered: it follows the "
        "open-ended phase 'open' [unreachable-phase]",
        "p.yaml:23:9: flows.f.phases[3]: phase 'c' can never be entered: it follows the "
        "open-ended phase 'open' [unreachable-phase]",
    ]


def test_deletion_without_notice(check: Check) -> None:
    assert check(
        """
        silent:
          reason: r
          starts_on: go
          phases:
            - {name: a, lasts: 1 day, purge: [reports]}
            - name: b
              lasts: 1 day
              notices: [{at: start, to: admins, template: t}]
              purge: [contacts]
            - {name: c}
          outcome: delete
        late:
          reason: r
          starts_on: go
          phases:
            - {name: a, lasts: 1 day}
            - {name: open, notices: [{at: start, to: members, template: t}]}
          outcome: {purge: [reports]}
        at-once:
          reason: r
          starts_on: go
          outcome: delete
        owner-is-told:
          reason: r
          starts_on: go
          phases:
            - {name: a, lasts: 1 day, notices: [{at: start, to: owner, template: t}]}
          outcome: delete
        """
    ) == [
        "p.yaml:20:40: flows.silent.phases[0].purge: phase 'a' purges reports without any "
        "notice before it [deletion-without-notice]",
        "p.yaml:33:14: flows.late.outcome: outcome purge runs without any notice before it "
        "[deletion-without-notice]",
        "p.yaml:37:14: flows.at-once.outcome: outcome delete runs without any notice before it "
        "[deletion-without-notice]",
    ]


def test_notice_lead_exceeds_phase(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: go
          phases:
            - name: a
              lasts: 1 month
              notices:
                - {at: 30 days before end, to: admins, template: thirty}
                - {at: 28 days before end, to: admins, template: fits}
                - {at: 5 weeks after start, to: admins, template: late}
            - name: b
              lasts: 2 days
              notices: [{at: 2 days before end, to: admins, template: whole-phase}]
            - name: c
              notices: [{at: 1 year after start, to: admins, template: open}]
        """
    ) == [
        "p.yaml:23:18: flows.f.phases[0].notices[0].at: notice '30 days before end' can be "
        "longer than its phase (1 month) [notice-lead-exceeds-phase]",
        "p.yaml:25:18: flows.f.phases[0].notices[2].at: notice '5 weeks after start' can be "
        "longer than its phase (1 month) [notice-lead-exceeds-phase]",
    ]


def test_irreversible_with_stop(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: go
          irreversible: true
          stops_when: {age: 1 day}
          stops_on: [stop]
        """
    ) == [
        "p.yaml:20:17: flows.f.stops_when: an irreversible flow cannot have stops_when: nothing "
        "stops it [irreversible-with-stop]",
        "p.yaml:21:15: flows.f.stops_on: an irreversible flow cannot have stops_on: nothing "
        "stops it [irreversible-with-stop]",
    ]


def test_banner_without_login(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: go
          phases:
            - {name: a, lasts: 1 day, deny: [login], banner: a}
            - {name: b, lasts: 1 day, allow_only: [view], banner: b}
            - {name: c, lasts: 1 day, allow_only: [login], banner: c}
            - {name: d, deny: [login]}
        """
    ) == [
        "p.yaml:20:56: flows.f.phases[0].banner: phase 'a' shows a banner but denies login, so "
        "nobody can see it [banner-without-login]",
        "p.yaml:21:61: flows.f.phases[1].banner: phase 'b' shows a banner but denies login, so "
        "nobody can see it [banner-without-login]",
    ]


def test_banner_without_a_login_action(check_doc: Check) -> None:
    # without a `login` action nothing gates logging in: the banner can be seen
    assert (
        check_doc(
            """
        version: 1
        name: a
        actions: [view]
        flows:
          f:
            reason: r
            starts_on: go
            phases: [{name: a, allow_only: [view], banner: hello}]
        """
        )
        == []
    )


def test_no_actions_declared(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: a
        flows:
          f:
            reason: r
            starts_on: go
            phases: [{name: a, deny: [send]}]
        """
    ) == [
        "p.yaml:7:31: flows.f.phases[0].deny[0]: unknown action 'send'; no actions are declared "
        "[unknown-action]",
    ]


def test_waivers_on_the_flow_and_on_the_policy(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: a
        actions: [login]
        waive: [irreversible-with-stop]
        flows:
          f:
            reason: r
            starts_on: go
            irreversible: true
            stops_on: [stop]
            outcome: delete
            waive: [deletion-without-notice]
          g:
            reason: r
            starts_on: go
            outcome: delete
        """
    ) == [
        "p.yaml:10:15: flows.f.stops_on: waived: an irreversible flow cannot have stops_on: "
        "nothing stops it [irreversible-with-stop]",
        "p.yaml:11:14: flows.f.outcome: waived: outcome delete runs without any notice before "
        "it [deletion-without-notice]",
        "p.yaml:16:14: flows.g.outcome: outcome delete runs without any notice before it "
        "[deletion-without-notice]",
    ]


def test_waived_lints_travel_with_the_policy() -> None:
    policy = load_policy(
        textwrap.dedent(
            """
            version: 1
            name: a
            flows:
              f:
                reason: r
                starts_on: go
                outcome: delete
                waive: [deletion-without-notice]
            """
        ),
        "p.yaml",
    )
    assert [str(p) for p in policy.problems] == [
        "p.yaml:8:14: flows.f.outcome: waived: outcome delete runs without any notice before it "
        "[deletion-without-notice]"
    ]


def test_lint_policy_without_a_source(load: Load) -> None:
    policy = load(
        """
        f:
          reason: r
          starts_on: go
          phases: [{name: a, deny: [nope, login], banner: x}]
          waive: [unknown-action, banner-without-login]
        """
    )
    # a policy loaded earlier has no positions: problems name the path only
    assert [str(p) for p in lint_policy(policy)] == [
        "p.yaml: flows.f.phases[0].deny: waived: unknown action 'nope'; declared actions: "
        "login, view, send [unknown-action]",
        "p.yaml: flows.f.phases[0].banner: waived: phase 'a' shows a banner but denies login, "
        "so nobody can see it [banner-without-login]",
    ]


def test_actions_are_not_checked_when_the_section_is_invalid(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: a
        actions: login
        flows:
          f:
            reason: r
            starts_on: go
            phases: [{name: a, deny: [send]}]
        """
    ) == ["p.yaml:3:10: actions: expected a list, found 'login'"]


def test_instant_cycle_is_an_error_that_cannot_be_waived() -> None:
    text = """\
version: 1
name: cycle
actions: [a]
kinds: [k]
facts:
  big: {type: bool}
categories: [c]
waive: [deletion-without-notice]
flows:
  fact-only:
    reason: r
    starts_when: {any: [{fact: big, is: true}, {age: 10 days}]}
    outcome: {purge: [c]}
  recurring:
    reason: r
    starts_when: {all: [{fact: big, is: true}, {age: 10 days}]}
    outcome: {purge: [c]}
  open-ended:
    reason: r
    starts_when: {fact: big, is: true}
    phases: [{name: held}]
"""
    errors = [str(p) for p in check_policy(text, "cycle.yaml") if p.severity == "error"]
    assert errors == [
        "cycle.yaml:11:5: flows.fact-only: flow 'fact-only' would end the moment it starts and "
        "start again at once (its start condition still holds): give it a phase with a duration, "
        "an open-ended phase, or the outcome delete [instant-cycle]"
    ]
