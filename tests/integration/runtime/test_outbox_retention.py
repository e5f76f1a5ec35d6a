"""LAPSE_OUTBOX_RETENTION: the loops prune the outbox's finished rows of closed cases, on SQLite
and PostgreSQL, and the audit log keeps the record of what was sent."""

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
from lapse.runtime.engine import Engine
from lapse.runtime.worker import Loops
from lapse.store.sql import SqlStore, create_db_engine

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
ADMINS = [("a@acme.example", "admin"), ("b@acme.example", "admin")]


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    clock = ManualClock(NOW)
    store = SqlStore(create_db_engine(store_url), clock=clock.now, wall=clock.now)
    yield Engine(load_preset("inactivity-cleanup"), store=store, clock=clock)
    store.close()


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
    before = metrics.OUTBOX_PRUNED._value.get()
    loops = Loops(engine, poll=0.05, retention=Duration(days=90), prune_every=0.05)
    loops.start()
    try:
        deadline = time.monotonic() + 20
        while engine.store.outbox(account_id="acme"):
            assert time.monotonic() < deadline, "the housekeeper did not prune"
            time.sleep(0.05)
    finally:
        loops.stop()
    assert metrics.OUTBOX_PRUNED._value.get() - before == 6
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
