"""One scheduler worker for the exactly-once test: `python scheduler_proc.py URL WORKER MOMENT`.

Claims and processes due accounts at the frozen MOMENT until nothing is due, then prints how many
accounts it processed (the test sums them up). No dispatcher: only the scheduler is under test.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from lapse.policy import load_preset
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store import open_store


def main(url: str, worker: str, moment: str) -> None:
    """Run the scheduler at `moment` until nothing is due; print the count."""
    now = datetime.fromisoformat(moment)
    store = open_store(url, clock=lambda: now, migrate=False)
    engine = Engine(
        load_preset("inactivity-cleanup"),
        store=store,
        clock=ManualClock(now),
        worker_id=worker,
        lease=timedelta(minutes=5),
        batch_size=500,
        deliver_inline=False,
    )
    processed = 0
    while count := engine.step_once():
        processed += count
    print(processed, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
