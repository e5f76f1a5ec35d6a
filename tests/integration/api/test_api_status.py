"""Status (with the rendered banner), cases and timeline (past, projected, start explanations)."""

from __future__ import annotations

from api_helpers import Factory, Server


def test_status_of_a_locked_account(any_server: Server) -> None:
    any_server.account("a")
    any_server.admin.post(
        "/v1/events", json={"events": [{"id": "1", "account": "a", "name": "payment_failed"}]}
    )
    status = any_server.client(any_server.tokens["read"]).get("/v1/accounts/a/status").json()
    assert status["state"] == "locked"
    assert status["banner"] == (
        "Your account is locked: your payment method failed or your subscription could not be "
        "renewed. You can log in and view your data, but sending and exports are disabled. Your "
        "data is fully preserved until 31 July 2025 (181 days left)."
    )
    assert "send_email" in status["denied"]
    assert "login" not in status["denied"]
    [case] = status["cases"]
    assert case["id"] == "payment-lock#1"
    assert case["phase"] == "locked"
    assert (case["phase_number"], case["phase_count"]) == (1, 2)
    assert case["deadline"] == "2025-07-31T09:00:00Z"
    assert case["time_left"] == "181 days"
    assert case["opened_by"] == "event:payment_failed"
    assert case["waiting"] == []
    assert case["notices"][0]["template"] == "lock-started"
    assert case["notices"][0]["dispatched_at"] == "2025-01-31T09:00:00Z"
    assert status["next_due_at"] == "2025-07-01T09:00:00Z"
    cases = any_server.admin.get("/v1/accounts/a/cases").json()
    assert cases == {"account": "a", "cases": status["cases"]}


def test_waiting_reasons_show_an_undeliverable_notice(server: Server) -> None:
    server.account("a", members=[])  # nobody to warn: the notice cannot go out
    server.admin.post(
        "/v1/events", json={"events": [{"id": "1", "account": "a", "name": "payment_failed"}]}
    )
    [case] = server.admin.get("/v1/accounts/a/status").json()["cases"]
    assert case["waiting"]
    assert case["waiting"][0].startswith("notice locked/lock-started")
    assert "failed after 1 attempt" in case["waiting"][0]


def test_timeline_past_projected_and_explanations(make_server: Factory) -> None:
    server = make_server(policy="inactivity-cleanup")
    server.account("a")
    timeline = server.admin.get("/v1/accounts/a/timeline").json()
    assert timeline["account"] == "a"
    assert [e["kind"] for e in timeline["past"]] == ["account.created"]
    projected = [(e["at"], e["text"]) for e in timeline["projected"]]
    assert projected[0] == (
        "2026-01-31T09:00:00Z",
        "Inactivity clean-up starts: no campaign sent and no API request in the last 12 months, "
        "and no active subscription",
    )
    assert projected[-1] == ("2026-03-02T09:00:00Z", "Inactivity clean-up ends: account deleted")
    flows = {f["flow"]: f for f in timeline["flows"]}
    assert flows["test-account-expiry"]["applies"] is False
    start = flows["inactivity"]["start"]
    assert start["holds"] is False
    assert start["holds_at"] == "2026-01-31T09:00:00Z"
    assert [p["holds"] for p in start["parts"]] == [False, True]
    assert flows["inactivity"]["starts_on"] == []
    assert timeline["truncated"] is False
