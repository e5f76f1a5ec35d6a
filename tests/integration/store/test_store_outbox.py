"""The outbox: claims, delivery results, retries, listing, and when a notice was delivered."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from lapse.errors import Conflict, InvalidInput
from lapse.store.base import Change, NotificationDraft

from .helpers import DAY, T0, create, draft, effects, entry, notice, plain

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
    assert any_store.outbox_delivered(ids[0], now, worker="d1")
    assert any_store.outbox_failed(ids[1], "smtp said no", now + timedelta(minutes=10), worker="d1")
    assert any_store.outbox_failed(ids[2], "gone for good", None, worker="d1")
    assert any_store.outbox_skipped(ids[3], "case closed", worker="d1")
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
        any_store.outbox_delivered(999_999, now, worker="d2")


def test_deliveries_and_data_runs_are_claimed_apart(any_store) -> None:
    """The worker's loops claim deletions and purges apart from notices and host effects."""
    ids = fill(any_store)
    now = T0 + timedelta(hours=1)
    data = any_store.claim_outbox(now, 10, "d1", LEASE, rows="data")
    assert [(i.id, i.channel) for i in data] == [(ids[3], "data"), (ids[4], "data")]
    deliveries = any_store.claim_outbox(now, 10, "d2", LEASE, rows="deliveries")
    assert [i.id for i in deliveries] == ids[:3]
    assert {i.channel for i in deliveries} == {"email", "host"}
    assert any_store.claim_outbox(now, 10, "d3", LEASE) == []  # every ready row is held
    # one at a time, oldest first, as the data loop claims them
    any_store.outbox_failed(ids[3], "busy", now, worker="d1")
    any_store.outbox_failed(ids[4], "busy", now, worker="d1")
    [first] = any_store.claim_outbox(now, 1, "d4", LEASE, rows="data")
    assert first.id == ids[3]


def test_an_unknown_row_selection_is_refused(any_store) -> None:
    ids = fill(any_store)
    with pytest.raises(InvalidInput, match="rows: 'notices' is not one of 'all', 'deliveries'"):
        any_store.claim_outbox(T0 + timedelta(hours=1), 10, "d1", LEASE, rows="notices")
    assert [i.id for i in any_store.claim_outbox(T0 + timedelta(hours=1), 10, "d1", LEASE)] == (
        ids[:5]
    )  # the refusal claimed nothing


def test_listing_filters_and_pages(any_store) -> None:
    ids = fill(any_store)
    assert [i.id for i in any_store.outbox(account_id="a2")] == []
    assert [i.id for i in any_store.outbox(after=ids[1], limit=2)] == ids[2:4]
    any_store.claim_outbox(T0, 10, "d1", LEASE)
    any_store.outbox_delivered(ids[0], T0, worker="d1")
    assert [i.id for i in any_store.outbox(status="delivered")] == [ids[0]]


def test_notice_delivery_needs_every_recipient(any_store) -> None:
    ids = fill(any_store)
    key = "grace/started"
    assert any_store.notice_delivery("a1", "inactivity#1", key) is None
    any_store.claim_outbox(T0, 10, "d1", LEASE)
    any_store.outbox_delivered(ids[0], T0 + timedelta(minutes=1), worker="d1")
    assert any_store.notice_delivery("a1", "inactivity#1", key) is None
    any_store.outbox_delivered(ids[1], T0 + timedelta(minutes=5), worker="d1")
    assert any_store.notice_delivery("a1", "inactivity#1", key) == T0 + timedelta(minutes=5)
    assert any_store.notice_delivery("a1", "inactivity#1", "unknown/key") is None


MINUTE = timedelta(minutes=1)


