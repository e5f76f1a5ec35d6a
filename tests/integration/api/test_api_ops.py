"""/health, /metrics and the OpenAPI document."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from api_helpers import Factory, Server, problem
from fastapi.routing import APIRoute

from lapse.api.routes import (
    accounts,
    actions,
    audit,
    checks,
    clock,
    data,
    ops,
    outbox,
    policy,
    reports,
    tokens,
)
from lapse.runtime.clock import ManualClock


def test_health_reports_the_scheduler_lag(make_server: Factory) -> None:
    server = make_server(policy="inactivity-cleanup")
    health = server.client().get("/health").json()
    assert health == {
        "status": "ok",
        "database": "ok",
        "now": "2025-01-31T09:00:00Z",
        "scheduler_lag_seconds": 0.0,
        "policy": "inactivity-cleanup v1",
    }
    server.account("a")  # due in 12 months, when the inactivity rule first holds
    clock = server.services.clock
    assert isinstance(clock, ManualClock)
    clock.advance("12 months 2 days")  # time passes and no scheduler runs
    lag = server.client().get("/health").json()["scheduler_lag_seconds"]
    assert lag == 2 * 86400
    server.advance("0 days")  # the API's clock move runs what is due
    assert server.client().get("/health").json()["scheduler_lag_seconds"] == 0.0


def test_health_is_503_when_the_database_is_gone(server: Server) -> None:
    path = server.services.database_url.removeprefix("sqlite:///")
    server.services.store.close()  # type: ignore[attr-defined]
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    response = server.client().get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"].startswith("database error:"), body
    assert body["scheduler_lag_seconds"] is None
    failing = server.admin.get("/v1/accounts")
    assert problem(failing, 503, "store-error")["detail"].startswith("database error:")


def test_metrics(server: Server) -> None:
    server.account("a")
    server.account("b", members=[])
    for account in ("a", "b"):
        server.admin.post(
            "/v1/events",
            json={"events": [{"id": "1", "account": account, "name": "payment_failed"}]},
        )
    server.admin.post("/v1/signals", json={"signals": [{"account": "a", "name": "login"}]})
    server.admin.post("/v1/check", json={"checks": [{"account": "a", "action": "login"}] * 3})
    text = server.client().get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert 'lapse_accounts{state="locked"} 2.0' in lines
    assert 'lapse_accounts{state="active"} 0.0' in lines
    assert 'lapse_outbox_rows{status="failed"} 1.0' in lines  # b has nobody to warn
    assert 'lapse_outbox_rows{status="pending"} 0.0' in lines
    counters = {
        line.split()[0]: float(line.split()[1]) for line in lines if line and line[0] != "#"
    }
    assert counters["lapse_checks_total"] >= 3
    assert counters["lapse_signals_received_total"] >= 1
    # the registry is per process: other tests' deliveries count too, these two at least
    assert counters['lapse_outbox_deliveries_total{channel="email",result="failed"}'] >= 1
    assert counters['lapse_outbox_deliveries_total{channel="email",result="delivered"}'] >= 1


def test_metrics_behind_a_token(make_server: Factory) -> None:
    secret = "m" * 24
    server = make_server(metrics_token=secret)
    bare = server.client().get("/metrics")
    assert problem(bare, 401, "unauthorized")["detail"] == (
        "/metrics needs an `Authorization: Bearer <LAPSE_METRICS_TOKEN>` header"
    )
    assert bare.headers["www-authenticate"] == 'Bearer realm="lapse"'
    # an API token, even an admin one, is not the metrics secret; nor is a near miss
    for wrong in (server.tokens["admin"], secret[:-1], secret + "m"):
        refused = server.client(wrong).get("/metrics")
        assert problem(refused, 401, "unauthorized")["detail"] == (
            "the bearer token is not this server's LAPSE_METRICS_TOKEN"
        )
    scraped = server.client(secret).get("/metrics")
    assert scraped.status_code == 200, scraped.text
    assert "lapse_accounts{" in scraped.text
    # the rest of the API is unchanged: /health stays open, the API tokens still work
    assert server.client().get("/health").status_code == 200
    assert server.admin.get("/v1/accounts").status_code == 200


def _routes() -> list[APIRoute]:
    """Every route the API modules declare."""
    modules = (accounts, actions, audit, checks, clock, data, ops, outbox, policy, reports, tokens)
    return [r for m in modules for r in m.router.routes if isinstance(r, APIRoute)]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_documents_every_route(server: Server) -> None:
    document = server.client().get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "lapse"
    paths = document["paths"]
    routes = _routes()
    assert len(routes) >= 30
    for route in routes:
        for method in route.methods:
            operation = paths[route.path_format][method.lower()]
            assert operation.get("summary"), (method, route.path)
            assert operation.get("description"), (method, route.path)
            assert any(code.startswith("2") for code in operation["responses"]), route.path
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    check = paths["/v1/check"]["post"]
    assert check["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CheckBatch"
    }
    assert check["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CheckBatchOut"
    }
    problems = paths["/v1/signals"]["post"]["responses"]["413"]["content"]
    assert problems["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/ProblemOut"
    }
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    assert "/v1/clock" in paths  # a manual clock: the routes exist
    docs = server.client().get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


_DOC_ROUTE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^\s`?)]*)")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_the_http_reference_documents_every_route() -> None:
    """docs/http-api.md names every route (`METHOD /path`, any parameter names); the admin
    actions are one documented pattern with a table row per action."""
    text = (Path(__file__).parents[3] / "docs" / "http-api.md").read_text(encoding="utf-8")
    documented = {(method, _shape(path)) for method, path in _DOC_ROUTE.findall(text)}
    actions_table = set(re.findall(r"^\| `([a-z-]+)` \|", text, flags=re.MULTILINE))
    missing = []
    for route in _routes():
        for method in sorted(route.methods):
            shape = _shape(route.path_format)
            if (method, shape) in documented:
                continue
            prefix, _, name = shape.rpartition("/")
            if prefix == "/v1/accounts/{}/actions" and (
                (method, f"{prefix}/{{}}") in documented and name in actions_table
            ):
                continue
            missing.append(f"{method} {route.path_format}")
    assert missing == []
