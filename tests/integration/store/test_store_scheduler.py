"""Due-work claims and batch processing: leases, take-over, skipping, exactly-once outbox."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from datetime import timedelta, timezone

import pytest
from sqlalchemy.engine import make_url

from lapse.core.model import Account
from lapse.errors import LapseError
from lapse.store.base import Change, Deliveries, OutboxDraft, StoreError, key_digest
from lapse.store.sql import SqlStore, create_db_engine

from .helpers import DAY, T0, account, create, draft, entry, notice, plain

LEASE = timedelta(minutes=5)


def seed(store, count: int, *, due=T0) -> list[str]:
    """`count` plain accounts, due at `due` plus one second per account."""
    ids = [f"a{i:03d}" for i in range(count)]
    with store.unit() as unit:
        for i, account_id in enumerate(ids):
            unit.write(create(plain(account_id), due=due + timedelta(seconds=i)))
    return ids


def advance_to(next_due):
    """A step that moves every account's next due time and notes it in the audit."""

    def step(account: Account, delivered: Deliveries) -> Change:
        return Change(
            account=replace(account, case_seq=account.case_seq + 1),
            next_due_at=next_due,
            state="restricted",
            audit=[entry(account.id, "tick")],
        )

    return step


def test_claims_are_earliest_first_limited_and_leased(any_store) -> None:
    ids = seed(any_store, 5)
    now = T0 + DAY
    assert any_store.claim_due(now, 3, "w1", LEASE) == ids[:3]
    assert any_store.claim_due(now, 10, "w2", LEASE) == ids[3:]  # the others are leased
    assert any_store.claim_due(now, 10, "w3", LEASE) == []
    assert any_store.claim_due(T0 - DAY, 10, "w3", LEASE) == []  # nothing due yet


def test_an_expired_lease_is_taken_over_and_the_old_worker_is_skipped(any_store, clock) -> None:
    ids = seed(any_store, 2)
    now = T0 + DAY
    assert any_store.claim_due(now, 10, "dead", LEASE) == ids
    clock.advance(LEASE + timedelta(seconds=1))  # leases run on the store's wall clock
    assert any_store.claim_due(now, 10, "w2", LEASE) == ids
    # the first worker wakes up: its accounts belong to w2 now, nothing is written
    assert any_store.process(ids, advance_to(None), "dead") == []
    assert all(any_store.get(i).case_seq == 0 for i in ids)
    any_store.process(ids, advance_to(T0 + 30 * DAY), "w2")
    assert all(any_store.get(i).case_seq == 1 for i in ids)
    assert all(any_store.next_due(i) == T0 + 30 * DAY for i in ids)
    assert [r.entry.kind for r in any_store.audit()] == ["tick", "tick"]


def test_process_writes_releases_and_reschedules(any_store) -> None:
    ids = seed(any_store, 4)
    now = T0 + DAY
    claimed = any_store.claim_due(now, 10, "w1", LEASE)
    any_store.process(claimed, advance_to(now + DAY), "w1")
    assert any_store.count_by_state() == {"restricted": 4}
    assert any_store.versions(ids) == dict.fromkeys(ids, 2)
    assert any_store.claim_due(now, 10, "w1", LEASE) == []  # rescheduled, not due
    assert any_store.claim_due(now + DAY, 10, "w2", LEASE) == ids  # released, due again


def test_a_failing_step_skips_only_its_account(any_store, clock) -> None:
    ids = seed(any_store, 3)
    now = T0 + DAY

    def step(account: Account, delivered: Deliveries) -> Change | None:
        if account.id == ids[1]:
            raise ValueError("broken account")
        if account.id == ids[2]:
            return None  # nothing to write
        return advance_to(None)(account, delivered)

    claimed = any_store.claim_due(now, 10, "w1", LEASE)
    any_store.process(claimed, step, "w1")
    assert any_store.next_due(ids[0]) is None
    assert any_store.next_due(ids[1]) == T0 + timedelta(seconds=1)  # still due
    # the failed account keeps its claim until the lease runs out; the untouched one is free
    assert any_store.claim_due(now, 10, "w2", LEASE) == [ids[2]]
    clock.advance(LEASE * 2)
    assert any_store.claim_due(now, 10, "w2", LEASE) == ids[1:]


def test_outbox_rows_are_created_exactly_once_per_key(any_store) -> None:
    seed(any_store, 1)
    effect = notice("a000", at=T0)

    def step(account: Account, delivered: Deliveries) -> Change:
        return Change(
            account=account,
            next_due_at=T0 + DAY,
            outbox=[draft(effect), draft(effect)],  # the same key twice in one change
        )

    first = any_store.process(any_store.claim_due(T0 + DAY, 1, "w1", LEASE), step, "w1")
    assert len(first) == 1
    assert first[0].effect == effect
    assert first[0].recipient == "admin@example.com"
    # the same step again (a crash after commit, a re-run): nothing new
    second = any_store.process(any_store.claim_due(T0 + DAY, 1, "w1", LEASE), step, "w1")
    assert second == []
    with any_store.unit() as unit:
        unit.load("a000")
        again = Change(account=plain("a000"), next_due_at=None, outbox=[draft(effect)])
        assert unit.write(again) == []
    assert len(any_store.outbox()) == 1


