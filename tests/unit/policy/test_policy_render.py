"""Policies and conditions in words."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lapse.policy import Duration, describe_condition, describe_policy, load_policy
from lapse.policy.model import (
    AccountAge,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    FactRef,
    NoActivity,
    Not,
    SinceFact,
)

FIXTURES = Path(__file__).parent / "fixtures"
DAY = Duration(days=1)


@pytest.mark.parametrize(
    ("condition", "text"),
    [
        (NoActivity(signals=("login",), duration=Duration(months=12)), "no login for 12 months"),
        (
            NoActivity(signals=("a", "b", "c"), duration=DAY),
            "no a, b or c for 1 day",
        ),
        (AccountAge(duration=Duration(days=30)), "the account is at least 30 days old"),
        (SinceFact(fact="expires", duration=Duration()), "at least 0 days since expires"),
        (Compare(fact="active", op="is", value=False), "fact active is false"),
        (Compare(fact="active", op="is_not", value=True), "fact active is not true"),
        (
            Compare(fact="n", op="gt", value=FactRef(fact="limit")),
            "fact n is greater than fact limit",
        ),
        (Compare(fact="n", op="gte", value=2.5), "fact n is at least 2.5"),
        (Compare(fact="n", op="lt", value=3), "fact n is less than 3"),
        (
            Compare(fact="t", op="lte", value=datetime(2024, 1, 31, tzinfo=UTC)),
            "fact t is at most 2024-01-31T00:00:00+00:00",
        ),
        (
            Compare(fact="plan", op="in", value=("free", "trial")),
            "fact plan is one of 'free', 'trial'",
        ),
        (Compare(fact="n", op="not_in", value=(1, 2)), "fact n is not one of 1, 2"),
        (Not(item=AccountAge(duration=DAY)), "not (the account is at least 1 day old)"),
        (AllOf(items=()), "always"),
        (AnyOf(items=()), "never"),
        (
            AllOf(
                items=(
                    NoActivity(signals=("sent", "api"), duration=Duration(months=12)),
                    Compare(fact="active", op="is", value=False),
                )
            ),
            "no sent or api for 12 months and fact active is false",
        ),
        (
            AllOf(
                items=(
                    AnyOf(items=(AccountAge(duration=DAY), Compare(fact="x", op="is", value="y"))),
                    AllOf(items=(Compare(fact="a", op="is", value=1), AllOf(items=()))),
                    AnyOf(items=()),
                )
            ),
            "(the account is at least 1 day old or fact x is 'y') and (fact a is 1 and always) "
            "and never",
        ),
    ],
)
def test_describe_condition(condition: Condition, text: str) -> None:
    assert describe_condition(condition) == text


def test_describe_the_full_fixture() -> None:
    text = (FIXTURES / "full.yaml").read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert describe_policy(load_policy(text, "full.yaml")) == textwrap.dedent(
        f"""\
        inactivity-cleanup (version 3)
        Delete accounts nobody uses any more.
        Source: full.yaml (sha256 {digest})
        Time zone: Europe/Brussels; signals are rewritten at most every 1 hour
        Actions: login, view, export, view_reports, send_campaign, api, edit, renew
        Kinds: standard, test
        Signals: api_request, campaign_sent, login
        Facts: subscription_active (bool, default false), contacts (number), \
plan_contact_limit (number, default 1000), subscription_expires_at (timestamp, default \
2030-01-01T00:00:00+00:00), plan (string, default 'free')
        Events: contacted_sales, payment_failed, payment_succeeded, tos_violation
        Data categories: campaigns, contacts, reports

        Flow inactivity: Inactivity clean-up
          Reason: no campaign or API request in 12 months and no active subscription
          Applies to: standard
          Starts when: no campaign_sent or api_request for 12 months and fact \
