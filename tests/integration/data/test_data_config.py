"""Connector configuration: every mistake is refused before any work, naming the file, the
connector, the table and what is wrong; good files build working connectors."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import data_host
import pytest

from lapse.data import ConnectorDataHandler, SqlTables, Table, connectors_from, load_connectors
from lapse.errors import ConfigError
from lapse.policy import load_preset
from lapse.runtime.bootstrap import build
from lapse.runtime.settings import load_settings


@pytest.fixture
def host(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'host.db'}"
    data_host.create(url)
    return url


def _write(tmp_path: Path, text: str, name: str = "connectors.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(fn: Any, *args: Any, **kwargs: Any) -> str:
    """The message of the ConfigError `fn` raises (whatever it built otherwise is closed)."""
    try:
        built = fn(*args, **kwargs)
    except ConfigError as exc:
        return str(exc)
    for connector in built if isinstance(built, list) else []:
        connector.close()
    raise AssertionError(f"{fn.__name__} raised no ConfigError")


def _checked(document: dict[str, Any], policy: str | None = None) -> str:
    connectors = connectors_from(document, source="c.yaml")
    handler = ConnectorDataHandler(connectors)
    try:
        handler.check(load_preset(policy) if policy else None)
    except ConfigError as exc:
        return str(exc)
    finally:
        handler.close()
    raise AssertionError("no error")


def _sql(url: str, tables: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"connectors": [{"name": "app", "kind": "sql", "url": url, "tables": tables, **extra}]}


def test_a_good_file_builds_checked_connectors(tmp_path: Path, host: str) -> None:
    path = tmp_path / "connectors.json"
    path.write_text(json.dumps(data_host.config(host)))
    handler = ConnectorDataHandler.from_file(path)
    try:
        handler.check(load_preset("account-locks"))
        names = [loc.name for loc in handler.locations()]
        assert names.index("contact_actions") < names.index("contacts")
        assert names.index("campaign_timelines") < names.index("campaigns")
        assert names.index("reports") < names.index("campaigns")
        assert names[-1] == "accounts"
    finally:
        handler.close()


def test_syntax_and_schema_errors_say_where(tmp_path: Path) -> None:
    broken = _write(tmp_path, "connectors:\n  - name: app\n    kind: [sql\n")
    assert _error(load_connectors, broken).startswith(f"{broken}:4:1: not valid YAML or JSON")
    missing = tmp_path / "nope.yaml"
    assert _error(load_connectors, missing) == (
        f"{missing}: no such connectors file (LAPSE_CONNECTORS)"
    )
    wrong = _write(
        tmp_path,
        """
        connectors:
          - name: app
            kind: sql
            url: sqlite://
            tables:
              - {table: contacts, acount: account_id, category: contacts}
          - name: files
            kind: ftp
          - {name: hooks, kind: webhook, url: "http://h", secret: x, locations: []}
        """,
    )
    message = _error(load_connectors, wrong)
    assert message.splitlines() == [
        "3 errors in the connectors configuration:",
        f"  {wrong}: connectors[0] (app): tables[0] (contacts): acount: Extra inputs are not "
        "permitted",
        f"  {wrong}: connectors[1] (files): Input tag 'ftp' found using 'kind' does not match any "
        "of the expected tags: 'sql', 'webhook', 'callable'",
        f"  {wrong}: connectors[2] (hooks): locations: List should have at least 1 item after "
        "validation, not 0",
    ]


def test_names_urls_and_secrets(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    twice = {
        "connectors": [
            {"name": "a", "kind": "callable", "object": "json:loads"},
            {"name": "a", "kind": "callable", "object": "json:loads"},
        ]
    }
    assert "the name 'a' is used twice" in _error(connectors_from, twice, source="c.yaml")
    monkeypatch.delenv("HOST_DB", raising=False)
    unset = _sql("", [{"table": "accounts", "account": "id", "category": "a"}])
    del unset["connectors"][0]["url"]
    unset["connectors"][0]["url_env"] = "HOST_DB"
    assert _error(connectors_from, unset, source="c.yaml") == (
        "c.yaml: connectors[0] (app): `url_env` names HOST_DB, which is not set"
    )
    monkeypatch.setenv("HOST_DB", host)
    for connector in connectors_from(unset, source="c.yaml"):
        connector.close()
    hook = {
        "connectors": [
            {
                "name": "files",
                "kind": "webhook",
                "url": "http://127.0.0.1:9/x",
                "secret": "not-a-secret",
                "locations": [{"name": "a", "category": "b"}],
            }
        ]
    }
    assert _error(connectors_from, hook, source="c.yaml").startswith(
        "c.yaml: connectors[0] (files): webhook secret must be 'whsec_' followed by base64"
    )


def test_tables_are_checked_against_the_database(host: str) -> None:
    base = [
        {"table": "accounts", "account": "id", "category": "account"},
        {"table": "contacts", "account": "account_id", "category": "contacts"},
    ]
    ignore = [
        "users",
        "contact_actions",
        "campaigns",
        "campaign_timelines",
        "reports",
        "templates",
        "api_keys",
        "payment_methods",
    ]
    message = _checked(_sql(host, [*base, {"table": "contactz", "account": "x", "category": "c"}]))
    assert "connector 'app': table 'contactz' does not exist in the database; it has: " in message
    message = _checked(
        _sql(
            host,
            [*base[:1], {"table": "contacts", "account": "acount_id", "category": "c"}],
            ignore=ignore,
        )
    )
    assert message == (
        "data connectors:\n  connector 'app': table 'contacts': account column 'acount_id' is "
        "not a column of 'contacts'; it has: id, account_id, email, name, subscribed, created_at"
    )
    # an unregistered table that references registered ones would block the deletion
    message = _checked(_sql(host, base, ignore=ignore[1:]))
    assert message == (
        "data connectors:\n  connector 'app': table 'users' references registered table "
        "'accounts' but is not registered: its rows would block the deletion or vanish "
        "uncounted; register it (with `through:`) or list it under `ignore:`"
    )
    both = {"table": "contacts", "account": "account_id", "through": "accounts", "category": "c"}
    assert "give either `account` (the column holding the account key) or `through`" in _error(
        connectors_from, _sql(host, [both]), source="c.yaml"
    )
    stray = {"table": "contact_actions", "through": "contacts", "category": "c"}
    assert _error(connectors_from, _sql(host, [stray]), source="c.yaml") == (
        "c.yaml: connectors[0] (app): table 'contact_actions': `through: contacts` names a table "
        "that is not registered in this connector; registered: contact_actions"
    )


def test_tables_without_key_and_cycles(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    conn = sqlite3.connect(tmp_path / "odd.db")
    conn.executescript(
        """
        CREATE TABLE log (account_id TEXT, line TEXT);
        CREATE TABLE a (id INTEGER PRIMARY KEY, account_id TEXT, b_id INTEGER REFERENCES b(id));
        CREATE TABLE b (id INTEGER PRIMARY KEY, account_id TEXT, a_id INTEGER REFERENCES a(id));
        """
    )
    conn.close()
    message = _checked(
        _sql(url, [{"table": "log", "account": "account_id", "category": "l"}], ignore=["a", "b"])
    )
    assert message.endswith(
        "table 'log': the table has no primary key; declare `key:` with the columns that "
        "identify a row"
    )
    keyed = _sql(
        url,
        [{"table": "log", "account": "account_id", "category": "l", "key": ["account_id", "line"]}],
        ignore=["a", "b"],
    )
    for connector in connectors_from(keyed):
        connector.check()
        connector.close()
    cycle = [
        {"table": "a", "account": "account_id", "category": "x"},
        {"table": "b", "account": "account_id", "category": "x"},
    ]
    assert "the foreign keys between a, b form a cycle" in _checked(_sql(url, cycle))
    declared = _sql(url, cycle, order="declared")
    for connector in connectors_from(declared):
        connector.check()
        assert [loc.name for loc in connector.locations()] == ["a", "b"]
        connector.close()


def test_purges_must_take_whole_subtrees(host: str) -> None:
    tables = [
        {"table": t, **{k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()}}
        for t, spec in data_host.REGISTERED
    ]
    for table in tables:
        if table["table"] == "contact_actions":
            table["category"] = "history"  # not among the lock preset's purged categories
        if table["table"] == "contacts":
            table["category"] = "contact_actions"  # purged: its child would be left behind
    message = _checked(_sql(host, tables), policy="account-locks")
    assert (
        "connector 'app': a purge of campaign_timelines, contact_actions, reports removes "
        "'contacts', but its child table 'contact_actions' (category 'history') is not purged "
        "with it" in message
    )


@pytest.fixture
def module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "lapse_test_hooks.py").write_text(
        textwrap.dedent(
            """
            from lapse.data import CallableConnector

            def make(name, prefix="x"):
                return CallableConnector(
                    name, [(prefix + "docs", "contacts")],
                    count=lambda a, l: 0, delete=lambda a, l: None,
                )

            ready = make("ready")
            nothing = 42
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    yield "lapse_test_hooks"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("lapse_test_hooks", None)


