"""The outbox: claims, delivery results, retries, listing, and when a notice was delivered."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lapse.errors import Conflict, InvalidInput
from lapse.store.base import Change

from .helpers import DAY, T0, create, draft, effects, notice, plain

LEASE = timedelta(minutes=5)


def fill(store) -> list[int]:
    effs = effects("a1")
    second = notice("a1", key="grace/final", at=T0 + DAY)
    with store.unit() as unit:
        unit.write(create(plain("a1")))
        unit.write(create(plain("a2")))
        made = unit.write(
            Change(
                account=plain("a1"),
                next_due_at=None,
                outbox=[
                    draft(effs[0], "x@example.com"),
                    draft(effs[0], "y@example.com"),
                    *[draft(e) for e in effs[1:]],
                    draft(second),
                ],
            )
        )
    return [item.id for item in made]


def test_every_effect_kind_round_trips(any_store) -> None:
    fill(any_store)
    items = any_store.outbox()
    assert [type(i.effect).__name__ for i in items] == [
        "NoticeEffect",
        "NoticeEffect",
        "HostEffect",
        "PurgeEffect",
        "DeleteEffect",
        "NoticeEffect",
    ]
    assert [i.effect for i in items[1:5]] == effects("a1")[:1] + effects("a1")[1:]
    assert all(i.status == "pending" and i.attempts == 0 for i in items)
    assert items[0].next_attempt_at == T0


def test_claims_results_and_retries(any_store, clock) -> None:
    ids = fill(any_store)
    now = T0 + timedelta(hours=1)
    claimed = any_store.claim_outbox(now, 10, "d1", LEASE)
    assert [i.id for i in claimed] == ids[:5]  # the last one is due tomorrow
    assert any_store.claim_outbox(now, 10, "d2", LEASE) == []  # leased
    any_store.outbox_delivered(ids[0], now)
    any_store.outbox_failed(ids[1], "smtp said no", now + timedelta(minutes=10))
    any_store.outbox_failed(ids[2], "gone for good", None)
    any_store.outbox_skipped(ids[3], "case closed")
    rows = {i.id: i for i in any_store.outbox()}
    assert (rows[ids[0]].status, rows[ids[0]].attempts, rows[ids[0]].delivered_at) == (
        "delivered",
        1,
        now,
    )
    assert (rows[ids[1]].status, rows[ids[1]].last_error) == ("pending", "smtp said no")
    assert rows[ids[2]].status == "failed"
    assert rows[ids[3]].status == "skipped"
    # the failed retry comes back after its time; the expired lease frees the 5th row
    later = now + LEASE + timedelta(minutes=6)
    clock.advance(LEASE + timedelta(minutes=6))  # leases run on the store's wall clock
    assert [i.id for i in any_store.claim_outbox(later, 10, "d2", LEASE)] == [ids[4], ids[1]]
    with pytest.raises(Conflict):
        any_store.retry_outbox(ids[0])
    retried = any_store.retry_outbox(ids[2])
    assert (retried.status, retried.attempts) == ("pending", 1)
    with pytest.raises(InvalidInput):
        any_store.retry_outbox(999_999)
    with pytest.raises(InvalidInput):
        any_store.outbox_delivered(999_999, now)


def test_listing_filters_and_pages(any_store) -> None:
    ids = fill(any_store)
    assert [i.id for i in any_store.outbox(account_id="a2")] == []
    assert [i.id for i in any_store.outbox(after=ids[1], limit=2)] == ids[2:4]
    any_store.outbox_delivered(ids[0], T0)
    assert [i.id for i in any_store.outbox(status="delivered")] == [ids[0]]


def test_notice_delivery_needs_every_recipient(any_store) -> None:
    ids = fill(any_store)
    key = "grace/started"
    assert any_store.notice_delivery("a1", "inactivity#1", key) is None
    any_store.outbox_delivered(ids[0], T0 + timedelta(minutes=1))
    assert any_store.notice_delivery("a1", "inactivity#1", key) is None
    any_store.outbox_delivered(ids[1], T0 + timedelta(minutes=5))
    assert any_store.notice_delivery("a1", "inactivity#1", key) == T0 + timedelta(minutes=5)
    assert any_store.notice_delivery("a1", "inactivity#1", "unknown/key") is None
