"""A worker killed with SIGKILL at random points and restarted loses nothing and repeats nothing.

Several hundred accounts become due at once: inactive accounts open their grace period and email
two admins each, test accounts are deleted. A real worker process (scheduler + dispatcher, small
batches) is killed at random moments, then restarted, several times, against a real database and
a real SMTP server. Afterwards: every case was opened exactly once, every notice row was created
exactly once and delivered, every delivered notice is recorded as dispatched and no case is left
waiting with nothing due, every email arrived (a resend after a kill between the SMTP
acceptance and the database update carries the same Message-ID, so receivers can drop it), no
account that was not due was touched, no deletion happened early, and the audit chain is intact.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lapse.core.model import NoticeEffect
from lapse.runtime.bootstrap import build
from lapse.runtime.clock import ManualClock
from lapse.runtime.dispatch import CONCURRENCY
from lapse.runtime.settings import load_settings
from lapse.store import open_store
from lapse.store.base import key_digest

WORKER = Path(__file__).with_name("worker_proc.py")
T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)  # accounts are registered
T1 = datetime(2026, 3, 1, 9, tzinfo=UTC)  # the worker's (frozen) clock: everything below is due
INACTIVE = 120
TESTS = 40
ACTIVE = 30
KILLS = 6


def _populate(url: str) -> None:
    settings = load_settings(database_url=url, policy="inactivity-cleanup")
    services = build(settings, clock=ManualClock(T0), migrate_embedded=False)
    engine = services.engine
    for i in range(INACTIVE):
        account = f"idle-{i:04d}"
        engine.add_account(
            account,
            kind="standard",
            created_at=T0 - timedelta(days=340),  # not due yet when registered at T0
            address=f"owner@{account}.example",
            members=[(f"a@{account}.example", "admin"), (f"b@{account}.example", "admin")],
        )
        # the 12 months of inactivity end between 1 February and T1, a minute apart
        last_campaign = T0 - timedelta(days=334) + timedelta(minutes=i)
        engine.report_signals([(account, "campaign_sent", last_campaign)])
    for i in range(TESTS):
        engine.add_account(
            f"test-{i:04d}",
            kind="test",
            created_at=T0 - timedelta(days=10) + timedelta(minutes=i),
            address=f"t{i}@sandbox.example",
        )
    for i in range(ACTIVE):
        account = f"busy-{i:04d}"
        engine.add_account(
            account,
            kind="standard",
            created_at=T0 - timedelta(days=30),
            members=[(f"a@{account}.example", "admin")],
        )
        engine.report_signals([(account, "campaign_sent", T0)])
    services.close()


def _env(url: str, smtp_port: int, worker: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LAPSE_DATABASE_URL=url,
        LAPSE_POLICY="inactivity-cleanup",
        LAPSE_CLOCK="manual",
        LAPSE_CLOCK_START=T1.isoformat(),
        LAPSE_SMTP_HOST="127.0.0.1",
        LAPSE_SMTP_PORT=str(smtp_port),
        LAPSE_SMTP_TIMEOUT="5",
        LAPSE_MAIL_FROM="lapse@crash.example",
        LAPSE_BATCH_SIZE="20",
        LAPSE_POLL_SECONDS="0.05",
        LAPSE_LEASE_SECONDS="3",
        LAPSE_WORKER_ID=f"crash-{worker}",
        PYTHONUNBUFFERED="1",
    )
    return env


def _remaining(url: str) -> str:
    """What is left to do at T1 ("" when nothing): due accounts and undelivered outbox rows."""
    store = open_store(url, clock=lambda: T1, migrate=False)
    try:
        due = store.earliest_due()
        pending = store.outbox(status="pending", limit=100_000)
        failed = store.outbox(status="failed", limit=100_000)
        left = []
        if due is not None and due <= T1:
            left.append(f"accounts due since {due.isoformat()}")
        if pending:
            errors = sorted({r.last_error or "" for r in pending} - {""})
            left.append(f"{len(pending)} outbox rows pending {errors[:3]}")
        if failed:
            left.append(f"{len(failed)} failed: {sorted({r.last_error or '' for r in failed})[:3]}")
        return "; ".join(left)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


@pytest.mark.slow
def test_sigkilled_worker_loses_nothing_and_repeats_nothing(store_url, smtp_server):
    _populate(store_url)
    rng = random.Random(20261122)
    started = 0

    def spawn() -> subprocess.Popen[bytes]:
        nonlocal started
        started += 1
        return subprocess.Popen(
            [sys.executable, str(WORKER)],
            env=_env(store_url, smtp_server.port, started),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    for _ in range(KILLS):
        worker = spawn()
        time.sleep(rng.uniform(0.3, 1.8))  # startup takes part of it: kills land anywhere
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    worker = spawn()
    try:
        deadline = time.monotonic() + 240
        while left := _remaining(store_url):
            assert time.monotonic() < deadline, f"the restarted worker did not finish: {left}"
            assert worker.poll() is None, "the worker died"
            time.sleep(1.0)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    store = open_store(store_url, clock=lambda: T1, migrate=False)
    try:
        _check(store, smtp_server, started)
    finally:
        store.close()  # type: ignore[attr-defined]


def _check(store, smtp_server, started: int) -> None:
    # every inactive account: exactly one case, opened once, in its grace period
    opened: Counter[str] = Counter()
    for record in store.audit(limit=1_000_000):
        if record.entry.kind == "case.opened":
            opened[record.entry.account_id] += 1
    idle = [f"idle-{i:04d}" for i in range(INACTIVE)]
    assert {a: opened[a] for a in idle} == dict.fromkeys(idle, 1)
    for i, account in enumerate(idle):
        (case,) = store.get(account).cases
        assert case.started_at == T0 - timedelta(days=334) + timedelta(minutes=i) + timedelta(
            days=365
        )
    # nobody who was still active was touched, no standard account deleted early
    busy = [f"busy-{i:04d}" for i in range(ACTIVE)]
    assert all(not store.get(a).cases and opened[a] == 0 for a in busy)
    assert all(store.tombstone(a) is None for a in idle + busy)
    # every test account deleted once, at T1 (its 30 days were over)
    stones = [store.tombstone(f"test-{i:04d}") for i in range(TESTS)]
    assert all(s is not None and s.deleted_at == T1 for s in stones)

    # every notice row created once and delivered; every email arrived
    rows = store.outbox(limit=1_000_000)
    email_rows = [r for r in rows if r.channel == "email"]
    assert len(email_rows) == INACTIVE * 2 * 2  # grace started + final warning, two admins
    undelivered = [
        (r.account_id, r.channel, r.status, r.last_error) for r in rows if r.status != "delivered"
    ]
    assert not undelivered, undelivered[:10]
    keys = Counter(r.idempotency_key for r in rows)
    assert max(keys.values()) == 1
    # every delivered notice is recorded as dispatched on its case (a kill between the
    # delivery and the dispatch used to leave the case waiting for ever, with nothing due)
    for row in rows:
        if row.status == "delivered" and isinstance(row.effect, NoticeEffect):
            case = store.get(row.account_id).case(row.case_id)
            record = case.notice(row.effect.key)
            assert record.dispatched_at is not None, (row.account_id, record.key)
    # so no case is stuck: each waits for its deadline, which the late final warning moved
    # to a full 7 days after it went out
    for account in idle:
        due = store.next_due(account)
        assert due is not None, account
        assert due >= T1 + timedelta(days=7), (account, due)
    received = Counter(m["Message-ID"] for m in smtp_server.messages)
    expected = {store_message_id(r.idempotency_key) for r in email_rows}
    assert set(received) == expected
    resent = sum(n - 1 for n in received.values())
    print(f"\n{started} worker runs, {KILLS} killed; {len(email_rows)} emails, {resent} resent")
    # at most the emails in flight at each kill are sent again (same Message-ID)
    assert resent <= KILLS * CONCURRENCY

    assert store.verify_audit().ok


def store_message_id(key: str) -> str:
    """The Message-ID the SMTP transport derives from an outbox row's idempotency key."""
    return f"<{key_digest(key)}@crash.example>"
