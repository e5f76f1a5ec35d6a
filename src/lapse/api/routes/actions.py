"""Admin actions on one account: lock, unlock, extend, legal hold, reactivate, suspend, delete.

Each needs the `admin` scope and a reason; the audit log records the token's name as `by`.
Each answers with the account's status after the action.
"""

from __future__ import annotations

from fastapi import APIRouter

from lapse.api.deps import AdminToken, EngineDep, parse_duration
from lapse.api.schemas import (
    DeleteIn,
    ExtendIn,
    HoldIn,
    LockIn,
    ReactivateIn,
    StatusOut,
    SuspendIn,
    UnlockIn,
)
from lapse.errors import InvalidInput

router = APIRouter(prefix="/v1/accounts/{account_id}/actions", tags=["admin actions"])


@router.post("/lock", response_model=StatusOut, summary="Lock the account")
def lock(account_id: str, body: LockIn, engine: EngineDep, token: AdminToken) -> StatusOut:
    """Open a reversible flow by hand (default: the one event-started flow for its kind)."""
    engine.lock(account_id, by=token.name, reason=body.reason, flow=body.flow)
    return StatusOut.of(engine.status(account_id))


@router.post("/unlock", response_model=StatusOut, summary="Unlock the account")
def unlock(account_id: str, body: UnlockIn, engine: EngineDep, token: AdminToken) -> StatusOut:
    """Close one case, or every reversible open case; restrictions lift at once."""
    engine.reactivate(account_id, by=token.name, reason=body.reason, case_id=body.case)
    return StatusOut.of(engine.status(account_id))


@router.post("/reactivate", response_model=StatusOut, summary="Reactivate the account")
def reactivate(
    account_id: str, body: ReactivateIn, engine: EngineDep, token: AdminToken
) -> StatusOut:
    """Close one case or every reversible one; the flows re-arm from now (or `snooze_until`)."""
    engine.reactivate(
        account_id,
        by=token.name,
        reason=body.reason,
        case_id=body.case,
        snooze_until=body.snooze_until,
    )
    return StatusOut.of(engine.status(account_id))


@router.post("/extend", response_model=StatusOut, summary="Extend a case's deadline")
def extend(account_id: str, body: ExtendIn, engine: EngineDep, token: AdminToken) -> StatusOut:
    """Move the case's current deadline (and every later one) by `duration` or to `until`."""
    if (body.duration is None) == (body.until is None):
        raise InvalidInput("give exactly one of `duration` (e.g. '14 days') and `until`")
    engine.extend(
        account_id,
        case_id=body.case,
        by=token.name,
        reason=body.reason,
        duration=parse_duration(body.duration, "duration") if body.duration else None,
        until=body.until,
    )
    return StatusOut.of(engine.status(account_id))


@router.post("/legal-hold", response_model=StatusOut, summary="Place a legal hold")
def legal_hold(account_id: str, body: HoldIn, engine: EngineDep, token: AdminToken) -> StatusOut:
    """Block every deletion and purge of the account until the hold is released."""
    engine.legal_hold(account_id, on=True, by=token.name, reason=body.reason)
    return StatusOut.of(engine.status(account_id))


@router.post("/release-hold", response_model=StatusOut, summary="Release the legal hold")
def release_hold(account_id: str, body: HoldIn, engine: EngineDep, token: AdminToken) -> StatusOut:
    """Lift the hold; a held deletion whose last warning is too old is warned again first."""
    engine.legal_hold(account_id, on=False, by=token.name, reason=body.reason)
    return StatusOut.of(engine.status(account_id))


@router.post("/suspend", response_model=StatusOut, summary="Suspend the account")
def suspend(account_id: str, body: SuspendIn, engine: EngineDep, token: AdminToken) -> StatusOut:
    """Open an irreversible flow (default: the one for its kind); it cannot be undone."""
    engine.suspend(account_id, by=token.name, reason=body.reason, flow=body.flow)
    return StatusOut.of(engine.status(account_id))


@router.post(
    "/delete",
    response_model=StatusOut,
    status_code=202,
    summary="Delete the account now",
)
def delete_now(account_id: str, body: DeleteIn, engine: EngineDep, token: AdminToken) -> StatusOut:
    """Order the deletion now, through a deleting flow's outcome (the outbox, the data
    connectors, the tombstone and receipt, the flow's address rule); a worker carries it out.
    Refused (409) under a legal hold."""
    engine.delete_now(account_id, by=token.name, reason=body.reason, flow=body.flow)
    return StatusOut.of(engine.status(account_id))
