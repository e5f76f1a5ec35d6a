"""The account's data: deletion and purge receipts, and exports through signed, expiring links.

An export is asked for with `POST /v1/accounts/{id}/exports` (refused, 409 `export-denied`,
while the account's restrictions deny `export`, with the denying cases), which answers with a
download link. The link carries its own credential, an HMAC-signed token with the account and an
expiry (`LAPSE_EXPORT_LINK_SECONDS`), so a browser can follow it without a bearer token; the
restrictions are checked again when it is followed, and the ZIP is streamed as it is produced.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, JsonValue
from pydantic_core import to_jsonable_python
from starlette.responses import Response

from lapse.api.deps import (
    EngineDep,
    ReadToken,
    ServicesDep,
    StoreDep,
    WriteToken,
    decode_int_cursor,
    encode_cursor,
)
from lapse.api.problems import Forbidden, error_response
from lapse.data.export import ExportDenied, start_export
from lapse.errors import NotFound
from lapse.runtime.bootstrap import Services
from lapse.store.base import StoredReceipt

router = APIRouter(tags=["data"])
log = structlog.get_logger("lapse.api.exports")


class InvalidLink(Forbidden):
    """An export link that is malformed, forged or expired (403)."""

    code = "invalid-link"


# --- bodies ---------------------------------------------------------------------------------


class ReceiptOut(BaseModel):
    """A deletion or purge receipt: the receipt itself (`body`, hash included) and its id."""

    id: str
    account: str
    case: str
    flow: str
    kind: Literal["delete", "purge"]
    finished_at: datetime
    hash: str = Field(description="SHA-256 of `body` without `hash` (see docs/data.md).")
    body: dict[str, JsonValue]

    @classmethod
    def of(cls, r: StoredReceipt) -> ReceiptOut:
        """From the store's receipt."""
        return cls(
            id=r.id,
            account=r.account_id,
            case=r.case_id,
            flow=r.flow,
            kind="delete" if r.kind == "delete" else "purge",
            finished_at=r.finished_at,
            hash=r.hash,
            body=to_jsonable_python(dict(r.body)),
        )


class ReceiptPage(BaseModel):
    """A page of receipts."""

    items: list[ReceiptOut]
    next_cursor: str | None


class ExportLink(BaseModel):
    """Where to download the export, and until when the link works."""

    account: str
    url: str = Field(description="`GET` it (no bearer token needed) to stream the ZIP.")
    expires_at: datetime


class DenialBody(BaseModel):
    """One case that denies the export."""

    case: str
    flow: str
    phase: str
    reason: str
    message: str
    until: datetime | None


# --- receipts -------------------------------------------------------------------------------


