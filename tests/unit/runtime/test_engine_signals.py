"""Reported activity wakes only the accounts it can change, and forgets only their decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lapse import Engine, ManualClock
from lapse.policy import load_policy

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POLICY = load_policy(
    """\
version: 1
name: wake-test
actions: [login, send]
kinds: [standard]
signals: [login, sent]
flows:
  idle:
    reason: no login for 30 days
    starts_when: {no_activity: [login], for: 30 days}
    phases:
      - {name: quiet, lasts: 10 days, deny: [send]}
""",
    "wake-test.yaml",
)


def test_a_signal_forgets_the_decisions_of_the_accounts_it_woke_only() -> None:
    engine = Engine(POLICY, clock=ManualClock(NOW))
    for account_id in ("a", "b"):
        engine.add_account(account_id, kind="standard", created_at=NOW - timedelta(days=35))
        assert not engine.check(account_id, "send").allowed
    result = engine.report_signals([("a", "login", NOW)])
    assert (result.woken, result.woken_ids) == (1, ("a",))
    assert engine.check("a", "send").allowed  # re-planned at once: the case closed
    assert "b" in engine._cache  # b's cached decision was not thrown away
    # a repeat within the resolution wakes nothing and forgets nothing
    cached = dict(engine._cache)
    repeat = engine.report_signals([("a", "login", NOW + timedelta(seconds=30))])
    assert (repeat.written, repeat.woken) == (0, 0)
    assert engine._cache == cached
    assert engine.store.versions(["a"]) == {"a": 3}  # created, woken, stepped: no more
