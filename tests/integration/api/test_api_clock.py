"""The controlled clock: only with LAPSE_CLOCK=manual; moves forward and runs due work."""

from __future__ import annotations

from api_helpers import START_ISO, Factory, Server, problem


def test_clock_routes_do_not_exist_without_a_manual_clock(make_server: Factory) -> None:
    server = make_server(clock="system")
    admin = server.admin
    problem(admin.get("/v1/clock"), 404, "about:blank")
    problem(admin.post("/v1/clock", json={"advance": "1 day"}), 404, "about:blank")
    paths = server.client().get("/openapi.json").json()["paths"]
    assert "/v1/clock" not in paths


def test_read_and_move_the_clock(server: Server) -> None:
    reader = server.client(server.tokens["read"])
    assert reader.get("/v1/clock").json() == {"now": START_ISO}
    problem(reader.post("/v1/clock", json={"advance": "1 day"}), 403, "forbidden")
    moved = server.advance("3 days")
    assert moved == {"now": "2025-02-03T09:00:00Z", "processed": 0, "delivered": 0, "failed": 0}
    to = server.admin.post("/v1/clock", json={"to": "2025-03-01T00:00:00+01:00"}).json()
    assert to["now"] == "2025-02-28T23:00:00Z"
    assert reader.get("/v1/clock").json() == {"now": "2025-02-28T23:00:00Z"}


def test_bad_clock_moves_change_nothing(server: Server) -> None:
    admin = server.admin
    back = admin.post("/v1/clock", json={"to": "2025-01-01T00:00:00Z"})
    assert problem(back, 422, "invalid-input")["detail"] == (
        "to: the clock cannot go back from 2025-01-31T09:00:00+00:00 to 2025-01-01T00:00:00+00:00"
    )
    both = admin.post("/v1/clock", json={"advance": "1 day", "to": "2026-01-01T00:00:00Z"})
    assert "exactly one" in problem(both, 422, "invalid-input")["detail"]
    problem(admin.post("/v1/clock", json={}), 422, "invalid-input")
    bad = admin.post("/v1/clock", json={"advance": "-3 days"})
    assert problem(bad, 422, "invalid-input")["detail"] == (
        "advance: durations cannot be negative, found '-3 days'"
    )
    naive = problem(
        admin.post("/v1/clock", json={"to": "2026-01-01T00:00:00"}), 422, "invalid-request"
    )
    assert naive["errors"][0]["path"] == "body.to"
    assert admin.get("/v1/clock").json() == {"now": START_ISO}


def test_moving_the_clock_runs_the_lifecycle_on_time(any_server: Server) -> None:
    any_server.account("a")
    any_server.admin.post(
        "/v1/events", json={"events": [{"id": "1", "account": "a", "name": "payment_failed"}]}
    )
    moved = any_server.advance("6 months")
    assert moved["now"] == "2025-07-31T09:00:00Z"
    assert moved["processed"] >= 2
    assert moved["failed"] == 0
    status = any_server.admin.get("/v1/accounts/a/status").json()
    [case] = status["cases"]
    assert case["phase"] == "retention-expired"
    warning = [n for n in case["notices"] if n["template"] == "lock-retention-warning"]
    # on time: the 30-days-before-end warning went out exactly when it was due
    assert warning[0]["due_at"] == warning[0]["dispatched_at"] == "2025-07-01T09:00:00Z"


def test_catch_up_after_downtime_keeps_the_notice_lead(make_server: Factory) -> None:
    server = make_server(policy="inactivity-cleanup")
    server.account("a")
    server.advance("12 months")  # the grace period starts on time
    moved = server.advance("30 days", catch_up=True)  # the scheduler was down for 30 days
    assert moved["now"] == "2026-03-02T09:00:00Z"
    status = server.admin.get("/v1/accounts/a/status").json()
    [case] = status["cases"]
    # the final warning went out late, so the deletion moved: the holder still gets 7 days
    assert case["deadline"] == "2026-03-09T09:00:00Z"
    assert case["planned_deadline"] == "2026-03-02T09:00:00Z"
    server.advance("7 days")
    gone = problem(server.admin.get("/v1/accounts/a"), 410, "account-deleted")
    assert gone["tombstone"]["deleted_at"] == "2026-03-09T09:00:00Z"


def test_reset_starts_the_simulation_over(any_server: Server) -> None:
    admin = any_server.admin
    any_server.account("a", address="a@example.com")
    admin.post(
        "/v1/events", json={"events": [{"id": "1", "account": "a", "name": "payment_failed"}]}
    )
    assert not admin.get("/v1/accounts/a/check", params={"action": "send_email"}).json()["allowed"]
    any_server.account("spam", address="spam@example.com")
    admin.post(
        "/v1/events", json={"events": [{"id": "2", "account": "spam", "name": "tos_violation"}]}
    )
    any_server.advance("1 month")
    assert admin.get("/v1/outbox").json()["items"]
    assert admin.get("/v1/audit").json()["items"]
    reader = any_server.client(any_server.tokens["read"])
    problem(reader.post("/v1/clock/reset", json={"to": START_ISO}), 403, "forbidden")

    reset = admin.post("/v1/clock/reset", json={"to": START_ISO})

    assert reset.status_code == 200, reset.text
    assert reset.json() == {"now": START_ISO}
    assert reader.get("/v1/clock").json() == {"now": START_ISO}  # the tokens stay
    assert admin.get("/v1/accounts").json()["items"] == []
    assert admin.get("/v1/outbox").json()["items"] == []
    assert admin.get("/v1/audit").json()["items"] == []
    problem(admin.get("/v1/accounts/spam/tombstone"), 404, "not-found")
    # the ids, the retired address and the event ids are free again
    any_server.account("spam", address="spam@example.com")
    any_server.account("a")
    again = admin.post(
        "/v1/events", json={"events": [{"id": "1", "account": "a", "name": "payment_succeeded"}]}
    )
    assert again.json()["applied"] == 1
    # a fresh account under the old id: nothing of the locked one remains
    assert admin.get("/v1/accounts/a/check", params={"action": "send_email"}).json()["allowed"]
    verify = admin.get("/v1/audit/verify").json()
    assert verify["ok"], verify
    assert admin.get("/v1/audit").json()["items"][0]["prev_hash"] == "0" * 64


def test_reset_does_not_exist_without_a_manual_clock(make_server: Factory) -> None:
    server = make_server(clock="system")
    problem(server.admin.post("/v1/clock/reset", json={"to": START_ISO}), 404, "about:blank")
    assert server.admin.get("/v1/accounts").status_code == 200
