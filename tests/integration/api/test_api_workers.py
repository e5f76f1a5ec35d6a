"""Production shape: `lapse serve --no-loops` and two `lapse worker` processes on PostgreSQL.

The API only records; the workers' schedulers and dispatchers do the work, coordinating through
the database alone. Every account is deleted exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from api_helpers import Factory

from loopback_servers import LAPSE, clean_env, free_port, wait_healthy


@pytest.mark.postgres
def test_two_workers_on_postgresql_delete_each_account_once(make_server: Factory) -> None:
    # the servers of make_server use a manual clock: this one only lends a database and tokens
    lender = make_server("postgres")
    database, token = lender.services.database_url, lender.tokens["admin"]
    env = clean_env(
        LAPSE_DATABASE_URL=database,
        LAPSE_POLICY="inactivity-cleanup",
        LAPSE_POLL_SECONDS="0.1",
        LAPSE_BATCH_SIZE="3",  # small batches, so both workers get some
    )
    port = free_port()
    api = subprocess.Popen(
        [LAPSE, "serve", "--no-loops", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = [
        subprocess.Popen(
            [LAPSE, "worker", "--worker-id", f"w{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in (1, 2)
    ]
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc=api)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        now = datetime.now(UTC)
        ids = []
        for n in range(12):
            # test accounts are deleted at 30 days of age: half already are that old, half
            # become due within seconds, while the workers run
            age = timedelta(days=31) if n % 2 else timedelta(days=30) - timedelta(seconds=2)
            created = (now - age).isoformat()
            response = client.post(
                "/v1/accounts", json={"id": f"t{n:02d}", "kind": "test", "created_at": created}
            )
            assert response.status_code == 201, response.text
            ids.append(f"t{n:02d}")
        deadline = time.monotonic() + 60
        while True:
            gone = client.get("/v1/accounts", params={"state": "deleted"}).json()["items"]
            if len(gone) == len(ids):
                break
            assert time.monotonic() < deadline, gone
            time.sleep(0.2)
        audit = client.get("/v1/audit", params={"limit": 1000}).json()["items"]
        tombstoned = Counter(e["account"] for e in audit if e["kind"] == "account.tombstoned")
        assert tombstoned == dict.fromkeys(ids, 1)
        rows = client.get("/v1/outbox", params={"limit": 1000}).json()["items"]
        deletes = [r for r in rows if r["kind"] == "delete"]
        assert sorted(r["account"] for r in deletes) == ids
        assert all(r["status"] == "delivered" and r["attempts"] == 1 for r in deletes), deletes
        assert client.get("/v1/audit/verify").json()["ok"] is True
        client.close()
    finally:
        for process in (*workers, api):
            process.send_signal(signal.SIGTERM)
        for process in (*workers, api):
            process.wait(30)
    assert [w.returncode for w in workers] == [0, 0]
