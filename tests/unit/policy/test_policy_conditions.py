"""Conditions: every form compiles to the model, every mistake gets a precise message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from lapse.policy import Duration
from lapse.policy.model import (
    AccountAge,
    AllOf,
    AnyOf,
    Compare,
    FactRef,
    NoActivity,
    Not,
    Policy,
    SinceFact,
)

Check = Callable[[str], list[str]]
Load = Callable[[str], Policy]
P = "flows.f.starts_when"


def test_every_form_compiles(load: Load) -> None:
    policy = load(
        """
        f:
          reason: r
          starts_when:
            all:
              - {no_activity: [login, sent], for: 12 months}
              - {no_activity: login, for: 1 day}
              - {age: 30 days}
              - {since: expires, for: 0 days}
              - any:
                  - {fact: active, is: false}
                  - {fact: plan, is_not: free}
                  - {fact: contacts, gt: {fact: limit}}
                  - {fact: contacts, lte: 2.5}
                  - {fact: plan, in: [free, trial]}
                  - {fact: expires, lt: 2024-01-31T00:00:00Z}
                  - {fact: expires, gte: "2024-01-31T00:00:00+01:00"}
              - not: {fact: contacts, not_in: [1, 2]}
        """
    )
    c = f"{P}.all"
    d = f"{c}[4].any"
    assert policy.flows["f"].starts_when == AllOf(
        path=P,
        items=(
            NoActivity(signals=("login", "sent"), duration=Duration(months=12), path=f"{c}[0]"),
            NoActivity(signals=("login",), duration=Duration(days=1), path=f"{c}[1]"),
            AccountAge(duration=Duration(days=30), path=f"{c}[2]"),
            SinceFact(fact="expires", duration=Duration(), path=f"{c}[3]"),
            AnyOf(
                path=f"{c}[4]",
                items=(
                    Compare(fact="active", op="is", value=False, path=f"{d}[0]"),
                    Compare(fact="plan", op="is_not", value="free", path=f"{d}[1]"),
                    Compare(fact="contacts", op="gt", value=FactRef(fact="limit"), path=f"{d}[2]"),
                    Compare(fact="contacts", op="lte", value=2.5, path=f"{d}[3]"),
                    Compare(fact="plan", op="in", value=("free", "trial"), path=f"{d}[4]"),
                    Compare(
                        fact="expires",
                        op="lt",
                        value=datetime(2024, 1, 31, tzinfo=UTC),
                        path=f"{d}[5]",
                    ),
                    Compare(
                        fact="expires",
                        op="gte",
                        value=datetime(2024, 1, 31, tzinfo=timezone(timedelta(hours=1))),
                        path=f"{d}[6]",
                    ),
                ),
            ),
            Not(
                path=f"{c}[5]",
                item=Compare(fact="contacts", op="not_in", value=(1, 2), path=f"{c}[5].not"),
            ),
        ),
    )


def test_shape_problems(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_when:
            any:
              - late
              - {}
              - {when: x, then: y}
              - {age: 1 day, since: expires}
              - {age: 1 day, for: 2 days}
              - {no_activity: login}
              - {since: expires}
          stops_when: {all: []}
        g:
          reason: r
          starts_when: {not: {any: login}}
        """
    ) == [
        f"p.yaml:20:11: {P}.any[0]: expected a condition with one of the keys: no_activity, "
        "age, since, fact, all, any, not; found 'late'",
        f"p.yaml:21:11: {P}.any[1]: expected a condition with one of the keys: no_activity, "
        "age, since, fact, all, any, not; found an empty mapping",
        f"p.yaml:22:11: {P}.any[2]: expected a condition with one of the keys: no_activity, "
        "age, since, fact, all, any, not; found keys: when, then",
        f"p.yaml:23:11: {P}.any[3]: a condition has exactly one of the keys: no_activity, age, "
        "since, fact, all, any, not; found age, since",
        f"p.yaml:24:24: {P}.any[4].for: unknown key 'for'; expected one of: age",
        f"p.yaml:25:11: {P}.any[5]: missing required key 'for'",
        f"p.yaml:26:11: {P}.any[6]: missing required key 'for'",
        "p.yaml:27:23: flows.f.stops_when.all: expected a non-empty list of conditions, found "
        "an empty list",
        "p.yaml:30:30: flows.g.starts_when.not.any: expected a non-empty list of conditions, "
        "found 'login'",
    ]


