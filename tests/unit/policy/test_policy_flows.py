"""Flows and phases: what they compile to, and every check that needs the whole policy."""

from __future__ import annotations

from collections.abc import Callable

from lapse.policy import Duration
from lapse.policy.model import AddressRule, NoticeRule, Outcome, Phase, Policy

Check = Callable[[str], list[str]]
Load = Callable[[str], Policy]


def test_a_flow_compiles_to_the_model(load: Load) -> None:
    policy = load(
        """
        inactivity:
          title: Inactivity clean-up
          reason: nobody uses it
          applies_to: {kind: standard}
          starts_on: gone
          stops_on: [contacted, back]
          phases:
            - name: grace
              lasts: 1 month 15 days
              deny: [send]
              state: locked
              banner: "Deleted on {deadline:%d %B %Y} ({time_left} left): {reason}"
              message: "{action} is paused in {phase} of {flow!r}"
              notices:
                - {at: start, to: admins, template: started}
                - {at: 7 days before end, to: members, template: warning, via: [email, in_app]}
                - {at: 3 days after start, to: owner, template: reminder, via: [webhook]}
              on_enter: [pause]
              on_exit: [resume]
              purge: [reports]
            - name: eligible
              allow_only: []
          outcome: delete
          address: {retire_for: 2 years}
          on_close: [resume_all]
          waive: [unreachable-phase]
        """
    )
    flow = policy.flows["inactivity"]
    assert (flow.name, flow.title, flow.reason, flow.path) == (
        "inactivity",
        "Inactivity clean-up",
        "nobody uses it",
        "flows.inactivity",
    )
    assert flow.applies_to == frozenset({"standard"})
    assert (flow.starts_when, flow.starts_on) == (None, frozenset({"gone"}))
    assert (flow.stops_when, flow.stops_on) == (None, frozenset({"contacted", "back"}))
    assert flow.irreversible is False
    p = "flows.inactivity.phases[0]"
    assert flow.phases[0] == Phase(
        name="grace",
        index=0,
        lasts=Duration(months=1, days=15),
        deny=frozenset({"send"}),
        allow_only=None,
        banner="Deleted on {deadline:%d %B %Y} ({time_left} left): {reason}",
        message="{action} is paused in {phase} of {flow!r}",
        notices=(
            NoticeRule(
                key="grace/started",
                at="start",
                offset=Duration(),
                to="admins",
                template="started",
                via=("email",),
                path=f"{p}.notices[0]",
            ),
            NoticeRule(
                key="grace/warning",
                at="before_end",
                offset=Duration(days=7),
                to="members",
                template="warning",
                via=("email", "in_app"),
                path=f"{p}.notices[1]",
            ),
            NoticeRule(
                key="grace/reminder",
                at="after_start",
                offset=Duration(days=3),
                to="owner",
                template="reminder",
                via=("webhook",),
                path=f"{p}.notices[2]",
            ),
        ),
        on_enter=("pause",),
        on_exit=("resume",),
        purge=("reports",),
        state="locked",
        path=p,
    )
    assert flow.phases[1] == Phase(
        name="eligible",
        index=1,
        lasts=None,
        allow_only=frozenset(),
        path="flows.inactivity.phases[1]",
    )
    assert flow.outcome == Outcome(kind="delete", path="flows.inactivity.outcome")
    assert flow.address == AddressRule(mode="retire", duration=Duration(years=2))
    assert flow.on_close == ("resume_all",)
    assert flow.waive == frozenset({"unreachable-phase"})
    # events named by flows are declared implicitly
    assert policy.events == frozenset({"contacted", "gone", "back"})


def test_defaults(load: Load) -> None:
    policy = load(
        """
        f:
          reason: r
          starts_when: {age: 1 day}
        g:
          reason: r
          starts_on: go
          outcome: {purge: [reports]}
          waive: [deletion-without-notice]
        h:
          reason: r
          starts_on: go
          outcome: none
          irreversible: true
        i:
          reason: r
          starts_on: go
          outcome: delete
          address: retire
          waive: [deletion-without-notice]
        """
    )
    f, g, h, i = policy.flows.values()
    assert (f.title, f.applies_to, f.phases, f.outcome, f.address, f.on_close, f.waive) == (
        "f",
        None,
        (),
        None,
        AddressRule(mode="release"),
        (),
        frozenset(),
    )
    assert g.outcome == Outcome(kind="purge", categories=("reports",), path="flows.g.outcome")
    assert (h.outcome, h.irreversible) == (None, True)
    assert i.address == AddressRule(mode="retire")


