"""Signal ingestion into SQLite through the batch path, with a Zipf-skewed account distribution.

Budget (SPEC 7, issue 3): >= 200,000 signals/s, coalesced, vs one write per signal measured in
the same run. The stream is what a product sends: a day of activity in time order, a few
accounts very busy (Zipf), signals `login`, `campaign_sent` and `api_request`, reported in
batches of 10,000 through `Engine.report_signals`. The policy's resolution (1 hour) means a
repeat within the hour costs no write.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import line, verdict
from bench.scheduler import populated
from lapse.policy import load_preset
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store import open_store

START = datetime(2026, 6, 1, tzinfo=UTC)
BUDGET = 200_000.0
NAMES = ("login", "campaign_sent", "api_request")


def stream(count: int, accounts_count: int, seed: int = 3) -> list[tuple[str, str, datetime]]:
    """`count` reports over one day, account ids drawn from a Zipf(1.1) distribution."""
    rng = random.Random(seed)
    weights = [1 / (rank**1.1) for rank in range(1, accounts_count + 1)]
    ids = [f"acct-{i:07d}" for i in range(accounts_count)]
    chosen = rng.choices(ids, weights=weights, k=count)
    step = 86_400 / count
    return [
        (account, rng.choice(NAMES), START + timedelta(seconds=i * step))
        for i, account in enumerate(chosen)
    ]


def _ingest(
    url: str, reports: list[tuple[str, str, datetime]], per_batch: int
) -> tuple[int, float]:
    """Report `reports` in batches of `per_batch`; returns (rows written, seconds)."""
    policy = load_preset("inactivity-cleanup")
    clock = ManualClock(START + timedelta(days=1))
    store = open_store(url, clock=clock.now, migrate=False)
    engine = Engine(policy, store=store, clock=clock, deliver_inline=False)
    written = 0
    started = time.perf_counter()
    for start in range(0, len(reports), per_batch):
        written += engine.report_signals(reports[start : start + per_batch]).written
    seconds = time.perf_counter() - started
    close = getattr(store, "close", None)
    if close is not None:
        close()
    return written, seconds


def run(scale: str) -> bool:
    """Batch ingestion vs one write per signal; True if the batch path is within budget."""
    accounts_count = 100_000 if scale == "full" else 10_000
    count = 2_000_000 if scale == "full" else 200_000
    reports = stream(count, accounts_count)
    sample = reports[:20_000]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'signals.db'}"
        populated(url, accounts_count, due_share=0.0)
        # the baseline gets its own copy of the same starting database: the same reports are new
        # there, so it writes what the batch path writes, one transaction per signal
        for suffix in ("", "-wal", "-shm"):
            if (Path(tmp) / f"signals.db{suffix}").exists():
                shutil.copy(Path(tmp) / f"signals.db{suffix}", Path(tmp) / f"baseline.db{suffix}")
        written, batch_seconds = _ingest(url, reports, 10_000)
        baseline_url = f"sqlite:///{Path(tmp) / 'baseline.db'}"
        single_written, single_seconds = _ingest(baseline_url, sample, 1)
    batch_rate = count / batch_seconds
    single_rate = len(sample) / single_seconds
    line("accounts / reports (Zipf 1.1, one day)", f"{accounts_count:,} / {count:,}")
    line("rows written after coalescing", f"{written:,}", f"{written / count:.1%} of reports")
    line(
        "one write per signal (baseline)",
        f"{single_rate:,.0f}/s",
        f"first {len(sample):,} reports, {single_written:,} rows written",
    )
    line(
        "batch path, 10,000 per batch", f"{batch_rate:,.0f}/s", f"{batch_rate / single_rate:,.0f}x"
    )
    return verdict(
        "signal ingestion >= 200,000/s",
        batch_rate >= BUDGET,
        f"{batch_rate:,.0f}/s = {batch_rate / BUDGET:.2f}x the budget",
    )
