"""The webhook connector against a real HTTP server on loopback, and the callable connector:
signed requests, deletion counted once across retries, permanent refusals, timeouts, exports
streamed from NDJSON, and an embedder's functions."""

from __future__ import annotations

import csv
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from data_helpers import START

from lapse.data import CallableConnector, ConnectorDataHandler, ConnectorError, WebhookConnector
from lapse.data.export import start_export
from lapse.data.receipts import verify_store
from lapse.notify import generate_secret, verify_webhook
from lapse.policy import load_preset
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store.memory import MemoryStore
from loopback_servers import Received, WebhookServer


class Host:
    """The host end: rows per (account, location); answers count, delete and export."""

    def __init__(self, server: WebhookServer, secret: str) -> None:
        self.secret = secret
        self.rows: dict[tuple[str, str], list[list[Any]]] = {}
        self.refuse: list[int] = []  # statuses to answer delete requests with, in order
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server.responder = self.answer

    def answer(self, request: Received) -> tuple[int, Any]:
        sent = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
        body = verify_webhook(self.secret, request.headers, request.body, now=sent)
        data = body["data"]
        with self._lock:
            self.seen.append({"type": body["type"], "id": request.headers["webhook-id"], **data})
            account = data["account_id"]
            if body["type"] == "lapse.data.count":
                counts = {n: len(self.rows.get((account, n), [])) for n in data["locations"]}
                return 200, {"counts": counts}
            if body["type"] == "lapse.data.delete":
                if self.refuse:
                    return self.refuse.pop(0), {"detail": "not now"}
                self.rows.pop((account, data["location"]), None)
                return 204, None
            rows = self.rows.get((account, data["location"]), [])
            lines = [json.dumps({"columns": ["id", "name", "meta"]})]
            lines += [json.dumps(row) for row in rows]
            return 200, ("\n".join(lines) + "\n").encode()


@pytest.fixture
def host(webhook_server: WebhookServer) -> Host:
    return Host(webhook_server, generate_secret())


@pytest.fixture
def wired(webhook_server: WebhookServer, host: Host) -> Iterator[tuple[Engine, ManualClock]]:
    files = WebhookConnector(
        "files",
        webhook_server.url,
        host.secret,
        [("attachments", "images"), ("notes", "contacts")],
        timeout=5,
    )
    data = ConnectorDataHandler([files])
    clock = ManualClock(START)
    engine = Engine(load_preset("inactivity-cleanup"), clock=clock, data=data)
    yield engine, clock
    data.close()


def _fill(host: Host, account: str) -> None:
    host.rows[(account, "attachments")] = [[i, f"file {i}", {"size": i}] for i in range(5)]
    host.rows[(account, "notes")] = [[1, 'a, "quoted"\nnote', None]]


def test_deletion_over_signed_webhooks(host: Host, wired: tuple[Engine, ManualClock]) -> None:
    engine, _ = wired
    _fill(host, "t1")
    _fill(host, "other")
    engine.add_account("t1", kind="test", created_at=START)
    engine.run_until("31 days")
    stone = engine.store.tombstone("t1")
    assert stone is not None
    assert {i["location"]: i["rows"] for i in stone.receipt["locations"]} == {
        "attachments": 5,
        "notes": 1,
    }
    assert ("t1", "attachments") not in host.rows
    assert ("t1", "notes") not in host.rows
    assert host.rows[("other", "attachments")]  # untouched
    deletes = [s for s in host.seen if s["type"] == "lapse.data.delete"]
    assert [(d["location"], d["rows"], d["deletion"]) for d in deletes] == [
        ("attachments", 5, stone.receipt["id"]),
        ("notes", 1, stone.receipt["id"]),
    ]
    assert verify_store(engine.store) == (1, [])


def test_a_refused_deletion_is_retried_and_counted_once(
    host: Host, wired: tuple[Engine, ManualClock]
) -> None:
    engine, _ = wired
    _fill(host, "t1")
    host.refuse = [503, 503]
    engine.add_account("t1", kind="test", created_at=START)
    engine.run_until("30 days")
    (row,) = [r for r in engine.store.outbox(account_id="t1", limit=10) if r.channel == "data"]
    assert row.status == "pending"
    assert "HTTP 503" in (row.last_error or "")
    assert engine.store.tombstone("t1") is None
    engine.run_until("1 hour")  # the outbox retries (1, then 2 minutes later)
    stone = engine.store.tombstone("t1")
    assert stone is not None
    assert {i["location"]: i["rows"] for i in stone.receipt["locations"]} == {
        "attachments": 5,
        "notes": 1,
    }
    deletes = [s for s in host.seen if s["type"] == "lapse.data.delete"]
    first = [d["id"] for d in deletes if d["location"] == "attachments"]
    assert len(first) == 3
    assert len(set(first)) == 1  # the same webhook-id on every retry: the host can dedupe
    # counted before the first attempt, so the failed ones change nothing
    assert [s["type"] for s in host.seen].count("lapse.data.count") >= 3


def test_a_permanent_refusal_fails_the_row_visibly(
    host: Host, wired: tuple[Engine, ManualClock]
) -> None:
    engine, _ = wired
    _fill(host, "t1")
    host.refuse = [403]
    engine.add_account("t1", kind="test", created_at=START)
    engine.run_until("31 days")
    (row,) = [r for r in engine.store.outbox(account_id="t1", limit=10) if r.channel == "data"]
    assert row.status == "failed"
    assert row.last_error is not None
    assert "connector 'files': lapse.data.delete to http://127.0.0.1" in row.last_error
    assert "HTTP 403" in row.last_error
    assert engine.store.tombstone("t1") is None
    # once the host is fixed, an administrator retries the row and the deletion completes
    engine.retry_outbox(row.id, by="ops")
    engine.run_due()
    assert engine.store.tombstone("t1") is not None


