"""The hash-chained audit log: list it, verify it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lapse.api.deps import EngineDep, ReadToken, StoreDep, decode_int_cursor, encode_cursor
from lapse.api.schemas import AuditPage, AuditRecordOut, AuditVerifyOut
from lapse.core.timeline import describe

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPage, summary="List audit entries")
def list_audit(
    engine: EngineDep,
    store: StoreDep,
    _: ReadToken,
    account: str | None = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Entries in chain order, optionally of one account, each with a plain-English line."""
    rows = store.audit(account_id=account, after=decode_int_cursor(cursor), limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditRecordOut.of(r, describe(r.entry, engine.policy)) for r in rows],
        next_cursor=encode_cursor(rows[-1].seq) if more else None,
    )


@router.get("/verify", response_model=AuditVerifyOut, summary="Verify the audit chain")
def verify_audit(store: StoreDep, _: ReadToken) -> AuditVerifyOut:
    """Walk the whole chain; every edited, inserted or removed entry is listed with its seq."""
    return AuditVerifyOut.of(store.verify_audit())
