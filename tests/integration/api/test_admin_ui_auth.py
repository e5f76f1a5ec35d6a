"""The admin UI's sign-in: token login, the session cookie, logout, expiry, revocation, scopes
and CSRF, over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from admin_helpers import Staff, text
from api_helpers import Factory, Server

from lapse.admin.session import SESSION_COOKIE, Sessions

KEY = "an-admin-session-key-for-the-tests-0123456789"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ui(request: pytest.FixtureRequest, make_server: Factory) -> Server:
    """An API with the admin UI on each database, its session key known to the test."""
    server = make_server(request.param, policy="inactivity-cleanup", admin_session_key=KEY)
    server.account("acme")
    return server


def test_pages_send_strangers_to_the_login_page_and_back(ui: Server) -> None:
    staff = Staff(ui)
    home = staff.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == "/admin/login"
    deep = staff.get("/accounts", state="restricted")
    assert deep.status_code == 303
    where = urlsplit(deep.headers["location"])
    assert where.path == "/admin/login"
    assert parse_qs(where.query) == {"next": ["/accounts?state=restricted"]}
    form = staff.page("/login", next="/accounts?state=restricted")
    assert "Sign in" in form
    assert "API token" in form
    signed = staff.login(ui.tokens["read"], next="/accounts?state=restricted")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/admin/accounts?state=restricted"
    # only admin paths: never another site
    elsewhere = Staff(ui).login(ui.tokens["read"], next="//evil.example/x")
    assert elsewhere.headers["location"] == "/admin/"
    # /admin itself leads to the dashboard
    bare = ui.client(None, follow_redirects=True).get("/admin")
    assert bare.url.path == "/admin/login"


def test_the_session_cookie_is_signed_http_only_and_strict(ui: Server) -> None:
    staff = Staff(ui)
    response = staff.login(ui.tokens["admin"])
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "SameSite=strict" in cookie
    assert "Path=/admin" in cookie
    assert "Max-Age=28800" in cookie  # LAPSE_ADMIN_SESSION_SECONDS' default: 8 hours
    assert ui.tokens["admin"] not in cookie  # the secret never leaves the login request
    page = staff.page("/")
    assert "admin-token" in page
    assert "Sign out" in page
    # a cookie edited by hand is refused
    value = staff.client.cookies[SESSION_COOKIE]
    staff.client.cookies.set(SESSION_COOKIE, "x" + value, path="/admin")
    assert staff.get("/").headers["location"] == "/admin/login"


def test_refused_logins_say_why(ui: Server) -> None:
    staff = Staff(ui)
    unknown = staff.login("lapse_not-a-token")
    assert unknown.status_code == 401
    assert "That token is unknown or revoked" in text(unknown.text)
    assert SESSION_COOKIE not in unknown.headers.get("set-cookie", "")
    writer = staff.login(ui.tokens["write"])
    assert writer.status_code == 403
    assert "Token 'write-token' has the scopes write" in text(writer.text)
    empty = staff.login("  ")
    assert empty.status_code == 401
    assert staff.get("/").status_code == 303  # still not signed in


def test_logout_needs_the_csrf_token_and_ends_the_session(ui: Server) -> None:
    staff = Staff(ui).signed_in("read")
    forged = staff.post("/logout", csrf="not-the-token")
    assert forged.status_code == 403
    assert "security token" in text(forged.text)
    assert staff.get("/").status_code == 200  # still signed in
    out = staff.post("/logout")
    assert out.status_code == 303
    assert out.headers["location"] == "/admin/login"
    assert staff.get("/").status_code == 303
    assert "You are signed out." in staff.page("/login")


def test_an_expired_session_signs_out_and_says_so(ui: Server) -> None:
    staff = Staff(ui)
    token_id = next(t.id for t in ui.services.store.list_tokens() if t.name == "admin-token")
    # a session signed with the server's key, issued two minutes ago for one minute
    past = Sessions(KEY.encode(), seconds=60, clock=lambda: time.time() - 120)
    _, value = past.issue(token_id)
    staff.client.cookies.set(SESSION_COOKIE, value, path="/admin")
    gone = staff.get("/accounts")
    assert gone.status_code == 303
    assert gone.headers["location"] == "/admin/login?next=%2Faccounts"
    assert "Your session has expired" in staff.page("/login")
    # the same session still valid is accepted: the key is the server's
    _, fresh = Sessions(KEY.encode(), seconds=60).issue(token_id)
    staff.client.cookies.set(SESSION_COOKIE, fresh, path="/admin")
    assert staff.get("/").status_code == 200


def test_revoking_the_token_ends_its_sessions(ui: Server) -> None:
    created = ui.admin.post("/v1/tokens", json={"name": "temp-support", "scopes": ["read"]})
    assert created.status_code == 201, created.text
    staff = Staff(ui)
    assert staff.login(created.json()["secret"]).status_code == 303
    assert "temp-support" in staff.page("/")
    assert ui.admin.delete(f"/v1/tokens/{created.json()['id']}").status_code == 204
    refused = staff.get("/")
    assert refused.status_code == 303
    assert "revoked" in staff.page("/login")


def test_a_read_token_looks_but_cannot_act(ui: Server) -> None:
    staff = Staff(ui).signed_in("read")
    page = staff.get("/accounts/acme")
    assert page.status_code == 200
    assert "read only" in text(page.text)
    assert "/actions/" not in page.text  # no action forms for a read token
    assert "you may look, not act" in text(page.text)
    refused = staff.post("/accounts/acme/actions/hold", reason="should not work")
    assert refused.status_code == 403
    assert "it may look, not act" in text(refused.text)
    assert "Nothing was changed" in text(refused.text)
    assert ui.admin.get("/v1/accounts/acme").json()["legal_hold"] is None
    kinds = [
        e["kind"] for e in ui.admin.get("/v1/audit", params={"account": "acme"}).json()["items"]
    ]
    assert "hold.placed" not in kinds


def test_acting_forms_need_this_sessions_csrf_token(ui: Server) -> None:
    admin = Staff(ui).signed_in("admin")
    other = Staff(ui).signed_in("admin")
    for csrf in ("", "forged", other.csrf()):
        refused = admin.post("/accounts/acme/actions/hold", csrf=csrf, reason="forged form")
        assert refused.status_code == 403, csrf
        assert "security token" in text(refused.text)
    assert ui.admin.get("/v1/accounts/acme").json()["legal_hold"] is None
    placed = admin.act("acme", "hold", reason="litigation hold L-1")
    assert placed.status_code == 200
    assert ui.admin.get("/v1/accounts/acme").json()["legal_hold"]["reason"] == "litigation hold L-1"


def test_pages_carry_safe_headers(ui: Server) -> None:
    staff = Staff(ui).signed_in("read")
    page = staff.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # no scripts at all
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["content-type"].startswith("text/html")
    css = staff.client.get("/admin/static/admin.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    missing = staff.get("/no-such-page")
    assert missing.status_code == 404
    assert "There is no admin page at /admin/no-such-page" in text(missing.text)
    assert missing.headers["content-type"].startswith("text/html")
