"""`POST /v1/check`: many decisions in one request, the hot path of the HTTP API."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from lapse.api.deps import EngineDep, ReadToken, SettingsDep
from lapse.api.fastcheck import encode_results, parse_checks
from lapse.api.schemas import CheckBatchOut
from lapse.runtime import metrics

router = APIRouter(prefix="/v1", tags=["check"])

#: batches up to this size are answered on the event loop itself: for them the hand-off to a
#: worker thread and back (and the GIL contention it causes with the loop's socket writes)
#: costs more than the decisions; bigger batches go to the thread pool so the loop stays free
INLINE_MAX = 2_000

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckBatch"}}},
    }
}


@router.post(
    "/check",
    response_model=CheckBatchOut,
    summary="May these accounts do these actions now? (batch)",
    openapi_extra=_BODY,
)
async def check_batch(
    request: Request, engine: EngineDep, settings: SettingsDep, _: ReadToken
) -> Response:
    """Decisions for `{"checks": [{account, action}, ...]}`, in order, exact across processes."""
    # the body is read and written by hand: per-item pydantic models would cost more than the
    # decisions themselves (see lapse.api.fastcheck)
    pairs = parse_checks(await request.body(), settings.max_batch)
    if len(pairs) <= INLINE_MAX:
        decisions = engine.check_many(pairs)
    else:
        decisions = await run_in_threadpool(engine.check_many, pairs)
    metrics.CHECKS.inc(len(pairs))
    return Response(encode_results(pairs, decisions), media_type="application/json")
