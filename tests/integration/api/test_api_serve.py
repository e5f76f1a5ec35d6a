"""`lapse serve` as a real process: what it prints, the first-start token, the background loops."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from loopback_servers import LAPSE, LapseProcess, clean_env, free_port


class Process(LapseProcess):
    """A `lapse serve` subprocess on `port` and what it printed."""

    def __init__(self, args: list[str], env: dict[str, str], port: int) -> None:
        super().__init__(["serve", "--port", str(port), *args], env, port)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment without the caller's LAPSE_* settings, on a fresh SQLite file."""
    return clean_env(
        LAPSE_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        LAPSE_POLICY="account-locks",
        LAPSE_POLL_SECONDS="0.1",
    )


def test_serve_prints_where_it_listens_and_a_first_admin_token(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    server = Process(["--clock", "manual", "--clock-start", "2025-01-31T09:00:00Z"], env, port)
    try:
        auth = httpx.get(f"{server.url}/v1/clock")
        assert auth.status_code == 401
    finally:
        code = server.stop()
    assert code == 130, server.output
    lines = server.output.splitlines()
    assert lines[0] == (
        "lapse serving policy account-locks v1 (recorded as the database's active policy)"
    )
    assert lines[1].strip() == (
        f"API:      http://127.0.0.1:{port}  (OpenAPI: http://127.0.0.1:{port}/openapi.json, "
        f"docs: http://127.0.0.1:{port}/docs)"
    )
    assert lines[2].strip() == (
        f"Admin UI: http://127.0.0.1:{port}/admin  (sign in with an API token)"
    )
    assert lines[3].strip() == f"database: sqlite:///{tmp_path / 'serve.db'}"
    assert lines[4].strip().startswith("clock:    manual, at 2025-01-31T09:00:00+00:00")
    token = lines[5].split()[-1]
    assert lines[5].strip().startswith("admin token (shown once, keep it): lapse_")
    again = Process(["--clock", "manual", "--clock-start", "2025-02-01T00:00:00Z"], env, port)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        clock = httpx.get(f"{again.url}/v1/clock", headers=headers)
        assert clock.json() == {"now": "2025-02-01T00:00:00Z"}
    finally:
        again.stop()
    assert "admin token" not in again.output  # only on the very first start
    assert again.output.splitlines()[0] == "lapse serving policy account-locks v1"


def test_serve_runs_the_scheduler_and_dispatcher_loops(env: dict[str, str]) -> None:
    server = Process([], env, free_port())
    try:
        token = server.token()
        assert token is not None, server.output
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        assert client.get("/v1/clock").status_code == 404  # the system clock: no clock routes
        client.post(
            "/v1/accounts",
            json={"id": "a", "kind": "standard", "members": [{"email": "a@x.io", "role": "admin"}]},
        )
        client.post(
            "/v1/events", json={"events": [{"id": "1", "account": "a", "name": "payment_failed"}]}
        )
        # the background dispatcher (not the request) delivers the outbox rows
        deadline = time.monotonic() + 20
        while True:
            rows = client.get("/v1/outbox").json()["items"]
            if rows and all(r["status"] == "delivered" for r in rows):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)
        case = client.get("/v1/accounts/a/status").json()["cases"][0]
        assert case["notices"][0]["dispatched_at"] is not None
        client.close()
    finally:
        assert server.stop() == 130, server.output


def test_serve_refuses_a_bad_configuration(env: dict[str, str]) -> None:
    bad = subprocess.run(
        [LAPSE, "serve", "--port", "80000"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "LAPSE_PORT: Input should be less than or equal to 65535" in bad.stderr
    policy = subprocess.run(
        [LAPSE, "serve", "--policy", "no-such-preset"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert policy.returncode == 2
    assert "no-such-preset" in policy.stderr
