"""Registering an existing account with what the host knows: last activity and facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lapse import Engine, ManualClock, load_preset
from lapse.errors import InvalidInput

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=3 * 365)


def engine() -> Engine:
    return Engine(load_preset("inactivity-cleanup"), clock=ManualClock(NOW))


def test_an_old_account_imported_without_its_activity_opens_an_inactivity_case() -> None:
    e = engine()
    e.add_account("old", kind="standard", created_at=OLD)
    assert e.status("old").state == "restricted"  # why `signals` exist


def test_an_old_account_imported_with_recent_activity_is_active() -> None:
    e = engine()
    e.add_account(
        "old",
        kind="standard",
        created_at=OLD,
        signals={"campaign_sent": NOW - timedelta(days=20), "login": NOW - timedelta(days=1)},
        facts={"subscription_active": False},
    )
    account = e.account("old")
    assert account.signals == {
        "campaign_sent": NOW - timedelta(days=20),
        "login": NOW - timedelta(days=1),
    }
    assert account.facts["subscription_active"].value is False
    assert e.status("old").state == "active"
    assert e.status("old").next_due_at == NOW - timedelta(days=20) + timedelta(days=365)


def test_a_paying_account_imported_with_its_subscription_is_active() -> None:
    e = engine()
    e.add_account("paying", kind="standard", created_at=OLD, facts={"subscription_active": True})
    assert e.status("paying").state == "active"


@pytest.mark.parametrize(
    ("signals", "facts", "message"),
    [
        ({"nope": NOW}, {}, "unknown signal 'nope'"),
        ({"login": NOW + timedelta(seconds=1)}, {}, "is in the future"),
        ({"login": datetime(2025, 1, 1)}, {}, "has no time zone"),
        ({}, {"nope": 1}, "unknown fact 'nope'"),
        ({}, {"subscription_active": "yes"}, "expected a bool"),
    ],
)
def test_bad_imports_are_refused_and_change_nothing(
    signals: dict[str, datetime], facts: dict[str, object], message: str
) -> None:
    e = engine()
    with pytest.raises(InvalidInput, match=message):
        e.add_account("x", kind="standard", signals=signals, facts=facts)  # type: ignore[arg-type]
    assert e.store.get("x") is None
