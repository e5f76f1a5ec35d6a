"""GET /v1/policy and POST /v1/policy/preview, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest
from api_helpers import Factory, Server, problem

TEXT = resources.files("lapse.policy.presets").joinpath("inactivity-cleanup.yaml").read_text()
V2 = TEXT.replace("version: 1", "version: 2").replace("lasts: 30 days", "lasts: 14 days")
YAML = {"Content-Type": "application/yaml"}


def in_grace(server: Server) -> None:
    """`acme`: 12 months without activity end now; then 3 days of its grace period pass."""
    server.account("acme", created_at="2024-01-31T09:00:00Z")
    server.advance("3 days")


def test_the_active_policy(make_server: Factory) -> None:
    server = make_server(policy="inactivity-cleanup")
    in_grace(server)
    reader = server.client(server.tokens["read"])
    body = reader.get("/v1/policy").json()
    assert body == {
        "name": "inactivity-cleanup",
        "version": "1",
        "digest": server.services.policy.digest,
        "applied_at": "2025-01-31T09:00:00Z",
        "applied_by": body["applied_by"],
        "mode": "initial",
        "flows": ["test-account-expiry", "inactivity"],
        "open_cases": {"1": 1},
    }
    assert body["applied_by"].startswith("lapse ")
    problem(server.client().get("/v1/policy"), 401, "unauthorized")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_preview_shows_the_deadline_moving(make_server: Factory, backend: str) -> None:
    server = make_server(backend, policy="inactivity-cleanup")
    in_grace(server)
    response = server.admin.post("/v1/policy/preview", content=V2, headers=YAML)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current"]["version"] == "1"
    assert body["proposed"] == {
        "name": "inactivity-cleanup",
        "version": "2",
        "digest": hashlib.sha256(V2.encode()).hexdigest(),
    }
    assert body["as_of"] == "2025-02-03T09:00:00Z"
    assert (body["accounts"], body["open_cases"], body["affected"]) == (1, 1, 1)
    keep, replan = body["modes"]
    assert (keep["mode"], replan["mode"]) == ("keep", "replan")
    assert keep["phases"][0]["moved"] == 0
    (line,) = replan["phases"]
    assert (line["flow"], line["phase"], line["cases"], line["moved"]) == (
        "inactivity",
        "grace",
        1,
        1,
    )
    assert line["earliest_seconds"] == line["latest_seconds"] == -16 * 86400
    (sample,) = line["samples"]
    assert sample["account"] == "acme"
    assert sample["deadline_before"] == "2025-03-02T09:00:00Z"
    assert sample["deadline_after"] == "2025-02-14T09:00:00Z"
    assert sample["moved_seconds"] == -16 * 86400
    assert (replan["blocked"], replan["closing"], replan["notices"]) == (0, 0, {})
    one = server.admin.post(
        "/v1/policy/preview", params={"mode": "replan"}, content=V2, headers=YAML
    ).json()
    assert [m["mode"] for m in one["modes"]] == ["replan"]
    # nothing was written
    status = server.admin.get("/v1/accounts/acme/status").json()
    assert status["cases"][0]["deadline"] == "2025-03-02T09:00:00Z"
    assert status["cases"][0]["policy_version"] == "1"


def test_preview_problems(server: Server) -> None:
    reader = server.client(server.tokens["read"])
    problem(reader.post("/v1/policy/preview", content=V2, headers=YAML), 403, "forbidden")
    empty = problem(server.admin.post("/v1/policy/preview", content=""), 422, "invalid-request")
    assert empty["detail"] == "the request needs a policy document (YAML) as its body"
    binary = problem(
        server.admin.post("/v1/policy/preview", content=b"\xff\xfe"), 422, "invalid-request"
    )
    assert binary["detail"] == "the body is not UTF-8 text: send the policy document"
    broken = V2.replace("lasts: 14 days", "lasts: 14 dayz")
    invalid = problem(
        server.admin.post("/v1/policy/preview", content=broken, headers=YAML), 422, "invalid-policy"
    )
    assert invalid["detail"].startswith("1 error in policy:\n  body:")
    paths = {e["path"] for e in invalid["errors"]}
    assert "flows.inactivity.phases[0].lasts" in paths
    lasts = next(e for e in invalid["errors"] if e["path"] == "flows.inactivity.phases[0].lasts")
    lines = broken.splitlines()
    number = next(n for n, text in enumerate(lines, 1) if "lasts: 14 dayz" in text)
    assert lasts["line"] == number
    assert lasts["column"] == lines[number - 1].index("14 dayz") + 1
    bad_mode = problem(
        server.admin.post("/v1/policy/preview", params={"mode": "later"}, content=V2),
        422,
        "invalid-request",
    )
    assert bad_mode["errors"][0]["path"] == "query.mode"
