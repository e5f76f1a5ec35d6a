"""Pruning the rest of the history that only grows: in-app notifications of closed cases, and
the ids of applied events (kept only to recognise a repeated delivery)."""

from __future__ import annotations

import pytest

from lapse.errors import InvalidInput
from lapse.store.base import Change

from .helpers import DAY, T0, account, create, plain


def notifications(store, clock) -> dict[str, int]:
    """a1 (no open case): notifications of its closed case at T0, T0 + 1 day and T0 + 3 days.
    a2: one of its open case inactivity#1 at T0. Returns their ids by name."""
    with store.unit() as unit:
        unit.write(create(plain("a1")))
        unit.write(create(account("a2")))
    made = {}
    for name, account_id, at in (
        ("old", "a1", T0),
        ("older", "a1", T0 + DAY),
        ("recent", "a1", T0 + 3 * DAY),
        ("open", "a2", T0),
    ):
        clock.now = at
        note = store.add_notification(
            account_id=account_id,
            case_id="inactivity#1",
            template="inactivity-grace-started",
            subject=f"{name} subject",
            body="body",
            at=at,
        )
        made[name] = note.id
    return made


def _ids(store, account_id: str) -> set[int]:
    return {n.id for n in store.notifications(account_id)}


def test_prunes_notifications_of_closed_cases_created_before_the_cutoff(any_store, clock) -> None:
    ids = notifications(any_store, clock)
    assert any_store.prune_notifications(T0) == 0
    assert any_store.prune_notifications(T0 + 2 * DAY, dry_run=True) == 2
    assert _ids(any_store, "a1") == {ids["old"], ids["older"], ids["recent"]}
    assert any_store.prune_notifications(T0 + 2 * DAY) == 2
    assert _ids(any_store, "a1") == {ids["recent"]}
    assert _ids(any_store, "a2") == {ids["open"]}  # its case is open: it stays, however old
    assert any_store.prune_notifications(T0 + 2 * DAY) == 0


def test_prunes_notifications_in_chunks_with_progress(any_store, clock) -> None:
    notifications(any_store, clock)
    seen: list[int] = []
    assert any_store.prune_notifications(T0 + 5 * DAY, chunk=1, progress=seen.append) == 3
    assert seen[-1] == 3
    assert seen == sorted(seen)
    with pytest.raises(InvalidInput, match="chunk must be at least 1"):
        any_store.prune_notifications(T0 + 5 * DAY, chunk=0)
    assert _ids(any_store, "a2")


def events(store, clock) -> None:
    """Event ids of a1: e1 and e2 received at T0, e3 at T0 + 2 days; e4 of a2 at T0."""
    with store.unit() as unit:
        unit.write(create(plain("a1")))
        unit.write(create(plain("a2")))
    for event_id, account_id, at in (
        ("e1", "a1", T0),
        ("e2", "a1", T0),
        ("e4", "a2", T0),
        ("e3", "a1", T0 + 2 * DAY),
    ):
        clock.now = at
        with store.unit() as unit:
            unit.write(
                Change(
                    account=plain(account_id),
                    next_due_at=None,
                    event_id=event_id,
                    event_name="payment_failed",
                    event_at=at,
                )
            )


def _seen(store) -> set[str]:
    with store.unit() as unit:
        return {
            event_id
            for account_id, event_id in (("a1", "e1"), ("a1", "e2"), ("a1", "e3"), ("a2", "e4"))
            if unit.seen_event(account_id, event_id)
        }


def test_forgets_event_ids_received_before_the_cutoff(any_store, clock) -> None:
    events(any_store, clock)
    assert any_store.prune_events(T0) == 0
    assert any_store.prune_events(T0 + DAY, dry_run=True) == 3
    assert _seen(any_store) == {"e1", "e2", "e3", "e4"}
    seen: list[int] = []
    assert any_store.prune_events(T0 + DAY, chunk=2, progress=seen.append) == 3
    assert seen[-1] == 3
    assert seen == sorted(seen)
    assert _seen(any_store) == {"e3"}
    assert any_store.prune_events(T0 + DAY) == 0


def test_a_bad_chunk_forgets_nothing(any_store, clock) -> None:
    events(any_store, clock)
    with pytest.raises(InvalidInput, match="chunk must be at least 1"):
        any_store.prune_events(T0 + DAY, chunk=0)
    assert _seen(any_store) == {"e1", "e2", "e3", "e4"}
