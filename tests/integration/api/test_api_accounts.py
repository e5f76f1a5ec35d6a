"""Accounts over HTTP: create, read, list with filters and cursors, kind, members, facts."""

from __future__ import annotations

from api_helpers import START_ISO, Server, problem


def test_create_and_read(any_server: Server) -> None:
    body = any_server.account(
        "acme",
        address="Owner@Acme.example",
        members=[{"email": "ops@acme.example", "role": "admin"}, {"email": "dev@acme.example"}],
    )
    assert body == {
        "id": "acme",
        "kind": "standard",
        "state": "active",
        "created_at": START_ISO,
        "address": "owner@acme.example",
        "members": [
            {"email": "ops@acme.example", "role": "admin"},
            {"email": "dev@acme.example", "role": "member"},
        ],
        "signals": {},
        "facts": {},
        "legal_hold": None,
        "open_cases": [],
    }
    assert any_server.admin.get("/v1/accounts/acme").json() == body


def test_create_with_explicit_creation_time_in_another_zone(server: Server) -> None:
    response = server.admin.post(
        "/v1/accounts",
        json={"id": "old", "kind": "trial", "created_at": "2024-06-01T12:00:00+02:00"},
    )
    assert response.status_code == 201
    assert response.json()["created_at"] == "2024-06-01T10:00:00Z"


def test_duplicate_account_is_a_conflict(any_server: Server) -> None:
    any_server.account("acme")
    response = any_server.admin.post("/v1/accounts", json={"id": "acme", "kind": "standard"})
    body = problem(response, 409, "account-exists")
    assert body["detail"] == "account 'acme' already exists"


def test_bad_accounts_are_refused_with_the_field(server: Server) -> None:
    cases = [
        ({"id": "a", "kind": "premium"}, "unknown account kind 'premium'"),
        ({"id": "a", "kind": "standard", "address": "not-an-email"}, "address: 'not-an-email'"),
        ({"id": "a", "kind": "standard", "members": [{"email": "x@y.z", "role": "boss"}]}, "boss"),
    ]
    for body, words in cases:
        detail = problem(server.admin.post("/v1/accounts", json=body), 422, "invalid-input")
        assert words in detail["detail"]
    naive = server.admin.post(
        "/v1/accounts", json={"id": "a", "kind": "standard", "created_at": "2025-01-01T00:00:00"}
    )
    body = problem(naive, 422, "invalid-request")
    assert body["errors"][0]["path"] == "body.created_at"
    assert "has no time zone" in body["detail"]
    extra = problem(
        server.admin.post("/v1/accounts", json={"id": "a", "kind": "standard", "plan": "x"}),
        422,
        "invalid-request",
    )
    assert extra["errors"] == [
        {
            "path": "body.plan",
            "message": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        }
    ]
    empty = problem(
        server.admin.post("/v1/accounts", json={"id": "", "kind": "standard"}),
        422,
        "invalid-request",
    )
    assert empty["errors"][0]["path"] == "body.id"
    assert server.admin.get("/v1/accounts").json()["items"] == []


def test_unknown_account_is_404_everywhere(server: Server) -> None:
    for path in (
        "/v1/accounts/ghost",
        "/v1/accounts/ghost/status",
        "/v1/accounts/ghost/timeline",
        "/v1/accounts/ghost/cases",
        "/v1/accounts/ghost/notifications",
        "/v1/accounts/ghost/check?action=login",
    ):
        body = problem(server.admin.get(path), 404, "unknown-account")
        assert body["detail"] == "no account 'ghost'", path
    body = problem(
        server.admin.put("/v1/accounts/ghost/members/a@b.co", json={"role": "admin"}),
        404,
        "unknown-account",
    )
    assert "ghost" in body["detail"]


