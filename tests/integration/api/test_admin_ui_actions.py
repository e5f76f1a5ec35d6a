"""The admin UI's actions change the account through the engine and write the audit entry with
the token's name; every refusal is shown on the page and changes nothing. SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from admin_helpers import Staff, text
from api_helpers import Factory, Server

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each database."""
    param: str = request.param
    return param


@pytest.fixture
def idle(backend: str, make_server: Factory) -> Server:
    """inactivity-cleanup at 31 January 2025; `acme` in grace, deletion on 25 February."""
    server = make_server(backend, policy="inactivity-cleanup")
    server.account(
        "acme",
        created_at="2024-01-26T09:00:00Z",
        members=[{"email": "ann@acme.example", "role": "admin"}],
    )
    return server


@pytest.fixture
def locks(backend: str, make_server: Factory) -> Server:
    """account-locks at 31 January 2025 with a standard account `shop`."""
    server = make_server(backend, policy="account-locks")
    server.account("shop")
    return server


def _audit(server: Server, account: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = server.admin.get(
        "/v1/audit", params={"account": account, "limit": 1000}
    ).json()["items"]
    return items


def _status(server: Server, account: str) -> dict[str, Any]:
    body: dict[str, Any] = server.admin.get(f"/v1/accounts/{account}/status").json()
    return body


def _may_send(server: Server) -> bool:
    check = server.admin.get("/v1/accounts/acme/check", params={"action": "send_campaign"})
    allowed: bool = check.json()["allowed"]
    return allowed


def _refused(response: Any, status: int, message: str) -> str:
    assert response.status_code == status, response.text[:3000]
    shown = text(response.text)
    assert message in shown, shown
    assert "Nothing was changed." in shown
    return shown


def test_legal_hold_on_and_off(idle: Server) -> None:
    staff = Staff(idle).signed_in("admin")
    before = len(_audit(idle, "acme"))
    no_reason = staff.act("acme", "hold", reason="   ")
    _refused(no_reason, 422, "Hold refused: give a reason: it goes into the audit log")
    assert len(_audit(idle, "acme")) == before
    placed = staff.act("acme", "hold", reason="litigation hold, ticket LEGAL-42")
    page = text(placed.text)
    assert "Legal hold placed: no deletion or purge of this account runs" in page  # the flash
    assert "acme restricted legal hold" in page
    assert "by admin-token: “litigation hold, ticket LEGAL-42”" in page
    assert "Legal hold placed legal hold placed by admin-token: litigation hold" in page
    assert "On 25 February 2025 the outcome of Inactivity clean-up will wait" in page
    assert "Lift the legal hold" in page
    assert "Place a legal hold" not in page
    [entry] = [e for e in _audit(idle, "acme") if e["kind"] == "hold.placed"]
    assert entry["detail"] == {"by": "admin-token", "reason": "litigation hold, ticket LEGAL-42"}
    assert _status(idle, "acme")["legal_hold"]["by"] == "admin-token"
    # the flash is shown once
    assert "Legal hold placed:" not in staff.page("/accounts/acme")
    again = staff.act("acme", "hold", reason="twice")
    _refused(again, 409, "account 'acme' is already under a legal hold")
    lifted = staff.act("acme", "release-hold", reason="case settled")
    assert "Legal hold lifted" in text(lifted.text)
    assert _status(idle, "acme")["legal_hold"] is None
    kinds = [e["kind"] for e in _audit(idle, "acme")]
    assert kinds.count("hold.placed") == 1
    assert kinds.count("hold.lifted") == 1
    _refused(staff.act("acme", "release-hold", reason="x"), 409, "has no legal hold to lift")


def test_extend_a_deadline_by_a_duration_or_to_a_date(idle: Server) -> None:
    staff = Staff(idle).signed_in("admin")
    extended = staff.act("acme", "extend", case="inactivity#1", duration="14 days")
    page = text(extended.text)
    assert "The deadline of Inactivity clean-up is now 11 March 2025, 09:00 UTC" in page
    assert "(39 days left)" in page
    assert "Planned 25 February 2025, 09:00 UTC; moved by 14 days because:" in page
    assert "extended by hand (+14 days" in page
    assert _status(idle, "acme")["cases"][0]["deadline"] == "2025-03-11T09:00:00Z"
    [entry] = [e for e in _audit(idle, "acme") if e["kind"] == "case.extended"]
    assert entry["detail"]["by"] == "admin-token"
    assert entry["detail"]["reason"] == "extend in the admin UI test"
    # a datetime-local field, in the policy's time zone (UTC)
    to_date = staff.act("acme", "extend", case="inactivity#1", until="2025-04-01T12:30")
    assert "is now 1 April 2025, 12:30 UTC" in text(to_date.text)
    assert _status(idle, "acme")["cases"][0]["deadline"] == "2025-04-01T12:30:00Z"
    kept = staff.act("acme", "extend", case="inactivity#1", until="2025-03-01T00:00", reason="me")
    _refused(kept, 422, "is not after the current one")
    assert ">me</textarea>" in kept.text  # the form keeps what was typed, to try again
    assert 'name="until" value="2025-03-01T00:00"' in kept.text
    assert "<details open>\n        <summary>Extend the deadline" in kept.text
    for form, status, message in (
        ({"duration": "1 week", "until": "2025-05-01T00:00"}, 422, "not both"),
        ({}, 422, "give either a duration"),
        ({"duration": "soon"}, 422, "duration:"),
        ({"until": "next tuesday"}, 422, "is not a date and time"),
        ({"until": "2025-03-01T00:00"}, 422, "is not after the current one"),
    ):
        refused = staff.act("acme", "extend", case="inactivity#1", **form)
        _refused(refused, status, message)
    _refused(
        staff.act("acme", "extend", case="nope#9", duration="1 day"),
        404,
        "account 'acme' has no open case 'nope#9'",
    )
    assert _status(idle, "acme")["cases"][0]["deadline"] == "2025-04-01T12:30:00Z"
    assert len([e for e in _audit(idle, "acme") if e["kind"] == "case.extended"]) == 2


def test_reactivate_closes_the_case_and_lifts_its_restrictions(idle: Server) -> None:
    staff = Staff(idle).signed_in("admin")
    assert not _may_send(idle)
    done = staff.act("acme", "reactivate", case="inactivity#1", reason="customer called, active")
    page = text(done.text)
    assert "Reactivated: case inactivity#1 is closed" in page
    assert "acme active" in page
    assert "No open case" in page
    assert _may_send(idle)
    [closed] = [e for e in _audit(idle, "acme") if e["kind"] == "case.closed"]
    assert closed["detail"]["by"] == "admin-token"
    assert closed["detail"]["reason"] == "reactivated: customer called, active"
    before = len(_audit(idle, "acme"))
    again = staff.act("acme", "reactivate", reason="again")
    _refused(again, 404, "account 'acme' has no open case to reactivate")
    assert len(_audit(idle, "acme")) == before


def test_delete_now_needs_confirmation_and_no_hold(idle: Server) -> None:
    staff = Staff(idle).signed_in("admin")
    unconfirmed = staff.act("acme", "delete", reason="customer asked", confirm="acm")
    _refused(unconfirmed, 422, "to delete this account, type its id (acme)")
    staff.act("acme", "hold", reason="subpoena")
    held = staff.act("acme", "delete", reason="customer asked", confirm="acme")
    _refused(held, 409, "legal hold")
    assert _status(idle, "acme")["state"] == "restricted"
    assert idle.admin.get("/v1/receipts").json()["items"] == []
    staff.act("acme", "release-hold", reason="released")
    gone = staff.post("/accounts/acme/actions/delete", reason="customer asked", confirm="acme")
    assert gone.status_code == 303
    page = staff.page("/accounts/acme")  # a manual clock: carried out at once
    assert "acme deleted" in page
    assert "Deleted on 31 January 2025, 09:00 UTC by Inactivity clean-up" in page
    [ordered] = [e for e in _audit(idle, "acme") if e["kind"] == "delete.ordered"]
    assert ordered["detail"]["by"] == "admin-token"
    assert ordered["detail"]["reason"] == "customer asked"
    assert len(idle.admin.get("/v1/receipts").json()["items"]) == 1
    refused = staff.act("acme", "hold", reason="too late")
    _refused(refused, 410, "account 'acme' was deleted")


def test_lock_and_suspend(locks: Server) -> None:
    staff = Staff(locks).signed_in("admin")
    form = staff.page("/accounts/shop")
    assert "Lock the account" in form
    assert "Suspend (cannot be undone)" in form
    locked = staff.act("shop", "lock", flow="payment-lock", reason="chargeback on invoice 12")
    page = text(locked.text)
    assert "Locked: Payment lock opened." in page
    assert "shop locked" in page
    assert "Opened 31 January 2025, by admin-token, by hand" in page
    [opened] = [e for e in _audit(locks, "shop") if e["kind"] == "case.opened"]
    assert opened["detail"]["opened_by"] == "admin:admin-token"
    assert "Lock the account" not in page  # its one lockable flow is open now
    _refused(
        staff.act("shop", "lock", flow="payment-lock", reason="twice"),
        409,
        "flow 'payment-lock' already has an open case on account 'shop'",
    )
    _refused(
        staff.act("shop", "suspend", reason="phishing", confirm=""),
        422,
        "to suspend this account, type its id (shop)",
    )
    assert _status(locks, "shop")["state"] == "locked"
    suspended = staff.post("/accounts/shop/actions/suspend", reason="phishing", confirm="shop")
    assert suspended.status_code == 303
    # the suspension deletes at once (the account-locks preset); the flash says what was done
    after = staff.page("/accounts/shop")
    assert "Suspended: Terms of service suspension opened; it cannot be undone." in after
    assert "shop deleted" in after
    kinds = [e["kind"] for e in _audit(locks, "shop")]
    assert "account.tombstoned" in kinds


def test_an_irreversible_case_cannot_be_reactivated(locks: Server) -> None:
    locks.account("troll", members=[])
    staff = Staff(locks).signed_in("admin")
    staff.act("troll", "hold", reason="keep the evidence")
    staff.post("/accounts/troll/actions/suspend", reason="spam", confirm="troll")
    page = staff.page("/accounts/troll")
    assert "troll suspended legal hold" in page
    assert "Terms of service suspension suspended irreversible" in page
    assert "The deletion (Terms of service suspension) waits: a legal hold is on." in page
    assert "Reactivate: close this case" not in page  # not offered for an irreversible case
    refused = staff.act("troll", "reactivate", case="tos-suspension#1", reason="mistake")
    _refused(
        refused,
        409,
        "case 'tos-suspension#1' belongs to an irreversible flow and cannot be reactivated",
    )
    assert _status(locks, "troll")["state"] == "suspended"


def test_unknown_accounts_and_actions(locks: Server) -> None:
    staff = Staff(locks).signed_in("admin")
    missing = staff.act("ghost", "hold", reason="x")
    assert missing.status_code == 404
    assert "There is no account 'ghost'." in text(missing.text)
    _refused(staff.act("shop", "vanish", reason="x"), 422, "there is no action 'vanish'")


def test_outbox_rows_are_rendered_safely_and_failed_ones_retried(locks: Server) -> None:
    locks.account("lonely", members=[])  # no admin member: its notice fails for good
    for account in ("shop", "lonely"):
        locks.admin.post(
            "/v1/events",
            json={"events": [{"id": f"{account}-1", "account": account, "name": "payment_failed"}]},
        )
    reader = Staff(locks).signed_in("read")
    listed = reader.page("/outbox")
    rows = locks.admin.get("/v1/outbox", params={"limit": 100}).json()["items"]
    assert listed.index("shop email email lock-started") > listed.index("lonely")  # newest first
    assert "failed" in reader.page("/outbox", status="failed")
    [failed] = locks.admin.get("/v1/outbox", params={"status": "failed"}).json()["items"]
    assert "lonely" in reader.page("/outbox", status="failed")
    assert "shop" not in reader.page("/outbox", status="failed").split("Status")[-1]
    # a notice: subject, text, and the HTML in a sandboxed frame served under a strict CSP
    email = next(r for r in rows if r["account"] == "shop" and r["channel"] == "email")
    rendered = locks.admin.get(f"/v1/outbox/{email['id']}").json()["rendered"]
    shown = reader.page(f"/outbox/{email['id']}")
    assert f"Subject: {rendered['subject']}" in shown
    assert text(rendered["text"])[:200] in shown
    assert (
        f'<iframe class="mail" sandbox src="/admin/outbox/{email["id"]}/html"' in reader.last.text
    )
    framed = reader.get(f"/outbox/{email['id']}/html")
    assert framed.status_code == 200
    assert framed.text == rendered["html"]
    csp = framed.headers["content-security-policy"]
    assert "sandbox" in csp
    assert "default-src 'none'" in csp
    assert "img-src data:" in csp
    assert "script-src" not in csp
    host = next(r for r in rows if r["channel"] == "host")
    assert "Only notices have content." in reader.page(f"/outbox/{host['id']}")
    assert reader.get(f"/outbox/{host['id']}/html").status_code == 404
    assert reader.get("/outbox/99999").status_code == 404
    # retry: a read token is not offered the button and is refused; an admin token may
    page = reader.page(f"/outbox/{failed['id']}")
    assert "has no recipient" in page
    assert "Retry this delivery now" not in page
    assert reader.post(f"/outbox/{failed['id']}/retry").status_code == 403
    admin = Staff(locks).signed_in("admin")
    assert "Retry this delivery now" in admin.page(f"/outbox/{failed['id']}")
    retried = admin.post(f"/outbox/{failed['id']}/retry")
    assert retried.status_code == 303
    after = admin.page(f"/outbox/{failed['id']}")
    assert f"Row {failed['id']} is pending again" in after
    [entry] = [e for e in _audit(locks, "lonely") if e["kind"] == "outbox.retried"]
    assert entry["detail"]["by"] == "admin-token"
    again = admin.post(f"/outbox/{failed['id']}/retry")
    _refused(again, 409, f"outbox row {failed['id']} is pending, not failed")
