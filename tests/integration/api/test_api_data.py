"""The account's data over real HTTP: receipts, exports through signed expiring links (refused
while locked, allowed in grace), and what happens to an address after deletion (retired: no new
account with it; released: a new account may use it)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_helpers import Factory, Server, problem

from lapse.api.routes.data import sign_link

SECRET = "export-secret-for-tests-0123456789"


def _host(path: Path, accounts: list[str]) -> dict[str, Any]:
    """A small host database (accounts, contacts, contact actions) and its connectors file."""
    conn = sqlite3.connect(path / "host.db")
    conn.executescript(
        """
        CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT);
        CREATE TABLE contacts (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL
            REFERENCES accounts(id), email TEXT);
        CREATE TABLE contact_actions (id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL
            REFERENCES contacts(id), action TEXT);
        """
    )
    for account in accounts:
        conn.execute("INSERT INTO accounts VALUES (?, ?)", (account, f"Account {account}"))
        for i in range(4):
            cur = conn.execute(
                "INSERT INTO contacts (account_id, email) VALUES (?, ?)",
                (account, f"c{i}@{account}.example"),
            )
            conn.execute(
                "INSERT INTO contact_actions (contact_id, action) VALUES (?, 'open')",
                (cur.lastrowid,),
            )
    conn.commit()
    conn.close()
    document = {
        "version": 1,
        "connectors": [
            {
                "name": "app",
                "kind": "sql",
                "url": f"sqlite:///{path / 'host.db'}",
                "tables": [
                    {"table": "accounts", "account": "id", "category": "account"},
                    {"table": "contacts", "account": "account_id", "category": "contacts"},
                    {"table": "contact_actions", "through": "contacts", "category": "reports"},
                ],
            }
        ],
    }
    (path / "connectors.json").write_text(json.dumps(document))
    return {"connectors": path / "connectors.json", "export_secret": SECRET}


@pytest.fixture
def data_server(
    make_server: Factory, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., Server]:
    """`data_server(policy, accounts)`: an API whose connectors reach a host database."""

    def make(policy: str, accounts: list[str], backend: str = "sqlite") -> Server:
        settings = _host(tmp_path, accounts)
        server = make_server(backend, policy=policy, **settings)
        request.addfinalizer(server.services.engine.data.close)
        return server

    return make


def _download(server: Server, url: str) -> zipfile.ZipFile:
    anonymous = server.client()
    response = anonymous.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="lapse-export-')
    return zipfile.ZipFile(io.BytesIO(response.content))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_export_link_and_receipts(data_server: Callable[..., Server], backend: str) -> None:
    server = data_server("inactivity-cleanup", ["acme", "t1", "other"], backend)
    server.account("acme", created_at="2024-02-10T09:00:00Z")
    server.account("t1", kind="test")
    server.account("other")

    # an export: a link (write scope), then a download without a bearer token
    assert server.client(server.tokens["read"]).post("/v1/accounts/acme/exports").status_code == 403
    created = server.client(server.tokens["write"]).post("/v1/accounts/acme/exports")
    assert created.status_code == 201, created.text
    link = created.json()
    assert link["account"] == "acme"
    assert link["url"].startswith("/v1/exports/")
    archive = _download(server, link["url"])
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["account"] == "acme"
    assert [(f["file"], f["rows"]) for f in manifest["files"]] == [
        ("app/accounts.csv", 1),
        ("app/contacts.csv", 4),
        ("app/contact_actions.csv", 4),
    ]
    for entry in manifest["files"]:
        assert hashlib.sha256(archive.read(entry["file"])).hexdigest() == entry["sha256"]
    contacts = list(csv.reader(io.StringIO(archive.read("app/contacts.csv").decode())))
    assert contacts[0] == ["id", "account_id", "email"]
    assert {row[2] for row in contacts[1:]} == {f"c{i}@acme.example" for i in range(4)}

    # links are signed and expire
    token = link["url"].rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    problem(server.client().get(f"/v1/exports/{forged}"), 403, "invalid-link")
    expired = sign_link(SECRET.encode(), "acme", int(time.time()) - 1)
    body = problem(server.client().get(f"/v1/exports/{expired}"), 403, "invalid-link")
    assert "expired" in body["detail"]
    problem(server.client().get("/v1/exports/garbage"), 403, "invalid-link")

    # a deletion leaves a receipt, readable by account and in the listing
    problem(server.admin.get("/v1/accounts/t1/receipt"), 404, "not-found")
    server.advance("31 days")
    receipt = server.admin.get("/v1/accounts/t1/receipt")
    assert receipt.status_code == 200, receipt.text
    body = receipt.json()
    assert body["kind"] == "delete"
    assert body["account"] == "t1"
    assert body["hash"] == body["body"]["hash"]
    assert {i["location"]: i["rows"] for i in body["body"]["locations"]} == {
        "contact_actions": 4,
        "contacts": 4,
        "accounts": 1,
    }
    listed = server.admin.get("/v1/receipts", params={"account": "t1"}).json()
    assert [r["id"] for r in listed["items"]] == [body["id"]]
    assert server.admin.get(f"/v1/receipts/{body['id']}").json() == body
    assert server.admin.get("/v1/receipts", params={"kind": "purge"}).json()["items"] == []
    problem(server.admin.get("/v1/receipts/del_nope"), 404, "not-found")
    # a deleted account has nothing to export
    problem(
        server.client(server.tokens["write"]).post("/v1/accounts/t1/exports"),
        410,
        "account-deleted",
    )
    assert server.admin.get("/v1/audit/verify").json()["ok"] is True


def test_export_refused_while_locked(data_server: Callable[..., Server]) -> None:
    server = data_server("account-locks", ["shop"])
    server.account("shop")
    early = server.admin.post("/v1/accounts/shop/exports").json()  # issued before the lock
    events = server.admin.post(
        "/v1/events", json={"events": [{"id": "e1", "account": "shop", "name": "payment_failed"}]}
    )
    assert events.status_code == 200, events.text
    body = problem(server.admin.post("/v1/accounts/shop/exports"), 409, "export-denied")
    assert body["detail"].startswith(
        "account 'shop' may not export its data now: case payment-lock#1 (payment-lock, "
        "phase locked)"
    )
    assert [c["case"] for c in body["cases"]] == ["payment-lock#1"]
    assert body["cases"][0]["flow"] == "payment-lock"
    assert body["message"]
    # the link issued earlier is checked again when followed
    problem(server.client().get(early["url"]), 409, "export-denied")
    server.admin.post(
        "/v1/events",
        json={"events": [{"id": "e2", "account": "shop", "name": "payment_succeeded"}]},
    )
    again = server.admin.post("/v1/accounts/shop/exports").json()
    _download(server, again["url"])


def test_export_allowed_during_grace(data_server: Callable[..., Server]) -> None:
    server = data_server("inactivity-cleanup", ["idle"])
    server.account("idle", created_at="2024-02-10T09:00:00Z")  # inactive 12 months on 10 Feb
    server.advance("15 days")
    status = server.admin.get("/v1/accounts/idle/status").json()
    assert [c["phase"] for c in status["cases"]] == ["grace"]
    check = server.admin.get("/v1/accounts/idle/check", params={"action": "send_campaign"})
    assert check.json()["allowed"] is False
    link = server.admin.post("/v1/accounts/idle/exports").json()
    assert "app/contacts.csv" in _download(server, link["url"]).namelist()


def test_retired_and_released_addresses(
    data_server: Callable[..., Server], make_server: Factory
) -> None:
    # account-locks: a terms-of-service suspension deletes at once and retires the address
    locks = data_server("account-locks", ["spam"])
    locks.account("spam", address="Owner@Spam.example")
    suspended = locks.admin.post("/v1/accounts/spam/actions/suspend", json={"reason": "phishing"})
    assert suspended.status_code == 200, suspended.text
    assert locks.admin.get("/v1/accounts/spam/receipt").status_code == 200
    body = problem(
        locks.admin.post(
            "/v1/accounts",
            json={"id": "spam-2", "kind": "standard", "address": "owner@spam.example"},
        ),
        409,
        "address-retired",
    )
    assert "retired" in body["detail"]

    # inactivity-cleanup: a test account's address is released when it is deleted
    flex = make_server(policy="inactivity-cleanup")
    flex.account("sandbox", kind="test", address="dev@shop.example")
    flex.advance("31 days")
    assert flex.admin.get("/v1/accounts/sandbox/tombstone").json()["address_mode"] == "release"
    again = flex.admin.post(
        "/v1/accounts", json={"id": "sandbox-2", "kind": "standard", "address": "dev@shop.example"}
    )
    assert again.status_code == 201, again.text
    problem(
        flex.admin.post("/v1/accounts", json={"id": "sandbox", "kind": "standard"}),
        409,
        "account-exists",
    )
