"""conditions.py: truth at a moment, since when, the next change, and explanations."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from lapse.core.conditions import Context, explain, holding_parts, holds_at, next_change, since
from lapse.core.inputs import record_signal, set_fact
from lapse.core.model import Account, Explanation, FactEntry
from lapse.policy.durations import Duration
from lapse.policy.model import AccountAge, AllOf, Compare, FactRef, Not, Policy, SinceFact

from .conftest import T0, account, condition, days, utc

MINUTE = timedelta(minutes=1)


def ctx(pol: Policy, acct: Account, floor: datetime | None = None) -> Context:
    return Context(acct, pol, floor if floor is not None else acct.created_at)


# --- no_activity ------------------------------------------------------------------------------


def test_no_activity_with_signals_never_seen_counts_from_creation() -> None:
    pol, cond = condition("{no_activity: [sent, api], for: 30 days}")
    c = ctx(pol, account(pol, created=utc(2024, 3, 5, 9, 30)))
    assert holds_at(cond, c, utc(2024, 4, 4, 9, 29)) is False
    assert holds_at(cond, c, utc(2024, 4, 4, 9, 30)) is True
    assert next_change(cond, c, utc(2024, 3, 10)) == utc(2024, 4, 4, 9, 30)
    assert since(cond, c, utc(2024, 6, 1)) == utc(2024, 4, 4, 9, 30)
    # while it does not hold, it has not held since the creation (nothing reset it since)
    assert since(cond, c, utc(2024, 3, 10)) == utc(2024, 3, 5, 9, 30)


def test_no_activity_counts_from_the_latest_of_its_signals_only() -> None:
    pol, cond = condition("{no_activity: [sent, api], for: 30 days}")
    acct = account(pol)
    acct = record_signal(acct, pol, "sent", T0 + days(10))
    acct = record_signal(acct, pol, "api", T0 + days(4))
    acct = record_signal(acct, pol, "login", T0 + days(25))  # not one of its signals
    c = ctx(pol, acct)
    assert c.threshold(cond) == T0 + days(40)  # type: ignore[arg-type]
    assert holds_at(cond, c, T0 + days(40) - MINUTE) is False
    assert holds_at(cond, c, T0 + days(40)) is True
    assert since(cond, c, T0 + days(20)) == T0 + days(10)  # reset by the latest `sent`
    assert next_change(cond, c, T0 + days(20)) == T0 + days(40)
    assert next_change(cond, c, T0 + days(40)) is None  # holds, and time alone cannot undo it


def test_no_activity_counts_from_the_floor_when_it_is_later_than_the_activity() -> None:
    pol, cond = condition("{no_activity: [sent], for: 30 days}")
    acct = record_signal(account(pol), pol, "sent", T0 + days(10))
    rearmed = ctx(pol, acct, floor=T0 + days(20))
    assert next_change(cond, rearmed, T0 + days(20)) == T0 + days(50)
    assert since(cond, rearmed, T0 + days(25)) == T0 + days(20)
    later = record_signal(acct, pol, "sent", T0 + days(22))
    assert next_change(cond, ctx(pol, later, floor=T0 + days(20)), T0 + days(25)) == T0 + days(52)


def test_no_activity_at_the_threshold_minute() -> None:
    pol, cond = condition("{no_activity: [login], for: 2 hours}")
    acct = record_signal(account(pol), pol, "login", utc(2024, 1, 1, 10, 15))
    c = ctx(pol, acct)
    assert holds_at(cond, c, utc(2024, 1, 1, 12, 14)) is False
    assert holds_at(cond, c, utc(2024, 1, 1, 12, 15)) is True


# --- age ----------------------------------------------------------------------------------------


def test_age_counts_from_creation_or_the_floor() -> None:
    pol, cond = condition("{age: 30 days}")
    acct = account(pol)
    assert next_change(cond, ctx(pol, acct), T0) == T0 + days(30)
    assert holds_at(cond, ctx(pol, acct), T0 + days(30)) is True
    assert since(cond, ctx(pol, acct), T0 + days(45)) == T0 + days(30)
    rearmed = ctx(pol, acct, floor=T0 + days(40))
    assert holds_at(cond, rearmed, T0 + days(45)) is False
    assert since(cond, rearmed, T0 + days(45)) == T0 + days(40)
    assert next_change(cond, rearmed, T0 + days(45)) == T0 + days(70)


# --- since a timestamp fact ----------------------------------------------------------------------


def test_since_fact_never_holds_while_the_fact_is_unset() -> None:
    pol, cond = condition("{since: expires, for: 2 days}")
    c = ctx(pol, account(pol))
    assert holds_at(cond, c, utc(2099, 1, 1)) is False
    assert next_change(cond, c, T0) is None
    assert since(cond, c, T0 + days(3)) == T0
    assert explain(cond, c, T0) == Explanation(
        text="at least 2 days since expires (fact expires is not set)",
        holds=False,
        since=None,
        holds_at=None,
    )


def test_since_fact_counts_from_the_fact_value() -> None:
    pol, cond = condition("{since: expires, for: 2 days}")
    acct = set_fact(account(pol), pol, "expires", T0 + days(10), at=T0 + days(1))
    c = ctx(pol, acct)
    assert next_change(cond, c, T0 + days(1)) == T0 + days(12)
    assert holds_at(cond, c, T0 + days(12) - MINUTE) is False
    assert holds_at(cond, c, T0 + days(12)) is True
    assert since(cond, c, T0 + days(20)) == T0 + days(12)
    # while it does not hold: since the fact last changed
    assert since(cond, c, T0 + days(5)) == T0 + days(1)


def test_since_fact_in_the_past_counts_from_the_floor() -> None:
    pol, cond = condition("{since: expires, for: 0 days}")
    acct = set_fact(account(pol), pol, "expires", T0 + days(3), at=T0 + days(1))
    assert since(cond, ctx(pol, acct), T0 + days(20)) == T0 + days(3)
    assert since(cond, ctx(pol, acct, floor=T0 + days(8)), T0 + days(20)) == T0 + days(8)


def test_since_fact_uses_the_declared_default() -> None:
    pol, cond = condition("{since: renewed, for: 5 days}")  # default 2024-01-10, set at creation
    c = ctx(pol, account(pol))
    assert next_change(cond, c, T0) == utc(2024, 1, 15)
    # not holding: nothing reported since the floor (the default counts as set at creation)
    assert since(cond, c, T0 + days(2)) == T0


def test_since_fact_with_a_value_of_another_type_never_holds() -> None:
    # a snapshot written under an older policy where `expires` was a number
    pol, cond = condition("{since: expires, for: 0 days}")
    acct = replace(account(pol), facts={"expires": FactEntry(value=5, changed_at=T0)})
    assert holds_at(cond, ctx(pol, acct), T0 + days(1)) is False


# --- comparisons --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("{fact: contacts, is: 10}", 10, True),
        ("{fact: contacts, is: 10}", 11, False),
        ("{fact: contacts, is_not: 10}", 11, True),
        ("{fact: contacts, is_not: 10}", 10, False),
        ("{fact: contacts, gt: 10}", 10, False),
        ("{fact: contacts, gt: 10}", 10.5, True),
        ("{fact: contacts, gte: 10}", 10, True),
        ("{fact: contacts, gte: 10}", 9, False),
        ("{fact: contacts, lt: 10}", 9, True),
        ("{fact: contacts, lt: 10}", 10, False),
        ("{fact: contacts, lte: 10}", 10, True),
        ("{fact: contacts, lte: 10}", 11, False),
        ("{fact: contacts, in: [1, 2]}", 2, True),
        ("{fact: contacts, in: [1, 2]}", 3, False),
        ("{fact: contacts, not_in: [1, 2]}", 3, True),
        ("{fact: contacts, not_in: [1, 2]}", 1, False),
        ("{fact: plan, is: free}", "free", True),
        ("{fact: plan, in: [free, trial]}", "pro", False),
        ("{fact: active, is: true}", True, True),
        ("{fact: expires, lt: '2024-02-01T00:00:00+00:00'}", utc(2024, 1, 31), True),
        ("{fact: expires, lt: '2024-02-01T00:00:00+00:00'}", utc(2024, 2, 1), False),
    ],
)
def test_comparison_with_a_literal(text: str, value: object, expected: bool) -> None:
    pol, cond = condition(text)
    fact = text.split(",")[0].removeprefix("{fact: ")
    acct = set_fact(account(pol), pol, fact, value, at=T0)  # type: ignore[arg-type]
    assert holds_at(cond, ctx(pol, acct), T0) is expected


@pytest.mark.parametrize(
    "text",
    [
        "{fact: contacts, is: 10}",
        "{fact: contacts, is_not: 10}",
        "{fact: contacts, gt: 10}",
        "{fact: contacts, lt: 10}",
        "{fact: contacts, in: [1]}",
        "{fact: contacts, not_in: [1]}",
        "{fact: plan, is_not: free}",
    ],
)
def test_comparison_with_an_unset_fact_never_holds(text: str) -> None:
    pol, cond = condition(text)
    c = ctx(pol, account(pol))
    assert holds_at(cond, c, T0) is False
    assert next_change(cond, c, T0) is None
    fact = text.split(",")[0].removeprefix("{fact: ")
    assert explain(cond, c, T0).text.endswith(f" (fact {fact} is not set)")


def test_comparison_uses_the_declared_default() -> None:
    pol, cond = condition("{fact: active, is: false}")  # default false
    c = ctx(pol, account(pol))
    assert holds_at(cond, c, T0) is True
    assert explain(cond, c, T0) == Explanation(
        text="fact active is false", holds=True, since=T0, holds_at=None
    )
    acct = set_fact(account(pol), pol, "active", True, at=T0 + days(3))
    assert holds_at(cond, ctx(pol, acct), T0 + days(3)) is False
    assert since(cond, ctx(pol, acct), T0 + days(9)) == T0 + days(3)


def test_comparison_with_another_fact() -> None:
    pol, cond = condition("{fact: contacts, gt: {fact: limit}}")
    acct = set_fact(account(pol), pol, "contacts", 120, at=T0 + days(1))
    assert holds_at(cond, ctx(pol, acct), T0 + days(1)) is False  # limit unset
    acct = set_fact(acct, pol, "limit", 100, at=T0 + days(2))
    assert holds_at(cond, ctx(pol, acct), T0 + days(2)) is True
    # since the later of the two facts' changes
    assert since(cond, ctx(pol, acct), T0 + days(5)) == T0 + days(2)
    acct = set_fact(acct, pol, "contacts", 130, at=T0 + days(4))
    assert since(cond, ctx(pol, acct), T0 + days(5)) == T0 + days(4)
    acct = set_fact(acct, pol, "limit", 200, at=T0 + days(6))
    assert holds_at(cond, ctx(pol, acct), T0 + days(6)) is False


def test_comparison_with_another_fact_that_has_a_default() -> None:
    pol, cond = condition("{fact: contacts, gte: {fact: cap}}")  # cap defaults to 100
    acct = set_fact(account(pol), pol, "contacts", 100, at=T0 + days(1))
    assert holds_at(cond, ctx(pol, acct), T0 + days(1)) is True
    assert since(cond, ctx(pol, acct), T0 + days(2)) == T0 + days(1)


def test_comparison_since_never_earlier_than_the_floor() -> None:
    pol, cond = condition("{fact: contacts, gt: 5}")
    acct = set_fact(account(pol), pol, "contacts", 10, at=T0 + days(1))
    assert since(cond, ctx(pol, acct, floor=T0 + days(4)), T0 + days(9)) == T0 + days(4)
    unset_pol, unset = condition("{fact: contacts, gt: {fact: limit}}")
    assert since(unset, ctx(unset_pol, account(unset_pol)), T0 + days(9)) == T0


def test_comparison_of_values_of_different_types_does_not_hold() -> None:
    # the loader refuses such policies, but a snapshot written under an older policy may hold
    # a value of another type: the comparison is false rather than an error
    pol, _ = condition("{fact: contacts, gt: 1}")
    cond = Compare(fact="contacts", op="lt", value=FactRef(fact="limit"))
    acct = replace(
        account(pol),
        facts={
            "contacts": FactEntry(value=5, changed_at=T0),
            "limit": FactEntry(value="many", changed_at=T0),
        },
    )
    assert holds_at(cond, ctx(pol, acct), T0) is False
    assert holds_at(Not(item=cond), ctx(pol, acct), T0) is True


# --- combinations ---------------------------------------------------------------------------


def test_all_holds_since_its_last_part_began_to_hold() -> None:
    pol, cond = condition("{all: [{age: 10 days}, {no_activity: [sent], for: 5 days}]}")
    acct = record_signal(account(pol), pol, "sent", T0 + days(8))
    c = ctx(pol, acct)
    assert next_change(cond, c, T0) == T0 + days(13)
    assert since(cond, c, T0 + days(20)) == T0 + days(13)
    # failing: since its first failing part failed
    assert since(cond, c, T0 + days(11)) == T0 + days(8)
    assert since(cond, c, T0 + days(9)) == T0


def test_all_next_change_skips_thresholds_that_do_not_flip_it() -> None:
    pol, cond = condition("{all: [{age: 10 days}, {age: 20 days}]}")
    c = ctx(pol, account(pol))
    assert next_change(cond, c, T0) == T0 + days(20)
    assert next_change(cond, c, T0 + days(15)) == T0 + days(20)


def test_any_holds_since_its_first_part_began_to_hold() -> None:
    pol, cond = condition("{any: [{age: 10 days}, {age: 20 days}]}")
    c = ctx(pol, account(pol))
    assert next_change(cond, c, T0) == T0 + days(10)
    assert since(cond, c, T0 + days(25)) == T0 + days(10)
    assert since(cond, c, T0 + days(5)) == T0  # failing since its last part failed
    assert next_change(cond, c, T0 + days(25)) is None


def test_any_with_a_comparison_holds_from_the_fact_change() -> None:
    pol, cond = condition("{any: [{fact: active, is: true}, {age: 20 days}]}")
    acct = set_fact(account(pol), pol, "active", True, at=T0 + days(3))
    assert since(cond, ctx(pol, acct), T0 + days(30)) == T0 + days(3)


def test_not_flips_at_the_threshold_of_its_item() -> None:
    pol, cond = condition("{not: {age: 10 days}}")
    c = ctx(pol, account(pol))
    assert holds_at(cond, c, T0 + days(10) - MINUTE) is True
    assert holds_at(cond, c, T0 + days(10)) is False
    # holding now does not mean holding forever: `not` makes the condition non-monotone
    assert next_change(cond, c, T0) == T0 + days(10)
    assert next_change(cond, c, T0 + days(10)) is None
    assert since(cond, c, T0 + days(3)) == T0
    assert since(cond, c, T0 + days(30)) == T0 + days(10)


def test_a_window_condition_holds_then_stops_holding() -> None:
    pol, cond = condition("{all: [{age: 5 days}, {not: {age: 10 days}}]}")
    c = ctx(pol, account(pol))
    assert next_change(cond, c, T0) == T0 + days(5)
    assert next_change(cond, c, T0 + days(6)) == T0 + days(10)
    assert next_change(cond, c, T0 + days(11)) is None
    assert since(cond, c, T0 + days(6)) == T0 + days(5)


def test_conditions_built_by_hand_are_compiled_once_and_by_identity() -> None:
    pol, _ = condition("{age: 1 day}")
    c = ctx(pol, account(pol))
    age = AccountAge(duration=Duration(days=2))
    cond = AllOf(items=(age, Not(item=SinceFact(fact="expires", duration=Duration()))))
    assert holds_at(cond, c, T0 + days(2)) is True
    assert holds_at(cond, c, T0 + days(2)) is True  # from the compiled cache
    equal = AllOf(items=(AccountAge(duration=Duration(days=2)),))
    assert holds_at(equal, c, T0 + days(1)) is False
    assert c.threshold(age) is c.threshold(age)


# --- explain ------------------------------------------------------------------------------------


def test_explain_gives_each_part_with_since_and_holds_at() -> None:
    pol, cond = condition(
        "{all: [{no_activity: [sent], for: 30 days}, "
        "{any: [{fact: plan, is: free}, {not: {fact: active, is: true}}]}]}"
    )
    c = ctx(pol, account(pol))
    assert explain(cond, c, T0 + days(3)) == Explanation(
        text="no sent for 30 days and (fact plan is 'free' or not (fact active is true))",
        holds=False,
        since=None,
        holds_at=T0 + days(30),
        parts=(
            Explanation(
                text="no sent for 30 days", holds=False, since=None, holds_at=T0 + days(30)
            ),
            Explanation(
                text="fact plan is 'free' or not (fact active is true)",
                holds=True,
                since=T0,
                holds_at=None,
                parts=(
                    Explanation(
                        text="fact plan is 'free' (fact plan is not set)",
                        holds=False,
                        since=None,
                        holds_at=None,
                    ),
                    Explanation(
                        text="not (fact active is true)",
                        holds=True,
                        since=T0,
                        holds_at=None,
                        parts=(
                            Explanation(
                                text="fact active is true", holds=False, since=None, holds_at=None
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


def test_explain_of_a_holding_condition_says_since_when() -> None:
    pol, cond = condition("{age: 30 days}")
    assert explain(cond, ctx(pol, account(pol)), T0 + days(31)) == Explanation(
        text="the account is at least 30 days old", holds=True, since=T0 + days(30), holds_at=None
    )


def test_explain_names_the_other_fact_when_it_is_not_set() -> None:
    pol, cond = condition("{fact: contacts, gt: {fact: limit}}")
    acct = set_fact(account(pol), pol, "contacts", 5, at=T0)
    assert explain(cond, ctx(pol, acct), T0).text == (
        "fact contacts is greater than fact limit (fact limit is not set)"
    )
    assert explain(cond, ctx(pol, account(pol)), T0).text == (
        "fact contacts is greater than fact limit (facts contacts and limit are not set)"
    )


def test_explain_says_nothing_of_unset_facts_for_a_comparison_that_fails_on_values() -> None:
    pol, cond = condition("{fact: contacts, gt: 10}")
    acct = set_fact(account(pol), pol, "contacts", 5, at=T0)
    assert explain(cond, ctx(pol, acct), T0).text == "fact contacts is greater than 10"


# --- the parts that hold, with values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("{fact: contacts, gt: {fact: limit}}", ["contacts 1200 > limit 1000"]),
        ("{fact: contacts, gte: 1000}", ["contacts 1200 >= 1000"]),
        ("{fact: plan, is: free}", ["plan is 'free'"]),
        ("{fact: plan, is_not: pro}", ["plan 'free' is not 'pro'"]),
        ("{fact: plan, in: [free, trial]}", ["plan 'free' in ['free', 'trial']"]),
        ("{fact: plan, not_in: [pro]}", ["plan 'free' not in ['pro']"]),
        ("{age: 3 days}", ["the account is at least 3 days old"]),
        (
            "{since: expires, for: 0 days}",
            ["at least 0 days since expires (expires is 2024-01-02T00:00:00+00:00)"],
        ),
        ("{not: {fact: active, is: true}}", ["not (fact active is true)"]),
        # only the parts that hold; none when the whole does not
        (
            "{any: [{fact: plan, is: pro}, {all: [{fact: active, is: false}, {age: 1 day}]}]}",
            ["active is false", "the account is at least 1 day old"],
        ),
        ("{all: [{fact: plan, is: free}, {fact: active, is: true}]}", []),
    ],
)
def test_the_parts_that_hold_with_the_facts_values(text: str, parts: list[str]) -> None:
    pol, cond = condition(text)
    acct = set_fact(account(pol), pol, "contacts", 1200, at=T0)
    acct = set_fact(acct, pol, "limit", 1000, at=T0)
    acct = set_fact(acct, pol, "plan", "free", at=T0)
    acct = set_fact(acct, pol, "expires", T0 + days(1), at=T0)
    assert holding_parts(cond, ctx(pol, acct), T0 + days(5)) == parts