def test_callable_connectors_from_the_file(module: str) -> None:
    def doc(obj: str, name: str = "search", **extra: Any) -> dict[str, Any]:
        return {"connectors": [{"name": name, "kind": "callable", "object": obj, **extra}]}

    (made,) = connectors_from(doc(f"{module}:make", options={"prefix": "s_"}))
    assert [loc.name for loc in made.locations()] == ["s_docs"]
    (ready,) = connectors_from(doc(f"{module}:ready", name="ready"))
    assert ready.name == "ready"
    where = "connectors: connectors[0] (search)"
    assert _error(connectors_from, doc("no_such_module_x:make")) == (
        f"{where}: cannot import 'no_such_module_x': No module named 'no_such_module_x'"
    )
    assert _error(connectors_from, doc(f"{module}:missing")) == (
        f"{where}: '{module}' has no attribute 'missing'"
    )
    assert _error(connectors_from, doc(f"{module}:nothing")).startswith(
        f"{where}: {module}:nothing is not a connector"
    )
    assert _error(connectors_from, doc(f"{module}:ready")) == (
        f"{where}: {module}:ready is named 'ready', not 'search' as configured"
    )


def test_python_api_and_bootstrap(tmp_path: Path, host: str) -> None:
    app = SqlTables(
        "app",
        host,
        [Table("accounts", account="id", category="account")],
        ignore=[t for t, _ in data_host.REGISTERED if t != "accounts"],
    )
    try:
        app.check()
        assert [loc.label for loc in app.locations()] == ["app/accounts"]
    finally:
        app.close()
    bad = _write(
        tmp_path,
        json.dumps(_sql(host, [{"table": "nope", "account": "id", "category": "x"}])),
        "bad.json",
    )
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'lapse.db'}", connectors=bad)
    message = _error(build, settings)
    assert message.startswith(
        f"LAPSE_CONNECTORS={bad}: data connectors:\n  connector 'app': table 'nope' does not exist"
    )
