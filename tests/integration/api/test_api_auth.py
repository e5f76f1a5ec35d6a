"""Bearer tokens and scopes: 401 without a valid token, 403 without the scope; tokens API."""

from __future__ import annotations

from api_helpers import Server, problem

#: one request per endpoint and the scope it needs
ENDPOINTS = [
    ("GET", "/v1/accounts", None, "read"),
    ("GET", "/v1/accounts/a", None, "read"),
    ("GET", "/v1/accounts/a/status", None, "read"),
    ("GET", "/v1/accounts/a/timeline", None, "read"),
    ("GET", "/v1/accounts/a/cases", None, "read"),
    ("GET", "/v1/accounts/a/check?action=login", None, "read"),
    ("GET", "/v1/accounts/a/notifications", None, "read"),
    ("GET", "/v1/accounts/a/tombstone", None, "read"),
    ("GET", "/v1/accounts/a/receipt", None, "read"),
    ("GET", "/v1/receipts", None, "read"),
    ("GET", "/v1/receipts/del_x", None, "read"),
    ("POST", "/v1/check", {"checks": []}, "read"),
    ("GET", "/v1/outbox", None, "read"),
    ("GET", "/v1/outbox/1", None, "read"),
    ("GET", "/v1/audit", None, "read"),
    ("GET", "/v1/audit/verify", None, "read"),
    ("GET", "/v1/clock", None, "read"),
    ("POST", "/v1/accounts", {"id": "b", "kind": "standard"}, "write"),
    ("PATCH", "/v1/accounts/a", {"kind": "standard"}, "write"),
    ("PUT", "/v1/accounts/a/members/x@y.co", {"role": "admin"}, "write"),
    ("DELETE", "/v1/accounts/a/members/x@y.co", None, "write"),
    ("PATCH", "/v1/accounts/a/facts", {}, "write"),
    ("POST", "/v1/signals", {"signals": []}, "write"),
    ("POST", "/v1/facts", {"facts": []}, "write"),
    ("POST", "/v1/events", {"events": []}, "write"),
    ("POST", "/v1/accounts/a/exports", None, "write"),
    ("POST", "/v1/accounts/a/actions/lock", {"reason": "r"}, "admin"),
    ("POST", "/v1/accounts/a/actions/delete", {"reason": "r"}, "admin"),
    ("POST", "/v1/outbox/1/retry", None, "admin"),
    ("GET", "/v1/tokens", None, "admin"),
    ("POST", "/v1/tokens", {"name": "n", "scopes": ["read"]}, "admin"),
    ("DELETE", "/v1/tokens/abc", None, "admin"),
    ("POST", "/v1/clock", {"advance": "1 day"}, "admin"),
]


def test_every_endpoint_needs_a_valid_token(server: Server) -> None:
    server.account("a")
    anonymous = server.client()
    forged = server.client("lapse_000000000000_forged")
    for method, path, body, _ in ENDPOINTS:
        response = anonymous.request(method, path, json=body)
        missing = problem(response, 401, "unauthorized")
        assert missing["detail"] == "this endpoint needs an `Authorization: Bearer <token>` header"
        assert response.headers["www-authenticate"] == 'Bearer realm="lapse"'
        bad = problem(forged.request(method, path, json=body), 401, "unauthorized")
        assert bad["detail"] == "the bearer token is unknown or revoked", (method, path)
    basic = server.client(None, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    problem(basic.get("/v1/accounts"), 401, "unauthorized")


def test_scopes(server: Server) -> None:
    server.account("a")
    levels = {"read": 0, "write": 1, "admin": 2}
    for scope in ("read", "write"):
        client = server.client(server.tokens[scope])
        for method, path, body, needed in ENDPOINTS:
            response = client.request(method, path, json=body)
            granted = needed == scope
            if granted:
                assert response.status_code not in (401, 403), (scope, method, path, response.text)
            else:
                body_ = problem(response, 403, "forbidden")
                assert f"lacks the {needed!r} scope" in body_["detail"], (scope, path)
        assert levels[scope] < 2
    admin = server.admin  # admin includes read and write
    for method, path, body, _ in ENDPOINTS:
        assert admin.request(method, path, json=body).status_code not in (401, 403), path


def test_tokens_api_create_list_revoke(any_server: Server) -> None:
    admin = any_server.admin
    created = admin.post(
        "/v1/tokens", json={"name": "billing-service", "scopes": ["write", "read", "write"]}
    )
    assert created.status_code == 201, created.text
    token = created.json()
    assert token["name"] == "billing-service"
    assert token["scopes"] == ["write", "read"]
    assert token["secret"].startswith("lapse_")
    listed = admin.get("/v1/tokens").json()["items"]
    assert {t["name"] for t in listed} == {
        "read-token",
        "write-token",
        "admin-token",
        "billing-service",
    }
    assert all("secret" not in t for t in listed)
    client = any_server.client(token["secret"])
    assert client.get("/v1/accounts").status_code == 200
    assert admin.delete(f"/v1/tokens/{token['id']}").status_code == 204
    # the revoking process forgets the token at once, even though it was just verified
    problem(client.get("/v1/accounts"), 401, "unauthorized")
    revoked = next(t for t in admin.get("/v1/tokens").json()["items"] if t["id"] == token["id"])
    assert revoked["revoked_at"] is not None
    problem(admin.delete("/v1/tokens/nope"), 404, "not-found")
    bad = problem(
        admin.post("/v1/tokens", json={"name": "x", "scopes": ["root"]}), 422, "invalid-request"
    )
    assert bad["errors"][0]["path"] == "body.scopes[0]"
    none = problem(
        admin.post("/v1/tokens", json={"name": "x", "scopes": []}), 422, "invalid-request"
    )
    assert none["errors"][0]["path"] == "body.scopes"


def test_health_and_metrics_are_open(server: Server) -> None:
    anonymous = server.client()
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/metrics").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200
