"""Signal ingestion: coalescing, resolution, waking accounts, refusing unknown accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lapse.errors import InvalidInput
from lapse.store.base import Change

from .helpers import DAY, T0, create, plain

HOUR = timedelta(hours=1)


def test_reports_are_coalesced_to_the_latest_time(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1")))
        unit.write(create(plain("a2")))
    reports = [
        ("a1", "login", T0 + HOUR),
        ("a1", "login", T0 + 3 * HOUR),
        ("a1", "login", T0 + 2 * HOUR),
        ("a1", "sent", T0),
        ("a2", "login", T0 + HOUR),
    ]
    result = any_store.record_signals(reports, resolution=HOUR, now=T0 + DAY)
    assert (result.received, result.written, result.woken) == (5, 3, 0)
    assert any_store.get("a1").signals == {"login": T0 + 3 * HOUR, "sent": T0}
    assert any_store.get("a2").signals == {"login": T0 + HOUR}


def test_resolution_and_order(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1", signals={"login": T0})))
    # less than the resolution later, and earlier than stored: nothing is written
    for at in (T0 + HOUR - timedelta(seconds=1), T0 - DAY, T0):
        assert any_store.record_signals([("a1", "login", at)], resolution=HOUR, now=T0).written == 0
    assert any_store.get("a1").signals == {"login": T0}
    result = any_store.record_signals([("a1", "login", T0 + HOUR)], resolution=HOUR, now=T0)
    assert result.written == 1
    other_zone = datetime(2024, 1, 1, 5, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    )
    assert any_store.record_signals([("a1", "login", other_zone)], resolution=HOUR, now=T0).written
    stored = any_store.get("a1").signals["login"]
    assert stored == other_zone
    assert stored.tzinfo is UTC


def test_signals_wake_accounts_that_wait_on_them(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1"), due=T0 + 30 * DAY, wake_signals=frozenset({"login"})))
        unit.write(create(plain("a2"), due=T0 + 30 * DAY, wake_signals=frozenset({"api"})))
        unit.write(create(plain("a3"), due=None, wake_signals=frozenset({"login", "api"})))
    now = T0 + DAY
    result = any_store.record_signals(
        [("a1", "login", now), ("a2", "login", now), ("a3", "api", now)],
        resolution=HOUR,
        now=now,
    )
    assert result.woken == 2
    assert any_store.next_due("a1") == now
    assert any_store.next_due("a2") == T0 + 30 * DAY  # waits on 'api', reported 'login'
    assert any_store.next_due("a3") == now
    assert any_store.versions(["a1", "a2"]) == {"a1": 2, "a2": 1}


def test_unknown_or_deleted_accounts_refuse_the_whole_batch(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1")))
        unit.write(create(plain("gone", deleted_at=T0), due=None))
    with pytest.raises(InvalidInput, match=r"unknown account: 'ghost'; deleted account: 'gone'"):
        any_store.record_signals(
            [("a1", "login", T0), ("ghost", "login", T0), ("gone", "login", T0)],
            resolution=HOUR,
            now=T0,
        )
    assert any_store.get("a1").signals == {}


def test_naive_times_are_refused(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1")))
    with pytest.raises(InvalidInput, match="time zone"):
        any_store.record_signals([("a1", "login", datetime(2024, 1, 1))], resolution=HOUR, now=T0)
    with pytest.raises(InvalidInput, match="time zone"):
        any_store.record_signals(
            [("a1", "login", T0), ("a1", "login", datetime(2024, 1, 2))],
            resolution=HOUR,
            now=T0,
        )


def test_signal_writes_survive_account_writes(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1")))
    any_store.record_signals([("a1", "login", T0)], resolution=HOUR, now=T0)
    with any_store.unit() as unit:
        account = unit.load("a1")
        unit.write(Change(account=account, next_due_at=None, state="locked"))
    assert any_store.get("a1").signals == {"login": T0}


def test_only_signals_that_move_forward_wake_their_account(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(
            create(
                plain("a1", signals={"login": T0}),
                due=T0 + 30 * DAY,
                wake_signals=frozenset({"login"}),
            )
        )
    now = T0 + DAY
    # a repeat within the resolution, an older report, the same time again, and a signal the
    # account does not wait on: no write, no wake, the account's row untouched
    for reports in (
        [("a1", "login", T0 + HOUR - timedelta(seconds=1))],
        [("a1", "login", T0 - DAY)],
        [("a1", "login", T0)],
        [("a1", "login", T0 + timedelta(minutes=5)), ("a1", "api", now)],
    ):
        result = any_store.record_signals(reports, resolution=HOUR, now=now)
        assert (result.woken, result.woken_ids) == (0, ())
    assert any_store.versions(["a1"]) == {"a1": 1}
    assert any_store.next_due("a1") == T0 + 30 * DAY
    assert any_store.get("a1").signals == {"login": T0, "api": now}
    # activity that moves `login` forward wakes the account at once
    result = any_store.record_signals([("a1", "login", now)], resolution=HOUR, now=now)
    assert (result.written, result.woken, result.woken_ids) == (1, 1, ("a1",))
    assert any_store.versions(["a1"]) == {"a1": 2}
    assert any_store.next_due("a1") == now