def test_a_slow_host_times_out(webhook_server: WebhookServer, host: Host) -> None:
    webhook_server.delay = 2.0
    files = WebhookConnector("files", webhook_server.url, host.secret, [("a", "c")], timeout=0.3)
    try:
        with pytest.raises(ConnectorError, match=r"no answer within 0.3s"):
            files.count("t1", files.locations())
    finally:
        files.close()


def test_export_streams_the_hosts_rows(host: Host, wired: tuple[Engine, ManualClock]) -> None:
    engine, _ = wired
    _fill(host, "acme")
    engine.add_account("acme", kind="standard", created_at=START)
    chunks, manifest = start_export(engine, "acme")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    notes = list(csv.reader(io.StringIO(archive.read("files/notes.csv").decode(), newline="")))
    assert notes == [["id", "name", "meta"], ["1", 'a, "quoted"\nnote', ""]]
    attachments = list(
        csv.reader(io.StringIO(archive.read("files/attachments.csv").decode(), newline=""))
    )
    assert attachments[1] == ["0", "file 0", '{"size":0}']
    assert [f.rows for f in manifest.files] == [1, 5]  # parents first: reversed order


def test_callable_connector() -> None:
    store: dict[tuple[str, str], list[tuple[Any, ...]]] = {
        ("t1", "docs"): [(1, "x"), (2, "y")],
        ("t1", "tags"): [(9, "z")],
        ("other", "docs"): [(3, "w")],
    }
    failures = ["index offline"]

    def count(account: str, location: str) -> int:
        return len(store.get((account, location), []))

    def delete(account: str, location: str) -> None:
        if failures:
            raise RuntimeError(failures.pop())
        store.pop((account, location), None)

    def export(account: str, location: str) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        return ["id", "text"], iter(store.get((account, location), []))

    search = CallableConnector(
        "search",
        [("tags", "contacts"), ("docs", "contacts")],
        count=count,
        delete=delete,
        export=export,
    )
    data = ConnectorDataHandler([search])
    engine = Engine(load_preset("inactivity-cleanup"), clock=ManualClock(START), data=data)
    engine.add_account("t1", kind="test", created_at=START)
    chunks, manifest = start_export(engine, "t1")
    b"".join(chunks)
    assert [(f.location, f.rows) for f in manifest.files] == [("docs", 2), ("tags", 1)]
    engine.run_until("30 days")
    (row,) = [r for r in engine.store.outbox(account_id="t1", limit=10) if r.channel == "data"]
    assert row.last_error == (
        "connector 'search': delete('t1', 'tags') failed: RuntimeError: index offline"
    )
    engine.run_until("10 minutes")
    stone = engine.store.tombstone("t1")
    assert stone is not None
    assert [(i["location"], i["rows"]) for i in stone.receipt["locations"]] == [
        ("tags", 1),
        ("docs", 2),
    ]
    assert store == {("other", "docs"): [(3, "w")]}
    assert isinstance(engine.store, MemoryStore)
    assert verify_store(engine.store) == (1, [])


def test_lease_takeover_between_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run claimed by a live worker is refused to another; once its claim lapses (the worker
    died), the other takes it over and resumes from the recorded progress."""
    wall = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = MemoryStore(clock=lambda: START, wall=lambda: wall[0])
    from lapse.core.model import DeleteEffect
    from lapse.policy.model import AddressRule

    counted = {"docs": 3}
    deleted: list[str] = []

    def delete_one(account: str, location: str) -> None:
        deleted.append(location)
        counted[location] = 0

    search = CallableConnector(
        "search",
        [("docs", "contacts")],
        count=lambda a, loc: counted[loc],
        delete=delete_one,
    )
    first = ConnectorDataHandler([search])
    second = ConnectorDataHandler([search])
    policy = load_preset("inactivity-cleanup")
    for worker, handler in (("w1", first), ("w2", second)):
        handler.attach(
            store=store,
            now=lambda: START,
            policy=policy,
            worker=worker,
            lease=timedelta(seconds=30),
        )
    effect = DeleteEffect(
        account_id="t1", case_id="c#1", flow="f", address=AddressRule(mode="release"), at=START
    )
    from lapse.data import handler as handler_module
    from lapse.data.receipts import receipt_id
    from lapse.store.base import DataRun

    monkeypatch.setattr(handler_module, "TAKEOVER_WAIT", 0.2)
    run = DataRun(
        id=receipt_id("delete", "t1", "c#1"),
        account_id="t1",
        case_id="c#1",
        flow="f",
        kind="delete",
        categories=(),
        started_at=START,
    )
    store.claim_data_run(run, worker="w1", lease=timedelta(seconds=30))
    with pytest.raises(ConnectorError, match="under way in worker w1"):
        second._run(run, None)
    wall[0] += timedelta(seconds=31)  # w1 died: its claim lapsed
    result = second.delete(effect, START)
    assert result["locations"] == [
        {
            "connector": "search",
            "location": "docs",
            "category": "contacts",
            "rows": 3,
            "started_at": "2025-01-31T09:00:00.000000Z",
            "finished_at": "2025-01-31T09:00:00.000000Z",
        }
    ]
    assert deleted == ["docs"]