def test_signal_and_duration_problems(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_when:
            any:
              - {no_activity: [], for: 1 day}
              - {no_activity: 3, for: 1 day}
              - {no_activity: [login, Login, login, campaign], for: 1 fortnight}
              - {no_activity: visit, for: 30}
              - {age: 30 days 2 days}
              - {since: expires, for: soon}
        """
    ) == [
        f"p.yaml:20:25: {P}.any[0].no_activity: expected a signal name or a list of signal "
        "names, found an empty list",
        f"p.yaml:21:25: {P}.any[1].no_activity: expected a signal name or a list of signal "
        "names, found 3",
        f"p.yaml:22:33: {P}.any[2].no_activity[1]: expected a name (lower case letters, "
        "digits, '_' and '-', starting with a letter), found 'Login'",
        f"p.yaml:22:40: {P}.any[2].no_activity[2]: duplicate 'login' (first at line 22)",
        f"p.yaml:22:47: {P}.any[2].no_activity[3]: unknown signal 'campaign'; declared "
        "signals: login, sent",
        f"p.yaml:22:63: {P}.any[2].for: unknown unit 'fortnight' in '1 fortnight'; expected "
        "minutes, hours, days, weeks, months or years",
        f"p.yaml:23:25: {P}.any[3].no_activity: unknown signal 'visit'; declared signals: "
        "login, sent",
        f"p.yaml:23:37: {P}.any[3].for: expected a duration such as '30 days' or '1 month', "
        "found 30",
        f"p.yaml:24:17: {P}.any[4].age: days given twice in '30 days 2 days'",
        f"p.yaml:25:33: {P}.any[5].for: expected a duration such as '30 days' or '1 month', "
        "found 'soon'",
    ]


def test_fact_problems(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_when:
            any:
              - {since: contacts, for: 1 day}
              - {since: nope, for: 1 day}
              - {since: 3, for: 1 day}
              - {fact: contacts}
              - {fact: contacts, gt: 1, lt: 5}
              - {fact: nope, is: 1}
              - {fact: active, gt: 3}
              - {fact: plan, lte: a}
              - {fact: active, is: "no"}
              - {fact: contacts, is: "3"}
              - {fact: contacts, is: true}
              - {fact: plan, is: 3}
              - {fact: expires, lt: 2024-01-01}
              - {fact: expires, lt: 2024-01-01T00:00:00}
              - {fact: expires, lt: "next week"}
              - {fact: plan, in: free}
              - {fact: plan, not_in: []}
              - {fact: plan, in: [free, 3, {fact: plan}]}
        """
    ) == [
        f"p.yaml:20:19: {P}.any[0].since: since needs a timestamp fact; 'contacts' is a number "
        "fact",
        f"p.yaml:21:19: {P}.any[1].since: unknown fact 'nope'; declared facts: active, "
        "contacts, limit, plan, expires",
        f"p.yaml:22:19: {P}.any[2].since: expected a name (lower case letters, digits, '_' and "
        "'-', starting with a letter), found 3",
        f"p.yaml:23:11: {P}.any[3]: a fact comparison needs exactly one operator of: is, "
        "is_not, gt, gte, lt, lte, in, not_in",
        f"p.yaml:24:11: {P}.any[4]: a fact comparison needs exactly one operator of: is, "
        "is_not, gt, gte, lt, lte, in, not_in, found gt, lt",
        f"p.yaml:25:18: {P}.any[5].fact: unknown fact 'nope'; declared facts: active, "
        "contacts, limit, plan, expires",
        f"p.yaml:26:30: {P}.any[6].gt: gt needs a number or timestamp fact; 'active' is a "
        "bool fact",
        f"p.yaml:27:29: {P}.any[7].lte: lte needs a number or timestamp fact; 'plan' is a "
        "string fact",
        f"p.yaml:28:30: {P}.any[8].is: expected true or false to compare with bool fact "
        "'active', found 'no'",
        f"p.yaml:29:32: {P}.any[9].is: expected a number to compare with number fact "
        "'contacts', found '3'",
        f"p.yaml:30:32: {P}.any[10].is: expected a number to compare with number fact "
        "'contacts', found true",
        f"p.yaml:31:28: {P}.any[11].is: expected a string to compare with string fact 'plan', "
        "found 3",
        f"p.yaml:32:31: {P}.any[12].lt: expected a timestamp with a zone offset such as "
        "'2024-01-31T00:00:00Z' to compare with timestamp fact 'expires', found 2024-01-01",
        f"p.yaml:33:31: {P}.any[13].lt: expected a timestamp with a zone offset such as "
        "'2024-01-31T00:00:00Z' to compare with timestamp fact 'expires', "
        "found 2024-01-01T00:00:00",
        f"p.yaml:34:31: {P}.any[14].lt: expected a timestamp with a zone offset such as "
        "'2024-01-31T00:00:00Z' to compare with timestamp fact 'expires', found 'next week'",
        f"p.yaml:35:28: {P}.any[15].in: expected a non-empty list of values for in, found 'free'",
        f"p.yaml:36:32: {P}.any[16].not_in: expected a non-empty list of values for not_in, "
        "found an empty list",
        f"p.yaml:37:35: {P}.any[17].in[1]: expected a string to compare with string fact "
        "'plan', found 3",
        f"p.yaml:37:38: {P}.any[17].in[2]: expected a string to compare with string fact "
        "'plan', found a mapping",
    ]


