"""A notice's delivery and its dispatch are one transaction, on SQLite and PostgreSQL; so are a
deletion's tombstone and its outbox row's delivered mark.

Before they were, a process killed between "the outbox row is delivered" and "the notice is
dispatched" left the case waiting for ever ("notice ... is not dispatched yet", nothing due).
Now a crash in between leaves neither, and the row is simply delivered again; a database left
in the old state heals on its next worker start. In-app notifications are stored in the same
transaction, so a row delivered twice (a lost claim) never leaves two.

Likewise a worker killed right after a deletion committed its tombstone used to leave the
deletion's row pending: the restarted worker found the account gone and marked the row that had
carried out the deletion `skipped` ("the account no longer exists"). The row is now marked
delivered by the deletion's own transaction; a worker whose row another worker holds by then
records nothing, and the row's holder carries it out (a row nobody holds any more is recorded
by the worker that finished the run).
"""

from __future__ import annotations

import asyncio
import threading
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


def _deletion_row(eng: Engine) -> OutboxItem:
    """A test account 31 days old (its 30 days are over): its deletion row is ready."""
    eng.add_account("t1", kind="test", created_at=NOW - timedelta(days=31))
    [row] = [r for r in eng.store.outbox(account_id="t1") if r.channel == "data"]
    assert row.status == "pending"
    return row


def _claim(eng: Engine, worker: str, row: OutboxItem, lease: timedelta = LEASE) -> OutboxItem:
    """`worker` claims the ready rows; returns its claimed copy of `row`."""
    [mine] = [i for i in eng.store.claim_outbox(NOW, 100, worker, lease) if i.id == row.id]
    return mine


