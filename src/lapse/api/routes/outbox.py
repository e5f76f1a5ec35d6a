"""The outbox: every notice, host effect and deletion lapse decided, and how delivery went."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from lapse.api.deps import (
    AdminToken,
    EngineDep,
    ReadToken,
    ServicesDep,
    StoreDep,
    decode_int_cursor,
    encode_cursor,
)
from lapse.api.schemas import OutboxContentOut, OutboxPage, OutboxRowOut, RenderedOut
from lapse.core.model import NoticeEffect
from lapse.notify.templates import RenderedNotice
from lapse.runtime.bootstrap import Services
from lapse.store.base import OutboxItem

router = APIRouter(prefix="/v1/outbox", tags=["outbox"])

OutboxStatus = Literal["pending", "delivered", "failed", "skipped"]


@router.get("", response_model=OutboxPage, summary="List outbox rows")
def list_outbox(
    store: StoreDep,
    _: ReadToken,
    status: OutboxStatus | None = None,
    account: str | None = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OutboxPage:
    """Outbox rows, oldest first, filtered by status and account."""
    rows = store.outbox(
        account_id=account, status=status, after=decode_int_cursor(cursor), limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return OutboxPage(
        items=[OutboxRowOut.of(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


def render_row(services: Services, item: OutboxItem) -> RenderedNotice | str:
    """A notice row's subject, text and HTML as rendered now, or why there are none (also
    what the admin UI shows)."""
    if not isinstance(item.effect, NoticeEffect):
        return "only notices have content"
    account = services.engine.store.get(item.account_id)
    if account is None or account.deleted_at is not None:
        return "the account was deleted; its notices cannot be rendered"
    recipient = item.recipient or account.address or ""
    return services.render(item.effect, account, recipient)


@router.get("/{row_id}", response_model=OutboxContentOut, summary="View one outbox row")
def get_row(row_id: int, services: ServicesDep, _: ReadToken) -> OutboxContentOut:
    """The row, and for a notice its subject, text and HTML as rendered now."""
    item = services.engine.outbox_row(row_id)
    row = OutboxRowOut.of(item)
    rendered = render_row(services, item)
    if isinstance(rendered, str):
        return OutboxContentOut(row=row, rendered=None, note=rendered)
    return OutboxContentOut(row=row, rendered=RenderedOut.of(rendered))


@router.post("/{row_id}/retry", response_model=OutboxRowOut, summary="Retry a failed row")
def retry_row(row_id: int, engine: EngineDep, token: AdminToken) -> OutboxRowOut:
    """Put a failed row back to pending, due now (409 if it is not failed)."""
    return OutboxRowOut.of(engine.retry_outbox(row_id, by=token.name))
