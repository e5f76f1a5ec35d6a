"""`lapse demo` as a newcomer runs it: a real process, real HTTP, the accelerated clock.

Within seconds of real time (minutes of demo time) a test account is deleted with a receipt
and its host rows are gone, an inactive account enters grace and its email is in the outbox.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lapse.demo.cast import build_cast
from loopback_servers import LAPSE, LapseProcess, clean_env, free_port


class Demo(LapseProcess):
    """A `lapse demo` subprocess and what it printed."""

    def __init__(self, directory: Path, port: int) -> None:
        args = ["demo", "--dir", str(directory), "--port", str(port)]
        super().__init__(args, clean_env(), port, timeout=60)

    def admin_token(self) -> str:
        token = self.token()
        if token is None:
            raise AssertionError(f"no admin token printed:\n{self.output}")
        return token


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = Demo(tmp_path_factory.mktemp("demo") / "var" / "demo", free_port())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(demo: Demo) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=demo.url, headers={"Authorization": f"Bearer {demo.admin_token()}"}, timeout=10
    ) as client:
        yield client


def wait_for(what: str, probe: Callable[[], Any], seconds: float = 30) -> Any:
    """Poll `probe` until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")


def role(name: str) -> str:
    """The account id playing `role` (ids do not depend on the start time)."""
    return build_cast(datetime.now(UTC)).by_role(name).id


def test_it_starts_quickly_and_prints_the_guide(demo: Demo) -> None:
    assert demo.ready < 30, demo.output
    out = demo.output
    assert "lapse demo: creating a demo email service in" in out
    assert "clock:    accelerated, 60x: one real minute is one hour" in out
    assert "Where the accounts stand now (flow/phase: accounts):" in out
    assert "expiry/termination" in out
    assert "What happens in the next minute of real time (one hour of demo time):" in out
    first = next(line for line in out.splitlines() if line.startswith("  0:03  "))
    assert role("test-account-expires") in first
    assert "export TOKEN=lapse_" in out
    assert f"Admin UI: {demo.url}/admin  (sign in with an API token)" in out
    assert (
        f"The admin UI: open {demo.url}/admin in a browser and sign in with the admin token" in out
    )
    assert "/v1/outbox?status=delivered" in out
    assert "account show" in out


def test_the_demo_clock_runs_sixty_times_faster(demo: Demo, client: httpx.Client) -> None:
    first = datetime.fromisoformat(client.get("/health").json()["now"])
    time.sleep(1.0)
    second = datetime.fromisoformat(client.get("/health").json()["now"])
    assert 55 <= (second - first).total_seconds() <= 90


def test_a_test_account_is_deleted_with_a_receipt_and_its_host_rows_are_gone(
    demo: Demo, client: httpx.Client
) -> None:
    account = role("test-account-expires")
    stone = wait_for(
        "the test account's tombstone",
        lambda: (
            (r := client.get(f"/v1/accounts/{account}/tombstone")).status_code == 200 and r.json()
        ),
    )
    assert stone["flow"] == "test-account-expiry"
    receipt = stone["receipt"]
    assert receipt["verified"] is True
    assert receipt["rows"] > 0
    assert {loc["location"] for loc in receipt["locations"]} >= {"accounts", "contacts", "users"}
    assert client.get(f"/v1/accounts/{account}").status_code == 410
    conn = sqlite3.connect(Path(_printed_dir(demo.output)) / "host.db")
    try:
        left = conn.execute("SELECT count(*) FROM contacts WHERE account_id = ?", (account,))
        assert left.fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM accounts").fetchone()[0] > 300
    finally:
        conn.close()


def test_an_inactive_account_enters_grace_and_its_email_is_in_the_outbox(
    demo: Demo, client: httpx.Client
) -> None:
    account = role("inactive-enters-grace")
    status = wait_for(
        "the inactive account's grace period",
        lambda: (
            (s := client.get(f"/v1/accounts/{account}/status").json())["state"] == "restricted"
            and s
        ),
    )
    (case,) = status["cases"]
    assert (case["flow"], case["phase"]) == ("inactivity", "grace")
    rows = wait_for(
        "the grace-period email",
        lambda: client.get("/v1/outbox", params={"account": account, "status": "delivered"}).json()[
            "items"
        ],
    )
    emails = [client.get(f"/v1/outbox/{row['id']}").json() for row in rows]
    rendered = [e["rendered"] for e in emails if e["row"]["channel"] == "email"]
    assert rendered, emails
    assert "Mailwise" in rendered[0]["subject"] + rendered[0]["text"]
    assert "inactive" in rendered[0]["text"].lower()
    assert f"{account}: Inactivity clean-up: phase grace begins" in wait_for(
        "the feed line", lambda: "phase grace begins" in demo.output and demo.output
    )


def test_the_admin_ui_serves_every_page_of_the_demo_quickly(demo: Demo) -> None:
    held = role("legal-hold")
    with httpx.Client(base_url=demo.url, timeout=10) as browser:
        signed = browser.post("/admin/login", data={"token": demo.admin_token(), "next": "/"})
        assert signed.status_code == 303, signed.text
        for path in (
            "/admin/",
            "/admin/accounts",
            "/admin/accounts?state=locked",
            "/admin/accounts?flow=inactivity&phase=grace",
            "/admin/accounts?q=mailwise",
            f"/admin/accounts/{held}",
            f"/admin/accounts/{role('two-locks')}",
            "/admin/upcoming?days=30",
            "/admin/outbox",
            "/admin/outbox/1",
            "/admin/receipts",
            "/admin/audit",
        ):
            started = time.monotonic()
            page = browser.get(path)
            took = time.monotonic() - started
            assert page.status_code == 200, (path, page.text[:2000])
            assert took < 1.0, f"{path} took {took:.2f} s"  # 348 accounts: paginated, no N+1
        assert "legal hold" in browser.get(f"/admin/accounts/{held}").text


def test_a_second_demo_in_the_same_directory_is_refused_without_reset(demo: Demo) -> None:
    directory = _printed_dir(demo.output)
    result = subprocess.run(
        [LAPSE, "demo", "--dir", directory, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "a demo already exists in" in result.stderr
    assert "--reset" in result.stderr


def _printed_dir(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("lapse demo: creating a demo email service in "):
            return line.removeprefix("lapse demo: creating a demo email service in ").rstrip("/")
    raise AssertionError(output)