def test_a_worker_killed_after_a_deletion_leaves_its_row_delivered(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    first = engine(store_url, stores, wall, clock, worker_id="w1")
    row = _deletion_row(first)
    mine = _claim(first, "w1", row)
    # w1 carries the deletion out and dies before doing anything else
    assert first._carry_out(mine, NOW) == ""
    [done] = [r for r in first.store.outbox(account_id="t1") if r.id == row.id]
    assert (done.status, done.delivered_at, done.attempts) == ("delivered", NOW, 1)
    # the restarted worker, once w1's lease ran out, finds nothing left to do
    wall.now += LEASE + timedelta(seconds=1)
    restarted = engine(store_url, stores, wall, clock, worker_id="w2")
    report = restarted.deliver()
    assert (report.delivered, report.skipped, report.failed) == (0, 0, 0)
    [after] = [r for r in restarted.store.outbox(account_id="t1") if r.id == row.id]
    assert (after.status, after.last_error) == ("delivered", None)
    stone = restarted.store.tombstone("t1")
    assert stone is not None
    assert stone.deleted_at == NOW
    assert len(restarted.store.receipts(account_id="t1")) == 1
    kinds = [r.entry.kind for r in restarted.store.audit(account_id="t1")]
    assert kinds.count("account.tombstoned") == 1
    assert restarted.store.verify_audit().ok


def test_a_deletion_whose_claim_ran_out_records_nothing(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    first = engine(store_url, stores, wall, clock, worker_id="w1")
    row = _deletion_row(first)
    mine = _claim(first, "w1", row)
    # w1 hangs past its lease; w2 takes the row over
    wall.now += LEASE + timedelta(seconds=1)
    second = engine(store_url, stores, wall, clock, worker_id="w2")
    theirs = _claim(second, "w2", row)
    # w1 wakes up and carries its copy out: its unit is undone, nothing is recorded
    report = asyncio.run(first.dispatcher._attempt(mine, NOW))
    assert (report.delivered, report.skipped, report.failed) == (0, 0, 0)
    assert second.store.tombstone("t1") is None
    assert second.store.receipts(account_id="t1") == []
    assert second.account("t1").deleted_at is None
    [held] = [r for r in second.store.outbox(account_id="t1") if r.id == row.id]
    assert held.status == "pending"
    # the row's holder carries it out and records it, once
    report = asyncio.run(second.dispatcher._attempt(theirs, NOW))
    assert report.delivered == 1
    [done] = [r for r in second.store.outbox(account_id="t1") if r.id == row.id]
    assert (done.status, done.attempts) == ("delivered", 1)
    assert second.store.tombstone("t1") is not None
    assert len(second.store.receipts(account_id="t1")) == 1
    assert second.store.verify_audit().ok


def test_a_worker_killed_after_a_purge_leaves_its_row_delivered(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    first = engine(store_url, stores, wall, clock, worker_id="w1", policy=LOCKS)
    first.add_account("acme", kind="standard", members=ADMINS[:1])
    first.event("acme", "payment_failed", event_id="p1")
    first.deliver()  # the lock's notice
    clock.set(NOW + timedelta(days=200))  # the retention warning is due (and late)
    first.run_due()
    first.deliver()  # it goes out now: the lock's six months end 30 days after it
    clock.set(NOW + timedelta(days=231))
    first.run_due()  # the history goes: a purge row
    [row] = [r for r in first.store.outbox(account_id="acme") if r.channel == "data"]
    claimed = first.store.claim_outbox(clock.now(), 100, "w1", LEASE)
    [mine] = [i for i in claimed if i.id == row.id]
    assert first._carry_out(mine, clock.now()) == ""  # and w1 dies here
    [done] = [r for r in first.store.outbox(account_id="acme") if r.id == row.id]
    assert (done.status, done.attempts) == ("delivered", 1)
    wall.now += LEASE + timedelta(seconds=1)
    restarted = engine(store_url, stores, wall, clock, worker_id="w2", policy=LOCKS)
    restarted.deliver()
    [after] = [r for r in restarted.store.outbox(account_id="acme") if r.id == row.id]
    assert (after.status, after.attempts) == ("delivered", 1)
    [receipt] = restarted.store.receipts(account_id="acme")
    assert receipt.body["kind"] == "purge"
    assert restarted.status("acme").state == "locked"  # a purge is not a deletion


def test_a_long_deletion_whose_row_was_released_meanwhile_records_itself(
    store_url, stores, wall
) -> None:
    clock = ManualClock(NOW)
    first = engine(store_url, stores, wall, clock, worker_id="w1")
    row = _deletion_row(first)
    mine = _claim(first, "w1", row)
    # w1's run outlasts its lease; w2 claims the row, finds the run still w1's, and fails its
    # attempt (to retry later), which releases the row
    wall.now += LEASE + timedelta(seconds=1)
    second = engine(store_url, stores, wall, clock, worker_id="w2")
    assert [i.id for i in second.store.claim_outbox(NOW, 100, "w2", LEASE)] == [row.id]
    later = NOW + timedelta(minutes=5)
    assert second.store.outbox_failed(row.id, "the run is claimed by w1", later, worker="w2")
    # w1 finishes the run: nobody holds the row, so its tombstone records the row delivered
    report = asyncio.run(first.dispatcher._attempt(mine, NOW))
    assert report.delivered == 1
    [done] = [r for r in second.store.outbox(account_id="t1") if r.id == row.id]
    assert (done.status, done.attempts, done.next_attempt_at) == ("delivered", 2, None)
    assert second.store.tombstone("t1") is not None
    clock.set(later)
    assert second.deliver().delivered == 0  # nothing left to retry


def test_a_deletion_longer_than_the_lease_keeps_its_claim(store_url, stores, wall) -> None:
    clock = ManualClock(NOW)
    short = timedelta(seconds=0.6)  # renewed every 0.2 s of real time
    first = engine(store_url, stores, wall, clock, worker_id="w1")
    first.dispatcher.lease = short
    row = _deletion_row(first)
    second = engine(store_url, stores, wall, clock, worker_id="w2")
    carry_out = first.dispatcher.carry_out
    taken: list[list[int]] = []

    def slow(item: OutboxItem, now: datetime) -> str:
        """A deletion that runs for three leases of the workers' (wall) clock."""
        for _ in range(3):
            wall.now += timedelta(seconds=1)  # past the lease each time...
            time.sleep(0.5)  # ...and the renewal catches up
            taken.append([i.id for i in second.store.claim_outbox(NOW, 100, "w2", LEASE)])
        return carry_out(item, now)

    first.dispatcher.carry_out = slow
    mine = _claim(first, "w1", row, short)
    report = asyncio.run(first.dispatcher._attempt(mine, NOW))
    assert taken == [[], [], []]  # w2 never got the row while w1 worked on it
    assert report.delivered == 1
    [done] = [r for r in first.store.outbox(account_id="t1") if r.id == row.id]
    assert (done.status, done.attempts) == ("delivered", 1)
    assert first.store.tombstone("t1") is not None


def test_a_long_deletion_holds_up_no_notice(store_url, stores, wall) -> None:
    """The worker's loops run deletions beside the deliveries: notices that become ready while a
    deletion runs go out meanwhile (they used to wait for the deletion's end)."""
    clock = ManualClock(NOW)
    eng = engine(store_url, stores, wall, clock, worker_id="w1")
    row = _deletion_row(eng)
    carry_out = eng.dispatcher.carry_out
    started, finish = threading.Event(), threading.Event()

    def long(item: OutboxItem, now: datetime) -> str:
        """A deletion that runs until the test lets it finish."""
        started.set()
        assert finish.wait(30), "the test never let the deletion finish"
        return carry_out(item, now)

    eng.dispatcher.carry_out = long
    loops = Loops(eng, poll=0.05)
    loops.start()
    try:
        assert started.wait(20), "the worker did not start the deletion"
        idle_account(eng)  # its two notices become ready while the deletion runs
        deadline = time.monotonic() + 20
        while _keys(eng):
            assert time.monotonic() < deadline, "the notices waited for the deletion"
            time.sleep(0.05)
        assert eng.store.tombstone("t1") is None  # the deletion is still running
        finish.set()
        deadline = time.monotonic() + 20
        while eng.store.tombstone("t1") is None:
            assert time.monotonic() < deadline, "the deletion did not finish"
            time.sleep(0.05)
    finally:
        finish.set()
        loops.stop()
    [done] = [r for r in eng.store.outbox(account_id="t1") if r.id == row.id]
    assert (done.status, done.attempts) == ("delivered", 1)
    sent = eng.store.outbox(account_id="acme")
    assert sent
    assert all(r.status == "delivered" for r in sent)
