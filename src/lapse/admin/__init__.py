"""The admin web UI: server-rendered pages for support and compliance staff, mounted by the API
app under `/admin` (lapse.api.create_app), in the same process as `lapse serve`.

Staff sign in with an API token (`read` scope: look; `admin` scope: act too); the session lives
in a signed, HttpOnly, SameSite=Strict cookie, and every form that acts carries a CSRF token.
Pages read the engine and the store's listings; actions call the same Engine methods as the HTTP
API's admin routes, so the audit log names the token as `by`. No page needs JavaScript.
See docs/admin-ui.md.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from lapse.admin import actions, format, pages, queries
from lapse.admin.session import Sessions
from lapse.admin.web import (
    Admin,
    LoginRequired,
    NotAllowed,
    error_message,
    log,
    maybe_staff,
    quoted,
    redirect,
    render,
)
from lapse.api.problems import status_of
from lapse.errors import LapseError
from lapse.runtime.bootstrap import Services


def templates() -> Environment:
    """The admin templates: HTML autoescaped, undefined names an error, not an empty string."""
    env = Environment(
        loader=PackageLoader("lapse.admin", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seg"] = quoted
    env.globals.update(
        summary=format.effect_summary,
        opened_by=queries.opened_by,
        event_label=format.event_label,
        event_tone=format.event_tone,
        plural=format.plural,
        words=format.words,
    )
    return env


def create_admin(services: Services) -> FastAPI:
    """The admin UI over these services, to mount under `/admin`."""
    settings = services.settings
    key = settings.admin_session_key
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.admin = Admin(
        services=services,
        # unset (development only; Settings refuses it in production): sessions of this process
        sessions=Sessions(
            key.encode() if key else secrets.token_bytes(32),
            seconds=settings.admin_session_seconds,
        ),
        templates=templates(),
        secure_cookies=settings.env == "production",
    )
    app.mount("/static", StaticFiles(packages=[("lapse.admin", "static")]), name="static")
    app.include_router(pages.router)
    app.include_router(actions.router)
    _handlers(app)
    return app


async def _error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    """An error as a page (with the navigation when someone is signed in)."""
    staff = await run_in_threadpool(maybe_staff, request)  # it reads the tokens table
    return render(
        request, "error.html", staff=staff, status_code=status_code, title=title, message=message
    )


def _handlers(app: FastAPI) -> None:
    """Errors as pages: sign-in redirects, 403s, lapse errors, unknown pages, crashes."""

    async def on_login_required(request: Request, exc: Exception) -> Response:
        """To the login page, back here afterwards (GET pages only)."""
        assert isinstance(exc, LoginRequired)
        path = request.url.path.removeprefix(str(request.scope.get("root_path", "")))
        back = path + (f"?{request.url.query}" if request.url.query else "")
        flash = ("error", exc.message) if exc.message else None
        if request.method == "GET" and back not in ("", "/"):
            return redirect(request, "/login", flash=flash, next=back)
        return redirect(request, "/login", flash=flash)

    async def on_not_allowed(request: Request, exc: Exception) -> Response:
        """403, with what is missing."""
        assert isinstance(exc, NotAllowed)
        return await _error_page(request, 403, "Not allowed", exc.message)

    async def on_lapse_error(request: Request, exc: Exception) -> Response:
        """Unknown account, outbox row or receipt, bad filter...: the API's status, as a page."""
        assert isinstance(exc, LapseError)
        code = status_of(exc)
        if code >= 500:
            log.error("admin page failed", path=request.url.path, error=str(exc), code=exc.code)
        title = "Not found" if code == 404 else "Cannot show this page"
        return await _error_page(request, code, title, error_message(exc, capital=True))

    async def on_http(request: Request, exc: Exception) -> Response:
        """No such admin page (or method)."""
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return await _error_page(
                request, 404, "Not found", f"There is no admin page at {request.url.path}."
            )
        return await _error_page(request, exc.status_code, "Error", str(exc.detail))

    async def on_validation(request: Request, exc: Exception) -> Response:
        """A query parameter of the wrong type (?before=abc)."""
        assert isinstance(exc, RequestValidationError)
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return await _error_page(request, 422, "Invalid request", "; ".join(parts))

    async def on_crash(request: Request, exc: Exception) -> Response:
        """A bug: logged with its traceback, shown without details."""
        log.exception("admin page crashed", path=request.url.path)
        return await _error_page(
            request,
            500,
            "Something went wrong",
            "An unexpected error occurred; it was logged on the server.",
        )

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(NotAllowed, on_not_allowed)
    app.add_exception_handler(LapseError, on_lapse_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_crash)


__all__ = ["create_admin"]
