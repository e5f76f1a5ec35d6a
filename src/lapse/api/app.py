"""`create_app(services)`: the FastAPI application over a wired lapse process.

Routes are thin: they validate the request, call the engine (or read the store's listings) and
convert the result. Errors become RFC 9457 problems in one handler (`lapse.api.problems`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from lapse.api import problems
from lapse.api.deps import SCOPES, TokenCache
from lapse.api.routes import (
    accounts,
    actions,
    audit,
    checks,
    clock,
    data,
    ops,
    outbox,
    policy,
    reports,
    tokens,
)
from lapse.api.schemas import CheckBatch, ProblemOut
from lapse.runtime.bootstrap import Services
from lapse.runtime.clock import ManualClock

DESCRIPTION = """\
The HTTP API of lapse, the account lifecycle engine: report what happens to accounts (signals,
facts, events), ask what they may do (`check`), see why (`status`, `timeline`) and act on them.

Authentication: `Authorization: Bearer <token>`. Scopes: {scopes}.
Errors are RFC 9457 `application/problem+json` documents.
"""

#: problems every authenticated route may answer, documented once per router
_AUTH_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "content": {problems.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}},
    }
    for status, text in (
        (401, "No valid bearer token."),
        (403, "The token lacks the scope."),
        (404, "Unknown account or resource."),
        (409, "Conflicts with the account's current state."),
        (410, "The account was deleted."),
        (413, "Body or batch over the configured limits."),
        (422, "Invalid input: `errors` lists each path."),
    )
}


def _version() -> str:
    try:
        return version("lapse")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


def create_app(services: Services) -> FastAPI:
    """The API for these services. With a manual clock, time (and due work) moves only through
    `POST /v1/clock`, so the engine delivers inline and no background loop is needed."""
    settings = services.settings
    app = FastAPI(
        title="lapse",
        version=_version(),
        description=DESCRIPTION.format(
            scopes="; ".join(f"`{name}`: {text}" for name, text in SCOPES.items())
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.tokens = TokenCache()
    problems.install(app)
    app.add_middleware(problems.BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(ops.router)
    for module in (accounts, reports, checks, actions, outbox, audit, tokens, data, policy):
        app.include_router(module.router, responses=_AUTH_PROBLEMS)
    if settings.clock == "manual" and isinstance(services.clock, ManualClock):
        services.engine.deliver_inline = True
        app.include_router(clock.router, responses=_AUTH_PROBLEMS)
    # the admin web UI (lapse.admin): HTML pages with their own sign-in and error pages; imported
    # here, as it imports API modules itself (the outbox rendering, the token scopes)
    from lapse.admin import create_admin

    app.mount("/admin", create_admin(services), name="admin")

    def openapi() -> dict[str, Any]:
        """The OpenAPI document, built once, with the models FastAPI cannot see."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # models the routes use without FastAPI seeing them: the hand-parsed batch check
            # body and the problem documents of the error handler
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (CheckBatch, ProblemOut):
                extra = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(extra.pop("$defs", {}))
                components[model.__name__] = extra
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
