"""What a deletion leaves of an address, through the Engine on lapse's SQLite and PostgreSQL
store: an address retired for 30 days is refused on day 29 and accepted on day 31, by
`add_account` and by the bulk `import_accounts` alike; an import checks the retired addresses
of a whole chunk in one query and refuses that chunk whole."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from data_helpers import START
from sqlalchemy import event

from lapse.core.model import Account, Member
from lapse.errors import AddressRetired
from lapse.policy.loader import load_policy
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store.sql import SqlStore, create_db_engine

POLICY = """\
version: 1
name: retire-for-30-days
timezone: UTC
actions: [login]
kinds: [standard]
events: [closed]
flows:
  closing:
    title: Closing
    reason: the owner closed the account
    applies_to: {kind: [standard]}
    starts_on: [closed]
    irreversible: true
    waive: [deletion-without-notice]
    outcome: delete
    address: {retire_for: 30 days}
"""
ADDRESS = "owner@closed.example"


class Wired:
    def __init__(self, url: str) -> None:
        self.clock = ManualClock(START)
        self.db = create_db_engine(url)
        self.store = SqlStore(self.db, clock=self.clock.now)
        self.engine = Engine(load_policy(POLICY), store=self.store, clock=self.clock)
        self.tombstone_queries = 0
        event.listen(self.db, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "tombstones" in statement:
            self.tombstone_queries += 1

    def close_account(self, account_id: str) -> None:
        """Register the account with ADDRESS and delete it now (retired for 30 days)."""
        self.engine.add_account(account_id, kind="standard", created_at=START, address=ADDRESS)
        self.engine.event(account_id, "closed", event_id=f"close-{account_id}")
        stone = self.store.tombstone(account_id)
        assert stone is not None
        assert stone.retired_until == self.clock.now() + timedelta(days=30)


@pytest.fixture
def wired(lapse_url: str) -> Iterator[Wired]:
    made = Wired(lapse_url)
    yield made
    made.store.close()


def _accounts(names: list[str], address_of: dict[str, str]) -> list[Account]:
    return [
        Account(id=name, kind="standard", created_at=START, address=address_of.get(name))
        for name in names
    ]


def test_retired_for_30_days_refused_on_day_29_accepted_on_day_31(wired: Wired) -> None:
    wired.close_account("first")
    wired.clock.set(START + timedelta(days=29))
    with pytest.raises(AddressRetired) as caught:
        wired.engine.add_account("second", kind="standard", address=ADDRESS.upper())
    assert str(caught.value) == (
        f"address {ADDRESS} belonged to a deleted account and is retired until 2025-03-02"
    )
    with pytest.raises(AddressRetired):  # spelled otherwise: the same address
        wired.engine.import_accounts(_accounts(["second"], {"second": ADDRESS.title()}))
    assert wired.store.get("second") is None
    wired.clock.set(START + timedelta(days=31))
    wired.engine.add_account("second", kind="standard", address=ADDRESS)
    assert wired.engine.import_accounts(_accounts(["third"], {"third": f" {ADDRESS} "})) == 1
    third = wired.store.get("third")
    assert third is not None
    assert third.address == ADDRESS  # stored as add_account stores it: trimmed, lower case


def test_an_import_stores_addresses_and_member_emails_normalised(wired: Wired) -> None:
    given = Account(
        id="imported",
        kind="standard",
        created_at=START,
        address=" Owner@Imported.Example ",
        members=(Member(email="ANN@Imported.example", role="admin"),),
    )
    assert wired.engine.import_accounts([given]) == 1
    stored = wired.store.get("imported")
    assert stored is not None
    assert stored.address == "owner@imported.example"
    assert stored.members == (Member(email="ann@imported.example", role="admin"),)


def test_an_import_refuses_a_chunk_with_a_retired_address(wired: Wired) -> None:
    wired.close_account("gone")
    names = [f"acct-{i:02}" for i in range(12)]
    addresses = {name: f"{name}@ok.example" for name in names}
    addresses["acct-07"] = ADDRESS  # in the second chunk of five
    before = wired.tombstone_queries
    with pytest.raises(AddressRetired) as caught:
        wired.engine.import_accounts(_accounts(names, addresses), chunk=5)
    assert str(caught.value) == (
        f"account 'acct-07': address {ADDRESS} belonged to a deleted account and is retired "
        "until 2025-03-02; its chunk of 5 accounts was not imported"
    )
    assert wired.tombstone_queries - before == 2  # one query per chunk, not one per account
    imported = [name for name in names if wired.store.get(name) is not None]
    assert imported == names[:5]  # the first chunk went; the second was refused whole

    # without it, every chunk goes, one query each
    rest = [name for name in names[5:] if name != "acct-07"]
    before = wired.tombstone_queries
    assert wired.engine.import_accounts(_accounts(rest, addresses), chunk=5) == len(rest)
    assert wired.tombstone_queries - before == 2