subscription_active is false
          Stops on: contacted_sales
          Phases:
            1. grace: 30 days, state restricted
               denies: send_campaign
               banner: "Your account will be deleted on {{deadline:%d %B %Y}} ({{time_left}} \
left)."
               message: "Sending is paused: {{reason}}."
               notice at start to admins: inactivity-grace-started (email)
               notice 7 days before end to admins: inactivity-final-warning (email, in_app)
               notice 3 days after start to members: reminder (email)
               on enter: stop_scheduled_campaigns
               on exit: resume_campaigns
            2. eligible: open-ended (until the case stops), state active
          Outcome: delete the account 30 days after the case starts (when phase grace ends)
          Address: retired for 2 years, then released

        Flow contact-limit
          Reason: too many contacts for the plan
          Applies to: every kind
          Starts when: fact contacts is greater than fact plan_contact_limit
          Stops: when its start condition no longer holds
          Phases:
            1. locked: open-ended (until the case stops), state locked
               allows only: login, view, renew
               message: "{{action}} is not allowed: {{reason}}"
          Outcome: none (restrictions only)

        Flow payment: Payment lock
          Reason: payment failed
          Applies to: every kind
          Starts on: payment_failed
          Stops on: payment_succeeded
          Phases:
            1. warn: 1 month, state active
               notice at start to owner: pay (email)
            2. lock: 1 month, state locked
               allows only: login, renew
               notice at start to admins: locked (email)
               purges on entering: reports
          Outcome: purge campaigns, contacts 2 months after the case starts (when phase lock \
ends)

        Flow tos
          Reason: terms of service violation
          Applies to: every kind
          Starts on: tos_violation
          Stops: never (irreversible: not even reactivation stops it)
          Outcome: delete the account as soon as the case starts
          Address: retired forever
          Waives: deletion-without-notice
          Waived deletion-without-notice at flows.tos.outcome: outcome delete runs without any \
notice before it
        """
    )


def test_describe_the_less_common_parts() -> None:
    policy = load_policy(
        textwrap.dedent(
            """\
            version: 1
            name: other
            actions: [login, view]
            waive: [deletion-without-notice, unknown-action]
            templates:
              tidy-up: {subject: s, text: t, html: h}
            flows:
              manual:
                reason: ""
                starts_on: go
                stops_when: {age: 1 day}
                on_close: [tidy, log]
                phases:
                  - {name: a, lasts: 1 day, allow_only: [], state: suspended}
                  - {name: b, lasts: 2 days, deny: [view, zzz, aaa]}
                outcome: delete
              forever:
                reason: r
                starts_on: go
                irreversible: true
                phases: [{name: gone}]
            """
        ),
        "o.yaml",
    )
    text = describe_policy(policy)
    assert text.split("\n\n", 1)[0].splitlines()[-7:] == [
        "Kinds: (none)",
        "Signals: (none)",
        "Facts: (none)",
        "Events: go",
        "Data categories: (none)",
        "Lints waived for every flow: deletion-without-notice, unknown-action",
        "Notice templates it carries: tidy-up",
    ]
    assert text.split("\n\n")[1:] == [
        textwrap.dedent(
            """\
            Flow manual
              Applies to: every kind
              Starts on: go
              Stops when: the account is at least 1 day old
              Phases:
                1. a: 1 day, state suspended
                   allows only: (none)
                2. b: 2 days, state restricted
                   denies: view, aaa, zzz
              On close: tidy, log
              Outcome: delete the account 3 days after the case starts (when phase b ends)
              Address: released (it may register again)
              Waived unknown-action at flows.manual.phases[1].deny[1]: unknown action 'zzz'; \
declared actions: login, view
              Waived unknown-action at flows.manual.phases[1].deny[2]: unknown action 'aaa'; \
declared actions: login, view
              Waived deletion-without-notice at flows.manual.outcome: outcome delete runs \
without any notice before it"""
        ),
        textwrap.dedent(
            """\
            Flow forever
              Reason: r
              Applies to: every kind
              Starts on: go
              Stops: never (irreversible: not even reactivation stops it)
              Phases:
                1. gone: open-ended (until the case stops), state suspended
              Outcome: none (restrictions only)
            """
        ),
    ]


def test_describe_a_policy_without_flows() -> None:
    assert describe_policy(load_policy("version: 1\nname: empty\n", "e.yaml")).endswith(
        "Data categories: (none)\n\nNo flows.\n"
    )


def test_a_flow_without_any_stop_rule() -> None:
    policy = load_policy(
        "version: 1\nname: a\nflows:\n  f:\n    reason: r\n    starts_on: go\n", "a.yaml"
    )
    assert "  Stops: only when an administrator reactivates the account\n" in describe_policy(
        policy
    )
