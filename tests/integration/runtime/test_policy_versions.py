"""Policy versions on SQLite and PostgreSQL: the active policy in the store, starting with a
changed policy, `apply_policy` keeping or re-planning deadlines, previews, and the processes
that follow a policy applied elsewhere.

The scenario of every test: the inactivity preset (v1: a 30-day grace period, a final warning 7
days before its end) and a v2 whose grace period lasts 14 days. An account goes quiet for 12
months exactly at START and is 3 days into its grace period when v2 comes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from lapse.core.model import Account, AuditEntry
from lapse.errors import MigrationBlocked, PolicyMismatch
from lapse.policy import load_policy, load_preset
from lapse.policy.durations import Duration, subtract
from lapse.policy.model import Policy
from lapse.runtime.bootstrap import build
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.runtime.settings import load_settings
from lapse.store.base import StaleWrite, StoredPolicy
from lapse.store.sql import SqlStore, create_db_engine

START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)
NOW = START + timedelta(days=3)
DAYS = timedelta(days=1)
TEXT = resources.files("lapse.policy.presets").joinpath("inactivity-cleanup.yaml").read_text()
V1 = load_preset("inactivity-cleanup")
V2_TEXT = TEXT.replace("version: 1", "version: 2").replace("lasts: 30 days", "lasts: 14 days")
V2 = load_policy(V2_TEXT, "inactivity-v2.yaml")


@pytest.fixture
def engines(store_url: str) -> Iterator[Callable[[Policy], Engine]]:
    """`engines(policy)`: an Engine on the test's database with its own connection pool (as
    another process would have), all on one manual clock starting at START."""
    clock = ManualClock(START)
    made: list[SqlStore] = []

    def make(policy: Policy) -> Engine:
        store = SqlStore(create_db_engine(store_url), clock=clock.now)
        made.append(store)
        return Engine(policy, store=store, clock=clock)

    yield make
    for store in made:
        store.close()


def quiet_account(engine: Engine, account_id: str = "acme") -> None:
    """An account whose 12 months without activity end now."""
    engine.add_account(
        account_id,
        kind="standard",
        created_at=subtract(engine.clock.now(), Duration(months=12)),
        members=[(f"ann@{account_id}.example", "admin")],
    )


def in_grace(engines: Callable[[Policy], Engine]) -> Engine:
    """The v1 engine, started (recorded), with `acme` 3 days into its grace period."""
    engine = engines(V1)
    started = engine.adopt_policy(by="lapse serve test")
    assert started.recorded
    assert started.previous is None
    quiet_account(engine)
    engine.run_until(NOW)
    assert deadline(engine) == START + 30 * DAYS
    return engine


def deadline(engine: Engine, account_id: str = "acme") -> datetime | None:
    (case,) = engine.status(account_id).cases
    return case.deadline


def stored(engine: Engine, account_id: str = "acme") -> Account:
    account = engine.store.get(account_id)
    assert account is not None
    return account


def entries(engine: Engine, kind: str, account_id: str | None = None) -> list[AuditEntry]:
    """The audit entries of a kind (of one account)."""
    records = engine.store.audit(account_id=account_id, limit=10_000)
    return [r.entry for r in records if r.entry.kind == kind]


def test_starting_records_the_policy_then_refuses_one_that_would_move_open_cases(
    engines: Callable[[Policy], Engine],
) -> None:
    engine = in_grace(engines)
    active = engine.store.active_policy()
    assert active is not None
    assert (active.name, active.version, active.digest) == ("inactivity-cleanup", "1", V1.digest)
    assert (active.mode, active.applied_by, active.applied_at) == (
        "initial",
        "lapse serve test",
        START,
    )
    assert active.source == TEXT
    (entry,) = entries(engine, "policy.applied")
    assert entry.account_id == ""
    assert entry.detail["version"] == "1"
    # the same document again: nothing recorded
    again = engines(V1).adopt_policy(by="restart")
    assert not again.recorded
    assert len(engine.store.policies()) == 1
    # v2 while a case opened under v1 is open: refused, with what to do instead
    with pytest.raises(PolicyMismatch) as refused:
        engines(V2).adopt_policy(by="restart", shown="inactivity-v2.yaml")
    message = str(refused.value)
    assert "the database's active policy is inactivity-cleanup v1" in message
    assert "started with inactivity-cleanup v2 (inactivity-v2.yaml)" in message
    assert "1 open case opened under another version would be affected" in message
    assert "`lapse simulate inactivity-v2.yaml`" in message
    assert "`lapse policy apply inactivity-v2.yaml --keep-deadlines` or `--replan`" in message
    # a changed document that keeps version 1: refused too
    edited = load_policy(TEXT.replace("lasts: 30 days", "lasts: 31 days"), "edited.yaml")
    with pytest.raises(PolicyMismatch, match="keeps version 1, and 1 open case was opened"):
        engines(edited).adopt_policy(by="restart", shown="edited.yaml")
    assert engine.store.active_policy() == active
    assert stored(engine).cases[0].policy_version == "1"


def test_a_new_policy_without_affected_cases_is_applied_automatically(
    engines: Callable[[Policy], Engine],
) -> None:
    first = engines(V1)
    first.adopt_policy(by="first start")
    engine = engines(V2)
    started = engine.adopt_policy(by="second start")
    assert started.recorded
    assert started.previous is not None
    assert started.previous.version == "1"
    assert started.policy.mode == "automatic"
    assert [p.version for p in engine.store.policies()] == ["1", "2"]
    kinds = [(r.entry.kind, r.entry.detail["mode"]) for r in engine.store.audit()]
    assert kinds == [("policy.applied", "initial"), ("policy.applied", "automatic")]
    # the document of v1 is still known: cases opened under it could be migrated
    assert set(engine.policy_versions.known()) == {"1", "2"}


def test_a_start_with_a_replaced_document_is_refused_not_rolled_back(
    engines: Callable[[Policy], Engine],
) -> None:
    engines(V1).adopt_policy(by="first start")
    engines(V2).adopt_policy(by="second start")  # no open case: v2 applied automatically
    # an API process restarted with the old file: a stale configuration, not a roll-back
    with pytest.raises(PolicyMismatch) as refused:
        engines(V1).adopt_policy(by="restart", shown="inactivity-cleanup")
    message = str(refused.value)
    assert "started with inactivity-cleanup v1 (inactivity-cleanup)" in message
    assert "which the database's active policy inactivity-cleanup v2" in message
    assert "roll back explicitly with `lapse policy apply inactivity-cleanup" in message
    active = engines(V2).store.active_policy()
    assert active is not None
    assert active.version == "2"
    # workers follow the store: they switch to v2 whatever they were started with
    follower = engines(V1)
    follower.adopt_policy(by="worker", follow=True)
    assert follower.policy.version == "2"
    # an explicit apply does roll back
    engine = engines(V2)
    engine.apply_policy(V1, mode="keep", by="ops")
    active = engine.store.active_policy()
    assert active is not None
    assert active.version == "1"


def test_an_unrecorded_store_with_cases_of_another_version_is_refused(
    engines: Callable[[Policy], Engine],
) -> None:
    engine = engines(V1)
    quiet_account(engine)  # never adopted: a database from before policy versions
    engine.run_due()
    with pytest.raises(PolicyMismatch, match="1 open case was opened under policy version 1"):
        engines(V2).adopt_policy(by="start", shown="v2.yaml")
    assert engine.store.active_policy() is None
    recorded = engines(V1).adopt_policy(by="start")
    assert recorded.policy.mode == "initial"


def test_the_preview_shows_both_modes(engines: Callable[[Policy], Engine]) -> None:
    engine = in_grace(engines)
    quiet_account(engine, "later")  # opens its case now, under v1
    audit_before = len(engine.store.audit(limit=10_000))
    preview = engine.preview_policy(V2, chunk=1)
    assert (preview.accounts, preview.open_cases, preview.affected) == (2, 2, 2)
    assert preview.current.version == "1"
    keep, replan = preview.mode("keep"), preview.mode("replan")
    (line,) = keep.phases
    assert (line.flow, line.phase, line.cases, line.moved) == ("inactivity", "grace", 2, 0)
    (line,) = replan.phases
    assert (line.cases, line.moved, line.earliest, line.latest) == (2, 2, -16 * DAYS, -16 * DAYS)
    assert {s.account_id for s in line.samples} == {"acme", "later"}
    # nothing was written
    assert len(engine.store.audit(limit=10_000)) == audit_before
    assert stored(engine).cases[0].policy_version == "1"
    assert engine.store.active_policy() is not None
    assert engine.store.active_policy().version == "1"  # type: ignore[union-attr]


def test_apply_keeping_deadlines(engines: Callable[[Policy], Engine]) -> None:
    engine = in_grace(engines)
    applied = engine.apply_policy(V2, mode="keep", by="ops", chunk=1)
    assert applied.recorded
    assert (applied.accounts, applied.cases, applied.closed) == (1, 1, 0)
    assert applied.previous is not None
    assert applied.previous.version == "1"
    active = engine.store.active_policy()
    assert active is not None
    assert (active.version, active.mode, active.applied_by) == ("2", "keep", "ops")
    assert engine.policy is V2
    assert deadline(engine) == START + 30 * DAYS  # unchanged
    case = stored(engine).cases[0]
    assert case.policy_version == "2"
    migrated = [
        r.entry for r in engine.store.audit(account_id="acme") if r.entry.kind == "case.migrated"
    ]
    assert [e.detail for e in migrated] == [
        {
            "from": "1",
            "to": "2",
            "mode": "keep",
            "by": "ops",
            "phase": "grace",
            "deadline_before": (START + 30 * DAYS).isoformat(),
            "deadline_after": (START + 30 * DAYS).isoformat(),
        }
    ]
    policy_entries = entries(engine, "policy.applied")
    assert [(e.detail["version"], e.detail["mode"], e.detail["by"]) for e in policy_entries] == [
        ("1", "initial", "lapse serve test"),
        ("2", "keep", "ops"),
    ]
    assert engine.store.verify_audit().ok
    # idempotent: nothing more to do
    again = engine.apply_policy(V2, mode="keep", by="ops")
    assert (again.recorded, again.accounts, again.cases) == (False, 0, 0)
    assert len(engine.store.policies()) == 2
    # new cases get the new 14 days
    quiet_account(engine, "newco")
    assert deadline(engine, "newco") == NOW + 14 * DAYS
    # the kept deadline holds: acme is deleted after 30 days, newco after 14
    engine.run_until(START + 31 * DAYS)
    gone = engine.store.tombstone("acme")
    new = engine.store.tombstone("newco")
    assert gone is not None
    assert new is not None
    assert gone.deleted_at == START + 30 * DAYS
    assert new.deleted_at == NOW + 14 * DAYS


def test_apply_replanning_keeps_the_final_warning_lead(engines: Callable[[Policy], Engine]) -> None:
    engine = in_grace(engines)
    applied = engine.apply_policy(V2, mode="replan", by="ops")
    assert (applied.accounts, applied.cases) == (1, 1)
    assert deadline(engine) == START + 14 * DAYS  # 16 days earlier
    engine.run_until(START + 20 * DAYS)
    final = [n for n in engine.notices.sent if n.template == "inactivity-final-warning"]
    assert [(n.at, n.deadline) for n in final] == [(START + 7 * DAYS, START + 14 * DAYS)]
    gone = engine.store.tombstone("acme")
    assert gone is not None
    assert gone.deleted_at == START + 14 * DAYS
    assert gone.receipt["policy"] == {  # type: ignore[comparison-overlap]
        "name": "inactivity-cleanup",
        "version": "2",
        "digest": V2.digest,
    }


def test_cases_without_a_place_in_the_new_version_block_or_close(
    engines: Callable[[Policy], Engine],
) -> None:
    engine = in_grace(engines)
    renamed = load_policy(V2_TEXT.replace("name: grace", "name: warning"), "v3.yaml")
    preview = engine.preview_policy(renamed, modes=["keep"])
    assert preview.mode("keep").blocked == 1
    with pytest.raises(MigrationBlocked) as blocked:
        engine.apply_policy(renamed, mode="keep", by="ops")
    assert "1 open case cannot be migrated to inactivity-cleanup v2; nothing was changed" in str(
        blocked.value
    )
    assert "acme/inactivity#1: version 2 of its flow has no phase 'grace'" in str(blocked.value)
    assert engine.store.active_policy().version == "1"  # type: ignore[union-attr]
    assert engine.policy is V1
    assert stored(engine).cases[0].policy_version == "1"
    applied = engine.apply_policy(renamed, mode="keep", by="ops", close_removed=True)
    assert (applied.accounts, applied.cases, applied.closed) == (1, 0, 1)
    assert stored(engine).cases == ()
    assert engine.store.active_policy().close_removed  # type: ignore[union-attr]
    closed = [
        r.entry for r in engine.store.audit(account_id="acme") if r.entry.kind == "case.closed"
    ]
    assert [(e.detail["by"], e.detail["reason"]) for e in closed] == [
        ("ops", "policy migration to version 2: version 2 of its flow has no phase 'grace'")
    ]


def test_other_processes_follow_an_applied_policy(engines: Callable[[Policy], Engine]) -> None:
    admin = in_grace(engines)
    worker = engines(V1)
    worker.adopt_policy(by="lapse worker")
    assert not worker.refresh_policy()
    admin.apply_policy(V2, mode="replan", by="ops")
    assert worker.policy.version == "1"
    assert worker.refresh_policy()
    assert worker.policy.version == "2"
    assert worker.policy.digest == V2.digest
    assert worker.policy.source == "<database: policy inactivity-cleanup v2>"
    assert deadline(worker) == START + 14 * DAYS
    assert not worker.refresh_policy()


def test_an_account_touched_before_its_migration_is_migrated_first(
    engines: Callable[[Policy], Engine],
) -> None:
    admin = in_grace(engines)
    quiet_account(admin, "other")
    # an apply interrupted after it recorded v2 (re-plan), before it migrated any account
    admin.store.record_policy(
        StoredPolicy(
            name=V2.name,
            version=V2.version,
            digest=V2.digest,
            source=V2.text,
            applied_at=NOW,
            applied_by="ops",
            mode="replan",
        ),
        [],
    )
    worker = engines(V1)
    assert worker.refresh_policy()
    assert stored(worker).cases[0].policy_version == "1"
    # reads show the migrated account, without writing it
    assert deadline(worker) == START + 14 * DAYS
    assert stored(worker).cases[0].policy_version == "1"
    # a write migrates it first, audited, with the mode recorded with the policy
    worker.set_fact("acme", "subscription_active", False)
    assert stored(worker).cases[0].policy_version == "2"
    (entry,) = [
        r.entry for r in worker.store.audit(account_id="acme") if r.entry.kind == "case.migrated"
    ]
    assert (entry.detail["mode"], entry.detail["by"]) == ("replan", "policy-migration")
    # the scheduler does the same for the accounts it steps (acme's final warning is due on
    # day 7 of its re-planned 14 days)
    worker.run_until(START + 7 * DAYS)
    final = [n for n in worker.notices.sent if n.template == "inactivity-final-warning"]
    assert [(n.account_id, n.at) for n in final] == [("acme", START + 7 * DAYS)]
    # finishing the interrupted apply migrates what is left, once
    finished = admin.apply_policy(V2, mode="replan", by="ops")
    assert (finished.recorded, finished.accounts) == (False, 1)
    assert stored(admin, "other").cases[0].policy_version == "2"
    assert admin.apply_policy(V2, mode="replan", by="ops").accounts == 0


def test_workers_take_the_active_policy_and_follow_it(
    store_url: str, tmp_path: Path, engines: Callable[[Policy], Engine]
) -> None:
    admin = in_grace(engines)
    v2_file = tmp_path / "v2.yaml"
    v2_file.write_text(V2_TEXT)
    settings = load_settings(
        database_url=store_url,
        policy=str(v2_file),  # LAPSE_POLICY says v2, the database says v1: v1 runs
        clock="manual",
        clock_start=NOW,
        poll_seconds=0.05,
    )
    services = build(settings, policy_from="store", migrate_embedded=False, started_by="worker")
    try:
        assert services.policy.version == "1"
        assert services.adoption is not None
        assert not services.adoption.recorded
        loops = services.loops()
        loops.start()
        try:
            admin.apply_policy(V2, mode="keep", by="ops")
            deadline_at = time.monotonic() + 10
            while services.engine.policy.version != "2":
                assert time.monotonic() < deadline_at, "the worker did not follow the policy"
                time.sleep(0.05)
        finally:
            loops.stop()
        assert services.policy.version == "2"
        assert services.render.policy.version == "2"
    finally:
        services.close()
    # `lapse serve` with the settings' policy refuses it instead while cases would move
    admin.apply_policy(V1, mode="keep", by="ops")  # back to v1: acme's case moves back too
    assert stored(admin).cases[0].policy_version == "1"
    with pytest.raises(PolicyMismatch):
        build(settings, migrate_embedded=False, started_by="serve")


def test_a_process_behind_never_migrates_a_case_back(engines: Callable[[Policy], Engine]) -> None:
    admin = in_grace(engines)
    worker = engines(V1)
    worker.adopt_policy(by="lapse worker")
    admin.apply_policy(V2, mode="replan", by="ops")
    # the worker has not looked for a new policy yet (it does so at most once a second)
    worker.policy_versions._checked = time.monotonic()
    with pytest.raises(StaleWrite, match="cases of policy version 2, applied after"):
        worker.set_fact("acme", "subscription_active", False)
    assert stored(worker).cases[0].policy_version == "2"  # nothing written
    assert worker.account("acme").cases[0].policy_version == "2"  # a read shows it as it is
    worker.policy_versions._checked = 0.0  # a second later
    worker.set_fact("acme", "subscription_active", False)
    assert worker.policy.version == "2"
    assert entries(worker, "case.migrated", "acme")[-1].detail["to"] == "2"
    assert len(entries(worker, "case.migrated", "acme")) == 1


def test_a_worker_starting_with_an_older_policy_follows_the_active_one(
    engines: Callable[[Policy], Engine],
) -> None:
    admin = engines(V1)
    admin.adopt_policy(by="first")
    worker = engines(V1)  # read the active policy (v1) just before v2 was applied
    admin.apply_policy(V2, mode="keep", by="ops")
    started = worker.adopt_policy(by="lapse worker", follow=True)
    assert not started.recorded
    assert worker.policy.version == "2"
    assert [p.version for p in worker.store.policies()] == ["1", "2"]  # v1 was not re-applied
