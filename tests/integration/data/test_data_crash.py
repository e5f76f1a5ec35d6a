"""A worker deleting a big account in small batches is SIGKILLed at random points, several times,
then restarted: the deletion finishes, nothing of the account is left, nothing else changed, and
the receipt counts exactly the rows that existed (a batch confirmed after a kill counts once).

Half of the kills wait until the run has made progress since the previous kill (so they land in
the middle of the deletion, between or inside batches); the others fall at a random moment of
the worker's life (start-up, scheduling, the final unit of work).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import data_host
import pytest
from sqlalchemy import create_engine, text

from lapse.data.receipts import verify_store
from lapse.runtime.bootstrap import build
from lapse.runtime.clock import ManualClock
from lapse.runtime.settings import load_settings
from lapse.store import open_store

WORKER = Path(__file__).parents[1] / "runtime" / "worker_proc.py"
T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 9, tzinfo=UTC)  # the worker's clock: the test account's 30 days are over
KILLS = 6
OTHERS = ["keep-1", "keep-2"]


def _progress(url: str) -> tuple[int, int]:
    """(rows confirmed, locations finished) of the data runs so far."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT coalesce(sum(removed), 0), count(finished_at) FROM data_progress")
            ).one()
    finally:
        engine.dispose()
    return int(row[0]), int(row[1])


@pytest.mark.slow
def test_sigkilled_deletion_resumes_and_counts_every_row_once(
    lapse_url: str, host_url: str, tmp_path: Path
) -> None:
    expected = data_host.populate(
        host_url, "big", contacts_n=1200, actions=6, campaigns_n=40, events=25
    )
    for other in OTHERS:
        data_host.populate(host_url, other, contacts_n=30)
    before = data_host.checksums(host_url, OTHERS)
    connectors = tmp_path / "connectors.json"
    connectors.write_text(json.dumps(data_host.config(host_url, batch_size=20)))

    settings = load_settings(
        database_url=lapse_url, policy="inactivity-cleanup", connectors=connectors
    )
    services = build(settings, clock=ManualClock(T0), migrate_embedded=False)
    services.engine.add_account("big", kind="test", created_at=T0 - timedelta(days=10))
    for other in OTHERS:
        services.engine.add_account(other, kind="standard", created_at=T0)
    services.close()

    env = dict(os.environ)
    env.update(
        LAPSE_DATABASE_URL=lapse_url,
        LAPSE_POLICY="inactivity-cleanup",
        LAPSE_CONNECTORS=str(connectors),
        LAPSE_CLOCK="manual",
        LAPSE_CLOCK_START=T1.isoformat(),
        LAPSE_POLL_SECONDS="0.05",
        LAPSE_LEASE_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    rng = random.Random(20261122)
    runs = 0
    mid_run = 0

    def spawn() -> subprocess.Popen[bytes]:
        nonlocal runs
        runs += 1
        return subprocess.Popen(
            [sys.executable, str(WORKER)],
            env={**env, "LAPSE_WORKER_ID": f"crash-{runs}"},  # a new worker each time
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    seen = _progress(lapse_url)
    for kill in range(KILLS):
        worker = spawn()
        try:
            if kill % 2 == 0:
                deadline = time.monotonic() + 30
                while _progress(lapse_url) == seen and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.2))
            else:
                time.sleep(rng.uniform(0.2, 2.0))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        now = _progress(lapse_url)
        if now != seen and now[1] < len(expected):
            mid_run += 1
        seen = now

    store = open_store(lapse_url, clock=lambda: T1, migrate=False)
    worker = spawn()
    try:
        deadline = time.monotonic() + 120
        while store.tombstone("big") is None:
            assert time.monotonic() < deadline, "the restarted worker did not finish"
            assert worker.poll() is None, "the worker died"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    try:
        assert mid_run >= 2, f"only {mid_run} kills landed in the middle of the deletion"
        assert all(n == 0 for n in data_host.counts(host_url, "big").values())
        assert data_host.checksums(host_url, OTHERS) == before
        stone = store.tombstone("big")
        assert stone is not None
        assert {i["location"]: i["rows"] for i in stone.receipt["locations"]} == expected
        assert stone.receipt["rows"] == sum(expected.values())
        assert len(store.receipts(account_id="big")) == 1
        assert store.verify_audit().ok
        assert verify_store(store) == (1, [])
        print(f"\n{runs} worker runs, {KILLS} killed ({mid_run} mid-deletion)")
    finally:
        store.close()  # type: ignore[union-attr]
