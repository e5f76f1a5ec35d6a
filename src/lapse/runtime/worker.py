"""The background loops: the scheduler (due accounts), the dispatcher (the outbox's notices and
host effects), the data runs (its deletions and purges, apart so that a long one holds up no
notice) and, with a retention set, the housekeeper (pruning the outbox's finished rows and their
in-app notifications, and old event ids).

Polling guarantees progress: each loop works while there is work and sleeps `poll` seconds when
there is none. `lapse serve` runs them in threads next to the API; `lapse worker` runs them in
the foreground, and several workers on PostgreSQL share the work through claims.
"""

from __future__ import annotations

import asyncio
import threading
import time

import structlog

from lapse.policy.durations import Duration
from lapse.runtime import heap, metrics
from lapse.runtime.engine import Engine
from lapse.store.base import OutboxRows

log = structlog.get_logger("lapse.worker")


class Loops:
    """Run the scheduler, the dispatcher and the data runs of one engine until stopped."""

    def __init__(
        self,
        engine: Engine,
        *,
        poll: float = 1.0,
        retention: Duration | None = None,
        event_retention: Duration | None = None,
        prune_every: float = 3600.0,
    ) -> None:
        self.engine = engine
        self.poll = poll
        self.retention = retention
        self.event_retention = event_retention
        self.prune_every = prune_every
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    def scheduler(self) -> None:
        """Claim and process due batches; sleep when nothing is due."""
        while not self.stop_event.is_set():
            started = time.perf_counter()
            try:
                # a policy applied by another process (`lapse policy apply`) is followed
                # before every batch (one indexed read): a batch never runs a policy that was
                # replaced before it started
                self.engine.refresh_policy()
                count = self.engine.step_once()
            except Exception:  # a database hiccup must not kill the loop; it is retried
                log.exception("scheduler pass failed")
                self.stop_event.wait(self.poll)
                continue
            if count:
                metrics.STEPS.inc(count)
                metrics.BATCHES.observe(time.perf_counter() - started)
            if count < self.engine.batch_size:
                self.stop_event.wait(self.poll)

    def dispatcher(self) -> None:
        """Deliver ready notices and host effects; sleep when there are none."""
        self._outbox_loop("deliveries", 100)

    def data_runs(self) -> None:
        """Carry out ready deletions and purges, one at a time, beside the deliveries: a
        deletion of millions of rows takes minutes, and the notices that become ready
        meanwhile must not wait for it."""
        self._outbox_loop("data", 1)

    def _outbox_loop(self, rows: OutboxRows, limit: int) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self.stop_event.is_set():
                try:
                    report = loop.run_until_complete(
                        self.engine.dispatcher.run_once(limit, rows=rows)
                    )
                except Exception:
                    log.exception("dispatcher pass failed", rows=rows)
                    self.stop_event.wait(self.poll)
                    continue
                if not (report.delivered or report.failed or report.skipped):
                    self.stop_event.wait(self.poll)
        finally:
            loop.close()

    def housekeeper(self) -> None:
        """With a retention: prune at start and every `prune_every` seconds."""
        rounds = []
        if self.retention is not None:
            rounds += [
                ("outbox rows", self.retention, self.engine.prune_outbox, metrics.OUTBOX_PRUNED),
                (
                    "in-app notifications",
                    self.retention,
                    self.engine.prune_notifications,
                    metrics.NOTIFICATIONS_PRUNED,
                ),
            ]
        if self.event_retention is not None:
            rounds.append(
                ("event ids", self.event_retention, self.engine.prune_events, metrics.EVENTS_PRUNED)
            )
        while rounds and not self.stop_event.is_set():
            for what, retention, prune, counter in rounds:
                try:
                    pruned = prune(retention)
                except Exception:  # retried at the next round; nothing depends on it meanwhile
                    log.exception("pruning failed", what=what)
                else:
                    if pruned:
                        counter.inc(pruned)
                        log.info("pruned", what=what, rows=pruned, retention=str(retention))
            self.stop_event.wait(self.prune_every)

    def recover(self) -> None:
        """Once per start: wake the accounts whose delivered notices were never recorded as
        dispatched (left by an older version killed between the two), for the scheduler."""
        try:
            woken = self.engine.recover_notices()
        except Exception:  # the loops run anyway; the next start tries again
            log.exception("recovering undispatched notices failed")
            return
        if woken:
            log.warning(
                "woke accounts whose delivered notices were never recorded as dispatched",
                accounts=len(woken),
            )

    def start(self) -> None:
        """Start the loops in daemon threads, and the recovery pass beside them (it reads
        every open case with a delivered notice, so it must not hold up the scheduler)."""
        heap.settle()  # what exists now lives as long as the process: see lapse.runtime.heap
        targets = [self.scheduler, self.dispatcher, self.data_runs]
        if self.retention is not None or self.event_retention is not None:
            targets.append(self.housekeeper)
        for target in targets:
            thread = threading.Thread(target=target, name=f"lapse-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        threading.Thread(target=self.recover, name="lapse-recover", daemon=True).start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loops to stop and wait for them."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def run_forever(self) -> None:
        """Run the loops until interrupted (for `lapse worker`)."""
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            self.stop()
