"""Admin actions: lock, unlock, extend, legal hold, reactivate, suspend; `by` is the token name."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import Factory, Server, problem


def _act(server: Server, account: str, action: str, **body: Any) -> dict[str, Any]:
    body.setdefault("reason", f"{action} for the test")
    response = server.admin.post(f"/v1/accounts/{account}/actions/{action}", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _audit(server: Server, account: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = server.admin.get("/v1/audit", params={"account": account}).json()[
        "items"
    ]
    return items


def test_lock_and_unlock(any_server: Server) -> None:
    any_server.account("a")
    locked = _act(any_server, "a", "lock", reason="chargeback on invoice 12")
    assert locked["state"] == "locked"
    [case] = locked["cases"]
    assert (case["flow"], case["opened_by"]) == ("payment-lock", "admin:admin-token")
    opened = [e for e in _audit(any_server, "a") if e["kind"] == "case.opened"]
    assert opened[0]["detail"]["opened_by"] == "admin:admin-token"
    assert opened[0]["detail"]["reason"] == "chargeback on invoice 12"
    unlocked = _act(any_server, "a", "unlock", reason="paid by wire")
    assert unlocked["state"] == "active"
    assert unlocked["cases"] == []
    closed = [e for e in _audit(any_server, "a") if e["kind"] == "case.closed"]
    assert closed[0]["detail"]["by"] == "admin-token"
    assert "paid by wire" in closed[0]["text"]


def test_lock_needs_a_flow_it_can_open(server: Server) -> None:
    server.account("t", kind="trial")
    body = problem(
        server.admin.post("/v1/accounts/t/actions/lock", json={"reason": "x"}), 422, "invalid-input"
    )
    assert body["detail"] == (
        "0 event-started reversible flows can lock accounts of kind 'trial'; name the flow"
    )
    wrong = server.admin.post(
        "/v1/accounts/t/actions/lock", json={"reason": "x", "flow": "tos-suspension"}
    )
    assert problem(wrong, 422, "invalid-input")["detail"] == (
        "flow 'tos-suspension' is irreversible: suspend opens it, not lock"
    )
    server.account("a")
    _act(server, "a", "lock")
    again = server.admin.post("/v1/accounts/a/actions/lock", json={"reason": "twice"})
    assert problem(again, 409, "conflict")["detail"] == (
        "flow 'payment-lock' already has an open case on account 'a'"
    )
    no_reason = problem(
        server.admin.post("/v1/accounts/a/actions/unlock", json={}), 422, "invalid-request"
    )
    assert no_reason["errors"][0]["path"] == "body.reason"
    empty = problem(
        server.admin.post("/v1/accounts/a/actions/unlock", json={"reason": ""}),
        422,
        "invalid-request",
    )
    assert empty["errors"][0]["path"] == "body.reason"


def test_extend_by_duration_or_until(any_server: Server) -> None:
    any_server.account("a")
    _act(any_server, "a", "lock")
    extended = _act(any_server, "a", "extend", case="payment-lock#1", duration="14 days")
    [case] = extended["cases"]
    assert case["deadline"] == "2025-08-14T09:00:00Z"
    assert case["planned_deadline"] == "2025-07-31T09:00:00Z"
    assert case["adjustments"][0]["kind"] == "extended"
    assert case["adjustments"][0]["seconds"] == 14 * 86400
    until = _act(any_server, "a", "extend", case="payment-lock#1", until="2025-09-01T00:00:00Z")
    assert until["cases"][0]["deadline"] == "2025-09-01T00:00:00Z"
    admin = any_server.admin
    bad = admin.post(
        "/v1/accounts/a/actions/extend",
        json={"reason": "r", "case": "payment-lock#1", "duration": "a while"},
    )
    assert problem(bad, 422, "invalid-input")["detail"] == (
        "duration: expected a duration such as '30 days' or '1 month', found 'a while'"
    )
    both = admin.post(
        "/v1/accounts/a/actions/extend",
        json={
            "reason": "r",
            "case": "payment-lock#1",
            "duration": "1 day",
            "until": "2026-01-01T00:00:00Z",
        },
    )
    assert "exactly one" in problem(both, 422, "invalid-input")["detail"]
    earlier = admin.post(
        "/v1/accounts/a/actions/extend",
        json={"reason": "r", "case": "payment-lock#1", "until": "2025-03-01T00:00:00Z"},
    )
    assert "is not after the current one" in problem(earlier, 422, "invalid-input")["detail"]
    missing = admin.post(
        "/v1/accounts/a/actions/extend", json={"reason": "r", "case": "nope#1", "duration": "1 day"}
    )
    assert (
        problem(missing, 404, "case-not-found")["detail"] == "account 'a' has no open case 'nope#1'"
    )


def test_legal_hold_and_release(any_server: Server) -> None:
    any_server.account("a")
    held = _act(any_server, "a", "legal-hold", reason="subpoena 2025-17")
    assert held["legal_hold"]["by"] == "admin-token"
    assert held["legal_hold"]["reason"] == "subpoena 2025-17"
    twice = any_server.admin.post("/v1/accounts/a/actions/legal-hold", json={"reason": "again"})
    assert problem(twice, 409, "conflict")["detail"] == "account 'a' is already under a legal hold"
    released = _act(any_server, "a", "release-hold", reason="case closed")
    assert released["legal_hold"] is None
    texts = [e["text"] for e in _audit(any_server, "a")]
    assert "legal hold placed by admin-token: subpoena 2025-17" in texts
    assert "legal hold lifted by admin-token: case closed" in texts
    nothing = any_server.admin.post("/v1/accounts/a/actions/release-hold", json={"reason": "x"})
    assert problem(nothing, 409, "conflict")["detail"] == "account 'a' has no legal hold to lift"


def test_reactivate_with_snooze(make_server: Factory) -> None:
    server = make_server(policy="inactivity-cleanup")
    server.account("a")
    server.advance("12 months")
    assert server.admin.get("/v1/accounts/a").json()["state"] == "restricted"
    done = _act(
        server, "a", "reactivate", reason="customer called", snooze_until="2027-06-01T00:00:00Z"
    )
    assert done["state"] == "active"
    outlook = {f["flow"]: f for f in server.admin.get("/v1/accounts/a/timeline").json()["flows"]}
    assert outlook["inactivity"]["armed_from"] == "2027-06-01T00:00:00Z"
    nothing = server.admin.post("/v1/accounts/a/actions/reactivate", json={"reason": "again"})
    assert (
        problem(nothing, 404, "case-not-found")["detail"]
        == "account 'a' has no open case to reactivate"
    )


def test_suspend_is_irreversible_and_deletes(any_server: Server) -> None:
    any_server.account("keep")
    _act(any_server, "keep", "legal-hold", reason="litigation")
    held = _act(any_server, "keep", "suspend", reason="phishing")
    assert held["state"] == "suspended"
    assert held["cases"][0]["irreversible"] is True
    assert any("legal hold" in w for w in held["cases"][0]["waiting"]), held["cases"][0]["waiting"]
    refused = any_server.admin.post("/v1/accounts/keep/actions/reactivate", json={"reason": "oops"})
    assert problem(refused, 409, "irreversible")["detail"] == (
        "case 'tos-suspension#1' belongs to an irreversible flow and cannot be reactivated"
    )
    any_server.account("gone", address="gone@example.com")
    _act(any_server, "gone", "suspend", reason="spam run")
    deleted = any_server.admin.get("/v1/accounts/gone")
    body = problem(deleted, 410, "account-deleted")
    assert body["detail"] == "account 'gone' was deleted on 2025-01-31"
    stone = body["tombstone"]
    assert stone["flow"] == "tos-suspension"
    assert stone["address_mode"] == "retire"
    assert stone["address_hash"]
    assert "gone@example.com" not in str(stone)
    assert any_server.admin.get("/v1/accounts/gone/tombstone").json() == stone
    again = any_server.admin.post("/v1/accounts/gone/actions/lock", json={"reason": "x"})
    assert problem(again, 410, "account-deleted")["detail"].startswith("account 'gone' was deleted")
    status = any_server.admin.get("/v1/accounts/gone/status").json()
    assert status["state"] == "deleted"
    check = any_server.admin.get("/v1/accounts/gone/check?action=login").json()
    assert check["allowed"] is False
    retired = any_server.admin.post(
        "/v1/accounts", json={"id": "new", "kind": "standard", "address": "Gone@example.com"}
    )
    assert problem(retired, 409, "address-retired")["detail"] == (
        "address gone@example.com belonged to a deleted account and is retired"
    )
    live = problem(any_server.admin.get("/v1/accounts/keep/tombstone"), 404, "not-found")
    assert live["detail"] == "account 'keep' has no tombstone: it was not deleted"


def test_actions_need_the_admin_scope(server: Server) -> None:
    server.account("a")
    writer = server.client(server.tokens["write"])
    for action in (
        "lock",
        "unlock",
        "extend",
        "legal-hold",
        "release-hold",
        "reactivate",
        "suspend",
        "delete",
    ):
        response = writer.post(f"/v1/accounts/a/actions/{action}", json={"reason": "x"})
        body = problem(response, 403, "forbidden")
        assert body["detail"] == (
            "token 'write-token' lacks the 'admin' scope this endpoint needs (it has: write)"
        )
    unknown = problem(
        server.admin.post("/v1/accounts/a/actions/explode", json={"reason": "x"}),
        404,
        "about:blank",
    )
    assert unknown["detail"] == "no route POST /v1/accounts/a/actions/explode; see /openapi.json"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cleanup_server(request: pytest.FixtureRequest, make_server: Factory) -> Server:
    """The inactivity-cleanup preset on SQLite and on PostgreSQL."""
    return make_server(request.param, policy="inactivity-cleanup")


def test_delete_now(cleanup_server: Server) -> None:
    server, admin = cleanup_server, cleanup_server.admin
    server.account("acme", address="owner@acme.example")
    done = admin.post("/v1/accounts/acme/actions/delete", json={"reason": "erasure request 42"})
    assert done.status_code == 202, done.text
    assert done.json()["state"] == "deleted"  # carried out at once here (the manual clock)
    # the same deletion as the flow's own outcome: tombstone, receipt, address rule
    receipt = admin.get("/v1/accounts/acme/receipt").json()
    assert (receipt["kind"], receipt["flow"]) == ("delete", "inactivity")
    assert receipt["body"]["address"] == {"mode": "release"}
    stone = problem(admin.get("/v1/accounts/acme"), 410, "account-deleted")["tombstone"]
    assert (stone["flow"], stone["address_mode"]) == ("inactivity", "release")
    [ordered] = [e for e in _audit(server, "acme") if e["kind"] == "delete.ordered"]
    assert ordered["detail"] == {"by": "admin-token", "reason": "erasure request 42"}
    assert "admin-token" in ordered["text"]
    again = admin.post(
        "/v1/accounts", json={"id": "acme-2", "kind": "standard", "address": "owner@acme.example"}
    )
    assert again.status_code == 201, again.text  # released: the address may register again
    gone = admin.post("/v1/accounts/acme/actions/delete", json={"reason": "twice"})
    problem(gone, 410, "account-deleted")

    # under a legal hold: refused, and nothing changes
    server.account("kept")
    _act(server, "kept", "legal-hold", reason="subpoena 2025-17")
    before = (admin.get("/v1/accounts/kept/status").json(), _audit(server, "kept"))
    refused = admin.post("/v1/accounts/kept/actions/delete", json={"reason": "erasure"})
    assert problem(refused, 409, "conflict")["detail"] == (
        "account 'kept' is under a legal hold (placed 2025-01-31 by admin-token: subpoena "
        "2025-17); it cannot be deleted until the hold is lifted"
    )
    assert (admin.get("/v1/accounts/kept/status").json(), _audit(server, "kept")) == before
    assert (
        admin.get("/v1/outbox", params={"account": "kept", "status": "pending"}).json()["items"]
        == []
    )

    # an unknown account, a missing reason, a flow that does not delete
    unknown = admin.post("/v1/accounts/ghost/actions/delete", json={"reason": "x"})
    assert problem(unknown, 404, "unknown-account")["detail"] == "no account 'ghost'"
    no_reason = problem(
        admin.post("/v1/accounts/kept/actions/delete", json={}), 422, "invalid-request"
    )
    assert no_reason["errors"][0]["path"] == "body.reason"
    server.account("t1", kind="test")
    wrong = admin.post("/v1/accounts/t1/actions/delete", json={"reason": "x", "flow": "inactivity"})
    assert problem(wrong, 409, "conflict")["detail"] == (
        "flow 'inactivity' does not apply to accounts of kind 'test'"
    )
