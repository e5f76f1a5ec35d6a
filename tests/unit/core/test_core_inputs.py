"""inputs.py: accounts, members, kinds, signals and facts, validated; no-ops return the input."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lapse.core.inputs import (
    add_member,
    check_email,
    coerce_fact,
    new_account,
    record_signal,
    remove_member,
    set_fact,
    set_kind,
)
from lapse.core.model import Account, FactEntry, Member
from lapse.errors import InvalidInput

from .conftest import ADMIN, MEMBER, T0, account, days, policy, utc

POL = policy(
    """
    f:
      reason: r
      starts_on: [note]
    """
)


def raises(message: str) -> pytest.RaisesExc[InvalidInput]:
    return pytest.raises(InvalidInput, match=f"^{re.escape(message)}$")


# --- new accounts ------------------------------------------------------------------------------


def test_new_account_normalises_addresses_and_members() -> None:
    acct = new_account(
        POL,
        account_id="a-1",
        kind="trial",
        created_at=T0,
        address="  Owner@Example.COM ",
        members=[Member(email="Admin@Example.com", role="admin"), Member(email="m@example.com")],
    )
    assert acct == Account(
        id="a-1",
        kind="trial",
        created_at=T0,
        address="owner@example.com",
        members=(Member(email="admin@example.com", role="admin"), Member(email="m@example.com")),
    )
    assert new_account(POL, account_id="a", kind="test", created_at=T0).address is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account_id": ""}, "account id: expected 1 to 200 characters, found ''"),
        (
            {"account_id": "x" * 201},
            f"account id: expected 1 to 200 characters, found {'x' * 201!r}",
        ),
        (
            {"kind": "gold"},
            "unknown account kind 'gold'; the policy knows: standard, test, trial",
        ),
        (
            {"created_at": datetime(2024, 1, 1)},
            "account a: created_at: timestamp 2024-01-01T00:00:00 has no time zone",
        ),
        (
            {"created_at": "2024-01-01"},
            "account a: created_at: expected a timestamp, found '2024-01-01'",
        ),
        ({"address": "nobody"}, "address: 'nobody' is not an email address"),
        (
            {"members": [Member(email="x@example.com", role="boss")]},
            "member x@example.com: unknown role 'boss'; "
            "expected one of admin, member, owner, billing, viewer",
        ),
        (
            {"members": [Member(email="x@y")]},
            "member email: 'x@y' is not an email address",
        ),
    ],
)
def test_new_account_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"account_id": "a", "kind": "standard", "created_at": T0}
    args.update(kwargs)
    with raises(message):
        new_account(POL, **args)  # type: ignore[arg-type]


def test_check_email_refuses_non_strings() -> None:
    with raises("email: 42 is not an email address"):
        check_email(42)  # type: ignore[arg-type]
    assert check_email(" A@B.example ") == "a@b.example"


# --- kind and members -------------------------------------------------------------------------


def test_set_kind_returns_the_same_account_when_unchanged() -> None:
    acct = account(POL)
    assert set_kind(acct, POL, "standard") is acct
    assert set_kind(acct, POL, "trial").kind == "trial"
    with raises("unknown account kind 'gold'; the policy knows: standard, test, trial"):
        set_kind(acct, POL, "gold")


def test_members_are_added_changed_and_removed_by_address() -> None:
    acct = account(POL)  # admin and member
    assert add_member(acct, ADMIN, "admin") is acct
    assert add_member(acct, "ADMIN@example.com ", "admin") is acct
    promoted = add_member(acct, MEMBER, "admin")
    assert promoted.members == (
        Member(email=ADMIN, role="admin"),
        Member(email=MEMBER, role="admin"),
    )
    added = add_member(acct, "New@Example.com")
    assert added.members[-1] == Member(email="new@example.com", role="member")
    assert remove_member(acct, "Member@Example.com").members == (Member(email=ADMIN, role="admin"),)
    with raises("account 'acct-1' has no member 'ghost@example.com'"):
        remove_member(acct, "ghost@example.com")
    with raises(
        "member new@example.com: unknown role 'god'; "
        "expected one of admin, member, owner, billing, viewer"
    ):
        add_member(acct, "new@example.com", "god")


# --- signals ------------------------------------------------------------------------------------


def test_signals_keep_the_latest_time_at_the_policy_resolution() -> None:
    acct = account(POL)
    seen = record_signal(acct, POL, "login", T0 + days(1))
    assert seen.signals == {"login": T0 + days(1)}
    # less than the resolution (1 hour) later: nothing to write
    assert record_signal(seen, POL, "login", T0 + days(1) + timedelta(minutes=59)) is seen
    # older reports never move it back
    assert record_signal(seen, POL, "login", T0) is seen
    later = record_signal(seen, POL, "login", T0 + days(1) + timedelta(hours=1))
    assert later.signals == {"login": T0 + days(1) + timedelta(hours=1)}
    both = record_signal(later, POL, "sent", T0)
    assert both.signals == {"login": T0 + days(1) + timedelta(hours=1), "sent": T0}


def test_signals_must_be_known_and_aware() -> None:
    acct = account(POL)
    with raises("unknown signal 'click'; the policy knows: api, login, sent"):
        record_signal(acct, POL, "click", T0)
    with raises("signal login: timestamp 2024-01-01T00:00:00 has no time zone"):
        record_signal(acct, POL, "login", datetime(2024, 1, 1))


# --- facts --------------------------------------------------------------------------------------


def test_facts_are_set_changed_and_unset() -> None:
    acct = account(POL)
    with_fact = set_fact(acct, POL, "contacts", 10, at=T0)
    assert with_fact.facts == {"contacts": FactEntry(value=10, changed_at=T0)}
    # the same value again changes nothing, not even the time
    assert set_fact(with_fact, POL, "contacts", 10, at=T0 + days(1)) is with_fact
    # the same number as another type is a change (10 -> 10.0 is reported, so it is written)
    as_float = set_fact(with_fact, POL, "contacts", 10.0, at=T0 + days(1))
    assert as_float.facts["contacts"] == FactEntry(value=10.0, changed_at=T0 + days(1))
    changed = set_fact(with_fact, POL, "contacts", 11, at=T0 + days(2))
    assert changed.facts == {"contacts": FactEntry(value=11, changed_at=T0 + days(2))}
    unset = set_fact(changed, POL, "contacts", None, at=T0 + days(3))
    assert unset.facts == {}
    assert set_fact(unset, POL, "contacts", None, at=T0 + days(3)) is unset


def test_timestamp_facts_accept_iso_strings_with_a_zone() -> None:
    acct = set_fact(account(POL), POL, "expires", "2024-03-01T12:00:00+01:00", at=T0)
    value = acct.facts["expires"].value
    assert value == utc(2024, 3, 1, 11)
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(hours=1)
    aware = datetime(2024, 3, 1, 11, tzinfo=timezone(timedelta(hours=-5)))
    assert coerce_fact("expires", "timestamp", aware) is aware


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("active", 1, "fact active: expected a bool, found 1"),
        ("contacts", True, "fact contacts: expected a number, found True"),
        ("contacts", "12", "fact contacts: expected a number, found '12'"),
        ("contacts", float("nan"), "fact contacts: expected a finite number, found nan"),
        ("contacts", float("inf"), "fact contacts: expected a finite number, found inf"),
        ("contacts", float("-inf"), "fact contacts: expected a finite number, found -inf"),
        ("plan", 3, "fact plan: expected a string, found 3"),
        (
            "expires",
            "next tuesday",
            "fact expires: expected an ISO 8601 timestamp, found 'next tuesday'",
        ),
        (
            "expires",
            "2024-03-01T12:00:00",
            "fact expires: timestamp 2024-03-01T12:00:00 has no time zone",
        ),
        ("expires", 1700000000, "fact expires: expected a timestamp, found 1700000000"),
        (
            "ghost",
            1,
            "unknown fact 'ghost'; the policy knows: active, cap, contacts, expires, "
            "limit, plan, renewed",
        ),
    ],
)
def test_fact_values_must_have_the_declared_type(name: str, value: object, message: str) -> None:
    with raises(message):
        set_fact(account(POL), POL, name, value, at=T0)  # type: ignore[arg-type]


def test_fact_reports_must_be_aware() -> None:
    with raises("fact plan: timestamp 2024-01-01T00:00:00 has no time zone"):
        set_fact(account(POL), POL, "plan", "pro", at=datetime(2024, 1, 1))
    assert set_fact(account(POL), POL, "plan", "pro", at=T0.astimezone(UTC)).facts["plan"] == (
        FactEntry(value="pro", changed_at=T0)
    )
