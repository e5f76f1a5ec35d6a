"""check over HTTP: one decision, and the batch hot path (hand-parsed, pre-serialized)."""

from __future__ import annotations

import httpx
from api_helpers import Server, problem

from lapse.runtime.bootstrap import build

LOCK_MESSAGE = (
    "send_email is disabled while your account is locked: your payment method failed or your "
    "subscription could not be renewed."
)


def _lock(server: Server, account: str) -> None:
    response = server.admin.post(
        "/v1/events",
        json={"events": [{"id": f"{account}-1", "account": account, "name": "payment_failed"}]},
    )
    assert response.status_code == 200, response.text


def test_single_check(any_server: Server) -> None:
    any_server.account("a")
    reader = any_server.client(any_server.tokens["read"])
    allowed = reader.get("/v1/accounts/a/check", params={"action": "send_email"})
    assert allowed.json() == {
        "account": "a",
        "action": "send_email",
        "allowed": True,
        "message": "",
        "until": None,
        "denials": [],
    }
    _lock(any_server, "a")
    denied = reader.get("/v1/accounts/a/check", params={"action": "send_email"}).json()
    assert denied["allowed"] is False
    assert denied["message"] == LOCK_MESSAGE
    assert denied["denials"] == [
        {
            "case": "payment-lock#1",
            "flow": "payment-lock",
            "phase": "locked",
            "reason": "your payment method failed or your subscription could not be renewed",
            "message": LOCK_MESSAGE,
            "until": None,
        }
    ]
    unknown = problem(reader.get("/v1/accounts/a/check?action=fly"), 422, "unknown-action")
    assert unknown["detail"].startswith("unknown action 'fly'; the policy gates: login, view,")
    missing = problem(reader.get("/v1/accounts/a/check"), 422, "invalid-request")
    assert missing["errors"][0]["path"] == "query.action"


def test_batch_check_answers_in_order_like_single_checks(any_server: Server) -> None:
    for name in ("a", "b", "c"):
        any_server.account(name)
    _lock(any_server, "b")
    reader = any_server.client(any_server.tokens["read"])
    checks = [
        {"account": account, "action": action}
        for account in ("a", "b", "c", "b")
        for action in ("login", "send_email", "export")
    ]
    response = reader.post("/v1/check", json={"checks": checks})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    results = response.json()["results"]
    assert [(r["account"], r["action"]) for r in results] == [
        (c["account"], c["action"]) for c in checks
    ]
    for check, result in zip(checks, results, strict=True):
        single = reader.get(
            f"/v1/accounts/{check['account']}/check", params={"action": check["action"]}
        )
        assert result == single.json()
    assert [r["allowed"] for r in results if r["account"] == "b"] == [True, False, False] * 2
    assert reader.post("/v1/check", json={"checks": []}).json() == {"results": []}


def test_batch_check_shape_errors_name_the_spot(server: Server) -> None:
    server.account("a")
    reader = server.client(server.tokens["read"])
    not_json = problem(
        reader.post("/v1/check", content=b"{checks", headers={"content-type": "application/json"}),
        422,
        "invalid-request",
    )
    assert not_json["detail"].startswith("body: the body is not valid JSON")
    wrong_top = problem(
        reader.post("/v1/check", json=[{"account": "a", "action": "login"}]), 422, "invalid-request"
    )
    assert wrong_top["errors"][0]["path"] == "body"
    extra_top = problem(
        reader.post("/v1/check", json={"checks": [], "mode": "x"}), 422, "invalid-request"
    )
    assert extra_top["errors"][0]["path"] == "body.mode"
    not_list = problem(
        reader.post("/v1/check", json={"checks": {"a": "login"}}), 422, "invalid-request"
    )
    assert not_list["errors"][0]["path"] == "body.checks"
    items = problem(
        reader.post(
            "/v1/check",
            json={
                "checks": [
                    {"account": "a", "action": "login"},
                    ["a", "login"],
                    {"account": "a"},
                    {"account": "a", "action": 3},
                    {"account": "a", "action": "login", "why": "?"},
                ]
            },
        ),
        422,
        "invalid-request",
    )
    assert items["errors"] == [
        {
            "path": "body.checks[1]",
            "message": "expected an object {account, action}",
            "type": "dict_type",
        },
        {"path": "body.checks[2].action", "message": "Field required", "type": "missing"},
        {"path": "body.checks[3].action", "message": "expected a string", "type": "string_type"},
        {"path": "body.checks[4].why", "message": "unknown field", "type": "extra_forbidden"},
    ]
    assert items["detail"] == "body.checks[1]: expected an object {account, action} (and 3 more)"


def test_batch_check_unknown_action_or_account(any_server: Server) -> None:
    any_server.account("a")
    reader = any_server.client(any_server.tokens["read"])
    action = reader.post(
        "/v1/check",
        json={"checks": [{"account": "a", "action": "login"}, {"account": "a", "action": "fly"}]},
    )
    assert problem(action, 422, "unknown-action")["detail"].startswith(
        "checks[1]: unknown action 'fly'; the policy gates:"
    )
    account = reader.post(
        "/v1/check",
        json={
            "checks": [{"account": "a", "action": "login"}, {"account": "zz", "action": "login"}]
        },
    )
    assert problem(account, 404, "unknown-account")["detail"] == "no account 'zz'"


def test_batch_check_sees_writes_of_other_processes(any_server: Server) -> None:
    """A worker or another API process changes an account: the next check knows at once."""
    any_server.account("a")
    reader = any_server.client(any_server.tokens["read"])
    body = {"checks": [{"account": "a", "action": "send_email"}]}
    assert reader.post("/v1/check", json=body).json()["results"][0]["allowed"] is True
    other = build(any_server.services.settings)  # a second process on the same database
    try:
        other.engine.event("a", "payment_failed", event_id="elsewhere")
    finally:
        other.store.close()  # type: ignore[attr-defined]
    assert reader.post("/v1/check", json=body).json()["results"][0]["allowed"] is False
    single = reader.get("/v1/accounts/a/check", params={"action": "send_email"}).json()
    assert single["allowed"] is False


def test_batch_check_of_a_large_batch(server: Server) -> None:
    ids = [f"acct-{i:03d}" for i in range(50)]
    for account in ids:
        server.account(account, members=[])
    _lock(server, "acct-007")
    checks = [{"account": ids[i % 50], "action": "send_email"} for i in range(1000)]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.tokens['read']}"}
    ) as c:
        results = c.post("/v1/check", json={"checks": checks}).json()["results"]
    assert len(results) == 1000
    assert [i for i, r in enumerate(results) if not r["allowed"]] == list(range(7, 1000, 50))
    # past INLINE_MAX the batch is answered in the thread pool: the same answers
    bigger = [{"account": ids[i % 50], "action": "send_email"} for i in range(2500)]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.tokens['read']}"}
    ) as c:
        results = c.post("/v1/check", json={"checks": bigger}).json()["results"]
    assert [i for i, r in enumerate(results) if not r["allowed"]] == list(range(7, 2500, 50))