def test_list_filters_and_pages(any_server: Server) -> None:
    for name in ("a1", "a2", "a3", "a4", "a5"):
        any_server.account(name)
    any_server.account("t1", kind="trial")
    any_server.admin.post(
        "/v1/events",
        json={"events": [{"id": "e1", "account": "a2", "name": "payment_failed"}]},
    )
    admin = any_server.admin
    page = admin.get("/v1/accounts", params={"limit": 2}).json()
    assert [a["id"] for a in page["items"]] == ["a1", "a2"]
    seen = [a["id"] for a in page["items"]]
    while page["next_cursor"]:
        page = admin.get("/v1/accounts", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [a["id"] for a in page["items"]]
    assert seen == ["a1", "a2", "a3", "a4", "a5", "t1"]
    locked = admin.get("/v1/accounts", params={"state": "locked"}).json()["items"]
    assert [(a["id"], a["open_flows"]) for a in locked] == [("a2", ["payment-lock"])]
    assert [a["id"] for a in admin.get("/v1/accounts?kind=trial").json()["items"]] == ["t1"]
    by_flow = admin.get("/v1/accounts", params={"flow": "payment-lock"}).json()["items"]
    assert [a["id"] for a in by_flow] == ["a2"]
    assert by_flow[0]["state"] == "locked"
    assert by_flow[0]["next_due_at"] == "2025-07-01T09:00:00Z"


def test_list_refuses_bad_filters(server: Server) -> None:
    admin = server.admin
    assert (
        "unknown kind 'gold'"
        in problem(admin.get("/v1/accounts?kind=gold"), 422, "invalid-input")["detail"]
    )
    assert (
        "unknown flow 'nope'"
        in problem(admin.get("/v1/accounts?flow=nope"), 422, "invalid-input")["detail"]
    )
    bad_state = problem(admin.get("/v1/accounts?state=sleepy"), 422, "invalid-request")
    assert bad_state["errors"][0]["path"] == "query.state"
    assert (
        "not a cursor"
        in problem(admin.get("/v1/accounts?cursor=%%%"), 422, "invalid-input")["detail"]
    )
    too_big = problem(admin.get("/v1/accounts?limit=5000"), 422, "invalid-request")
    assert too_big["errors"][0]["path"] == "query.limit"


def test_change_kind(server: Server) -> None:
    server.account("acme", kind="trial")
    response = server.admin.patch("/v1/accounts/acme", json={"kind": "standard"})
    assert response.status_code == 200
    assert response.json()["kind"] == "standard"
    problem(server.admin.patch("/v1/accounts/acme", json={"kind": "vip"}), 422, "invalid-input")


def test_members_add_change_role_remove(any_server: Server) -> None:
    any_server.account("acme", members=[])
    admin = any_server.admin
    added = admin.put("/v1/accounts/acme/members/Ann@Acme.example", json={"role": "member"})
    assert added.status_code == 200
    assert added.json()["members"] == [{"email": "ann@acme.example", "role": "member"}]
    promoted = admin.put("/v1/accounts/acme/members/ann@acme.example", json={"role": "admin"})
    assert promoted.json()["members"] == [{"email": "ann@acme.example", "role": "admin"}]
    removed = admin.delete("/v1/accounts/acme/members/ann@acme.example")
    assert removed.json()["members"] == []
    missing = problem(
        admin.delete("/v1/accounts/acme/members/bob@acme.example"), 422, "invalid-input"
    )
    assert missing["detail"] == "account 'acme' has no member 'bob@acme.example'"
    bad = problem(admin.put("/v1/accounts/acme/members/bob", json={}), 422, "invalid-input")
    assert "'bob' is not an email address" in bad["detail"]


def test_facts_of_one_account(any_server: Server) -> None:
    any_server.account("acme")
    admin = any_server.admin
    response = admin.patch(
        "/v1/accounts/acme/facts", json={"contacts": 1200, "plan_contact_limit": 1000}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["facts"]["contacts"] == {"value": 1200, "changed_at": START_ISO}
    assert body["state"] == "locked"  # over the contact limit: the lock opens at once
    assert body["open_cases"] == ["contact-limit-lock#1"]
    unset = admin.patch("/v1/accounts/acme/facts", json={"contacts": None}).json()
    assert "contacts" not in unset["facts"]
    assert unset["state"] == "active"  # the default stop: the condition no longer holds


def test_bad_facts_change_nothing(server: Server) -> None:
    server.account("acme")
    admin = server.admin
    wrong_type = admin.patch(
        "/v1/accounts/acme/facts", json={"plan_contact_limit": 10, "contacts": "many"}
    )
    assert problem(wrong_type, 422, "invalid-input")["detail"] == (
        "fact contacts: expected a number, found 'many'"
    )
    unknown = admin.patch("/v1/accounts/acme/facts", json={"colour": "red"})
    assert "unknown fact 'colour'" in problem(unknown, 422, "invalid-input")["detail"]
    assert admin.get("/v1/accounts/acme").json()["facts"] == {}
    naive = admin.patch("/v1/accounts/acme/facts?at=2025-01-01T00:00:00", json={"contacts": 1})
    assert problem(naive, 422, "invalid-request")["errors"][0]["path"] == "query.at"
    stamp = admin.patch("/v1/accounts/acme/facts", json={"trial_ends_at": "yesterday"})
    assert "expected an ISO 8601 timestamp" in problem(stamp, 422, "invalid-input")["detail"]