def test_only_the_worker_holding_the_claim_writes_a_result(any_store, clock) -> None:
    ids = fill(any_store)
    now = T0 + timedelta(hours=1)
    any_store.claim_outbox(now, 10, "d1", LEASE)
    clock.advance(LEASE + MINUTE)  # d1 hangs past its lease...
    taken = any_store.claim_outbox(now, 10, "d2", LEASE)  # ...and d2 takes its rows over
    assert [i.id for i in taken] == ids[:5]
    assert any_store.outbox_delivered(ids[0], now, worker="d2")
    # d1 comes back: none of its results lands on d2's rows
    assert not any_store.outbox_failed(ids[0], "timed out", now + MINUTE, worker="d1")
    assert not any_store.outbox_failed(ids[1], "timed out", None, worker="d1")
    assert not any_store.outbox_delivered(ids[1], now, worker="d1")
    assert not any_store.outbox_skipped(ids[2], "case closed", worker="d1")
    assert not any_store.outbox_deferred(ids[3], now + MINUTE, "later", worker="d1")
    rows = {i.id: i for i in any_store.outbox()}
    assert (rows[ids[0]].status, rows[ids[0]].attempts, rows[ids[0]].last_error) == (
        "delivered",
        1,
        None,
    )
    assert [(rows[i].status, rows[i].attempts, rows[i].last_error) for i in ids[1:4]] == [
        ("pending", 0, None)
    ] * 3
    # the rows are still d2's, and a row nobody claimed takes no result
    assert any_store.outbox_failed(ids[1], "smtp said no", now + MINUTE, worker="d2")
    assert not any_store.outbox_delivered(ids[5], now, worker="d2")
    # a worker late past its lease, whose rows nobody took over, still records its result
    clock.advance(LEASE + MINUTE)
    assert any_store.outbox_skipped(ids[2], "case closed", worker="d2")


def _dispatch(calls: list[tuple[str, object]]):
    """A notice step that records its calls and writes a visible change."""

    def step(account, delivered):
        calls.append((account.id, delivered))
        return Change(
            account=replace(account, case_seq=account.case_seq + 1),
            next_due_at=T0 + DAY,
            audit=[entry(account.id, "notice.dispatched")],
        )

    return step


NOTE = NotificationDraft(
    account_id="a1", case_id="inactivity#1", template="started", subject="s", body="b", at=T0
)


def test_a_notice_row_is_delivered_with_its_dispatch_and_notification(any_store) -> None:
    ids = fill(any_store)  # ids[0] and ids[1]: the two recipients of grace/started
    now = T0 + timedelta(hours=1)
    any_store.claim_outbox(now, 10, "d1", LEASE)
    calls: list[tuple[str, object]] = []
    assert any_store.notice_delivered(
        ids[0], now, worker="d1", step=_dispatch(calls), notification=NOTE
    )
    assert calls == []  # the other recipient's row is still out
    assert [n.subject for n in any_store.notifications("a1")] == ["s"]
    assert any_store.notice_delivered(ids[1], now + MINUTE, worker="d1", step=_dispatch(calls))
    assert calls == [("a1", now + MINUTE)]  # once, with the last row's time
    assert any_store.get("a1").case_seq == 1
    assert any_store.next_due("a1") == T0 + DAY
    assert any_store.audit(account_id="a1")[-1].entry.kind == "notice.dispatched"
    # delivered again by a worker without the claim: nothing changes, no second notification
    again = any_store.notice_delivered(
        ids[0], now, worker="d2", step=_dispatch(calls), notification=NOTE
    )
    assert not again
    assert len(any_store.notifications("a1")) == 1
    assert len(calls) == 1
    with pytest.raises(InvalidInput, match="is not a notice"):
        any_store.notice_delivered(ids[2], now, worker="d1", step=_dispatch(calls))
    with pytest.raises(InvalidInput, match="no outbox row"):
        any_store.notice_delivered(999_999, now, worker="d1", step=_dispatch(calls))


def test_a_crash_in_the_dispatch_step_leaves_the_row_undelivered(any_store) -> None:
    ids = fill(any_store)
    now = T0 + timedelta(hours=1)
    any_store.claim_outbox(now, 10, "d1", LEASE)
    calls: list[tuple[str, object]] = []
    assert any_store.notice_delivered(ids[0], now, worker="d1", step=_dispatch(calls))

    def killed(account, delivered):
        raise RuntimeError("the process died between the delivery and the dispatch")

    with pytest.raises(RuntimeError):
        any_store.notice_delivered(ids[1], now, worker="d1", step=killed, notification=NOTE)
    # nothing of it stayed: the row is pending and still claimed, no notification, no dispatch
    row = {i.id: i for i in any_store.outbox()}[ids[1]]
    assert (row.status, row.attempts, row.delivered_at) == ("pending", 0, None)
    assert any_store.notifications("a1") == []
    assert any_store.notice_delivery("a1", "inactivity#1", "grace/started") is None
    assert any_store.get("a1").case_seq == 0
    # delivered again, it completes: the row, the notification and the dispatch together
    assert any_store.notice_delivered(
        ids[1], now, worker="d1", step=_dispatch(calls), notification=NOTE
    )
    assert calls == [("a1", now)]
    assert len(any_store.notifications("a1")) == 1
    assert any_store.get("a1").case_seq == 1