def test_fact_reference_problems(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_when:
            any:
              - {fact: contacts, gt: {value: 3}}
              - {fact: contacts, gt: {fact: limit, plus: 3}}
              - {fact: contacts, gt: {fact: nope}}
              - {fact: contacts, is: {fact: plan}}
        """
    ) == [
        f"p.yaml:20:32: {P}.any[0].gt: expected a value or {{fact: <name>}}, found a mapping",
        f"p.yaml:21:46: {P}.any[1].gt.plus: unknown key 'plus'; expected one of: fact",
        f"p.yaml:22:39: {P}.any[2].gt.fact: unknown fact 'nope'; declared facts: active, "
        "contacts, limit, plan, expires",
        f"p.yaml:23:39: {P}.any[3].is.fact: cannot compare number fact 'contacts' with string "
        "fact 'plan'",
    ]


def test_nothing_declared(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: a
        flows:
          f:
            reason: r
            starts_when:
              any:
                - {no_activity: login, for: 1 day}
                - {fact: active, is: true}
        """
    ) == [
        "p.yaml:8:25: flows.f.starts_when.any[0].no_activity: unknown signal 'login'; no "
        "signals are declared",
        "p.yaml:9:18: flows.f.starts_when.any[1].fact: unknown fact 'active'; no facts are "
        "declared",
    ]


def test_references_to_an_invalid_section_are_not_checked(check_doc: Check) -> None:
    # the sections' own problems are reported; guessing at their content would only add noise
    assert check_doc(
        """
        version: 1
        name: a
        signals: login
        facts: {active: {type: boolean}}
        flows:
          f:
            reason: r
            starts_when:
              any:
                - {no_activity: visit, for: 1 day}
                - {fact: active, is: 3}
                - {since: active, for: 1 day}
        """
    ) == [
        "p.yaml:3:10: signals: expected a list, found 'login'",
        "p.yaml:4:24: facts.active.type: expected 'bool', 'number', 'string' or 'timestamp', "
        "found 'boolean'",
    ]


def test_fact_defaults_must_have_the_fact_type(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: a
        facts:
          a: {type: bool, default: 1}
          b: {type: number, default: ten}
          c: {type: string, default: 3}
          d: {type: timestamp, default: 2024-01-01}
          e: {type: timestamp, default: "2024-01-01T10:00:00+02:00"}
          f: {type: number, default: 2.5}
        """
    ) == [
        "p.yaml:4:28: facts.a.default: expected true or false as the default of a bool fact, "
        "found 1",
        "p.yaml:5:30: facts.b.default: expected a number as the default of a number fact, "
        "found 'ten'",
        "p.yaml:6:30: facts.c.default: expected a string as the default of a string fact, found 3",
        "p.yaml:7:33: facts.d.default: expected a timestamp with a zone offset such as "
        "'2024-01-31T00:00:00Z' as the default of a timestamp fact, found 2024-01-01",
    ]
