"""The applied policies: the newest row is active, the history keeps every document, the audit
entry is written with the row; open cases counted per policy version (every store)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from lapse.core.model import AuditEntry
from lapse.store.base import StoredPolicy, Tombstone
from lapse.store.memory import MemoryStore
from lapse.store.sql import SqlStore

from .helpers import DAY, T0, account, case, create, plain

Store = SqlStore | MemoryStore


def stored(version: str, digest: str, *, mode: str = "initial", at: datetime = T0) -> StoredPolicy:
    return StoredPolicy(
        name="inactivity-cleanup",
        version=version,
        digest=digest,
        source=f"version: {version}\nname: inactivity-cleanup\n# ünïcode\n",
        applied_at=at,
        applied_by="ops",
        mode=mode,  # type: ignore[arg-type]
    )


def applied(version: str) -> AuditEntry:
    return AuditEntry(
        account_id="", at=T0, kind="policy.applied", detail={"version": version, "by": "ops"}
    )


def test_the_newest_policy_is_active_and_the_history_keeps_every_one(any_store: Store) -> None:
    assert any_store.active_policy() is None
    assert any_store.active_policy_seq() == 0
    assert any_store.policies() == []
    first = any_store.record_policy(stored("1", "a" * 64), [applied("1")])
    assert first.seq >= 1
    assert any_store.active_policy() == first
    second = any_store.record_policy(
        replace(stored("2", "b" * 64, mode="replan", at=T0 + DAY), close_removed=True),
        [applied("2")],
    )
    assert second.seq > first.seq
    assert any_store.active_policy_seq() == second.seq
    active = any_store.active_policy()
    assert active == second
    assert active is not None
    assert active.close_removed
    assert active.mode == "replan"
    assert active.applied_at == T0 + DAY
    assert active.source.endswith("# ünïcode\n")
    assert any_store.policies() == [first, second]
    audit = any_store.audit()
    assert [(r.entry.kind, r.entry.account_id, r.entry.detail["version"]) for r in audit] == [
        ("policy.applied", "", "1"),
        ("policy.applied", "", "2"),
    ]
    assert any_store.verify_audit().ok


def test_open_cases_are_counted_per_version(any_store: Store) -> None:
    assert any_store.open_cases_by_version() == {}
    with any_store.unit() as unit:
        unit.write(create(account("a1", cases=(case("a1"), case("a1", flow="lock", n=2)))))
        unit.write(
            create(account("a2", cases=(case("a2", policy_version="2"),), case_seq=1), due=None)
        )
        unit.write(create(plain("a3")))
        gone = account("a4", deleted_at=T0)
        unit.write(
            create(
                gone,
                tombstone=Tombstone(
                    account_id="a4",
                    deleted_at=T0,
                    flow="inactivity",
                    case_id="inactivity#1",
                    address_hash=None,
                    address_mode="release",
                    retired_until=None,
                ),
            )
        )
    assert any_store.open_cases_by_version() == {"1": 2, "2": 1}


def test_erase_keeps_the_policies(any_store: Store) -> None:
    first = any_store.record_policy(stored("1", "a" * 64), [applied("1")])
    with any_store.unit() as unit:
        unit.write(create(account("a1")))
    any_store.erase()
    assert any_store.active_policy() == first
    assert any_store.open_cases_by_version() == {}
    assert any_store.audit() == []
