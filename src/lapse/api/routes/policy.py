"""The policy: the one this process runs (read scope), and the preview of a proposed one over
the stored accounts (admin scope; nothing is written). Applying one is `lapse policy apply`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from lapse.api.deps import AdminToken, EngineDep, ReadToken, StoreDep
from lapse.api.problems import RequestInvalid
from lapse.api.schemas import PolicyOut, PolicyPreviewOut
from lapse.core.migrate import MODES, MigrationMode
from lapse.policy import load_policy

router = APIRouter(prefix="/v1/policy", tags=["policy"])

_YAML_BODY = {
    "requestBody": {
        "required": True,
        "description": "The proposed policy document (YAML), as `lapse policy check` reads it.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


@router.get("", response_model=PolicyOut, summary="The active policy")
def get_policy(engine: EngineDep, store: StoreDep, _: ReadToken) -> PolicyOut:
    """Name, version and digest of the policy this process runs, when and how it was applied,
    and how many open cases each policy version has."""
    return PolicyOut.of(engine.policy, store.active_policy(), store.open_cases_by_version())


@router.post(
    "/preview",
    response_model=PolicyPreviewOut,
    summary="Preview a policy over the stored accounts",
    openapi_extra=_YAML_BODY,
)
async def preview_policy(
    request: Request,
    engine: EngineDep,
    _: AdminToken,
    mode: Annotated[
        Literal["keep", "replan"] | None,
        Query(description="Preview one migration mode (default: both)."),
    ] = None,
    close_removed: Annotated[
        bool, Query(description="Close cases whose flow or phase the new version lacks.")
    ] = False,
) -> PolicyPreviewOut:
    """What applying the document in the body would do, as of now: deadlines that move (per
    flow and phase, keeping or re-planning them), cases that close or cannot be migrated,
    accounts that would open a case, notices and outcomes at once. An invalid document is a
    422 problem whose `errors` give each problem's line and column."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestInvalid("the body is not UTF-8 text: send the policy document") from None
    if not text.strip():
        raise RequestInvalid("the request needs a policy document (YAML) as its body")
    policy = load_policy(text, source="body")
    modes: tuple[MigrationMode, ...] = (mode,) if mode is not None else MODES
    result = await run_in_threadpool(
        engine.preview_policy, policy, modes=modes, close_removed=close_removed
    )
    return PolicyPreviewOut.of(result)