def test_explicit_idempotency_keys_are_kept(any_store) -> None:
    seed(any_store, 1)
    effect = notice("a000")
    with any_store.unit() as unit:
        unit.load("a000")
        made = unit.write(
            Change(
                account=plain("a000"),
                next_due_at=None,
                outbox=[
                    OutboxDraft(
                        account_id="a000",
                        case_id="c",
                        effect=effect,
                        channel="webhook",
                        key="k-1",
                    )
                ],
            )
        )
    assert [item.idempotency_key for item in made] == ["k-1"]


@pytest.mark.postgres
def test_concurrent_claims_on_postgres_never_overlap(database, clock) -> None:
    url = database("postgres")
    stores = [SqlStore(create_db_engine(url), clock=clock, wall=clock) for _ in range(4)]
    try:
        ids = seed(stores[0], 400)
        claimed: dict[str, list[str]] = {}
        start = threading.Barrier(len(stores))

        def worker(index: int, store: SqlStore) -> None:
            start.wait()
            mine: list[str] = []
            while True:
                batch = store.claim_due(T0 + DAY, 7, f"w{index}", LEASE)
                if not batch:
                    break
                mine.extend(batch)
                store.process(batch, advance_to(None), f"w{index}")
            claimed[f"w{index}"] = mine

        threads = [threading.Thread(target=worker, args=(i, s)) for i, s in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        everything = [account_id for mine in claimed.values() for account_id in mine]
        assert sorted(everything) == ids  # every account once, none twice
        assert sum(1 for mine in claimed.values() if mine) > 1  # the work was shared
        assert len(stores[0].audit(limit=10_000)) == 400
        assert stores[0].verify_audit().ok
    finally:
        for store in stores:
            store.close()


# --- claim and process in one transaction (what the engine's scheduler runs) --------------------


def test_process_due_claims_earliest_first_writes_and_leaves_no_claim(any_store) -> None:
    ids = seed(any_store, 5)
    now = T0 + DAY
    assert any_store.process_due(now, 3, "w1", LEASE, advance_to(now + DAY)) == ids[:3]
    assert any_store.versions(ids) == {**dict.fromkeys(ids[:3], 2), **dict.fromkeys(ids[3:], 1)}
    assert [r.entry.kind for r in any_store.audit()] == ["tick"] * 3
    # nothing stays claimed: the rest is due for anyone, the processed ones when rescheduled
    assert any_store.claim_due(now, 10, "w2", LEASE) == ids[3:]
    assert any_store.claim_due(now + DAY, 10, "w3", LEASE) == ids[:3]
    assert any_store.process_due(T0 - DAY, 10, "w1", LEASE, advance_to(None)) == []


def test_process_due_skips_live_claims_and_takes_over_expired_ones(any_store, clock) -> None:
    ids = seed(any_store, 3)
    now = T0 + DAY
    assert any_store.claim_due(now, 1, "dead", LEASE) == ids[:1]
    assert any_store.process_due(now, 10, "w1", LEASE, advance_to(None)) == ids[1:]
    assert any_store.process_due(now, 10, "w1", LEASE, advance_to(None)) == []
    clock.advance(LEASE + timedelta(seconds=1))
    assert any_store.process_due(now, 10, "w1", LEASE, advance_to(None)) == ids[:1]
    assert all(any_store.next_due(i) is None for i in ids)
    # the dead worker wakes up: its claim is gone with the write, nothing is written twice
    assert any_store.process(ids[:1], advance_to(now), "dead") == []
    assert len(any_store.audit()) == 3


def test_process_due_a_failing_step_keeps_a_claim_until_the_lease_runs_out(
    any_store, clock
) -> None:
    ids = seed(any_store, 3)
    now = T0 + DAY

    def step(account: Account, delivered: Deliveries) -> Change | None:
        if account.id == ids[1]:
            raise ValueError("broken account")
        if account.id == ids[2]:
            return None  # nothing to write
        return advance_to(None)(account, delivered)

    assert any_store.process_due(now, 10, "w1", LEASE, step) == ids
    assert any_store.next_due(ids[0]) is None
    assert any_store.next_due(ids[1]) == T0 + timedelta(seconds=1)  # still due, claimed
    assert any_store.claim_due(now, 10, "w2", LEASE) == [ids[2]]  # untouched: free
    clock.advance(LEASE * 2)
    assert any_store.claim_due(now, 10, "w2", LEASE) == ids[1:]


def test_process_due_creates_outbox_rows_exactly_once(any_store) -> None:
    seed(any_store, 1)
    effect = notice("a000", at=T0)

    def step(account: Account, delivered: Deliveries) -> Change:
        return Change(
            account=account, next_due_at=T0, outbox=[draft(effect), draft(effect)]
        )  # due again at once: the same step runs twice

    assert any_store.process_due(T0 + DAY, 10, "w1", LEASE, step) == ["a000"]
    assert any_store.process_due(T0 + DAY, 10, "w1", LEASE, step) == ["a000"]
    (row,) = any_store.outbox()
    assert row.effect == effect
    assert row.recipient == "admin@example.com"


def test_outbox_keys_lead_with_the_effect_time_and_match_the_drafts(any_store) -> None:
    ids = seed(any_store, 3)
    # in an hour's zone the key still says UTC; a later notice sorts after an earlier one
    plus_one = timezone(timedelta(hours=1))
    effects = {
        ids[0]: notice(ids[0], at=T0),
        ids[1]: notice(ids[1], at=(T0 + timedelta(seconds=90)).astimezone(plus_one)),
        ids[2]: notice(ids[2], at=T0 + DAY),
    }
    drafts = {account_id: draft(effect) for account_id, effect in effects.items()}

    def step(account: Account, delivered: Deliveries) -> Change:
        return Change(account=account, next_due_at=None, outbox=[drafts[account.id]])

    any_store.process_due(T0 + 2 * DAY, 10, "w1", LEASE, step)
    keys = {row.account_id: row.idempotency_key for row in any_store.outbox()}
    # the bulk path and OutboxDraft.idempotency_key (the memory store's) agree
    assert keys == {account_id: d.idempotency_key() for account_id, d in drafts.items()}
    assert [keys[i][:15] for i in ids] == ["20240101000000-", "20240101000130-", "20240102000000-"]
    assert all(len(key) == 55 and int(key[15:], 16) >= 0 for key in keys.values())
    assert sorted(keys.values()) == [keys[i] for i in ids]
    # an email's Message-ID is made of the digest alone: the key older versions made
    assert {key_digest(key) for key in keys.values()} == {key[15:] for key in keys.values()}
    assert key_digest("k-1") == "k-1"  # an explicit key stays whole
    assert key_digest(keys[ids[0]][15:]) == keys[ids[0]][15:]


def test_process_due_rolls_back_whole_on_a_write_error(any_store) -> None:
    if not isinstance(any_store, SqlStore):
        pytest.skip("one transaction per batch is the SQL stores' promise")
    ids = seed(any_store, 2)

    def step(account: Account, delivered: Deliveries) -> Change:
        # a write the store refuses (a time without a zone): nothing of the batch may stay
        at = T0.replace(tzinfo=None) if account.id == ids[1] else T0
        return Change(account=account, next_due_at=None, audit=[entry(account.id, at=at)])

    with pytest.raises(LapseError):
        any_store.process_due(T0 + DAY, 10, "w1", LEASE, step)
    assert any_store.versions(ids) == dict.fromkeys(ids, 1)
    assert any_store.claim_due(T0 + DAY, 10, "w2", LEASE) == ids


@pytest.mark.postgres
def test_concurrent_process_due_on_postgres_never_overlaps(database, clock) -> None:
    url = database("postgres")
    stores = [SqlStore(create_db_engine(url), clock=clock, wall=clock) for _ in range(4)]
    try:
        ids = seed(stores[0], 400)
        claimed: dict[str, list[str]] = {}
        start = threading.Barrier(len(stores))

        def worker(index: int, store: SqlStore) -> None:
            start.wait()
            mine: list[str] = []
            while batch := store.process_due(T0 + DAY, 7, f"w{index}", LEASE, advance_to(None)):
                mine.extend(batch)
            claimed[f"w{index}"] = mine

        threads = [threading.Thread(target=worker, args=(i, s)) for i, s in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        everything = [account_id for mine in claimed.values() for account_id in mine]
        assert sorted(everything) == ids  # every account once, none twice
        assert sum(1 for mine in claimed.values() if mine) > 1  # the work was shared
        assert len(stores[0].audit(limit=10_000)) == 400
        assert stores[0].verify_audit().ok
    finally:
        for store in stores:
            store.close()


@pytest.mark.postgres
def test_a_hung_scheduler_transaction_is_ended_and_its_accounts_processed(database, clock) -> None:
    url = database("postgres")
    # a worker with a one-second lease: its connections may idle in a transaction that long
    hung = SqlStore(create_db_engine(url, lease=timedelta(seconds=1)), clock=clock, wall=clock)
    other = SqlStore(create_db_engine(url), clock=clock, wall=clock)
    try:
        ids = seed(hung, 5)
        inside, release = threading.Event(), threading.Event()
        outcome: dict[str, object] = {}

        def stuck(account: Account, delivered: Deliveries) -> Change:
            inside.set()
            release.wait(30)  # hangs inside its transaction, the batch's rows locked
            return advance_to(None)(account, delivered)

        def run() -> None:
            try:
                outcome["ids"] = hung.process_due(T0 + DAY, 10, "hung", LEASE, stuck)
            except LapseError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        assert inside.wait(10)
        # while it hangs, the other worker skips the locked rows...
        assert other.process_due(T0 + DAY, 10, "other", LEASE, advance_to(None)) == []
        # ...until the server ends the idle transaction and its locks go
        deadline = time.monotonic() + 20
        while not (done := other.process_due(T0 + DAY, 10, "other", LEASE, advance_to(None))):
            assert time.monotonic() < deadline, "the hung transaction kept its locks"
            time.sleep(0.2)
        assert done == ids
        release.set()
        thread.join(30)
        # the hung worker's own write fails: nothing of its batch is written
        assert "ids" not in outcome
        assert isinstance(outcome["error"], StoreError)
        assert [r.entry.account_id for r in other.audit(limit=100)] == ids  # each account once
        # and it works again on a new connection
        assert hung.process_due(T0 + DAY, 10, "hung", LEASE, advance_to(None)) == []
        assert hung.get(ids[0]).case_seq == 1
    finally:
        release.set()
        hung.close()
        other.close()


def test_sqlite_wal_is_checkpointed_off_the_scheduler_thread(database, clock) -> None:
    url = database("sqlite")
    store = SqlStore(create_db_engine(url), clock=clock, wall=clock)
    try:
        ids = seed(store, 50)
        assert store._checkpointer is None  # units do not start it
        assert store.process_due(T0 + DAY, 10, "w1", LEASE, advance_to(None)) == ids[:10]
        checkpointer = store._checkpointer
        assert checkpointer is not None
        assert checkpointer._thread.is_alive()
        assert store.process_due(T0 + DAY, 100, "w1", LEASE, advance_to(None)) == ids[10:]
        assert store._checkpointer is checkpointer  # one thread per store
    finally:
        store.close()
    assert not checkpointer._thread.is_alive()
    assert store._checkpointer is None
    conn = sqlite3.connect(make_url(url).database)
    try:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (50,)
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, frames) == (0, copied)
    finally:
        conn.close()


def test_no_checkpoint_thread_for_an_in_memory_sqlite(clock) -> None:
    store = SqlStore(create_db_engine("sqlite://"), clock=clock, wall=clock)
    try:
        assert store._wal_path is None
    finally:
        store.close()


def test_a_step_is_given_the_deliveries_its_account_never_recorded(any_store, clock) -> None:
    # the state a crash between "row delivered" and "notice dispatched" left behind when those
    # were two transactions: both rows delivered, the notice recorded undispatched, nothing due
    stuck = account("a1")  # its case records grace/started, not dispatched
    done = account("a2")
    (record,) = done.cases[0].notices
    done = replace(
        done,
        cases=(replace(done.cases[0], notices=(replace(record, dispatched_at=T0 + DAY),)),),
    )
    effect = notice("a1")
    with any_store.unit() as unit:
        unit.write(create(stuck, due=None, outbox=[draft(effect), draft(effect, "b@example.com")]))
        unit.write(create(done, due=None, outbox=[draft(notice("a2"))]))
        unit.write(create(plain("a3"), due=None))
    now = T0 + 2 * DAY
    assert any_store.wake_undispatched(now) == []  # the rows are not delivered yet
    any_store.claim_outbox(now, 10, "d1", LEASE)
    rows = {(i.account_id, i.recipient): i.id for i in any_store.outbox()}
    any_store.outbox_delivered(rows[("a1", "admin@example.com")], T0 + DAY, worker="d1")
    assert any_store.wake_undispatched(now) == []  # one recipient's row is still out
    any_store.outbox_delivered(rows[("a1", "b@example.com")], T0 + 3 * DAY, worker="d1")
    any_store.outbox_delivered(rows[("a2", "admin@example.com")], T0 + DAY, worker="d1")
    assert any_store.wake_undispatched(now) == ["a1"]  # a2 recorded its dispatch
    assert any_store.next_due("a1") == now
    assert any_store.versions(["a1", "a2"]) == {"a1": 2, "a2": 1}
    seen: dict[str, object] = {}

    def step(acc: Account, delivered: Deliveries) -> Change | None:
        seen[acc.id] = dict(delivered)
        return None

    assert any_store.process_due(now, 10, "w1", LEASE, step) == ["a1"]
    assert seen == {"a1": {("inactivity#1", "grace/started"): T0 + 3 * DAY}}