def test_start_and_reference_problems(check: Check) -> None:
    assert check(
        """
        neither:
          reason: r
        both:
          reason: r
          applies_to: {kind: [standard, premium, standard]}
          starts_when: {age: 1 day}
          starts_on: [go, go]
          stops_on: [halt, halt]
          on_close: [x, x]
          waive: [unknown-action, unknown-action]
        """
    ) == [
        "p.yaml:17:5: flows.neither: a flow needs one of starts_when or starts_on, found neither",
        "p.yaml:20:35: flows.both.applies_to.kind[1]: unknown kind 'premium'; declared kinds: "
        "standard, test",
        "p.yaml:20:44: flows.both.applies_to.kind[2]: duplicate 'standard' (first at line 20)",
        "p.yaml:22:16: flows.both.starts_on: a flow has exactly one of starts_when or "
        "starts_on, found both",
        "p.yaml:22:21: flows.both.starts_on[1]: duplicate 'go' (first at line 22)",
        "p.yaml:23:22: flows.both.stops_on[1]: duplicate 'halt' (first at line 23)",
        "p.yaml:24:19: flows.both.on_close[1]: duplicate 'x' (first at line 24)",
        "p.yaml:25:29: flows.both.waive[1]: duplicate 'unknown-action' (first at line 25)",
    ]


def test_kind_given_as_a_single_name(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          applies_to: {kind: premium}
          starts_on: go
        """
    ) == [
        "p.yaml:18:24: flows.f.applies_to.kind: unknown kind 'premium'; declared kinds: "
        "standard, test",
    ]


def test_phase_problems(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: go
          phases:
            - name: a
              lasts: 10 days
              deny: [send, send]
              allow_only: [login]
              on_enter: [x, x]
              notices:
                - {at: start, to: admins, template: t}
                - {at: 1 day before end, to: admins, template: t, via: [email, email]}
                - {at: 2 days after start, to: admins, template: u, via: []}
              purge: []
            - name: a
              notices:
                - {at: 1 day before end, to: admins, template: t}
              purge: [reports, junk, reports]
        """
    ) == [
        "p.yaml:22:22: flows.f.phases[0].deny[1]: duplicate 'send' (first at line 22)",
        "p.yaml:23:21: flows.f.phases[0].allow_only: a phase has at most one of deny or "
        "allow_only, found both",
        "p.yaml:24:23: flows.f.phases[0].on_enter[1]: duplicate 'x' (first at line 24)",
        "p.yaml:27:58: flows.f.phases[0].notices[1].template: duplicate template 't' (first at "
        "line 26)",
        "p.yaml:27:74: flows.f.phases[0].notices[1].via[1]: duplicate 'email' (first at line 27)",
        "p.yaml:28:68: flows.f.phases[0].notices[2].via: expected at least one channel",
        "p.yaml:29:16: flows.f.phases[0].purge: expected at least one data category to purge",
        "p.yaml:30:15: flows.f.phases[1].name: duplicate phase name 'a' (first at line 20)",
        "p.yaml:32:18: flows.f.phases[1].notices[0].at: a notice 'before end' needs a phase "
        "end; this phase is open-ended (no lasts)",
        "p.yaml:33:26: flows.f.phases[1].purge[1]: unknown category 'junk'; declared "
        "categories: reports, contacts",
        "p.yaml:33:32: flows.f.phases[1].purge[2]: duplicate 'reports' (first at line 33)",
    ]


