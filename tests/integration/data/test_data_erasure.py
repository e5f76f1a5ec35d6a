"""After a deletion nothing personal of the account is left in lapse's own database, on SQLite and
PostgreSQL: every text and JSON column of every table is scanned for the members' emails, the
account's address and (released address) its SHA-256. The emails reach lapse's rows in the
usual ways first: notices to every admin, and a transport that refused a recipient once (the
outbox keeps the error, which names the address) before it took it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import data_host
from data_helpers import START
from sqlalchemy import MetaData, create_engine, select

from lapse.core.model import NoticeEffect
from lapse.data import ConnectorDataHandler, SqlTables
from lapse.errors import DeliveryError
from lapse.policy import load_preset
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store.base import OutboxItem
from lapse.store.memory import MemoryStore
from lapse.store.sql import SqlStore, create_db_engine

EMAILS = ["a@gone.example", "b@gone.example", "m@gone.example"]
ADDRESS = "owner@gone.example"


class RefusesOnce:
    """An email transport that refuses each recipient once (an SMTP refusal naming them, as
    aiosmtplib reports it: temporary, or permanent for `permanent`), then takes the notice."""

    def __init__(self, permanent: frozenset[str] = frozenset()) -> None:
        self.permanent = permanent
        self.refused: set[str] = set()
        self.sent: list[str] = []

    async def deliver(self, item: OutboxItem, account: object) -> None:
        to = item.recipient or ""
        if to not in self.refused:
            self.refused.add(to)
            if to in self.permanent:
                raise DeliveryError(f"recipient refused: {to}: 550 5.1.1 <{to}>", permanent=True)
            raise DeliveryError(f"recipient refused: {to}: 451 4.7.1 try again later")
        self.sent.append(to)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value).decode("utf-8", "replace")
    elif isinstance(value, dict | list | tuple):
        yield json.dumps(value, default=str, ensure_ascii=False)
    elif value is not None:
        yield str(value)


def _scan(url: str, needles: list[str]) -> list[str]:
    """Every (table, column) whose value contains one of `needles`, over every row."""
    engine = create_engine(url)
    found = []
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    for column, value in row.items():
                        for text in _strings(value):
                            found.extend(
                                f"{table.name}.{column}: {needle}"
                                for needle in needles
                                if needle in text
                            )
    finally:
        engine.dispose()
    return found


def test_nothing_personal_survives_a_deletion(lapse_url: str, host_url: str) -> None:
    clock = ManualClock(START)
    store = SqlStore(create_db_engine(lapse_url), clock=clock.now)
    data = ConnectorDataHandler([SqlTables("app", host_url, data_host.registered())])
    policy = load_preset("inactivity-cleanup")  # address: release
    email = RefusesOnce(permanent=frozenset({EMAILS[1]}))
    engine = Engine(policy, store=store, clock=clock, data=data, channels={"email": email})
    try:
        data_host.populate(host_url, "gone", contacts_n=5)
        engine.add_account(
            "gone",
            kind="standard",
            created_at=START - timedelta(days=360),
            address=ADDRESS,
            members=[(EMAILS[0], "admin"), (EMAILS[1], "admin"), (EMAILS[2], "member")],
        )
        engine.set_fact("gone", "subscription_active", False)
        engine.run_until("20 days")
        # the emails are in lapse's rows now, the refusals included
        assert sorted(email.refused) == EMAILS[:2]
        assert any("outbox.last_error" in hit for hit in _scan(lapse_url, EMAILS))
        # the permanent refusal failed its row; an admin retries it (the audit records that,
        # and the audit log outlives the deletion)
        failed = [row for row in store.outbox(limit=100) if row.status == "failed"]
        assert [row.recipient for row in failed] == [EMAILS[1]]
        engine.retry_outbox(failed[0].id, by="ops")
        engine.run_until("30 days")
        stone = store.tombstone("gone")
        assert stone is not None
        assert stone.address_mode == "release"
        # a released address keeps no hash either: nobody can test guesses against it
        assert stone.address_hash is None
        digest = hashlib.sha256(ADDRESS.encode()).hexdigest()
        needles = [*EMAILS, ADDRESS, digest]
        assert _scan(lapse_url, needles) == []
        assert sorted(set(email.sent)) == EMAILS[:2]
        # the address may register again at once (release)
        engine.add_account("again", kind="standard", created_at=clock.now(), address=ADDRESS)
    finally:
        data.close()
        store.close()


def test_a_retired_address_keeps_only_its_hash(lapse_url: str, host_url: str) -> None:
    """The retire mode needs the hash to refuse the address; the address itself is gone."""
    clock = ManualClock(START)
    store = SqlStore(create_db_engine(lapse_url), clock=clock.now)
    data = ConnectorDataHandler([SqlTables("app", host_url, data_host.registered())])
    engine = Engine(load_preset("account-locks"), store=store, clock=clock, data=data)
    try:
        data_host.populate(host_url, "gone", contacts_n=3)
        engine.add_account("gone", kind="standard", created_at=START, address=ADDRESS)
        engine.event("gone", "tos_violation", event_id="t1")
        engine.run_until("1 days")
        stone = store.tombstone("gone")
        assert stone is not None
        assert stone.address_mode == "retire"
        assert stone.address_hash == hashlib.sha256(ADDRESS.encode()).hexdigest()
        assert _scan(lapse_url, [ADDRESS]) == []
    finally:
        data.close()
        store.close()


def test_the_memory_store_erases_the_same() -> None:
    """lapse.testing's in-memory store (for users' tests) forgets the same: no outbox row of the
    account keeps an error or a recipient, and the released address keeps no hash."""
    clock = ManualClock(START)
    store = MemoryStore(clock=clock.now)
    email = RefusesOnce()
    engine = Engine(
        load_preset("inactivity-cleanup"), store=store, clock=clock, channels={"email": email}
    )
    engine.add_account(
        "gone",
        kind="standard",
        created_at=START - timedelta(days=360),
        address=ADDRESS,
        members=[(EMAILS[0], "admin"), (EMAILS[1], "admin")],
    )
    engine.set_fact("gone", "subscription_active", False)
    engine.run_until("20 days")
    assert any(row.last_error for row in store.outbox(limit=100))
    engine.run_until("30 days")
    stone = store.tombstone("gone")
    assert stone is not None
    assert stone.address_hash is None
    rows = store.outbox(limit=100)
    assert rows
    assert all(row.last_error is None for row in rows)
    assert all(row.recipient is None for row in rows if isinstance(row.effect, NoticeEffect))
