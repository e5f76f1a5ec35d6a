"""The admin UI in a real browser: Debian's chromium driven by Playwright, JavaScript switched off,
against a real `lapse serve` process on a manual clock (moved through the API).

A member of support signs in with the admin token `lapse serve` printed, finds the account in
its grace period, reads its banner and projected deletion, places a legal hold (seen on the page
and in the audit log), watches the deletion wait once the clock passes the deadline, lifts the
hold, reactivates the account, and opens an email in the outbox (its HTML in a sandboxed frame).

Chromium comes from Debian (`./dev test` installs it when missing and run as root); these tests
never download a browser. Without it they are skipped loudly, except under CI, where they fail.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback_servers import LapseProcess, clean_env, free_port

CHROMIUM = "/usr/bin/chromium"
#: required here: we run as root (no sandbox), without a GPU, and the network is closed
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Serve(LapseProcess):
    """`lapse serve` on a fresh SQLite file, the inactivity-cleanup preset, a manual clock."""

    def __init__(self, directory: Path) -> None:
        port = free_port()
        env = clean_env(
            LAPSE_DATABASE_URL=f"sqlite:///{directory / 'lapse.db'}",
            LAPSE_POLICY="inactivity-cleanup",
            LAPSE_CLOCK="manual",
            LAPSE_CLOCK_START="2025-01-31T09:00:00Z",
            LAPSE_PRODUCT="Mailwise",
        )
        super().__init__(["serve", "--port", str(port)], env, port)
        token = self.token()
        if token is None:
            self.stop()
            raise AssertionError(f"lapse serve printed no admin token:\n{self.output}")
        self.admin_token = token
        self.api = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API request that must succeed; its JSON body."""
        response = self.api.request(method, path, **kwargs)
        assert response.status_code < 300, (method, path, response.text)
        return response.json()

    def stop(self) -> int:
        """Close the API client, then stop the process."""
        if hasattr(self, "api"):
            self.api.close()
        return super().stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright (skipped loudly if missing, failed
    under CI)."""
    if not os.access(CHROMIUM, os.X_OK):
        message = (
            f"the admin UI's browser tests cannot run: {CHROMIUM} is missing "
            "(`./dev test` installs Debian's chromium when run as root, or: "
            "apt-get install chromium)"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: a missing browser fails the run)")
        print(f"\n!!! {message}: SKIPPING THE BROWSER TESTS !!!", file=sys.__stderr__)
        pytest.skip(f"!!! {message} !!!")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Serve]:
    """A fresh `lapse serve` with `acme` in its grace period (deletion on 25 February 2025)
    and `fresh`, a new account."""
    running = Serve(tmp_path)
    try:
        running.call(
            "POST",
            "/v1/accounts",
            json={
                "id": "acme",
                "kind": "standard",
                "created_at": "2024-01-26T09:00:00Z",
                "address": "owner@acme.example",
                "members": [{"email": "ann@acme.example", "role": "admin"}],
            },
        )
        running.call("POST", "/v1/accounts", json={"id": "fresh", "kind": "standard"})
        yield running
    finally:
        running.stop()


def test_support_handles_an_account_in_grace(chromium: Any, server: Serve, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    admin_url = f"{server.url}/admin"
    assert f"Admin UI: {admin_url}" in server.output
    context = chromium.new_context(
        java_script_enabled=False, viewport={"width": 1366, "height": 900}
    )
    page = context.new_page()
    try:
        # strangers are sent to the sign-in form; the printed admin token signs in
        page.goto(admin_url)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("API token").fill(server.admin_token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.locator(".tile.state-restricted .count")).to_have_text("1")

        # find the account in grace: the dashboard's flow/phase count leads to the list
        page.locator('a[href="/admin/accounts?flow=inactivity&phase=grace"]').click()
        expect(page.get_by_role("heading", name="Accounts")).to_be_visible()
        rows = page.locator("table.accounts tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("25 February 2025 (25 days left)")
        rows.first.get_by_role("link", name="acme").click()

        # its banner and its projected deletion
        expect(page.locator("h1")).to_contain_text("acme")
        expect(page.locator(".banner blockquote")).to_contain_text(
            "will be permanently deleted on 25 February 2025 (25 days left)"
        )
        expect(page.locator(".headline")).to_have_text(
            "Deletion on 25 February 2025 (25 days left), if nothing changes."
        )
        projected = page.locator("section", has=page.locator("#next"))
        expect(projected).to_contain_text("Deletion")

        # a legal hold, with a reason
        page.get_by_text("Place a legal hold").click()
        page.locator("form[action$='/actions/hold'] textarea[name=reason]").fill(
            "Litigation hold: ticket LEGAL-42"
        )
        page.get_by_role("button", name="Place the legal hold").click()
        expect(page.locator(".flash.ok")).to_contain_text("Legal hold placed")
        expect(page.locator("h1 .badge.tone-hold")).to_have_text("legal hold")
        expect(page.locator(".hold-box")).to_contain_text("by admin")
        expect(page.locator(".hold-box")).to_contain_text("Litigation hold: ticket LEGAL-42")
        page.screenshot(path=str(tmp_path / "account-on-hold.png"), full_page=True)

        # ... and in the audit log, with who placed it
        page.get_by_role("link", name="Audit", exact=True).click()
        first = page.locator("table.audit tbody tr").first
        expect(first).to_contain_text("Legal hold placed")
        expect(first).to_contain_text(
            "legal hold placed by admin: Litigation hold: ticket LEGAL-42"
        )

        # time passes the deadline (through the API): the deletion waits for the hold
        moved = server.call("POST", "/v1/clock", json={"advance": "30 days"})
        assert moved["now"] == "2025-03-02T09:00:00Z"
        page.goto(f"{admin_url}/accounts/acme")
        expect(page.locator(".headline")).to_contain_text(
            "The deletion (Inactivity clean-up) waits: a legal hold is on."
        )
        expect(page.locator(".case")).to_contain_text("legal hold: the deletion waits")
        expect(page.locator(".clockbar")).to_contain_text("2 March 2025, 09:00 UTC")

        # lift the hold, then reactivate: the case closes, its restrictions with it
        page.get_by_text("Lift the legal hold", exact=True).first.click()
        page.locator("form[action$='/actions/release-hold'] textarea[name=reason]").fill(
            "Litigation settled"
        )
        page.get_by_role("button", name="Lift the legal hold").click()
        expect(page.locator(".flash.ok")).to_contain_text("Legal hold lifted")
        expect(page.locator("h1 .badge.tone-hold")).to_have_count(0)
        page.get_by_text("Reactivate: close this case").click()
        page.locator("form[action$='/actions/reactivate'] textarea[name=reason]").fill(
            "Customer called: they use the account"
        )
        page.get_by_role("button", name="Close this case").click()
        expect(page.locator(".flash.ok")).to_contain_text("Reactivated")
        expect(page.locator("h1 .badge")).to_have_text("active")
        expect(page.get_by_text("No open case")).to_be_visible()
        status = server.call("GET", "/v1/accounts/acme/status")
        assert (status["state"], status["cases"], status["legal_hold"]) == ("active", [], None)

        # an email in the outbox: subject, text, and its HTML in the sandboxed frame
        page.get_by_role("link", name="Outbox", exact=True).click()
        page.get_by_role("link", name=re.compile("email inactivity-grace-started")).first.click()
        expect(page.locator(".subject")).to_contain_text(
            "Your Mailwise account will be deleted on 25 February 2025"
        )
        expect(page.locator("pre.mail")).to_contain_text("grace period of 30 days")
        frame = page.frame_locator("iframe.mail")
        expect(frame.locator("body")).to_contain_text("grace period of 30 days")
        assert page.locator("iframe.mail").get_attribute("sandbox") == ""
    finally:
        context.close()
    shot = tmp_path / "account-on-hold.png"
    assert shot.stat().st_size > 50_000, "the screenshot has no content"


def test_pages_work_without_a_session_cookie_only_after_sign_in(
    chromium: Any, server: Serve
) -> None:
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{server.url}/admin/accounts/acme")
        assert page.url.endswith("/admin/login?next=%2Faccounts%2Facme")
        page.get_by_label("API token").fill("lapse_wrong")
        page.get_by_role("button", name="Sign in").click()
        assert "That token is unknown or revoked" in page.locator(".flash.error").inner_text()
        page.get_by_label("API token").fill(server.admin_token)
        page.get_by_role("button", name="Sign in").click()
        assert page.url == f"{server.url}/admin/accounts/acme"  # back where it started
        cookie = next(c for c in context.cookies() if c["name"] == "lapse_admin")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/admin"
        page.get_by_role("button", name="Sign out").click()
        assert "You are signed out." in page.locator(".flash.ok").inner_text()
        page.goto(f"{server.url}/admin/")
        assert "/admin/login" in page.url
    finally:
        context.close()
