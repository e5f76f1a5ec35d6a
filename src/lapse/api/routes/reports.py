"""What the host reports in batches: signals (activity), facts and events. Each batch is validated
whole before anything is written, and written in one unit of work: all or nothing."""

from __future__ import annotations

from fastapi import APIRouter

from lapse.api.deps import EngineDep, SettingsDep, WriteToken, check_batch
from lapse.api.schemas import (
    EventBatch,
    EventBatchOut,
    EventResult,
    FactBatch,
    FactsOut,
    SignalBatch,
    SignalBatchOut,
)
from lapse.runtime import metrics
from lapse.runtime.engine import EventReport, FactReport

router = APIRouter(prefix="/v1", tags=["reports"])


@router.post("/signals", response_model=SignalBatchOut, summary="Report activity (batch)")
def post_signals(
    body: SignalBatch, engine: EngineDep, settings: SettingsDep, _: WriteToken
) -> SignalBatchOut:
    """Record `{account, name, at}` signals: coalesced to the latest time per account and signal."""
    check_batch("signals", body.signals, settings)
    now = engine.clock.now()
    result = engine.report_signals([(s.account, s.name, s.at or now) for s in body.signals])
    metrics.SIGNALS.inc(result.received)
    return SignalBatchOut(received=result.received, written=result.written, woken=result.woken)


@router.post("/facts", response_model=FactsOut, summary="Report facts of many accounts (batch)")
def post_facts(
    body: FactBatch, engine: EngineDep, settings: SettingsDep, _: WriteToken
) -> FactsOut:
    """Set facts of many accounts; each account is re-evaluated; all or nothing."""
    check_batch("facts", body.facts, settings)
    changed = engine.set_facts_many(
        [
            FactReport(account_id=item.account, facts=item.facts, at=item.at)  # type: ignore[arg-type]
            for item in body.facts
        ]
    )
    return FactsOut(received=len(body.facts), changed=changed)


@router.post("/events", response_model=EventBatchOut, summary="Report events (batch)")
def post_events(
    body: EventBatch, engine: EngineDep, settings: SettingsDep, _: WriteToken
) -> EventBatchOut:
    """Apply events in order; an id already applied is reported as a duplicate, not an error."""
    check_batch("events", body.events, settings)
    applied = engine.events(
        [
            EventReport(account_id=e.account, name=e.name, event_id=e.id, at=e.at, reason=e.reason)
            for e in body.events
        ]
    )
    results = [
        EventResult(id=e.id, account=e.account, status="applied" if ok else "duplicate")
        for e, ok in zip(body.events, applied, strict=True)
    ]
    count = sum(applied)
    return EventBatchOut(applied=count, duplicates=len(applied) - count, results=results)
