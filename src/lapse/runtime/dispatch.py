"""The outbox dispatcher: delivers what steps decided, after their transactions committed.

Delivery is at-least-once with a stable idempotency key per row; creation was exactly-once (the
store's unique key). A notice row is marked delivered in the transaction that records the notice
dispatched once all its rows went (`Store.notice_delivered`), and an in-app notification is
stored in that same transaction, so it can never be stored twice. A delete or purge row is
marked delivered in the transaction that writes its tombstone or receipt (`carry_out`), so a
worker killed after that commit leaves nothing to carry out again; while it runs, its claim is
renewed, so a deletion longer than the lease is not taken over. The worker's loops claim data
rows apart from deliveries (`rows=`), so a long deletion never holds up a notice. Only the
worker holding a row's claim writes its result: one whose lease ran out and whose row another
worker took over changes nothing. A failed attempt is retried with exponential backoff; a
permanent failure, or too many attempts, leaves the row `failed`: visible, retryable, and (for a
notice) holding its phase, because a phase never ends before its notices went out. A notice
whose case closed before it left (the holder renewed meanwhile) is skipped rather than sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import structlog

from lapse.core.model import Account, NoticeEffect
from lapse.errors import DeliveryError
from lapse.runtime.clock import Clock
from lapse.runtime.metrics import DELIVERIES
from lapse.store.base import NotificationDraft, OutboxItem, OutboxRows, Store

log = structlog.get_logger("lapse.dispatch")

CONCURRENCY = 16


class Channel(Protocol):
    """Delivers one outbox row (one notice to one recipient, or one host effect)."""

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """Deliver or raise DeliveryError."""
        ...


@runtime_checkable
class LocalChannel(Protocol):
    """A channel that delivers by writing into lapse's own database (in-app notifications):
    the dispatcher stores what `notification` returns in the transaction that marks the row
    delivered."""

    def notification(self, item: OutboxItem, account: Account | None) -> NotificationDraft:
        """What to store for this notice row, or raise DeliveryError."""
        ...


AnyChannel = Channel | LocalChannel


class NotYet(Exception):
    """Raised by `carry_out` when a row may not start yet (the global deletion rate limit):
    it waits until `until` without counting as a failed attempt."""

    def __init__(self, until: datetime, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


class ClaimLost(Exception):
    """Raised by `carry_out` when another worker holds the row by the time its outcome is
    recorded (this one's claim ran out): nothing was recorded, and the holder carries it out."""


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one dispatcher pass did."""

    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0

    def __add__(self, other: DispatchReport) -> DispatchReport:
        return DispatchReport(
            self.delivered + other.delivered,
            self.failed + other.failed,
            self.skipped + other.skipped,
            self.deferred + other.deferred,
        )


#: 1, 2, 4 ... 32 minutes, then hourly: 120 attempts span about five days (as mail servers do)
#: before a notice or host effect fails for good. Deletions and purges are obligations: they
#: retry hourly until done, unless the error is permanent.
MAX_ATTEMPTS = 120


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: doubling from 1 minute, at most 1 hour."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 60))


class Dispatcher:
    """Claims ready outbox rows and hands each to its channel."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        channels: Mapping[str, AnyChannel],
        carry_out: Callable[[OutboxItem, datetime], str],
        notice_delivered: Callable[[OutboxItem, datetime, NotificationDraft | None], bool],
        worker: str,
        lease: timedelta = timedelta(minutes=5),
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.channels = channels
        self.carry_out = carry_out
        self.notice_delivered = notice_delivered
        self.worker = worker
        self.lease = lease
        self.max_attempts = max_attempts

    async def run_once(self, limit: int = 100, *, rows: OutboxRows = "all") -> DispatchReport:
        """One pass over (at most `limit` of) the rows ready now: all of them, or only the
        deliveries or only the data runs (the worker's loops run the two apart, so that a long
        deletion does not hold up the notices that become ready meanwhile).

        Passes are kept small so that one finishes well inside the claim lease: a row is never
        claimed by a second worker while the first is still delivering it (a data run renews
        its claim while it runs).
        """
        now = self.clock.now()
        items = self.store.claim_outbox(now, limit, self.worker, self.lease, rows=rows)
        if not items:
            return DispatchReport()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(item: OutboxItem) -> DispatchReport:
            async with gate:
                return await self._one(item, now)

        # data rows (deletions, purges) run one at a time, after the notices of the pass
        data = [i for i in items if i.channel == "data"]
        others = [i for i in items if i.channel != "data"]
        reports = await asyncio.gather(*(one(i) for i in others))
        total = sum(reports, DispatchReport())
        for item in data:
            total = total + await self._one(item, now)
        return total

    async def _one(self, item: OutboxItem, now: datetime) -> DispatchReport:
        report = await self._attempt(item, now)
        for result, count in (
            ("delivered", report.delivered),
            ("failed", report.failed),
            ("skipped", report.skipped),
            ("deferred", report.deferred),
        ):
            if count:
                DELIVERIES.labels(channel=item.channel, result=result).inc(count)
        return report

    @contextmanager
    def _held(self, item: OutboxItem) -> Iterator[None]:
        """Keep this worker's claim on `item` alive while the block runs: a thread renews it
        every third of the lease, so a long deletion is not taken over by another worker."""
        stop = threading.Event()
        every = self.lease.total_seconds() / 3

        def renew() -> None:
            while not stop.wait(every):
                try:
                    if not self.store.extend_outbox_claim(item.id, self.worker, self.lease):
                        return  # lost (or finished): the outcome's unit finds out which
                except Exception:  # the next renewal tries again; the lease has two more thirds
                    log.warning("renewing an outbox claim failed", item=item.id, exc_info=True)

        thread = threading.Thread(target=renew, name=f"lapse-claim-{item.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _written(self, done: bool, item: OutboxItem, report: DispatchReport) -> DispatchReport:
        """`report` if this worker's result was written; nothing if it lost the claim."""
        if done:
            return report
        log.warning(
            "outbox row taken over by another worker; this attempt's result is dropped",
            item=item.id,
            channel=item.channel,
            account=item.account_id,
        )
        return DispatchReport()

    async def _attempt(self, item: OutboxItem, now: datetime) -> DispatchReport:
        worker = self.worker
        note: NotificationDraft | None = None
        try:
            if item.channel == "data":
                try:
                    with self._held(item):  # a deletion may outlast the lease
                        skipped = self.carry_out(item, now)
                except ClaimLost:
                    return self._written(False, item, DispatchReport())
                if skipped:
                    done = self.store.outbox_skipped(item.id, skipped, worker=worker)
                    return self._written(done, item, DispatchReport(skipped=1))
                # carried out: the row was marked delivered in the unit that recorded it
                return DispatchReport(delivered=1)
            account = self.store.get(item.account_id)
            effect = item.effect
            if isinstance(effect, NoticeEffect):
                reason = _stale_notice(effect, account)
                if reason:
                    done = self.store.outbox_skipped(item.id, reason, worker=worker)
                    return self._written(done, item, DispatchReport(skipped=1))
                if item.channel == "email" and not item.recipient:
                    raise DeliveryError(
                        f"notice {effect.key} has no recipient: the account has no admin member "
                        "and no address",
                        permanent=True,
                    )
            channel = self.channels.get(item.channel)
            if channel is None:
                raise DeliveryError(f"no transport is configured for channel {item.channel!r}")
            if isinstance(channel, LocalChannel):
                if not isinstance(effect, NoticeEffect):
                    raise DeliveryError(
                        f"channel {item.channel!r} stores notices; outbox row {item.id} is not one",
                        permanent=True,
                    )
                note = channel.notification(item, account)  # stored with the delivered mark
            else:
                await channel.deliver(item, account)
        except NotYet as wait:
            done = self.store.outbox_deferred(item.id, wait.until, wait.reason, worker=worker)
            log.info("delivery deferred", item=item.id, account=item.account_id, until=wait.until)
            return self._written(done, item, DispatchReport(deferred=1))
        except DeliveryError as exc:
            attempts = item.attempts + 1
            final = exc.permanent or (item.channel != "data" and attempts >= self.max_attempts)
            retry = None if final else now + backoff(attempts)
            done = self.store.outbox_failed(item.id, str(exc), retry, worker=worker)
            log.warning(
                "delivery failed",
                item=item.id,
                channel=item.channel,
                account=item.account_id,
                attempts=attempts,
                final=final,
                error=str(exc),
            )
            return self._written(done, item, DispatchReport(failed=1))
        if isinstance(item.effect, NoticeEffect):
            done = self.notice_delivered(item, now, note)
        else:
            done = self.store.outbox_delivered(item.id, now, worker=worker)
        return self._written(done, item, DispatchReport(delivered=1))


def _stale_notice(effect: NoticeEffect, account: Account | None) -> str:
    if account is None or account.deleted_at is not None:
        return "the account no longer exists"
    case = account.case(effect.case_id)
    if case is None:
        return "the case closed before the notice went out"
    if case.notice(effect.key) is None:
        return "the case no longer has this notice"
    return ""
