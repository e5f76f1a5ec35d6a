"""LAPSE_OUTBOX_RETENTION: the loops prune the outbox's finished rows of closed cases and their
in-app notifications, on SQLite and PostgreSQL, and the audit log keeps the record of what was
sent. LAPSE_EVENT_RETENTION: event ids are forgotten after it, and events older than it are
refused, so no forgotten id is ever applied twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from lapse.errors import InvalidInput
from lapse.policy import load_preset
from lapse.policy.durations import Duration
from lapse.runtime import metrics
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine, EventReport
from lapse.runtime.worker import Loops
from lapse.store.sql import SqlStore, create_db_engine

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
ADMINS = [("a@acme.example", "admin"), ("b@acme.example", "admin")]


def _engine(store_url: str, preset: str) -> Iterator[Engine]:
    clock = ManualClock(NOW)
    store = SqlStore(create_db_engine(store_url), clock=clock.now, wall=clock.now)
    yield Engine(load_preset(preset), store=store, clock=clock)
    store.close()


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    yield from _engine(store_url, "inactivity-cleanup")


@pytest.fixture
def locks(store_url: str) -> Iterator[Engine]:
    """On the account-locks preset, whose payment events lock and unlock accounts."""
    yield from _engine(store_url, "account-locks")


def closed_case_with_notices(eng: Engine, account_id: str) -> int:
    """An idle account: its case opens and both notices go out; then it subscribes (the case
    closes): its outbox rows are finished history. Returns how many there are."""
    eng.add_account(
        account_id, kind="standard", created_at=NOW - timedelta(days=390), members=ADMINS
    )
    eng.deliver()
    rows = eng.store.outbox(account_id=account_id)
    # two notices, each by email to both admins and in the app
    assert len(rows) == 6
    assert {r.status for r in rows} == {"delivered"}
    eng.set_fact(account_id, "subscription_active", True)
    assert eng.account(account_id).cases == ()
    return len(rows)


def test_the_loops_prune_finished_rows_past_the_retention(engine: Engine) -> None:
    closed_case_with_notices(engine, "acme")
    engine.clock.set(NOW + timedelta(days=30))  # type: ignore[attr-defined]
    # a second account whose case is still open: its rows stay, however old
    engine.add_account(
        "open", kind="standard", created_at=NOW - timedelta(days=390), members=ADMINS
    )
    engine.deliver()
    engine.clock.set(NOW + timedelta(days=100))  # type: ignore[attr-defined]
    assert engine.prune_outbox("90 days", dry_run=True) == 6
    open_rows = {r.id for r in engine.store.outbox(account_id="open")}
    assert len(engine.store.notifications("acme")) == len(engine.store.notifications("open")) == 2
    before = metrics.OUTBOX_PRUNED._value.get()
    notes_before = metrics.NOTIFICATIONS_PRUNED._value.get()
    loops = Loops(engine, poll=0.05, retention=Duration(days=90), prune_every=0.05)
    loops.start()
    try:
        deadline = time.monotonic() + 20
        while engine.store.outbox(account_id="acme") or engine.store.notifications("acme"):
            assert time.monotonic() < deadline, "the housekeeper did not prune"
            time.sleep(0.05)
    finally:
        loops.stop()
    assert metrics.OUTBOX_PRUNED._value.get() - before == 6
    assert metrics.NOTIFICATIONS_PRUNED._value.get() - notes_before == 2
    # the loops ran its case on meanwhile; every row it had is still there
    assert open_rows <= {r.id for r in engine.store.outbox(account_id="open")}
    kinds = [r.entry.kind for r in engine.store.audit(account_id="acme")]
    assert kinds.count("notice.created") == 2
    assert "case.closed" in kinds


def test_rows_younger_than_the_retention_stay(engine: Engine) -> None:
    closed_case_with_notices(engine, "acme")
    engine.clock.set(NOW + timedelta(days=89))  # type: ignore[attr-defined]
    assert engine.prune_outbox(Duration(days=90)) == 0
    assert len(engine.store.outbox(account_id="acme")) == 6
    engine.clock.set(NOW + timedelta(days=91))  # type: ignore[attr-defined]
    # calendar months, as in policies: 3 months before May 31 is February 28
    assert engine.prune_outbox("3 months") == 0
    engine.clock.set(NOW + timedelta(days=93))  # type: ignore[attr-defined]
    assert engine.prune_outbox("3 months") == 6


def test_without_a_retention_nothing_is_pruned(engine: Engine) -> None:
    closed_case_with_notices(engine, "acme")
    engine.clock.set(NOW + timedelta(days=400))  # type: ignore[attr-defined]
    loops = Loops(engine, poll=0.05)  # no LAPSE_OUTBOX_RETENTION
    loops.start()
    time.sleep(0.3)
    loops.stop()
    assert len(engine.store.outbox(account_id="acme")) == 6
    with pytest.raises(InvalidInput, match="longer than zero"):
        engine.prune_outbox("0 days")


def test_events_older_than_the_event_retention_are_refused_and_their_ids_forgotten(
    locks: Engine,
) -> None:
    locks.event_retention = Duration(days=30)
    locks.add_account("acme", kind="standard", created_at=NOW - timedelta(days=10))
    assert locks.event("acme", "payment_succeeded", at=NOW, event_id="ev-1")
    assert not locks.event("acme", "payment_succeeded", at=NOW, event_id="ev-1")  # a repeat
    before = locks.store.audit(limit=10_000)
    # older than 30 days: refused, saying why and from when events are taken; nothing written
    too_old = NOW - timedelta(days=31)
    with pytest.raises(InvalidInput, match="older than the event retention") as refused:
        locks.event("acme", "payment_failed", at=too_old, event_id="ev-0")
    assert "events from 2026-01-30T09:00:00+00:00 on are accepted" in str(refused.value)
    with pytest.raises(InvalidInput, match=r"events\[1\]: event 'payment_failed' at "):
        locks.events(
            [
                EventReport(account_id="acme", name="payment_failed", at=NOW, event_id="ev-2"),
                EventReport(account_id="acme", name="payment_failed", at=too_old, event_id="ev-0"),
            ]
        )
    assert locks.store.audit(limit=10_000) == before
    assert locks.account("acme").cases == ()  # the batch's first event did not land either

    # 40 days on, the housekeeper forgets ev-1 (received 40 days ago)...
    locks.clock.set(NOW + timedelta(days=40))  # type: ignore[attr-defined]
    assert locks.prune_events("30 days", dry_run=True) == 1
    pruned = metrics.EVENTS_PRUNED._value.get()
    loops = Loops(locks, poll=0.05, event_retention=Duration(days=30), prune_every=0.05)
    loops.start()
    try:
        deadline = time.monotonic() + 20
        while locks.prune_events("30 days", dry_run=True):
            assert time.monotonic() < deadline, "the housekeeper did not forget the event ids"
            time.sleep(0.05)
    finally:
        loops.stop()
    assert metrics.EVENTS_PRUNED._value.get() - pruned == 1
    # ...and a repeat of it cannot be applied again: it is older than the retention
    with pytest.raises(InvalidInput, match="older than the event retention"):
        locks.event("acme", "payment_succeeded", at=NOW, event_id="ev-1")
    # an event within the retention is taken, its id kept
    assert locks.event("acme", "payment_failed", at=NOW + timedelta(days=39), event_id="ev-3")
    assert locks.account("acme").cases
    assert locks.prune_events("30 days") == 0


def test_without_an_event_retention_no_event_is_too_old(locks: Engine) -> None:
    locks.add_account("acme", kind="standard", created_at=NOW - timedelta(days=900))
    assert locks.event("acme", "payment_failed", at=NOW - timedelta(days=800), event_id="e")
    locks.clock.set(NOW + timedelta(days=400))  # type: ignore[attr-defined]
    loops = Loops(locks, poll=0.05)
    loops.start()
    time.sleep(0.3)
    loops.stop()
    assert not locks.event("acme", "payment_failed", at=NOW, event_id="e")  # still known
