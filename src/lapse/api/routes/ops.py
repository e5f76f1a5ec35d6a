"""Operations: `/health` for load balancers (open) and `/metrics` for Prometheus (open, or behind
LAPSE_METRICS_TOKEN when it is set)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lapse.api.deps import ServicesDep, metrics_access
from lapse.api.schemas import HealthOut, ProblemOut
from lapse.policy.model import STATE_STRENGTH
from lapse.runtime import metrics
from lapse.store.base import StoreError

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Is the database reachable, and how far behind is the scheduler?",
    responses={503: {"model": HealthOut, "description": "The database is unreachable."}},
)
def health(services: ServicesDep) -> HealthOut | JSONResponse:
    """200 if the database answers; `scheduler_lag_seconds` is now minus the earliest due time."""
    engine = services.engine
    policy = f"{engine.policy.name} v{engine.policy.version}"
    now = services.clock.now()
    try:
        lag = engine.scheduler_lag()
    except StoreError as exc:
        down = HealthOut(
            status="unavailable",
            database=str(exc),
            now=now,
            scheduler_lag_seconds=None,
            policy=policy,
        )
        return JSONResponse(down.model_dump(mode="json"), status_code=503)
    return HealthOut(
        status="ok",
        database="ok",
        now=now,
        scheduler_lag_seconds=lag.total_seconds(),
        policy=policy,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(metrics_access)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
        401: {
            "model": ProblemOut,
            "description": "LAPSE_METRICS_TOKEN is set and the request does not bear it.",
        },
        503: {"model": ProblemOut, "description": "The database is unreachable."},
    },
)
def prometheus(services: ServicesDep) -> Response:
    """Counters of this process, and account/outbox gauges refreshed from the database."""
    by_state = services.store.count_by_state()
    for state in STATE_STRENGTH:
        metrics.ACCOUNTS.labels(state=state).set(by_state.get(state, 0))
    for status, count in services.engine.outbox_counts().items():
        metrics.OUTBOX.labels(status=status).set(count)
    body = generate_latest(metrics.REGISTRY) + generate_latest(metrics.DATABASE)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
