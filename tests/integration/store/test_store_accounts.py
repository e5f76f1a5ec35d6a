"""Accounts: create, load, update by difference, list, count; units are atomic."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lapse.core.model import FactEntry, LegalHold, Member
from lapse.errors import AccountExists
from lapse.store.base import Change, StaleWrite

from .helpers import DAY, T0, account, case, create, entry, plain


def test_create_and_get_round_trips_every_field(any_store) -> None:
    acc = account("a1", legal_hold=LegalHold(since=T0, by="legal", reason="subpoena"))
    with any_store.unit() as unit:
        assert unit.load("a1") is None
        unit.write(create(acc, due=T0 + DAY, state="restricted"))
    got = any_store.get("a1")
    assert got == acc
    assert [m.email for m in got.members] == [m.email for m in acc.members]  # order kept
    assert type(got.facts["contacts"].value) is int
    assert type(got.facts["rate"].value) is float
    assert type(got.facts["active"].value) is bool
    assert got.facts["expires"].value == T0 + 30 * DAY
    assert all(v.tzinfo is not None for v in got.signals.values())
    assert any_store.next_due("a1") == T0 + DAY
    assert any_store.get("nope") is None
    assert any_store.versions(["a1", "nope"]) == {"a1": 1}


def test_duplicate_create_raises_account_exists_and_writes_nothing(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1"), audit=[entry("a1")]))
    with pytest.raises(AccountExists), any_store.unit() as unit:
        unit.write(create(plain("a1", kind="test"), audit=[entry("a1", "again")]))
    assert any_store.get("a1").kind == "standard"
    assert [r.entry.kind for r in any_store.audit()] == ["case.opened"]


def test_updates_write_only_differences_and_keep_the_rest(any_store) -> None:
    acc = account("a1")
    with any_store.unit() as unit:
        unit.write(create(acc))
    changed = replace(
        acc,
        members=(Member(email="c@example.com", role="admin"), acc.members[0]),
        signals={"login": T0, "api": T0 - DAY},  # 'sent' removed, 'api' added
        facts={
            "plan": FactEntry(value="free", changed_at=T0),
            "expires": acc.facts["expires"],
        },
        cases=(case("a1"), case("a1", flow="payment", n=2)),
        case_seq=2,
        armed_from={},
        last_events={"payment_failed": T0, "renewed": T0 + DAY},
    )
    with any_store.unit() as unit:
        assert unit.load("a1") == acc
        unit.write(Change(account=changed, next_due_at=None, state="locked"))
    assert any_store.get("a1") == changed
    assert any_store.next_due("a1") is None
    assert any_store.versions(["a1"]) == {"a1": 2}


def test_write_without_load_diffs_against_the_stored_row(any_store) -> None:
    acc = account("a1")
    with any_store.unit() as unit:
        unit.write(create(acc))
    fewer = replace(acc, members=(), signals={}, facts={}, cases=())
    with any_store.unit() as unit:
        unit.write(Change(account=fewer, next_due_at=None))
        unit.write(Change(account=replace(fewer, kind="trial"), next_due_at=T0))  # twice
    assert any_store.get("a1") == replace(fewer, kind="trial")
    assert any_store.versions(["a1"]) == {"a1": 3}


def test_an_exception_inside_a_unit_leaves_nothing(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1")))

    def write_then_fail() -> None:
        with any_store.unit() as unit:
            unit.write(
                Change(
                    account=account("a1"),
                    next_due_at=T0,
                    audit=[entry("a1")],
                    event_id="e1",
                    event_name="payment_failed",
                )
            )
            unit.write(create(plain("a2")))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert any_store.get("a1") == plain("a1")
    assert any_store.get("a2") is None
    assert any_store.audit() == []
    with any_store.unit() as unit:
        assert not unit.seen_event("a1", "e1")


def test_writing_an_unknown_account_is_a_stale_write(any_store) -> None:
    with pytest.raises(StaleWrite), any_store.unit() as unit:
        unit.write(Change(account=plain("ghost"), next_due_at=None))


def test_event_ids_are_remembered(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1")))
    with any_store.unit() as unit:
        unit.load("a1")
        unit.write(
            Change(
                account=plain("a1"),
                next_due_at=None,
                event_id="evt-1",
                event_name="payment_failed",
                event_at=T0,
            )
        )
    with any_store.unit() as unit:
        assert unit.seen_event("a1", "evt-1")
        assert not unit.seen_event("a1", "evt-2")
        assert not unit.seen_event("a2", "evt-1")


def test_list_and_count_accounts(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(account("a1"), state="restricted"))
        unit.write(create(plain("a2", kind="test"), state="active"))
        unit.write(
            create(
                account("a3", cases=(case("a3", flow="payment"),)),
                state="locked",
            )
        )
        unit.write(
            create(plain("a4", legal_hold=LegalHold(since=T0, by="x", reason="y")), due=None)
        )
    everyone = any_store.list_accounts()
    assert [s.id for s in everyone] == ["a1", "a2", "a3", "a4"]
    assert everyone[0].open_flows == ("inactivity",)
    assert everyone[3].legal_hold
    assert not everyone[0].legal_hold
    assert [s.id for s in any_store.list_accounts(state="locked")] == ["a3"]
    assert [s.id for s in any_store.list_accounts(kind="test")] == ["a2"]
    assert [s.id for s in any_store.list_accounts(flow="inactivity")] == ["a1"]
    assert [s.id for s in any_store.list_accounts(after="a1", limit=2)] == ["a2", "a3"]
    assert any_store.count_by_state() == {"restricted": 1, "active": 2, "locked": 1}
    assert any_store.earliest_due() == T0
    assert any_store.get_many(["a3", "a1", "zz"]).keys() == {"a1", "a3"}


def test_deleted_accounts_keep_a_stub(any_store) -> None:
    acc = account("a1")
    with any_store.unit() as unit:
        unit.write(create(acc))
    stub = plain("a1", deleted_at=T0 + DAY)
    with any_store.unit() as unit:
        unit.load("a1")
        unit.write(Change(account=stub, next_due_at=None, state="deleted"))
    assert any_store.get("a1") == stub
    assert any_store.list_accounts(state="deleted")[0].deleted_at == T0 + DAY
