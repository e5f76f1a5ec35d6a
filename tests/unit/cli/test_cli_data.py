"""`lapse export`, `lapse receipt show|list`, and receipts in `lapse audit verify`."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from lapse import cli
from lapse.data.receipts import check
from lapse.runtime.bootstrap import Services, build
from lapse.runtime.settings import load_settings


@pytest.fixture
def wired(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    """A host database with two accounts' rows, its connectors file, and the wired services."""
    host = tmp_path / "host.db"
    conn = sqlite3.connect(host)
    conn.executescript(
        """
        CREATE TABLE accounts (id TEXT PRIMARY KEY, plan TEXT);
        CREATE TABLE contacts (id INTEGER PRIMARY KEY, account_id TEXT REFERENCES accounts(id),
            email TEXT);
        INSERT INTO accounts VALUES ('acme', 'pro'), ('gone', 'free');
        INSERT INTO contacts (account_id, email) VALUES ('acme', 'a@acme.example'),
            ('acme', 'b@acme.example'), ('gone', 'x@gone.example');
        """
    )
    conn.close()
    document = {
        "connectors": [
            {
                "name": "app",
                "kind": "sql",
                "url": f"sqlite:///{host}",
                "tables": [
                    {"table": "accounts", "account": "id", "category": "account"},
                    {"table": "contacts", "account": "account_id", "category": "contacts"},
                ],
            }
        ]
    }
    (tmp_path / "connectors.json").write_text(json.dumps(document))
    monkeypatch.setenv("LAPSE_CONNECTORS", str(tmp_path / "connectors.json"))
    services = build(load_settings())
    services.engine.deliver_inline = True
    yield services
    services.close()


def test_export_writes_the_archive_or_refuses(
    runner: CliRunner, wired: Services, tmp_path: Path
) -> None:
    wired.engine.add_account("acme", kind="standard")
    target = tmp_path / "acme.zip"
    result = runner.invoke(cli.app, ["export", "acme", "-o", str(target)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{target}: 2 files, 3 rows of account acme"
    assert lines[1].startswith("  app/accounts.csv: 1 rows, sha256 ")
    with zipfile.ZipFile(target) as archive:
        assert archive.read("app/contacts.csv").decode().splitlines() == [
            "id,account_id,email",
            "1,acme,a@acme.example",
            "2,acme,b@acme.example",
        ]
    wired.engine.event("acme", "payment_failed", event_id="p1")
    locked = tmp_path / "locked.zip"
    refused = runner.invoke(cli.app, ["export", "acme", "-o", str(locked)])
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        "error: account 'acme' may not export its data now: case payment-lock#1"
    )
    assert not locked.exists()
    assert [p.name for p in tmp_path.glob("*.part")] == []
    unknown = runner.invoke(cli.app, ["export", "ghost", "-o", str(locked)])
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: no account 'ghost'\n"


def test_receipts_show_list_and_verify(runner: CliRunner, wired: Services) -> None:
    engine = wired.engine
    engine.add_account("gone", kind="standard", address="gone@example.com")
    engine.suspend("gone", by="cli-test", reason="phishing")
    (receipt,) = wired.store.receipts(account_id="gone")

    shown = runner.invoke(cli.app, ["receipt", "show", "gone"])
    assert shown.exit_code == 0, shown.output
    assert f"delete receipt {receipt.id} of account gone" in shown.stdout
    assert "2 rows in total; verified: nothing left" in shown.stdout
    assert f"sha256 {receipt.hash}" in shown.stdout
    exported = runner.invoke(cli.app, ["receipt", "show", receipt.id, "--json"])
    body = json.loads(exported.stdout)
    assert body == dict(receipt.body)
    assert check(body) == []
    listed = runner.invoke(cli.app, ["receipt", "list"])
    assert listed.stdout.startswith(f"{receipt.id}  delete  gone  ")
    assert "2 rows  tos-suspension" in listed.stdout
    missing = runner.invoke(cli.app, ["receipt", "show", "nobody"])
    assert missing.exit_code == 1
    assert missing.stderr == "error: no receipt 'nobody', and no account 'nobody' with receipts\n"

    ok = runner.invoke(cli.app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.endswith("the chain is intact; 1 receipt verified against the audit log\n")
    db = create_engine(wired.database_url)
    with db.begin() as conn:
        conn.execute(text("UPDATE receipts SET hash = 'f00' WHERE id = :id"), {"id": receipt.id})
    db.dispose()
    broken = runner.invoke(cli.app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert broken.stdout.splitlines() == [
        "broken: 1 problem in 1 receipts",
        f"  receipt {receipt.id} (account gone): its stored hash f00 is not the one in its body",
    ]


def test_export_shows_rows_and_bytes_only_on_a_terminal(
    runner: CliRunner, wired: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wired.engine.add_account("acme", kind="standard")
    plain = runner.invoke(cli.app, ["export", "acme", "-o", str(tmp_path / "plain.zip")])
    assert "\x1b" not in plain.output  # off a terminal: only the result
    assert plain.stdout.startswith(f"{tmp_path / 'plain.zip'}: 2 files, 3 rows of account acme\n")
    monkeypatch.setattr(cli, "interactive", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws into the captured output
    shown = runner.invoke(cli.app, ["export", "acme", "-o", str(tmp_path / "shown.zip")])
    assert shown.exit_code == 0, shown.output
    assert "exporting acme" in shown.stdout
    assert "2 files, 3 rows, " in shown.stdout  # the bar's last state: rows and bytes so far
    result = shown.stdout.rsplit("\x1b[2K", 1)[1]  # the bar is erased before the result
    assert result.startswith(f"{tmp_path / 'shown.zip'}: 2 files, 3 rows of account acme\n")
