"""Three scheduler workers on one PostgreSQL database over 100,000 due accounts: every due step
is processed exactly once (issue 3: "two or more workers ... every due step processed exactly
once"). Each worker is a separate process claiming batches with FOR UPDATE SKIP LOCKED.

Afterwards every account has exactly one open grace case, exactly one `case.opened` audit entry
and the same outbox rows (each created once: the idempotency keys are unique), the workers'
counts add up to the number of accounts, the work was shared, and the audit chain is intact.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from lapse.core.model import Account, FactEntry, Member
from lapse.policy import load_preset
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store import open_store
from lapse.store.tables import audit, cases, outbox

pytestmark = pytest.mark.postgres

WORKER = Path(__file__).with_name("scheduler_proc.py")
T = datetime(2026, 6, 1, 12, tzinfo=UTC)
COUNT = 100_000
WORKERS = 3


def due_accounts() -> Iterator[Account]:
    """Accounts whose 12 months without a campaign ended during the day before T."""
    for i in range(COUNT):
        threshold = T - timedelta(days=1) + timedelta(seconds=86_400 * i / COUNT)
        last = threshold - timedelta(days=365)  # 12 months in 2025-2026 (no leap day)
        yield Account(
            id=f"acct-{i:06d}",
            kind="standard",
            created_at=last - timedelta(days=30),
            address=f"owner{i}@example.test",
            members=(Member(email=f"admin{i}@example.test", role="admin"),),
            signals={"campaign_sent": last},
            facts={"subscription_active": FactEntry(value=False, changed_at=last)},
        )


def test_workers_process_every_due_step_exactly_once(database) -> None:
    url = database("postgres")
    store = open_store(url, clock=lambda: T - timedelta(days=2), migrate=False)
    engine = Engine(
        load_preset("inactivity-cleanup"),
        store=store,
        clock=ManualClock(T - timedelta(days=2)),
        deliver_inline=False,
    )
    assert engine.import_accounts(due_accounts(), chunk=10_000) == COUNT
    store.close()  # type: ignore[attr-defined]

    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, f"w{n}", T.isoformat()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WORKERS)
    ]
    counts = []
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err
        counts.append(int(out.strip()))
    assert sum(counts) == COUNT, counts
    assert all(count > 0 for count in counts), f"the work was not shared: {counts}"

    db = create_engine(url)
    try:
        with db.connect() as conn:
            per_account = (
                select(cases.c.account_id, func.count().label("n"))
                .group_by(cases.c.account_id)
                .subquery()
            )
            assert conn.execute(
                select(per_account.c.n, func.count()).group_by(per_account.c.n)
            ).all() == [(1, COUNT)]
            opened = (
                select(audit.c.account_id, func.count().label("n"))
                .where(audit.c.kind == "case.opened")
                .group_by(audit.c.account_id)
                .subquery()
            )
            assert conn.execute(select(opened.c.n, func.count()).group_by(opened.c.n)).all() == [
                (1, COUNT)
            ]
            rows = (
                select(outbox.c.account_id, func.count().label("n"))
                .group_by(outbox.c.account_id)
                .subquery()
            )
            shapes = conn.execute(select(rows.c.n, func.count()).group_by(rows.c.n)).all()
            assert len(shapes) == 1, shapes  # every account got the same rows
            assert shapes[0][1] == COUNT
            assert shapes[0][0] >= 1
    finally:
        db.dispose()
    check = open_store(url, migrate=False)
    try:
        assert check.verify_audit().ok
        assert check.earliest_due() is None or check.earliest_due() > T
    finally:
        check.close()  # type: ignore[attr-defined]
