"""A notice's delivery and its dispatch are one transaction, on SQLite and PostgreSQL.

Before they were, a process killed between "the outbox row is delivered" and "the notice is
dispatched" left the case waiting for ever ("notice ... is not dispatched yet", nothing due).
Now a crash in between leaves neither, and the row is simply delivered again; a database left
in the old state heals on its next worker start. In-app notifications are stored in the same
transaction, so a row delivered twice (a lost claim) never leaves two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from lapse.policy import load_preset
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.runtime.worker import Loops
from lapse.store.base import NotificationDraft, OutboxItem
from lapse.store.sql import SqlStore, create_db_engine

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
LEASE = timedelta(minutes=1)
INACTIVITY = load_preset("inactivity-cleanup")
LOCKS = load_preset("account-locks")
ADMINS = [("a@acme.example", "admin"), ("b@acme.example", "admin")]


class Wall:
    """The stores' lease clock, moved by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def stores(store_url: str, wall: Wall) -> Iterator[list[SqlStore]]:
    """Stores on the test's database (one per simulated worker process), closed at the end."""
    made: list[SqlStore] = []
    yield made
    for store in made:
        store.close()


def engine(store_url: str, stores: list[SqlStore], wall: Wall, clock: ManualClock, **kw) -> Engine:
    """A worker's engine on its own connections, delivering only when told to."""
    store = SqlStore(create_db_engine(store_url), clock=clock.now, wall=wall)
    stores.append(store)
    kw.setdefault("policy", INACTIVITY)
    return Engine(
        kw.pop("policy"), store=store, clock=clock, lease=LEASE, deliver_inline=False, **kw
    )


def idle_account(eng: Engine) -> None:
    """An account whose inactivity case opens 25 days before NOW: both notices are due."""
    eng.add_account("acme", kind="standard", created_at=NOW - timedelta(days=390), members=ADMINS)
    [case] = eng.account("acme").cases  # evaluated at once when added
    assert [r.key for r in case.notices] == [
        "grace/inactivity-grace-started",
        "grace/inactivity-final-warning",
    ]


def _keys(eng: Engine) -> list[str]:
    [case] = eng.account("acme").cases
    return [r.key for r in case.notices if r.dispatched_at is None]


def test_a_crash_between_delivery_and_dispatch_leaves_neither(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    eng = engine(store_url, stores, wall, clock, worker_id="w1")
    idle_account(eng)
    store = eng.store

    def killed(item: OutboxItem, now: datetime, note: NotificationDraft | None) -> bool:
        """The delivery path, with the process dying where the dispatch is recorded."""

        def die(account, delivered):
            raise RuntimeError("killed between the delivery and the dispatch")

        return store.notice_delivered(item.id, now, worker="w1", step=die, notification=note)

    eng.dispatcher.notice_delivered = killed
    with pytest.raises(RuntimeError, match="killed"):
        asyncio.run(eng.dispatcher.run_once())
    # each notice's last row to go out took its delivered mark down with it: nothing is
    # delivered without its dispatch, nothing is stuck
    rows = store.outbox(account_id="acme")
    by_key: dict[str, set[str]] = {}
    for row in rows:
        by_key.setdefault(getattr(row.effect, "key", ""), set()).add(row.status)
    assert all("pending" in statuses for statuses in by_key.values()), by_key
    assert _keys(eng) == ["grace/inactivity-grace-started", "grace/inactivity-final-warning"]

    # the restarted worker delivers what was left once the dead one's lease ran out
    wall.now += LEASE + timedelta(seconds=1)
    restarted = engine(store_url, stores, wall, clock, worker_id="w2")
    report = restarted.deliver()
    assert report.delivered >= 2
    assert all(r.status == "delivered" for r in store.outbox(account_id="acme"))
    assert _keys(restarted) == []
    [case] = restarted.account("acme").cases
    assert all(r.dispatched_at == NOW for r in case.notices)
    # the final warning went out at NOW: the holder keeps 7 days, the case is due then
    assert store.next_due("acme") == NOW + timedelta(days=7)


def test_a_database_left_between_the_two_heals(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    eng = engine(store_url, stores, wall, clock, worker_id="w1")
    idle_account(eng)
    store = eng.store
    # what the two separate transactions left after a kill: every row delivered (the first
    # transaction), no notice recorded as dispatched (the second never ran)
    sent = NOW + timedelta(minutes=3)
    for item in store.claim_outbox(NOW, 100, "old", LEASE):
        assert store.outbox_delivered(item.id, sent, worker="old")
    assert store.next_due("acme") is None
    status = eng.status("acme")
    assert any("is not dispatched yet" in text for text in status.cases[0].waiting)

    clock.set(NOW + timedelta(hours=1))
    assert eng.recover_notices() == ["acme"]
    assert eng.run_due().processed == 1
    assert _keys(eng) == []
    [case] = eng.account("acme").cases
    assert {r.key: r.dispatched_at for r in case.notices} == {
        "grace/inactivity-grace-started": sent,
        "grace/inactivity-final-warning": sent,
    }
    recovered = [r.entry for r in store.audit(account_id="acme") if r.entry.detail.get("recovered")]
    assert [e.kind for e in recovered] == ["notice.dispatched", "notice.dispatched"]
    assert store.next_due("acme") == sent + timedelta(days=7)
    assert eng.status("acme").cases[0].waiting == ()
    assert eng.recover_notices() == []


def test_an_in_app_notice_delivered_twice_is_stored_once(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    first = engine(store_url, stores, wall, clock, worker_id="w1", policy=LOCKS)
    first.add_account("acme", kind="standard", members=ADMINS[:1])
    first.lock("acme", by="ops", reason="chargeback")
    [row] = [r for r in first.store.outbox(account_id="acme") if r.channel == "in_app"]
    # w1 claims the in-app row and hangs past its lease; w2 takes it over and delivers it
    claimed = first.store.claim_outbox(NOW, 100, "w1", LEASE)
    assert row.id in {i.id for i in claimed}
    wall.now += LEASE + timedelta(seconds=1)
    second = engine(store_url, stores, wall, clock, worker_id="w2", policy=LOCKS)
    assert second.deliver().delivered >= 1
    assert len(second.store.notifications("acme")) == 1
    # w1 wakes up and finishes its attempt of the same row: it stores nothing
    mine = next(i for i in claimed if i.id == row.id)
    report = asyncio.run(first.dispatcher._attempt(mine, NOW))
    assert report.delivered == 0
    notes = first.store.notifications("acme")
    assert [(n.template, n.case_id) for n in notes] == [("lock-started", "payment-lock#1")]
    [delivered] = [r for r in first.store.outbox(account_id="acme") if r.id == row.id]
    assert (delivered.status, delivered.attempts) == ("delivered", 1)


def test_a_worker_start_heals_such_a_database(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    eng = engine(store_url, stores, wall, clock, worker_id="w1")
    idle_account(eng)
    for item in eng.store.claim_outbox(NOW, 100, "old", LEASE):
        eng.store.outbox_delivered(item.id, NOW, worker="old")
    assert eng.store.next_due("acme") is None
    loops = Loops(eng, poll=0.05)  # what `lapse worker` runs
    loops.start()
    try:
        deadline = time.monotonic() + 20
        while _keys(eng):
            assert time.monotonic() < deadline, "the worker did not heal the account"
            time.sleep(0.05)
    finally:
        loops.stop()
    assert eng.store.next_due("acme") == NOW + timedelta(days=7)
