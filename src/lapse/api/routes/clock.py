"""The controlled clock, for end-to-end tests and demonstrations.

Mounted only when the process runs with `LAPSE_CLOCK=manual` (which Settings refuses in
production); otherwise these routes do not exist and answer 404. Time moves forward only, except
when a simulation starts over (`/reset`), which erases everything that happened on the clock.
"""

from __future__ import annotations

from fastapi import APIRouter

from lapse.api.deps import AdminToken, EngineDep, ReadToken, parse_duration
from lapse.api.schemas import ClockMove, ClockMoved, ClockOut, ClockReset
from lapse.errors import InvalidInput
from lapse.policy.durations import add
from lapse.runtime.clock import ManualClock

router = APIRouter(prefix="/v1/clock", tags=["clock (manual mode only)"])


@router.get("", response_model=ClockOut, summary="The controlled clock's time")
def get_clock(engine: EngineDep, _: ReadToken) -> ClockOut:
    """Where the manual clock stands."""
    return ClockOut(now=engine.clock.now())


@router.post("", response_model=ClockMoved, summary="Move the controlled clock forward")
def move_clock(body: ClockMove, engine: EngineDep, _: AdminToken) -> ClockMoved:
    """Advance by a duration or to a time, and run what falls due on the way."""
    clock = engine.clock
    assert isinstance(clock, ManualClock)  # the router is only mounted with one
    if (body.advance is None) == (body.to is None):
        raise InvalidInput("give exactly one of `advance` (e.g. '3 days') and `to`")
    now = clock.now()
    target = add(now, parse_duration(body.advance, "advance")) if body.advance else body.to
    assert target is not None
    if target < now:
        raise InvalidInput(
            f"to: the clock cannot go back from {now.isoformat()} to {target.isoformat()}"
        )
    if body.catch_up:
        clock.set(target)
        report = engine.run_due()
    else:
        report = engine.run_until(target)
    return ClockMoved(
        now=clock.now(),
        processed=report.processed,
        delivered=report.delivered,
        failed=report.failed,
    )


@router.post("/reset", response_model=ClockOut, summary="Start the simulation over")
def reset_clock(body: ClockReset, engine: EngineDep, _: AdminToken) -> ClockOut:
    """Erase every account and everything about it (outbox, audit chain, tombstones, in-app
    notifications; API tokens stay), then put the clock at `to`, even back in time."""
    clock = engine.clock
    assert isinstance(clock, ManualClock)  # the router is only mounted with one
    engine.erase()
    return ClockOut(now=clock.restart(body.to))
