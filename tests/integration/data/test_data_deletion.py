"""Deletion and purge through the SQL connector, on SQLite and PostgreSQL: nothing of the account
is left anywhere (by independent queries), nothing of any other account changed (checksums), the
receipt counts what existed, lapse's own rows of the account are erased, and the audit chain
carries the receipt's hash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import data_host
import pytest
from data_helpers import START, Wired
from sqlalchemy import create_engine, text

from lapse.data import receipts
from lapse.data.receipts import verify_store

OTHERS = ["keep-1", "keep-2"]


def _standard(wired: Wired, account_id: str) -> None:
    """A standard account without campaigns, inactive for 12 months five days from now."""
    wired.engine.add_account(
        account_id,
        kind="standard",
        created_at=START - timedelta(days=360),
        address=f"owner@{account_id}.example",
        members=[(f"a@{account_id}.example", "admin"), (f"b@{account_id}.example", "admin")],
    )
    wired.engine.report_signals([(account_id, "login", START - timedelta(days=1))])
    wired.engine.set_fact(account_id, "subscription_active", False)


def test_deletion_leaves_nothing_and_changes_nothing_else(
    wire: Callable[..., Wired], host_url: str, lapse_url: str
) -> None:
    wired = wire("inactivity-cleanup", batch_size=7)
    expected = data_host.populate(host_url, "gone", contacts_n=15, actions=3)
    for other in OTHERS:
        data_host.populate(host_url, other, contacts_n=9)
        wired.engine.add_account(other, kind="standard", created_at=START)
        wired.engine.report_signals([(other, "campaign_sent", START)])
    _standard(wired, "gone")
    before = data_host.checksums(host_url, OTHERS)
    # the grace period: notices to both admins, by email and in the app
    wired.engine.run_until("20 days")
    assert wired.engine.status("gone").state == "restricted"
    assert wired.store.notifications("gone")
    assert wired.engine.store.tombstone("gone") is None
    wired.engine.run_until("20 days")

    # nothing of the account is left in any table; nothing else changed
    assert all(n == 0 for n in data_host.counts(host_url, "gone").values())
    assert data_host.checksums(host_url, OTHERS) == before

    # the receipt counts exactly the rows that existed, per table, children before parents
    stone = wired.store.tombstone("gone")
    assert stone is not None
    assert stone.address_mode == "release"
    body = stone.receipt
    removed = {item["location"]: item["rows"] for item in body["locations"]}
    assert removed == expected
    assert body["rows"] == sum(expected.values())
    assert body["verified"] is True
    assert body["kind"] == "delete"
    assert body["flow"] == "inactivity"
    assert body["policy"]["name"] == "inactivity-cleanup"
    assert body["lapse"]["members"] == 2
    assert body["lapse"]["notifications"] == 2
    order = [item["location"] for item in body["locations"]]
    assert order.index("contact_actions") < order.index("contacts") < order.index("accounts")
    assert order.index("campaign_timelines") < order.index("campaigns")
    assert order.index("reports") < order.index("campaigns")
    assert receipts.check(body) == []
    stored = wired.store.receipt(body["id"])
    assert stored is not None
    assert stored.body == body
    assert stored.hash == body["hash"]

    # the audit entry carries the receipt's hash; the chain and the receipts verify
    entries = [r.entry for r in wired.store.audit(account_id="gone", limit=1000)]
    tombstoned = [e for e in entries if e.kind == "account.tombstoned"]
    assert len(tombstoned) == 1
    assert tombstoned[0].detail["receipt_hash"] == body["hash"]
    assert wired.store.verify_audit().ok
    assert verify_store(wired.store) == (1, [])

    # lapse's own rows: only the tombstone and the stub remain
    account = wired.store.get("gone")
    assert account is not None
    assert account.deleted_at is not None
    assert not account.members
    assert not account.signals
    assert not account.facts
    assert account.address is None
    assert not account.cases
    assert wired.store.notifications("gone") == []
    engine = create_engine(lapse_url)
    try:
        with engine.connect() as conn:
            for table in ("members", "signals", "facts", "events", "cases", "notifications"):
                left = conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE account_id = 'gone'")
                ).scalar_one()
                assert left == 0, table
            notices = conn.execute(
                text(
                    "SELECT recipient, payload FROM outbox WHERE account_id = 'gone' "
                    "AND kind = 'notice'"
                )
            ).all()
    finally:
        engine.dispose()
    assert len(notices) == 6  # two notices, two admins by email, one in-app each
    assert all(recipient is None for recipient, _ in notices)
    assert all("example" not in str(payload) for _, payload in notices)


def test_deletion_is_idempotent_and_its_receipt_is_written_once(
    wire: Callable[..., Wired], host_url: str
) -> None:
    wired = wire("inactivity-cleanup")
    expected = data_host.populate(host_url, "t1")
    wired.engine.add_account("t1", kind="test", created_at=START)
    wired.engine.run_until("31 days")
    stone = wired.store.tombstone("t1")
    assert stone is not None
    # the host's handler runs again for the same effect (a redelivered outbox row): nothing is
    # deleted twice and the run reports the same counts
    item = next(i for i in wired.store.outbox(account_id="t1", limit=100) if i.channel == "data")
    again = wired.data.delete(item.effect, START)  # type: ignore[arg-type]
    assert {i["location"]: i["rows"] for i in again["locations"]} == expected  # type: ignore[index, union-attr]
    # the dispatcher itself skips a row whose account is gone
    assert wired.engine._carry_out(item, START) == "the account no longer exists"
    assert len(wired.store.receipts(account_id="t1")) == 1


def test_purge_removes_only_its_categories(wire: Callable[..., Wired], host_url: str) -> None:
    wired = wire("account-locks")
    expected = data_host.populate(host_url, "locked")
    for other in OTHERS:
        data_host.populate(host_url, other)
        wired.engine.add_account(other, kind="standard", created_at=START)
    wired.engine.add_account(
        "locked", kind="standard", created_at=START, members=[("a@locked.example", "admin")]
    )
    purged = {"campaign_timelines", "reports", "contact_actions"}
    kept = [t for t, c in data_host.CATEGORY.items() if c not in purged]
    before_others = data_host.checksums(host_url, OTHERS)
    before_kept = {
        key: value
        for key, value in data_host.checksums(host_url, ["locked"]).items()
        if key[0] in kept
    }
    wired.engine.event("locked", "payment_failed", event_id="p1")
    wired.engine.run_until("5 months")
    assert data_host.counts(host_url, "locked") == expected  # nothing before six months
    wired.engine.run_until("32 days")

    left = data_host.counts(host_url, "locked")
    assert {t: n for t, n in left.items() if data_host.CATEGORY[t] in purged} == {
        "contact_actions": 0,
        "campaign_timelines": 0,
        "reports": 0,
    }
    after = data_host.checksums(host_url, ["locked"])
    assert {k: v for k, v in after.items() if k[0] in kept} == before_kept
    assert data_host.checksums(host_url, OTHERS) == before_others

    (receipt,) = wired.store.receipts(account_id="locked")
    body: dict[str, Any] = dict(receipt.body)
    assert body["kind"] == "purge"
    assert sorted(body["categories"]) == sorted(purged)
    assert {i["location"]: i["rows"] for i in body["locations"]} == {
        t: expected[t] for t in ("contact_actions", "campaign_timelines", "reports")
    }
    assert {i["category"] for i in body["locations"]} == purged
    audit = [r.entry for r in wired.store.audit(account_id="locked", limit=1000)]
    (entry,) = [e for e in audit if e.kind == "purge.receipt"]
    assert entry.detail["receipt_hash"] == body["hash"] == receipt.hash
    assert verify_store(wired.store) == (1, [])
    # still locked, still there: a purge is not a deletion
    assert wired.engine.status("locked").state == "locked"
    assert wired.store.tombstone("locked") is None


def test_a_tampered_receipt_is_reported(wire: Callable[..., Wired], host_url: str) -> None:
    wired = wire("inactivity-cleanup")
    data_host.populate(host_url, "t1")
    wired.engine.add_account("t1", kind="test", created_at=START)
    wired.engine.run_until("31 days")
    (receipt,) = wired.store.receipts()
    engine = wired.store.engine
    body = dict(receipt.body)
    body["rows"] = 1
    with engine.begin() as conn:
        from lapse.store.tables import receipts as receipts_table

        conn.execute(
            receipts_table.update().where(receipts_table.c.id == receipt.id).values(body=body)
        )
    checked, problems = verify_store(wired.store)
    assert checked == 1
    assert problems == [
        f"receipt {receipt.id} (account t1): its content hashes to {receipts.digest(body)}, "
        f"not to its stated hash {receipt.hash}"
    ]


@pytest.mark.parametrize("preset", ["inactivity-cleanup"])
def test_a_legal_hold_placed_mid_deletion_stops_it(
    wire: Callable[..., Wired], host_url: str, preset: str
) -> None:
    wired = wire(preset, batch_size=5)
    expected = data_host.populate(host_url, "held")
    wired.engine.add_account("held", kind="test", created_at=START)
    calls = {"n": 0}
    original = wired.connector.delete

    def delete_then_hold(account_id: str, location: Any, ledger: Any) -> None:
        original(account_id, location, ledger)
        calls["n"] += 1
        if calls["n"] == 2:  # after two tables, a hold arrives (from "another request")
            wired.engine.deliver_inline = False
            wired.engine.legal_hold("held", on=True, by="legal", reason="litigation")
            wired.engine.deliver_inline = True

    wired.connector.delete = delete_then_hold  # type: ignore[method-assign]
    wired.engine.run_until("31 days")
    assert wired.store.tombstone("held") is None
    left = data_host.counts(host_url, "held")
    assert sum(left.values()) > 0  # stopped between two tables
    wired.connector.delete = original  # type: ignore[method-assign]
    wired.engine.legal_hold("held", on=False, by="legal", reason="settled")
    wired.engine.run_until("1 day")
    stone = wired.store.tombstone("held")
    assert stone is not None
    assert {i["location"]: i["rows"] for i in stone.receipt["locations"]} == expected
    assert all(n == 0 for n in data_host.counts(host_url, "held").values())