def test_banner_and_message_placeholders(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: go
          phases:
            - name: a
              lasts: 1 day
              banner: "{action} {} {0} {deadline.year} {flow[0]}"
              message: "{action} {time_left:%d} {reason!z} {deadline:{x}} {phase:>10} {flow!r:^9}"
            - name: b
              banner: "{deadline:%d %B} ({time_left} left) {reason}"
              message: "oops }"
            - name: c
              message: "{unclosed"
        """
    ) == [
        "p.yaml:22:17: flows.f.phases[0].banner: unknown placeholder '{action}'; expected one "
        "of: {deadline}, {time_left}, {reason}, {flow}, {phase}",
        "p.yaml:22:17: flows.f.phases[0].banner: unknown placeholder '{}'; expected one of: "
        "{deadline}, {time_left}, {reason}, {flow}, {phase}",
        "p.yaml:22:17: flows.f.phases[0].banner: unknown placeholder '{0}'; expected one of: "
        "{deadline}, {time_left}, {reason}, {flow}, {phase}",
        "p.yaml:22:17: flows.f.phases[0].banner: unknown placeholder '{deadline.year}'; "
        "expected one of: {deadline}, {time_left}, {reason}, {flow}, {phase}",
        "p.yaml:22:17: flows.f.phases[0].banner: unknown placeholder '{flow[0]}'; expected one "
        "of: {deadline}, {time_left}, {reason}, {flow}, {phase}",
        "p.yaml:23:18: flows.f.phases[0].message: invalid placeholder '{time_left:%d}': Invalid "
        "format specifier '%d' for object of type 'str'",
        "p.yaml:23:18: flows.f.phases[0].message: invalid placeholder '{reason!z}': Unknown "
        "conversion specifier z",
        "p.yaml:23:18: flows.f.phases[0].message: nested placeholders are not supported: "
        "'{deadline:{x}}'",
        "p.yaml:25:17: flows.f.phases[1].banner: placeholder '{deadline:%d %B}' needs a phase "
        "end; this phase is open-ended (no lasts)",
        "p.yaml:25:17: flows.f.phases[1].banner: placeholder '{time_left}' needs a phase end; "
        "this phase is open-ended (no lasts)",
        "p.yaml:26:18: flows.f.phases[1].message: invalid format string: Single '}' encountered "
        "in format string",
        "p.yaml:27:9: flows.f.phases[2]: phase 'c' can never be entered: it follows the "
        "open-ended phase 'b' [unreachable-phase]",
        "p.yaml:28:18: flows.f.phases[2].message: invalid format string: expected '}' before "
        "end of string",
    ]


def test_outcome_and_address_problems(check: Check) -> None:
    assert check(
        """
        a:
          reason: r
          starts_on: go
          outcome: remove
          address: retire
        b:
          reason: r
          starts_on: go
          outcome: {purge: reports}
        c:
          reason: r
          starts_on: go
          outcome: {purge: [reports, Junk, 3]}
        d:
          reason: r
          starts_on: go
          outcome: {purge: [], when: now}
          address: release
        e:
          reason: r
          starts_on: go
          outcome: {purge: [reports, junk]}
          address: retire
        f:
          reason: r
          starts_on: go
          address: keep
        g:
          reason: r
          starts_on: go
          outcome: delete
          address: {retire_for: forever}
          waive: [deletion-without-notice]
        h:
          reason: r
          starts_on: go
          outcome: delete
          address: {retire_for: 1 year, then: release}
          waive: [deletion-without-notice]
        """
    ) == [
        "p.yaml:19:14: flows.a.outcome: expected delete, none or {purge: [categories]}, found "
        "'remove'",
        "p.yaml:24:22: flows.b.outcome.purge: expected a list of data categories, found 'reports'",
        "p.yaml:28:32: flows.c.outcome.purge[1]: expected a name (lower case letters, digits, "
        "'_' and '-', starting with a letter), found 'Junk'",
        "p.yaml:28:38: flows.c.outcome.purge[2]: expected a name (lower case letters, digits, "
        "'_' and '-', starting with a letter), found 3",
        "p.yaml:32:14: flows.d.outcome: outcome purge runs without any notice before it "
        "[deletion-without-notice]",
        "p.yaml:32:22: flows.d.outcome.purge: expected at least one data category to purge",
        "p.yaml:32:26: flows.d.outcome.when: unknown key 'when'; expected one of: purge",
        "p.yaml:37:14: flows.e.outcome: outcome purge runs without any notice before it "
        "[deletion-without-notice]",
        "p.yaml:37:32: flows.e.outcome.purge[1]: unknown category 'junk'; declared categories: "
        "reports, contacts",
        "p.yaml:38:14: flows.e.address: address applies only to a flow whose outcome is delete",
        "p.yaml:42:14: flows.f.address: address applies only to a flow whose outcome is delete",
        "p.yaml:42:14: flows.f.address: expected release, retire or {retire_for: <duration>}, "
        "found 'keep'",
        "p.yaml:46:14: flows.g.outcome: waived: outcome delete runs without any notice before "
        "it [deletion-without-notice]",
        "p.yaml:47:27: flows.g.address.retire_for: expected a duration such as '30 days' or '1 "
        "month', found 'forever'",
        "p.yaml:52:14: flows.h.outcome: waived: outcome delete runs without any notice before "
        "it [deletion-without-notice]",
        "p.yaml:53:14: flows.h.address: expected release, retire or {retire_for: <duration>}, "
        "found a mapping",
    ]
