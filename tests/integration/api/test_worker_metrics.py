"""`lapse worker --metrics-port`: a worker's own Prometheus endpoint, scraped over real HTTP."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from lapse.runtime.bootstrap import build
from lapse.runtime.settings import load_settings
from loopback_servers import LAPSE, clean_env, free_port

DELETIONS = 'lapse_outbox_deliveries_total{channel="data",result="delivered"}'


def _value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_worker_serves_its_counters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    services = build(load_settings(database_url=url, policy="inactivity-cleanup"))
    services.engine.deliver_inline = False
    # test accounts are deleted at 30 days of age: these reach it just after the worker starts
    born = datetime.now(UTC) - timedelta(days=30) + timedelta(seconds=3)
    for n in range(5):
        services.engine.add_account(f"t{n}", kind="test", created_at=born)
    services.store.close()  # type: ignore[attr-defined]
    port = free_port()
    env = clean_env(LAPSE_DATABASE_URL=url, LAPSE_POLL_SECONDS="0.1")
    worker = subprocess.Popen(
        [LAPSE, "worker", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.TransportError:
                page = ""
            # the worker's scheduler stepped them, and its dispatcher carried out the deletions
            steps = _value(page, "lapse_account_steps_total") or 0
            deleted = _value(page, DELETIONS) or 0
            if steps >= 5 and deleted == 5:
                break
            assert time.monotonic() < deadline, page
            time.sleep(0.1)
        assert "lapse_scheduler_batch_seconds_bucket" in page
        # the database gauges are the API's: a worker leaves them out
        assert "lapse_accounts" not in page
        assert "lapse_outbox_rows" not in page
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out
    assert f"  metrics: http://127.0.0.1:{port}/metrics" in out.splitlines()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(LAPSE_DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}")
        result = subprocess.run(
            [LAPSE, "worker"],
            env={**env, "LAPSE_METRICS_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"error: LAPSE_METRICS_PORT: cannot serve metrics on 127.0.0.1:{port}: "
        "Address already in use"
    ) in result.stderr


def test_a_worker_with_a_metrics_token_serves_only_its_bearer(tmp_path: Path) -> None:
    secret = "worker-metrics-" + "k" * 16
    port = free_port()
    env = clean_env(
        LAPSE_DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}",
        LAPSE_METRICS_TOKEN=secret,
        LAPSE_POLL_SECONDS="0.1",
    )
    worker = subprocess.Popen(
        [LAPSE, "worker", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
            try:
                bare = httpx.get(url)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the metrics endpoint did not start"
                time.sleep(0.1)
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"] == 'Bearer realm="lapse"'
        assert "lapse_account_steps" not in bare.text
        for wrong in ("Bearer " + secret[:-1], "Basic " + secret, secret):
            assert httpx.get(url, headers={"Authorization": wrong}).status_code == 401
        for right in (f"Bearer {secret}", f"bearer {secret}"):
            scraped = httpx.get(url, headers={"Authorization": right})
            assert scraped.status_code == 200
            assert "lapse_account_steps_total" in scraped.text
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out
    assert f"  metrics: {url} (bearer LAPSE_METRICS_TOKEN)" in out.splitlines()
    assert secret not in out  # the secret itself is never printed