def test_a_retry_and_its_audit_entry_are_written_together(any_store) -> None:
    ids = fill(any_store)
    now = T0 + timedelta(hours=1)
    any_store.claim_outbox(now, 10, "d1", LEASE)
    any_store.outbox_failed(ids[0], "550 no mailbox x@example.com", None, worker="d1")
    asked = entry("a1", "outbox.retried", by="ops")
    assert any_store.retry_outbox(ids[0], audit=[asked]).status == "pending"
    assert any_store.audit(account_id="a1")[-1].entry.detail == {"by": "ops"}
    with pytest.raises(Conflict):
        any_store.retry_outbox(ids[0], audit=[asked])
    kinds = [r.entry.kind for r in any_store.audit(account_id="a1")]
    assert kinds.count("outbox.retried") == 1


def test_a_unit_marks_a_claimed_row_delivered_with_its_writes(any_store, clock) -> None:
    ids = fill(any_store)
    now = T0 + timedelta(hours=1)
    any_store.claim_outbox(now, 10, "d1", LEASE)
    delete_row, purge_row = ids[4], ids[3]

    def failing_unit() -> None:
        with any_store.unit() as unit:
            assert unit.delivered(delete_row, now, worker="d1")
            raise RuntimeError("the unit fails after marking")

    # undone with its unit: the row stays pending and d1's
    with pytest.raises(RuntimeError, match="fails after marking"):
        failing_unit()
    assert {i.id: i.status for i in any_store.outbox()}[delete_row] == "pending"
    # the claim's holder marks, another worker does not; an unknown row takes no mark
    with any_store.unit() as unit:
        assert not unit.delivered(delete_row, now, worker="d2")
        assert not unit.delivered(999_999, now, worker="d1")
        unit.write(Change(account=replace(plain("a1"), kind="gone"), next_due_at=None))
        assert unit.delivered(delete_row, now, worker="d1")
    rows = {i.id: i for i in any_store.outbox()}
    assert (rows[delete_row].status, rows[delete_row].delivered_at, rows[delete_row].attempts) == (
        "delivered",
        now,
        1,
    )
    assert any_store.get("a1").kind == "gone"  # written in the same unit
    # a delivered row is not marked again
    with any_store.unit() as unit:
        assert not unit.delivered(delete_row, now + MINUTE, worker="d1")
        assert unit.delivered(purge_row, now + MINUTE, worker="d1")
    rows = {i.id: i for i in any_store.outbox()}
    assert rows[delete_row].delivered_at == now
    assert (rows[purge_row].status, rows[purge_row].delivered_at) == ("delivered", now + MINUTE)
    # d1 still holds its other rows (only the one due tomorrow is free to claim)
    assert [i.id for i in any_store.claim_outbox(now + DAY, 10, "d2", LEASE)] == [ids[5]]
    # a pending row nobody holds (its last attempt released it) is marked by whoever finished
    # its work; one another worker holds is not
    assert any_store.outbox_failed(ids[5], "run claimed elsewhere", now + DAY, worker="d2")
    with any_store.unit() as unit:
        assert unit.delivered(ids[5], now + DAY, worker="d1")
    [row5] = [i for i in any_store.outbox() if i.id == ids[5]]
    assert (row5.status, row5.attempts) == ("delivered", 2)


def test_the_holder_extends_its_claim(any_store, clock) -> None:
    ids = fill(any_store)
    now = T0 + timedelta(hours=1)
    any_store.claim_outbox(now, 10, "d1", LEASE)
    clock.advance(LEASE - MINUTE)
    assert any_store.extend_outbox_claim(ids[4], "d1", LEASE)  # a long deletion renews it
    assert not any_store.extend_outbox_claim(ids[4], "d2", LEASE)  # not d2's to renew
    assert not any_store.extend_outbox_claim(ids[5], "d1", LEASE)  # nobody claimed it
    assert not any_store.extend_outbox_claim(999_999, "d1", LEASE)
    clock.advance(2 * MINUTE)  # d1's first lease is over; only the renewed row is still held
    taken = {i.id for i in any_store.claim_outbox(now, 10, "d2", LEASE)}
    assert taken == set(ids[:4])
    assert any_store.outbox_delivered(ids[4], now, worker="d1")
    assert not any_store.extend_outbox_claim(ids[4], "d1", LEASE)  # delivered: nothing to hold
