"""Core evaluations per second over 1,000,000 synthetic accounts, and in-process check() latency.

Budgets (SPEC 7, issue 2): >= 50,000 evaluations/s on one core; check() from the account's
current restriction set < 2 microseconds median. Baselines measured in the same run: a
hand-written cron-style inactivity check (what teams write instead of lapse), and re-evaluating
the policy from scratch for every check.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench.report import line, verdict
from lapse.core import decisions
from lapse.core.lifecycle import advance
from lapse.core.model import Account, FactEntry, Member
from lapse.policy import load_preset
from lapse.policy.model import Policy
from lapse.runtime.engine import Engine
from lapse.store.base import Change
from lapse.store.memory import MemoryStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
EVAL_BUDGET = 50_000.0
CHECK_BUDGET_NS = 2_000.0


def synthetic_inactivity(count: int, seed: int = 7) -> list[Account]:
    """Accounts for the inactivity preset: varied activity, subscriptions, some test accounts."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        created = NOW - timedelta(days=rng.randint(1, 2000))
        kind = "test" if rng.random() < 0.05 else "standard"
        signals = {}
        for name in ("campaign_sent", "api_request", "login"):
            if rng.random() < 0.8:
                signals[name] = NOW - timedelta(
                    days=rng.randint(0, 600), seconds=rng.randint(0, 86399)
                )
        facts = {}
        if rng.random() < 0.9:
            facts["subscription_active"] = FactEntry(value=rng.random() < 0.6, changed_at=created)
        out.append(
            Account(
                id=f"acct-{i:07d}",
                kind=kind,
                created_at=created,
                address=f"owner{i}@example.test",
                members=(Member(email=f"admin{i}@example.test", role="admin"),),
                signals=signals,
                facts=facts,
            )
        )
    return out


def naive_inactive(account: Account, now: datetime) -> bool:
    """What a hand-written cron job checks: test accounts after 30 days, else 12 months idle."""
    if account.kind == "test":
        return account.created_at + timedelta(days=30) <= now
    last = account.created_at
    for name in ("campaign_sent", "api_request"):
        seen = account.signals.get(name)
        if seen is not None and seen > last:
            last = seen
    sub = account.facts.get("subscription_active")
    return last + timedelta(days=365) <= now and not (sub is not None and sub.value)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_evaluations(policy: Policy, accounts: list[Account]) -> bool:
    count = len(accounts)
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        hits = sum(1 for a in accounts if naive_inactive(a, NOW))
        naive_s = time.perf_counter() - started

        started = time.perf_counter()
        steps = [advance(a, policy, NOW) for a in accounts]
        first_s = time.perf_counter() - started

        later = NOW + timedelta(hours=1)
        evolved = [s.account for s in steps]
        started = time.perf_counter()
        for account in evolved:
            advance(account, policy, later)
        steady_s = time.perf_counter() - started
    finally:
        gc.enable()
    opened = sum(1 for s in steps if s.account.cases)
    deleting = sum(1 for s in steps if any(c.destruct == "requested" for c in s.account.cases))
    line("accounts", f"{count:,}", f"{opened:,} open a case, {deleting:,} request deletion")
    line("hand-written cron check (baseline)", f"{_rate(count, naive_s):,.0f}/s", f"{hits:,} hits")
    first = _rate(count, first_s)
    steady = _rate(count, steady_s)
    line("lapse advance(), first pass (opens cases)", f"{first:,.0f}/s")
    line("lapse advance(), an hour later (steady state)", f"{steady:,.0f}/s")
    line(
        "lapse / hand-written check",
        f"{first / _rate(count, naive_s):.3f}x",
        "(full lifecycle vs one rule)",
    )
    worst = min(first, steady)
    return verdict(
        "evaluations >= 50,000/s",
        worst >= EVAL_BUDGET,
        f"{worst:,.0f}/s = {worst / EVAL_BUDGET:.2f}x the budget",
    )


def _median_ns(call, args: list[tuple[str, str]], batch: int = 1000) -> float:
    per_call = []
    for start in range(0, len(args) - batch + 1, batch):
        chunk = args[start : start + batch]
        t0 = time.perf_counter_ns()
        for account_id, action in chunk:
            call(account_id, action)
        per_call.append((time.perf_counter_ns() - t0) / batch)
    return statistics.median(per_call)


def bench_check(scale: str) -> bool:
    policy = load_preset("account-locks")
    count = 100_000 if scale == "full" else 10_000
    rng = random.Random(11)
    store = MemoryStore()
    accounts: dict[str, Account] = {}
    with store.unit() as unit:
        for i in range(count):
            account = Account(
                id=f"acct-{i:06d}",
                kind="standard",
                created_at=NOW - timedelta(days=400),
                address=f"o{i}@example.test",
                members=(Member(email=f"a{i}@example.test", role="admin"),),
                facts={
                    "contacts": FactEntry(value=rng.randint(0, 1200), changed_at=NOW),
                    "plan_contact_limit": FactEntry(value=1000, changed_at=NOW),
                    "bounce_rate": FactEntry(value=rng.random() * 0.06, changed_at=NOW),
                },
            )
            step = advance(account, policy, NOW)
            accounts[account.id] = step.account
            unit.write(Change(account=step.account, next_due_at=step.next_due_at, created=True))
    engine = Engine(policy, store=store)
    actions = policy.action_order
    calls = [(f"acct-{rng.randrange(count):06d}", rng.choice(actions)) for _ in range(200_000)]
    for account_id, action in calls:  # warm the restriction-set cache
        engine.check(account_id, action)
    locked = sum(1 for a in accounts.values() if a.cases)

    def scratch(account_id: str, action: str) -> object:
        account = advance(accounts[account_id], policy, NOW).account
        return decisions.check(account, policy, action, NOW)

    def from_snapshot(account_id: str, action: str) -> object:
        return decisions.check(accounts[account_id], policy, action, NOW)

    gc.disable()
    try:
        fast = _median_ns(engine.check, calls)
        snap = _median_ns(from_snapshot, calls[:50_000])
        slow = _median_ns(scratch, calls[:20_000])
    finally:
        gc.enable()
    line("accounts / locked", f"{count:,} / {locked:,}")
    line("check() from the restriction set", f"{fast:,.0f} ns")
    line(
        "baseline: combine the snapshot's cases per check",
        f"{snap:,.0f} ns",
        f"{snap / fast:,.0f}x slower",
    )
    line(
        "baseline: re-evaluate the policy from scratch",
        f"{slow:,.0f} ns",
        f"{slow / fast:,.0f}x slower",
    )
    return verdict(
        "check() median < 2 microseconds",
        fast < CHECK_BUDGET_NS,
        f"{fast:,.0f} ns = {CHECK_BUDGET_NS / fast:.1f}x under the budget",
    )


def run(scale: str) -> bool:
    """Run both measurements; True if both are within budget."""
    policy = load_preset("inactivity-cleanup")
    count = 1_000_000 if scale == "full" else 50_000
    started = time.perf_counter()
    accounts = synthetic_inactivity(count)
    line("generating synthetic accounts", f"{time.perf_counter() - started:.1f} s")
    ok = bench_evaluations(policy, accounts)
    del accounts
    return bench_check(scale) and ok
