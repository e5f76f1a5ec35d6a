"""The admin UI's plumbing: its context on the app, the signed-in staff dependency, rendering
templates with safe headers, flash messages, and error pages.

Every page is HTML rendered on the server and works without JavaScript. Errors never become the
API's JSON problems here: a lapse error is shown as a page (or above the form that caused it)
with the same HTTP status the API would use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import structlog
from fastapi import Depends, Request
from jinja2 import Environment
from starlette.responses import HTMLResponse, RedirectResponse, Response

from lapse.admin.format import Clock
from lapse.admin.session import FLASH_COOKIE, SESSION_COOKIE, Session, Sessions
from lapse.api.deps import has_scope
from lapse.errors import LapseError
from lapse.runtime.bootstrap import Services
from lapse.store.base import TokenInfo

log = structlog.get_logger("lapse.admin")

_R = TypeVar("_R", bound=Response)

#: every admin page: nothing from elsewhere, no scripts, no inline styles, never framed; the
#: notices' HTML is shown in a sandboxed frame from this origin (see NOTICE_CSP)
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: a notice's HTML, as the recipient's mail client would show it but with no scripts, no
#: remote images (tracking pixels), no forms and no navigation: a sandboxed, unique origin
NOTICE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


@dataclass
class Admin:
    """What the admin app keeps: the wired services, the sessions and the templates."""

    services: Services
    sessions: Sessions
    templates: Environment
    secure_cookies: bool  # production: cookies only over HTTPS (a proxy terminates TLS)


def admin_of(request: Request) -> Admin:
    """The admin context of the app serving this request."""
    admin: Admin = request.app.state.admin
    return admin


def base_path(request: Request) -> str:
    """Where the admin UI is mounted ('/admin'), for links and cookie paths."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def clock_of(request: Request) -> Clock:
    """Times as of now, in the policy's time zone."""
    services = admin_of(request).services
    policy = services.engine.policy
    return Clock(now=services.clock.now(), zone=policy.timezone, zone_name=policy.timezone_name)


# --- who is signed in -------------------------------------------------------------------------


class LoginRequired(Exception):
    """No valid session: the handler sends the browser to the login page."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NotAllowed(Exception):
    """The signed-in token may not do this (or the form's CSRF token is wrong): a 403 page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in member of staff: their API token (as stored now) and session."""

    token: TokenInfo
    session: Session
    csrf: str

    @property
    def can_act(self) -> bool:
        """True with the `admin` scope: actions, retries."""
        return "admin" in self.token.scopes


def current_staff(request: Request) -> Staff:
    """The signed-in staff, from the session cookie and the token as stored now; LoginRequired
    if there is no session, it expired, or its token was revoked or lost its read scope."""
    admin = admin_of(request)
    session = admin.sessions.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        expired = SESSION_COOKIE in request.cookies
        raise LoginRequired("Your session has expired; sign in again." if expired else "")
    token = next(
        (t for t in admin.services.store.list_tokens() if t.id == session.token_id),
        None,
    )
    if token is None or token.revoked_at is not None or not has_scope(token, "read"):
        raise LoginRequired("The token of your session was revoked; sign in with another.")
    return Staff(token=token, session=session, csrf=admin.sessions.csrf(session))


StaffDep = Annotated[Staff, Depends(current_staff)]


def maybe_staff(request: Request) -> Staff | None:
    """The signed-in staff, or None (for error pages, which anyone may get)."""
    try:
        return current_staff(request)
    except (LoginRequired, LapseError):
        return None


def require_action(request: Request, staff: Staff, form: Mapping[str, Any]) -> None:
    """Refuse (NotAllowed) a form without the session's CSRF token, or from a token without
    the `admin` scope."""
    if not admin_of(request).sessions.csrf_ok(staff.session, form.get("csrf")):
        raise NotAllowed(
            "This form was not sent from an admin page of this session (its security token "
            "is missing or stale). Nothing was changed: reload the page and try again."
        )
    if not staff.can_act:
        raise NotAllowed(
            f"Your token {staff.token.name!r} has the scopes {', '.join(staff.token.scopes)}: "
            "it may look, not act. Acting needs a token with the admin scope. "
            "Nothing was changed."
        )


def require_csrf(request: Request, staff: Staff, form: Mapping[str, Any]) -> None:
    """Refuse (NotAllowed) a form without the session's CSRF token (read-only POSTs)."""
    if not admin_of(request).sessions.csrf_ok(staff.session, form.get("csrf")):
        raise NotAllowed(
            "This form was not sent from an admin page of this session (its security token "
            "is missing or stale): reload the page and try again."
        )


# --- responses --------------------------------------------------------------------------------


def secure_headers(response: _R, csp: str = PAGE_CSP) -> _R:
    """The headers every admin response carries: personal data is never cached or framed."""
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    if csp == PAGE_CSP:
        response.headers["X-Frame-Options"] = "DENY"
    return response


def render(
    request: Request,
    template: str,
    *,
    staff: Staff | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page: the template with the common context, the flash message shown once."""
    admin = admin_of(request)
    flash = admin.sessions.read_flash(request.cookies.get(FLASH_COOKIE))
    services = admin.services
    html = admin.templates.get_template(template).render(
        request=request,
        base=base_path(request),
        staff=staff,
        clock=clock_of(request),
        policy=services.engine.policy,
        manual_clock=services.settings.clock != "system",
        flash=flash,
        url=lambda path, **params: link(request, path, **params),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=base_path(request) or "/")
    return secure_headers(response)


def link(request: Request, path: str, **params: Any) -> str:
    """An admin URL: the mount point, the path, the non-empty query parameters."""
    query = {k: v for k, v in params.items() if v not in (None, "")}
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{base_path(request)}{path}{suffix}"


def quoted(value: str) -> str:
    """A path segment (account ids may hold any character but '/')."""
    return quote(value, safe="")


def redirect(
    request: Request, path: str, *, flash: tuple[str, str] | None = None, **params: Any
) -> RedirectResponse:
    """303 to an admin page (after a form), with an optional message for it."""
    response = RedirectResponse(link(request, path, **params), status_code=303)
    if flash is not None:
        set_cookie(request, response, FLASH_COOKIE, admin_of(request).sessions.flash(*flash), 60)
    return response


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    """An admin cookie: HttpOnly, SameSite=Strict, only under the mount point; Secure over
    HTTPS and in production."""
    admin = admin_of(request)
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=base_path(request) or "/",
        httponly=True,
        samesite="strict",
        secure=admin.secure_cookies or request.url.scheme == "https",
    )


def error_message(exc: LapseError, *, capital: bool = False) -> str:
    """A lapse error's message as a sentence (ending with a period)."""
    text = str(exc).strip() or exc.code
    if capital:
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