@router.get("/v1/receipts", response_model=ReceiptPage, summary="List deletion and purge receipts")
def list_receipts(
    store: StoreDep,
    _: ReadToken,
    account: str | None = None,
    kind: Literal["delete", "purge"] | None = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReceiptPage:
    """Receipts in the order they were written, filtered by account and kind."""
    rows = store.receipts(
        account_id=account, kind=kind, after=decode_int_cursor(cursor), limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return ReceiptPage(
        items=[ReceiptOut.of(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].seq) if more else None,
    )


@router.get("/v1/receipts/{receipt_id}", response_model=ReceiptOut, summary="One receipt")
def get_receipt(receipt_id: str, store: StoreDep, _: ReadToken) -> ReceiptOut:
    """A receipt by its id (`del_...` for deletions, `prg_...` for purges)."""
    found = store.receipt(receipt_id)
    if found is None:
        raise NotFound(f"no receipt {receipt_id!r}")
    return ReceiptOut.of(found)


@router.get(
    "/v1/accounts/{account_id}/receipt",
    response_model=ReceiptOut,
    tags=["accounts"],
    summary="The deletion receipt of a deleted account",
)
def get_account_receipt(account_id: str, store: StoreDep, _: ReadToken) -> ReceiptOut:
    """What the deletion removed, where and when; 404 if the account was not deleted."""
    found = store.receipts(account_id=account_id, kind="delete", limit=1)
    if not found:
        raise NotFound(f"account {account_id!r} has no deletion receipt: it was not deleted")
    return ReceiptOut.of(found[0])


# --- exports --------------------------------------------------------------------------------


def _secret(request: Request, services: Services) -> bytes:
    configured = services.settings.export_secret
    if configured:
        return configured.encode()
    # one random key per process: links then work only on the process that issued them
    key: bytes | None = getattr(request.app.state, "export_key", None)
    if key is None:
        key = secrets.token_bytes(32)
        request.app.state.export_key = key
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(key: bytes, account_id: str, expires: int) -> str:
    """The token of a download link: payload and HMAC-SHA256, both base64url."""
    payload = json.dumps({"a": account_id, "e": expires}, separators=(",", ":")).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def read_link(key: bytes, token: str, now: float) -> str:
    """The account id a valid, unexpired token grants; InvalidLink otherwise."""
    try:
        payload_text, mac_text = token.split(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        data: Any = json.loads(payload)
    except (ValueError, binascii.Error):
        raise InvalidLink("the export link is malformed") from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected) or not isinstance(data, dict):
        raise InvalidLink("the export link is not valid (forged, or issued by another server)")
    account, expires = data.get("a"), data.get("e")
    if not isinstance(account, str) or not isinstance(expires, int):
        raise InvalidLink("the export link is not valid")
    if now >= expires:
        when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise InvalidLink(f"the export link expired at {when}; ask for a new one")
    return account


def _denied(exc: ExportDenied) -> Response:
    cases = [
        DenialBody(
            case=d.case_id,
            flow=d.flow,
            phase=d.phase,
            reason=d.reason,
            message=d.message,
            until=d.until,
        ).model_dump(mode="json")
        for d in exc.decision.denials
    ]
    return error_response(exc, message=exc.decision.message, cases=cases)


_DENIED: dict[int | str, dict[str, Any]] = {
    409: {"description": "`export-denied`: the account's restrictions deny `export`; `cases`."}
}


@router.post(
    "/v1/accounts/{account_id}/exports",
    status_code=status.HTTP_201_CREATED,
    response_model=ExportLink,
    tags=["accounts"],
    summary="Ask for an export of the account's data",
    responses=_DENIED,
)
def create_export(
    account_id: str,
    request: Request,
    services: ServicesDep,
    engine: EngineDep,
    _: WriteToken,
) -> ExportLink | Response:
    """A short-lived download link, if the account may `export` now (409 with the denying
    cases otherwise)."""
    try:
        start_export(engine, account_id)  # refuses now rather than at download
    except ExportDenied as exc:
        return _denied(exc)
    expires = int(time.time()) + services.settings.export_link_seconds
    token = sign_link(_secret(request, services), account_id, expires)
    return ExportLink(
        account=account_id,
        url=f"/v1/exports/{token}",
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


@router.get(
    "/v1/exports/{token}",
    summary="Download an export (ZIP)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The ZIP, streamed."},
        403: {"description": "`invalid-link`: malformed, forged or expired."},
        **_DENIED,
    },
)
def download_export(token: str, request: Request, services: ServicesDep) -> Response:
    """Stream the ZIP: one CSV per location and `manifest.json` (rows and SHA-256 per file)."""
    account_id = read_link(_secret(request, services), token, time.time())
    try:
        chunks, _manifest = start_export(services.engine, account_id)
    except ExportDenied as exc:
        return _denied(exc)
    # the first chunk before the status line: a store that fails at once (a webhook host
    # answering 500, a database that is down) becomes a problem response, not a 200 cut short
    first = next(chunks, b"")
    stamp = services.clock.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in account_id)[:80]
    return StreamingResponse(
        _stream(first, chunks, account_id),
        media_type="application/zip",
        headers={
            "content-disposition": f'attachment; filename="lapse-export-{safe}-{stamp}.zip"',
            "cache-control": "no-store",
        },
    )


def _stream(first: bytes, rest: Iterator[bytes], account_id: str) -> Iterator[bytes]:
    """The archive's chunks. A failure once the response has started cannot change its status:
    it propagates, so the server aborts the connection (no last chunk of the chunked encoding)
    and the client sees an incomplete transfer, never a ZIP that looks complete (its central
    directory, written last, is not sent)."""
    yield first
    try:
        yield from rest
    except Exception as exc:
        log.error("export aborted mid-stream", account=account_id, error=str(exc))
        raise
