"""The global deletion rate limit (LAPSE_DELETIONS_PER_MINUTE, SPEC 8.5): deletions that fall
due together start at most N per minute, the others wait their turn in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lapse.policy import load_preset
from lapse.runtime.bootstrap import build
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.runtime.settings import load_settings

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
DUE = START + timedelta(days=30)  # test accounts are deleted on their 30th day


def engine(limit: int | None) -> Engine:
    clock = ManualClock(START)
    lapse = Engine(load_preset("inactivity-cleanup"), clock=clock, deletions_per_minute=limit)
    for n in range(5):
        lapse.add_account(f"sandbox-{n}", kind="test", created_at=START)
    return lapse


def deleted_at(lapse: Engine) -> list[datetime | None]:
    stones = [lapse.store.tombstone(f"sandbox-{n}") for n in range(5)]
    return [stone.deleted_at if stone else None for stone in stones]


def test_deletions_due_together_start_at_most_n_per_minute() -> None:
    lapse = engine(2)
    lapse.run_until(DUE)
    assert deleted_at(lapse) == [DUE, DUE, None, None, None]
    waiting = [row for row in lapse.store.outbox() if row.status == "pending"]
    assert len(waiting) == 3
    assert {row.attempts for row in waiting} == {0}  # waiting is not failing
    assert {row.last_error for row in waiting} == {
        "waiting for the deletion rate limit (2 deletions per minute)"
    }
    lapse.run_until(DUE + timedelta(minutes=5))
    minute = timedelta(minutes=1)
    assert deleted_at(lapse) == [DUE, DUE, DUE + minute, DUE + minute, DUE + 2 * minute]
    assert all(row.status == "delivered" for row in lapse.store.outbox())
    assert lapse.store.verify_audit().ok


def test_without_a_limit_they_all_go_at_once() -> None:
    lapse = engine(None)
    lapse.run_until(DUE)
    assert deleted_at(lapse) == [DUE] * 5


def test_the_server_configuration_sets_the_limit(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LAPSE_DATA_DIR", str(tmp_path))
    assert load_settings().deletions_per_minute == 60
    monkeypatch.setenv("LAPSE_DELETIONS_PER_MINUTE", "5")
    settings = load_settings()
    services = build(settings)
    try:
        assert services.engine.deletions_per_minute == 5
    finally:
        services.close()
