"""Pruning the outbox: finished notices and host effects of closed cases go, nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from lapse.errors import InvalidInput
from lapse.store.base import Change
from lapse.store.sql import SqlStore, create_db_engine

from .helpers import DAY, T0, account, create, draft, effects, notice, plain

LEASE = timedelta(minutes=5)


def history(store, clock) -> dict[str, int]:
    """a1 (no open case): one notice to two recipients, a host effect, a purge and a deletion,
    all finished; a notice skipped, one failed for good and one pending. a2: a delivered notice
    of its open case. Returns the row ids by name."""
    notice_1, host, purge, delete = effects("a1")
    skipped = notice("a1", key="grace/reminder")
    failed = notice("a1", key="grace/final")
    waiting = notice("a1", key="grace/last", at=T0 + 30 * DAY)
    open_case = notice("a2")
    with store.unit() as unit:
        unit.write(create(plain("a1")))
        unit.write(create(account("a2")))  # its case inactivity#1 is open
        made = unit.write(
            Change(
                account=plain("a1"),
                next_due_at=None,
                outbox=[
                    draft(notice_1, "x@example.com"),
                    draft(notice_1, "y@example.com"),
                    draft(host),
                    draft(purge),
                    draft(delete),
                    draft(skipped),
                    draft(failed),
                    draft(waiting),
                ],
            )
        )
        made += unit.write(
            Change(account=account("a2"), next_due_at=None, outbox=[draft(open_case)])
        )
    names = ["x", "y", "host", "purge", "delete", "skipped", "failed", "waiting", "open"]
    ids = dict(zip(names, (item.id for item in made), strict=True))
    claimed = {item.id for item in store.claim_outbox(T0, 20, "d", LEASE)}
    assert claimed == set(ids.values()) - {ids["waiting"]}
    for name in ("x", "y", "host", "purge", "delete", "open"):
        assert store.outbox_delivered(ids[name], T0, worker="d")
    assert store.outbox_skipped(ids["skipped"], "case closed", worker="d")
    assert store.outbox_failed(ids["failed"], "mailbox gone", None, worker="d")
    return ids


def test_prunes_finished_rows_of_closed_cases_only(any_store, clock) -> None:
    ids = history(any_store, clock)
    everything = {item.id for item in any_store.outbox(limit=100)}
    # finished at T0: not before T0
    assert any_store.prune_outbox(T0) == 0
    # a dry run counts and keeps
    assert any_store.prune_outbox(T0 + DAY, dry_run=True) == 4
    assert {item.id for item in any_store.outbox(limit=100)} == everything
    assert any_store.prune_outbox(T0 + DAY) == 4
    kept = {item.id for item in any_store.outbox(limit=100)}
    gone = {ids[name] for name in ("x", "y", "host", "skipped")}
    assert kept == everything - gone
    # what stays: the deletion's rows, a failed row (retryable), a pending one, an open case's
    assert {i.id: i.status for i in any_store.outbox(limit=100)} == {
        ids["purge"]: "delivered",
        ids["delete"]: "delivered",
        ids["failed"]: "failed",
        ids["waiting"]: "pending",
        ids["open"]: "delivered",
    }
    assert any_store.prune_outbox(T0 + DAY) == 0  # nothing left to prune
    assert any_store.retry_outbox(ids["failed"]).id == ids["failed"]


def test_prunes_in_chunks_with_progress(any_store, clock) -> None:
    history(any_store, clock)
    seen: list[int] = []
    assert any_store.prune_outbox(T0 + DAY, chunk=2, progress=seen.append) == 4
    assert seen
    assert seen[-1] == 4
    assert seen == sorted(seen)


def test_rows_created_after_the_cutoff_end_the_walk(any_store, clock) -> None:
    history(any_store, clock)
    # every row was created at T0: the first range shows that none older can follow
    seen: list[int] = []
    assert any_store.prune_outbox(T0 - DAY, chunk=1, progress=seen.append) == 0
    assert seen == [0]


def test_a_bad_chunk_is_refused_and_changes_nothing(any_store, clock) -> None:
    history(any_store, clock)
    before = any_store.outbox(limit=100)
    with pytest.raises(InvalidInput, match="chunk must be at least 1"):
        any_store.prune_outbox(T0 + DAY, chunk=0)
    assert any_store.outbox(limit=100) == before


@pytest.mark.postgres
def test_a_row_another_transaction_holds_waits_for_the_next_round(database, clock) -> None:
    url = database("postgres")
    store = SqlStore(create_db_engine(url), clock=clock, wall=clock)
    other = create_engine(url)
    try:
        ids = history(store, clock)
        with other.begin() as conn:  # e.g. an erasure blanking the account's rows
            conn.execute(text("SELECT id FROM outbox WHERE id = :id FOR UPDATE"), {"id": ids["x"]})
            assert store.prune_outbox(T0 + DAY) == 3  # at once: it does not wait
            assert ids["x"] in {item.id for item in store.outbox(limit=100)}
        assert store.prune_outbox(T0 + DAY) == 1
    finally:
        other.dispose()
        store.close()
