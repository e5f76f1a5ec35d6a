"""Tombstones (retire / release), in-app notifications, API tokens, errors, open_store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from lapse.core.model import AuditEntry
from lapse.errors import InvalidInput
from lapse.store import default_sqlite_url, open_store
from lapse.store.base import Change, StoreError, Tombstone, address_hash
from lapse.store.memory import MemoryStore
from lapse.store.migrate import current_revision, head_revision
from lapse.store.sql import SqlStore

from .helpers import DAY, T0, account, create, plain


def bury(store, account_id: str, address: str, mode: str, until=None) -> Tombstone:
    stone = Tombstone(
        account_id=account_id,
        deleted_at=T0,
        flow="inactivity",
        case_id="inactivity#1",
        address_hash=address_hash(address),
        address_mode=mode,
        retired_until=until,
        receipt={"rows": {"campaigns": 12}, "hash": "abc", "at": T0},
    )
    with store.unit() as unit:
        unit.write(create(account(account_id, address=address)))
    with store.unit() as unit:
        unit.load(account_id)
        unit.write(
            Change(
                account=plain(account_id, deleted_at=T0),
                next_due_at=None,
                state="deleted",
                tombstone=stone,
            )
        )
    return stone


def test_tombstones_retire_and_release_addresses(any_store) -> None:
    stone = bury(any_store, "a1", "Old@Example.com", "retire")
    bury(any_store, "a2", "free@example.com", "release")
    bury(any_store, "a3", "later@example.com", "retire", until=T0 + 30 * DAY)
    assert any_store.tombstone("a1") == stone
    assert any_store.tombstone("nope") is None
    assert any_store.retired(" old@example.COM ", T0) == stone
    assert any_store.retired("free@example.com", T0) is None
    assert any_store.retired("later@example.com", T0 + DAY).account_id == "a3"
    assert any_store.retired("later@example.com", T0 + 31 * DAY) is None
    assert any_store.get("a1").deleted_at == T0
    assert any_store.get("a1").members == ()


def test_notifications_newest_first(any_store) -> None:
    first = any_store.add_notification(
        account_id="a1", case_id="c", template="t", subject="s1", body="b1", at=T0
    )
    second = any_store.add_notification(
        account_id="a1", case_id="c", template="t", subject="s2", body="b2", at=T0 + DAY
    )
    any_store.add_notification(
        account_id="a2", case_id="c", template="t", subject="x", body="x", at=T0
    )
    assert any_store.notifications("a1") == [second, first]
    assert any_store.notifications("a1", unread_only=True) == [second, first]
    assert first.id != second.id


def test_tokens_are_stored_hashed(any_store) -> None:
    info, secret = any_store.create_token(name="ci", scopes=["read", "write"], now=T0)
    assert info.scopes == ("read", "write")
    checked = any_store.verify_token(secret, T0 + DAY)
    assert checked is not None
    assert checked.id == info.id
    assert any_store.verify_token(secret + "x", T0) is None
    assert any_store.list_tokens()[0].last_used_at == T0 + DAY
    any_store.revoke_token(info.id, T0 + 2 * DAY)
    assert any_store.verify_token(secret, T0 + 3 * DAY) is None
    assert any_store.list_tokens()[0].revoked_at == T0 + 2 * DAY
    with pytest.raises(InvalidInput):
        any_store.revoke_token("nope", T0)
    if isinstance(any_store, SqlStore):
        with any_store.engine.connect() as conn:
            dump = " ".join(str(row) for row in conn.execute(text("SELECT * FROM api_tokens")))
        assert secret not in dump
        assert secret.split("_")[-1] not in dump


def test_erase_keeps_only_the_tokens(any_store) -> None:
    # a simulation on a controlled clock starts over (POST /v1/clock/reset)
    bury(any_store, "gone", "gone@example.com", "retire")
    with any_store.unit() as unit:
        unit.write(create(account("kept-id"), event_id="e1", event_name="payment_failed"))
    any_store.add_notification(
        account_id="kept-id", case_id="c", template="t", subject="s", body="b", at=T0
    )
    info, secret = any_store.create_token(name="ci", scopes=["admin"], now=T0)
    any_store.append_audit([AuditEntry(account_id="kept-id", at=T0, kind="account.noted")])

    any_store.erase()

    assert any_store.get("kept-id") is None
    assert any_store.get("gone") is None
    assert any_store.tombstone("gone") is None
    assert any_store.retired("gone@example.com", T0) is None
    assert any_store.notifications("kept-id") == []
    assert any_store.outbox() == []
    assert any_store.audit() == []
    assert any_store.earliest_due() is None
    assert any_store.verify_token(secret, T0).id == info.id
    # the ids and event ids are free again and the audit chain starts from genesis
    with any_store.unit() as unit:
        assert not unit.seen_event("kept-id", "e1")
        unit.write(create(account("kept-id")))
    any_store.append_audit([AuditEntry(account_id="kept-id", at=T0, kind="account.noted")])
    [record] = any_store.audit()
    assert (record.seq, record.prev_hash) == (1, "0" * 64)
    assert any_store.verify_audit().ok


def test_driver_errors_become_store_errors(store: SqlStore) -> None:
    bury(store, "a1", "x@example.com", "retire")
    second = Change(
        account=plain("a1", deleted_at=T0), next_due_at=None, tombstone=store.tombstone("a1")
    )

    def bury_again() -> None:
        with store.unit() as unit:
            unit.load("a1")
            unit.write(second)

    with pytest.raises(StoreError, match="tombstones"):  # a second tombstone for a1
        bury_again()
    assert store.get("a1") is not None  # the unit rolled back, the store still works
    with pytest.raises(InvalidInput, match="time zone"):
        store.add_notification(
            account_id="a1",
            case_id="c",
            template="t",
            subject="s",
            body="b",
            at=T0.replace(tzinfo=None),
        )


def test_open_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAPSE_DATA_DIR", str(tmp_path / "data"))
    assert default_sqlite_url() == f"sqlite:///{tmp_path / 'data' / 'lapse.db'}"
    store = open_store()
    assert isinstance(store, SqlStore)
    assert current_revision(default_sqlite_url()) == head_revision()
    with store.unit() as unit:
        unit.write(create(plain("a1")))
    store.close()
    again = open_store(default_sqlite_url())  # migrating an up-to-date database is a no-op
    assert isinstance(again, SqlStore)
    assert again.get("a1") == plain("a1")
    again.close()
    assert isinstance(open_store("memory://"), MemoryStore)
    monkeypatch.delenv("LAPSE_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_sqlite_url().endswith("/xdg/lapse/lapse.db")
    with pytest.raises(InvalidInput):
        open_store("mysql://nope", migrate=False)


def test_leases_run_on_the_wall_clock_even_when_lifecycle_time_stands_still(
    any_store, clock
) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1"), due=T0))
    lease = timedelta(seconds=10)
    # the lifecycle time passed to claim_due stays at T0 (a frozen ManualClock); the store's
    # wall clock (here the test clock) moves, and a dead worker's claim is taken over
    assert any_store.claim_due(T0, 1, "w", lease) == ["a1"]
    clock.advance(timedelta(seconds=10))
    assert any_store.claim_due(T0, 1, "x", lease) == []
    clock.advance(timedelta(seconds=1))
    assert any_store.claim_due(T0, 1, "x", lease) == ["a1"]
