"""Outbox (list, view rendered, retry), in-app notifications and the audit log (list, verify)."""

from __future__ import annotations

import itertools

from api_helpers import Server, problem
from sqlalchemy import create_engine, text


def _lock(server: Server, account: str) -> None:
    server.admin.post(
        "/v1/events", json={"events": [{"id": "1", "account": account, "name": "payment_failed"}]}
    )


def test_outbox_lists_and_renders_notices(any_server: Server) -> None:
    any_server.account("a")
    _lock(any_server, "a")
    reader = any_server.client(any_server.tokens["read"])
    rows = reader.get("/v1/outbox").json()["items"]
    assert [(r["kind"], r["name"], r["channel"], r["status"]) for r in rows] == [
        ("host", "stop_scheduled_campaigns", "host", "delivered"),
        ("host", "pause_automations", "host", "delivered"),
        ("notice", "locked/lock-started", "email", "delivered"),
        ("notice", "locked/lock-started", "in_app", "delivered"),
    ]
    email = rows[2]
    assert email["recipient"] == "a@example.com"
    assert email["template"] == "lock-started"
    view = reader.get(f"/v1/outbox/{email['id']}").json()
    assert view["row"] == email
    assert view["rendered"]["subject"]
    assert "locked" in view["rendered"]["text"]
    assert view["rendered"]["html"].lstrip().lower().startswith(("<!doctype", "<html"))
    host = reader.get(f"/v1/outbox/{rows[0]['id']}").json()
    assert host["rendered"] is None
    assert host["note"] == "only notices have content"
    page = reader.get("/v1/outbox", params={"limit": 3}).json()
    rest = reader.get("/v1/outbox", params={"limit": 3, "cursor": page["next_cursor"]}).json()
    assert [r["id"] for r in page["items"] + rest["items"]] == [r["id"] for r in rows]
    assert rest["next_cursor"] is None
    assert reader.get("/v1/outbox", params={"status": "failed"}).json()["items"] == []
    assert (
        len(
            reader.get("/v1/outbox", params={"account": "a", "status": "delivered"}).json()["items"]
        )
        == 4
    )
    assert problem(reader.get("/v1/outbox/999"), 404, "not-found")["detail"] == "no outbox row 999"
    bad = problem(reader.get("/v1/outbox?status=lost"), 422, "invalid-request")
    assert bad["errors"][0]["path"] == "query.status"


def test_retry_a_failed_row(any_server: Server) -> None:
    any_server.account("a", members=[])  # no admin: the notice fails for good
    _lock(any_server, "a")
    admin = any_server.admin
    [failed] = admin.get("/v1/outbox", params={"status": "failed"}).json()["items"]
    assert failed["last_error"] == (
        "notice locked/lock-started has no recipient: "
        "the account has no admin member and no address"
    )
    admin.put("/v1/accounts/a/members/boss@example.com", json={"role": "admin"})
    writer = any_server.client(any_server.tokens["write"])
    problem(writer.post(f"/v1/outbox/{failed['id']}/retry"), 403, "forbidden")
    retried = admin.post(f"/v1/outbox/{failed['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    again = admin.post(f"/v1/outbox/{failed['id']}/retry")
    assert (
        problem(again, 409, "conflict")["detail"]
        == f"outbox row {failed['id']} is pending, not failed"
    )
    problem(admin.post("/v1/outbox/999/retry"), 404, "not-found")
    audit = admin.get("/v1/audit", params={"account": "a"}).json()["items"]
    assert audit[-1]["kind"] == "outbox.retried"
    # who, which row, and its error with any address replaced (the audit outlives a deletion)
    assert audit[-1]["detail"] == {
        "by": "admin-token",
        "row": failed["id"],
        "channel": "email",
        "attempts": 1,
        "error": failed["last_error"],
    }


def test_in_app_notifications(any_server: Server) -> None:
    any_server.account("a")
    reader = any_server.client(any_server.tokens["read"])
    assert reader.get("/v1/accounts/a/notifications").json() == {"account": "a", "items": []}
    _lock(any_server, "a")
    items = reader.get("/v1/accounts/a/notifications").json()["items"]
    assert [(n["template"], n["case"]) for n in items] == [("lock-started", "payment-lock#1")]
    assert items[0]["subject"]
    assert items[0]["body"]
    assert items[0]["read_at"] is None
    assert reader.get("/v1/accounts/a/notifications?unread=true").json()["items"] == items


def test_audit_list_and_verify(any_server: Server) -> None:
    any_server.account("a")
    any_server.account("b")
    _lock(any_server, "a")
    reader = any_server.client(any_server.tokens["read"])
    everything = reader.get("/v1/audit").json()["items"]
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    # the policy the server started with is recorded first, an entry of no account
    assert {e["account"] for e in everything} == {"", "a", "b"}
    assert everything[0]["kind"] == "policy.applied"
    assert everything[0]["text"] == (
        f"policy account-locks v1 applied by {everything[0]['detail']['by']}, initial"
    )
    assert everything[0]["prev_hash"] == "0" * 64
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(everything))
    only_b = reader.get("/v1/audit", params={"account": "b"}).json()["items"]
    assert [e["kind"] for e in only_b] == ["account.created"]
    page = reader.get("/v1/audit", params={"limit": 2}).json()
    second = reader.get("/v1/audit", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [e["seq"] for e in second["items"]] == [3, 4]
    assert reader.get("/v1/audit/verify").json() == {
        "ok": True,
        "checked": len(everything),
        "problems": [],
    }


def test_audit_verify_reports_a_tampered_row(server: Server) -> None:
    server.account("a")
    _lock(server, "a")
    db = create_engine(server.services.database_url)
    with db.begin() as conn:
        conn.execute(text("UPDATE audit SET kind = 'case.closed' WHERE seq = 3"))
    db.dispose()
    result = server.admin.get("/v1/audit/verify").json()
    assert result["ok"] is False
    assert result["problems"] == [
        {"seq": 3, "problem": "edited", "detail": "the row's content does not match its hash"}
    ]
