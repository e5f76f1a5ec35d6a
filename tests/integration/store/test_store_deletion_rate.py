"""The global deletion rate limit: deletion starts counted over the last minute, all workers
together; a deferred outbox row waits without counting as a failed attempt."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from lapse.store.base import Change

from .helpers import T0, create, draft, effects, plain

LEASE = timedelta(minutes=5)
SECOND = timedelta(seconds=1)


def delete_rows(store, count: int) -> list[int]:
    """`count` accounts, each with a pending delete row; their outbox ids."""
    ids = []
    for n in range(count):
        account = f"d{n}"
        delete = effects(account)[-1]
        assert type(delete).__name__ == "DeleteEffect"
        with store.unit() as unit:
            unit.write(create(plain(account)))
            made = unit.write(
                Change(account=plain(account), next_due_at=None, outbox=[draft(delete)])
            )
        ids.append(made[0].id)
    return ids


def test_at_most_n_starts_in_any_minute(any_store) -> None:
    ids = delete_rows(any_store, 5)
    now = T0 + timedelta(hours=1)
    assert any_store.start_deletion(ids[0], "d0", now, 2) is None
    assert any_store.start_deletion(ids[1], "d1", now + 10 * SECOND, 2) is None
    # the third waits until the first start leaves the window
    assert any_store.start_deletion(ids[2], "d2", now + 20 * SECOND, 2) == now + timedelta(
        minutes=1
    )
    # a started deletion resumes (after a crash) without taking a new start
    assert any_store.start_deletion(ids[0], "d0", now + 30 * SECOND, 2) is None
    assert any_store.start_deletion(ids[1], "d1", now + 30 * SECOND, 2) is None
    # at the first start's minute, one start is free again, and only one
    later = now + timedelta(minutes=1)
    assert any_store.start_deletion(ids[2], "d2", later, 2) is None
    assert any_store.start_deletion(ids[3], "d3", later, 2) == now + 10 * SECOND + timedelta(
        minutes=1
    )
    assert any_store.start_deletion(ids[3], "d3", later + 10 * SECOND, 2) is None
    assert any_store.start_deletion(ids[4], "d4", later + 10 * SECOND, 2) == later + timedelta(
        minutes=1
    )


def test_a_full_window_never_asks_to_retry_in_the_past(any_store) -> None:
    ids = delete_rows(any_store, 2)
    now = T0 + timedelta(hours=1)
    assert any_store.start_deletion(ids[0], "d0", now, 1) is None
    wait = any_store.start_deletion(ids[1], "d1", now + timedelta(minutes=1) - SECOND / 2, 1)
    assert wait is not None
    assert wait >= now + timedelta(minutes=1) - SECOND / 2 + SECOND


def test_deferred_row_waits_without_a_failed_attempt(any_store) -> None:
    ids = delete_rows(any_store, 1)
    now = T0 + timedelta(hours=1)
    (claimed,) = any_store.claim_outbox(now, 10, "w1", LEASE)
    any_store.outbox_deferred(
        claimed.id, now + timedelta(minutes=1), "waiting for a slot", worker="w1"
    )
    (row,) = any_store.outbox()
    assert (row.id, row.status, row.attempts) == (ids[0], "pending", 0)
    assert row.next_attempt_at == now + timedelta(minutes=1)
    assert row.last_error == "waiting for a slot"
    assert any_store.next_outbox_attempt() == now + timedelta(minutes=1)
    # released: not claimable before its time, claimable by anyone after
    assert any_store.claim_outbox(now + SECOND, 10, "w2", LEASE) == []
    assert [
        i.id for i in any_store.claim_outbox(now + timedelta(minutes=1), 10, "w2", LEASE)
    ] == ids


@pytest.mark.postgres
def test_concurrent_workers_share_the_limit(database, clock) -> None:
    from lapse.store.sql import SqlStore, create_db_engine

    url = database("postgres")
    stores = [SqlStore(create_db_engine(url), clock=clock, wall=clock) for _ in range(4)]
    try:
        ids = delete_rows(stores[0], 40)
        now = T0 + timedelta(hours=1)
        started: list[int] = []
        lock = threading.Lock()

        def work(store, mine: list[int]) -> None:
            for item in mine:
                if store.start_deletion(item, f"d{ids.index(item)}", now, 7) is None:
                    with lock:
                        started.append(item)

        threads = [
            threading.Thread(target=work, args=(store, ids[n::4])) for n, store in enumerate(stores)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(started) == 7
    finally:
        for store in stores:
            store.close()
