"""Signals, facts and events in batches: validated whole, written all or nothing."""

from __future__ import annotations

from datetime import timedelta

from api_helpers import START, Factory, Server, problem


def _signal(account: str, name: str = "login", at: str = "2025-01-30T10:00:00Z") -> dict[str, str]:
    return {"account": account, "name": name, "at": at}


def test_signals_are_coalesced(any_server: Server) -> None:
    any_server.account("a")
    any_server.account("b")
    response = any_server.admin.post(
        "/v1/signals",
        json={
            "signals": [
                _signal("a", at="2025-01-30T10:00:00Z"),
                _signal("a", at="2025-01-30T12:00:00+02:00"),  # the latest per account/signal
                _signal("b", "campaign_sent"),
                {"account": "b", "name": "login"},  # no time: now
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 4, "written": 3, "woken": 0}
    a = any_server.admin.get("/v1/accounts/a").json()
    assert a["signals"] == {"login": "2025-01-30T10:00:00Z"}
    b = any_server.admin.get("/v1/accounts/b").json()
    assert b["signals"] == {
        "campaign_sent": "2025-01-30T10:00:00Z",
        "login": "2025-01-31T09:00:00Z",
    }


def test_a_bad_signal_writes_none_of_the_batch(any_server: Server) -> None:
    any_server.account("a")
    admin = any_server.admin
    naive = admin.post(
        "/v1/signals",
        json={
            "signals": [
                _signal("a"),
                _signal("a"),
                _signal("a"),
                _signal("a", at="2025-01-30T10:00:00"),
            ]
        },
    )
    body = problem(naive, 422, "invalid-request")
    assert body["errors"][0]["path"] == "body.signals[3].at"
    assert body["detail"].startswith(
        "body.signals[3].at: timestamp 2025-01-30T10:00:00 has no time zone"
    )
    malformed = problem(
        admin.post("/v1/signals", json={"signals": [_signal("a", at="30/01/2025")]}),
        422,
        "invalid-request",
    )
    assert malformed["errors"][0] == {
        "path": "body.signals[0].at",
        "message": "'30/01/2025' is not an ISO 8601 timestamp (e.g. 2025-01-31T09:00:00Z)",
        "type": "datetime_from_date_parsing",
    }
    unknown_name = admin.post(
        "/v1/signals", json={"signals": [_signal("a"), _signal("a", "logout")]}
    )
    assert problem(unknown_name, 422, "invalid-input")["detail"] == (
        "signals[1]: unknown signal 'logout'; the policy knows: campaign_sent, login"
    )
    unknown_account = admin.post("/v1/signals", json={"signals": [_signal("a"), _signal("ghost")]})
    assert problem(unknown_account, 422, "invalid-input")["detail"] == (
        "unknown account: 'ghost'; nothing was recorded"
    )
    assert admin.get("/v1/accounts/a").json()["signals"] == {}
    missing = problem(
        admin.post("/v1/signals", json={"signals": [{"account": "a"}]}), 422, "invalid-request"
    )
    assert missing["errors"][0]["path"] == "body.signals[0].name"


def test_oversized_batches_are_refused_with_the_limit(make_server: Factory) -> None:
    server = make_server(max_batch=3)
    server.account("a")
    admin = server.admin
    body = problem(
        admin.post("/v1/signals", json={"signals": [_signal("a")] * 4}), 413, "too-large"
    )
    assert body["detail"] == (
        "signals: 4 items; at most 3 per request (LAPSE_MAX_BATCH): split the batch"
    )
    events = [{"id": str(i), "account": "a", "name": "payment_failed"} for i in range(4)]
    assert (
        "at most 3"
        in problem(admin.post("/v1/events", json={"events": events}), 413, "too-large")["detail"]
    )
    facts = [{"account": "a", "facts": {"contacts": 1}}] * 4
    assert (
        "at most 3"
        in problem(admin.post("/v1/facts", json={"facts": facts}), 413, "too-large")["detail"]
    )
    checks = [{"account": "a", "action": "login"}] * 4
    assert (
        "at most 3"
        in problem(admin.post("/v1/check", json={"checks": checks}), 413, "too-large")["detail"]
    )
    assert admin.get("/v1/accounts/a").json()["signals"] == {}


def test_facts_batch_all_or_nothing(any_server: Server) -> None:
    any_server.account("a")
    any_server.account("b")
    admin = any_server.admin
    bad = admin.post(
        "/v1/facts",
        json={
            "facts": [
                {"account": "a", "facts": {"contacts": 10, "plan_contact_limit": 5}},
                {"account": "b", "facts": {"bounce_rate": "high"}},
            ]
        },
    )
    assert problem(bad, 422, "invalid-input")["detail"] == (
        "facts[1]: fact bounce_rate: expected a number, found 'high'"
    )
    assert admin.get("/v1/accounts/a").json()["facts"] == {}
    ghost = admin.post(
        "/v1/facts", json={"facts": [{"account": "a", "facts": {}}, {"account": "zz", "facts": {}}]}
    )
    assert problem(ghost, 404, "unknown-account")["detail"] == "facts[1]: no account 'zz'"
    good = admin.post(
        "/v1/facts",
        json={
            "facts": [
                {"account": "a", "facts": {"contacts": 10, "plan_contact_limit": 5}},
                {"account": "b", "facts": {"bounce_rate": 0.01}, "at": "2025-01-20T00:00:00Z"},
                {"account": "b", "facts": {"bounce_rate": 0.01}},
            ]
        },
    )
    assert good.json() == {"received": 3, "changed": 2}
    assert admin.get("/v1/accounts/a").json()["state"] == "locked"
    assert admin.get("/v1/accounts/b").json()["facts"]["bounce_rate"] == {
        "value": 0.01,
        "changed_at": "2025-01-20T00:00:00Z",
    }


def test_events_are_idempotent_by_id(any_server: Server) -> None:
    any_server.account("a")
    any_server.account("b")
    admin = any_server.admin
    first = admin.post(
        "/v1/events",
        json={
            "events": [
                {
                    "id": "inv-1",
                    "account": "a",
                    "name": "payment_failed",
                    "at": "2025-01-30T09:00:00Z",
                },
                {"id": "inv-1", "account": "a", "name": "payment_failed"},  # repeated in the batch
                {"id": "inv-1", "account": "b", "name": "payment_failed"},  # ids are per account
            ]
        },
    )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "applied": 2,
        "duplicates": 1,
        "results": [
            {"id": "inv-1", "account": "a", "status": "applied"},
            {"id": "inv-1", "account": "a", "status": "duplicate"},
            {"id": "inv-1", "account": "b", "status": "applied"},
        ],
    }
    replay = admin.post(
        "/v1/events", json={"events": [{"id": "inv-1", "account": "a", "name": "payment_failed"}]}
    )
    assert replay.json()["results"] == [{"id": "inv-1", "account": "a", "status": "duplicate"}]
    status = admin.get("/v1/accounts/a/status").json()
    # the case starts at the event's own time, not when it was processed
    assert status["cases"][0]["started_at"] == "2025-01-30T09:00:00Z"
    paid = admin.post(
        "/v1/events",
        json={"events": [{"id": "pay-1", "account": "a", "name": "payment_succeeded"}]},
    )
    assert paid.json()["applied"] == 1
    assert admin.get("/v1/accounts/a").json()["state"] == "active"


def test_a_bad_event_applies_none_of_the_batch(any_server: Server) -> None:
    any_server.account("a")
    admin = any_server.admin
    good = {"id": "e1", "account": "a", "name": "payment_failed"}
    unknown = admin.post(
        "/v1/events", json={"events": [good, {"id": "e2", "account": "a", "name": "exploded"}]}
    )
    assert problem(unknown, 422, "invalid-input")["detail"].startswith(
        "events[1]: unknown event 'exploded'; the policy knows:"
    )
    ghost = admin.post(
        "/v1/events",
        json={"events": [good, {"id": "e2", "account": "zz", "name": "payment_failed"}]},
    )
    assert problem(ghost, 404, "unknown-account")["detail"] == "events[1]: no account 'zz'"
    no_id = problem(
        admin.post(
            "/v1/events", json={"events": [good, {"account": "a", "name": "renewal_failed"}]}
        ),
        422,
        "invalid-request",
    )
    assert no_id["errors"][0]["path"] == "body.events[1].id"
    naive = problem(
        admin.post("/v1/events", json={"events": [{**good, "at": "2025-01-30 09:00"}]}),
        422,
        "invalid-request",
    )
    assert naive["errors"][0]["path"] == "body.events[0].at"
    assert admin.get("/v1/accounts/a").json()["open_cases"] == []
    # none of them was remembered: the good event still applies
    assert admin.post("/v1/events", json={"events": [good]}).json()["applied"] == 1


def test_a_stop_event_older_than_the_start_is_ignored(server: Server) -> None:
    server.account("a")
    admin = server.admin
    events = [
        {"id": "paid", "account": "a", "name": "payment_succeeded", "at": "2025-01-30T12:00:00Z"},
        {"id": "failed", "account": "a", "name": "payment_failed", "at": "2025-01-30T09:00:00Z"},
    ]
    assert admin.post("/v1/events", json={"events": events}).json()["applied"] == 2
    # the failure arrived late: a later payment already settled it, so no lock opens
    assert admin.get("/v1/accounts/a").json()["state"] == "active"
    past = [e["text"] for e in admin.get("/v1/accounts/a/timeline").json()["past"]]
    assert any(text.startswith("event payment_failed ignored") for text in past), past


def test_an_event_older_than_the_event_retention_is_refused(make_server: Factory) -> None:
    server = make_server(event_retention="30 days")  # LAPSE_EVENT_RETENTION
    server.account("a")
    admin = server.admin
    old = (START - timedelta(days=31)).isoformat()
    good = {"id": "e1", "account": "a", "name": "payment_failed"}
    refused = admin.post(
        "/v1/events",
        json={"events": [good, {"id": "e0", "account": "a", "name": "payment_failed", "at": old}]},
    )
    detail = problem(refused, 422, "invalid-input")["detail"]
    assert detail.startswith(f"events[1]: event 'payment_failed' at {old} is older than the ")
    assert "(30 days, LAPSE_EVENT_RETENTION)" in detail
    assert admin.get("/v1/accounts/a").json()["open_cases"] == []  # none of the batch applied
    recent = (START - timedelta(days=29)).isoformat()
    taken = admin.post("/v1/events", json={"events": [{**good, "at": recent}]})
    assert taken.json()["applied"] == 1
