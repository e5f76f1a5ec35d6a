"""Exports, on SQLite and PostgreSQL: the archive holds exactly the account's rows (compared with
independent queries), the manifest's counts and checksums verify, and the account's
restrictions decide: refused while locked (account-locks), allowed during grace (inactivity)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import data_host
import pytest
from data_helpers import START, Wired

from lapse.data.export import ExportDenied, start_export


def _archive(wired: Wired, account_id: str) -> zipfile.ZipFile:
    chunks, manifest = start_export(wired.engine, account_id)
    data = b"".join(chunks)
    assert manifest.files  # complete once the chunks were consumed
    return zipfile.ZipFile(io.BytesIO(data))


def _text(value: Any) -> str:
    """How the export writes a value (see lapse.data.export)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def test_export_holds_exactly_the_accounts_rows(
    wire: Callable[..., Wired], host_url: str, backend: str
) -> None:
    wired = wire("inactivity-cleanup")
    data_host.populate(host_url, "other")
    counts = data_host.populate(host_url, "acme", contacts_n=30, actions=4)
    wired.engine.add_account("acme", kind="standard", created_at=START)
    archive = _archive(wired, "acme")
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "lapse-export/1"
    assert manifest["account"] == "acme"
    assert manifest["rows"] == sum(counts.values())
    names = [f["file"] for f in manifest["files"]]
    assert sorted(archive.namelist()) == sorted([*names, "manifest.json"])
    expected = data_host.rows_of(host_url, "acme")
    for entry in manifest["files"]:
        raw = archive.read(entry["file"])
        # the manifest's checksum and size are those of the file as extracted
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
        assert len(raw) == entry["bytes"]
        table = entry["location"]
        assert entry["category"] == data_host.CATEGORY[table]
        reader = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""))
        header, *rows = list(reader)
        assert header == entry["columns"]
        assert entry["rows"] == len(rows) == counts[table]
        columns = [c.name for c in data_host.metadata.tables[table].columns]
        excluded = {"password_hash", "secret_hash"} & set(columns)
        assert header == [c for c in columns if c not in excluded]
        keep = [columns.index(c) for c in header]
        want = sorted([[_text(row[i]) for i in keep] for row in expected[table]])
        assert sorted(rows) == want, table
    # parents before children, so a reader can load the files in order
    order = [f["location"] for f in manifest["files"]]
    assert order.index("accounts") < order.index("contacts") < order.index("contact_actions")


def test_export_allowed_during_grace(wire: Callable[..., Wired], host_url: str) -> None:
    wired = wire("inactivity-cleanup")
    data_host.populate(host_url, "idle")
    wired.engine.add_account(
        "idle",
        kind="standard",
        created_at=START - timedelta(days=360),
        members=[("a@idle.example", "admin")],
    )
    wired.engine.run_until("10 days")
    status = wired.engine.status("idle")
    assert [c.phase for c in status.cases] == ["grace"]
    assert not wired.engine.check("idle", "send_campaign").allowed
    archive = _archive(wired, "idle")
    assert "app/contacts.csv" in archive.namelist()


def test_export_refused_while_locked(wire: Callable[..., Wired], host_url: str) -> None:
    wired = wire("account-locks")
    data_host.populate(host_url, "locked")
    wired.engine.add_account("locked", kind="standard", created_at=START)
    _archive(wired, "locked")  # allowed before the lock
    wired.engine.event("locked", "payment_failed", event_id="p1")
    with pytest.raises(ExportDenied) as caught:
        start_export(wired.engine, "locked")
    message = str(caught.value)
    assert message.startswith("account 'locked' may not export its data now: case payment-lock#1")
    assert caught.value.decision.denials[0].flow == "payment-lock"
    wired.engine.event("locked", "payment_succeeded", event_id="p2")
    _archive(wired, "locked")  # the lock lifted: allowed again


def test_export_streams_in_small_chunks(wire: Callable[..., Wired], host_url: str) -> None:
    wired = wire("inactivity-cleanup")
    data_host.populate(host_url, "big", contacts_n=1500, actions=10)
    wired.engine.add_account("big", kind="standard", created_at=START)
    chunks, manifest = start_export(wired.engine, "big")
    sizes = [len(c) for c in chunks]
    assert len(sizes) > 3
    assert max(sizes) < 1_000_000  # handed out as produced, not the whole archive at once
    assert manifest.as_json()["rows"] == sum(data_host.counts(host_url, "big").values())
