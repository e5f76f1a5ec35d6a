"""Connectors from a configuration file (`LAPSE_CONNECTORS=path`, YAML or JSON).

```yaml
version: 1
connectors:
  - name: app                       # unique; receipts and exports name it
    kind: sql
    url_env: APP_DATABASE_URL       # or url: postgresql+psycopg://...
    batch_size: 5000                # rows per delete transaction
    tables:
      - {table: contact_actions, through: contacts, category: contact_actions}
      - {table: contacts, account: account_id, category: contacts}
      - {table: accounts, account: id, category: account}
  - name: files
    kind: webhook
    url: https://app.example/lapse/data
    secret_env: FILES_WEBHOOK_SECRET  # whsec_...
    locations:
      - {name: attachments, category: files}
  - name: search
    kind: callable
    object: myapp.lapse_hooks:search_connector   # a Connector, or a function returning one
```

Every mistake is reported with the file, the connector and the table or field it concerns.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lapse.data.base import Connector
from lapse.data.sql import DEFAULT_BATCH, SqlTables, Table
from lapse.data.webhook import WebhookConnector
from lapse.errors import ConfigError

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableDoc(_Doc):
    """One table of a `sql` connector."""

    table: str = Field(min_length=1)
    category: Name
    account: str | None = None
    through: str | None = None
    column: str | None = None
    parent_key: str | None = None
    key: list[str] | None = None
    name: Name | None = None
    exclude: list[str] = []


class SqlDoc(_Doc):
    """A `sql` connector: tables in one database."""

    kind: Literal["sql"]
    name: Name
    url: str | None = None
    url_env: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    batch_size: int = Field(default=DEFAULT_BATCH, ge=1, le=100_000)
    order: Literal["reflect", "declared"] = "reflect"
    ignore: list[str] = []
    tables: list[TableDoc] = Field(min_length=1)


class LocationDoc(_Doc):
    """One location of a `webhook` connector."""

    name: Name
    category: Name


class WebhookDoc(_Doc):
    """A `webhook` connector: the host deletes, counts and exports on signed requests."""

    kind: Literal["webhook"]
    name: Name
    url: str | None = None
    url_env: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)
    locations: list[LocationDoc] = Field(min_length=1)


class CallableDoc(_Doc):
    """A `callable` connector: a Python object (`module:attribute`) the application provides."""

    kind: Literal["callable"]
    name: Name
    object: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    options: dict[str, Any] = {}


ConnectorDoc = Annotated[SqlDoc | WebhookDoc | CallableDoc, Field(discriminator="kind")]


class ConfigDoc(_Doc):
    """The whole file."""

    version: Literal[1] = 1
    connectors: list[ConnectorDoc] = Field(min_length=1)


def load_connectors(path: str | Path) -> list[Connector]:
    """The connectors a YAML or JSON file describes; ConfigError names the file and the spot."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such connectors file (LAPSE_CONNECTORS)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the connectors file: {exc}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML or JSON: {problem}") from None
    return connectors_from(data, source=source)


def connectors_from(data: object, *, source: str = "connectors") -> list[Connector]:
    """The connectors a parsed configuration document describes (see the module docstring)."""
    try:
        doc = ConfigDoc.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_where(source, data, err['loc'])}: {err['msg']}" for err in exc.errors()]
        count = len(lines)
        head = f"{count} error{'s' if count != 1 else ''} in the connectors configuration"
        raise ConfigError(head + ":\n  " + "\n  ".join(lines)) from None
    seen: set[str] = set()
    for index, item in enumerate(doc.connectors):
        if item.name in seen:
            raise ConfigError(
                f"{source}: connectors[{index}]: the name {item.name!r} is used twice"
            )
        seen.add(item.name)
    built: list[Connector] = []
    try:
        for index, item in enumerate(doc.connectors):
            built.append(_build(item, f"{source}: connectors[{index}] ({item.name})"))
    except ConfigError:
        for connector in built:
            connector.close()
        raise
    return built


def _build(doc: SqlDoc | WebhookDoc | CallableDoc, where: str) -> Connector:
    try:
        if isinstance(doc, SqlDoc):
            tables = [
                Table(
                    t.table,
                    category=t.category,
                    account=t.account,
                    through=t.through,
                    column=t.column,
                    parent_key=t.parent_key,
                    key=tuple(t.key or ()),
                    name=t.name,
                    exclude=tuple(t.exclude),
                )
                for t in doc.tables
            ]
            return SqlTables(
                doc.name,
                _value(doc.url, doc.url_env, "url"),
                tables,
                schema=doc.schema_,
                batch_size=doc.batch_size,
                order=doc.order,
                ignore=doc.ignore,
            )
        if isinstance(doc, WebhookDoc):
            return WebhookConnector(
                doc.name,
                _value(doc.url, doc.url_env, "url"),
                _value(doc.secret, doc.secret_env, "secret"),
                [(loc.name, loc.category) for loc in doc.locations],
                timeout=doc.timeout,
            )
        return _imported(doc)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"connector {doc.name!r}: ")
        raise ConfigError(f"{where}: {message}") from None


def _value(plain: str | None, env: str | None, what: str) -> str:
    if (plain is None) == (env is None):
        raise ConfigError(f"give either `{what}` or `{what}_env`")
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"`{what}_env` names {env}, which is not set")
        return value
    assert plain is not None
    return plain


def _imported(doc: CallableDoc) -> Connector:
    module_name, _, attribute = doc.object.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if callable(target) and not _is_connector(target):
        try:
            target = target(name=doc.name, **doc.options)
        except TypeError as exc:
            raise ConfigError(f"calling {doc.object} failed: {exc}") from None
    elif doc.options:
        raise ConfigError(f"`options` need {doc.object} to be a function")
    if not _is_connector(target):
        raise ConfigError(
            f"{doc.object} is not a connector (it needs name, locations, check, count, "
            "delete, export and close; lapse.data.CallableConnector builds one from functions)"
        )
    if target.name != doc.name:
        raise ConfigError(f"{doc.object} is named {target.name!r}, not {doc.name!r} as configured")
    connector: Connector = target
    return connector


def _is_connector(value: object) -> bool:
    needed = ("locations", "check", "count", "delete", "export", "close")
    return isinstance(getattr(value, "name", None), str) and all(
        callable(getattr(value, attr, None)) for attr in needed
    )


def _where(source: str, data: object, loc: Sequence[int | str]) -> str:
    """'file: connectors[1] (app): tables[2] (contacts): account' for a pydantic error path."""
    parts: list[str] = [source]
    node: Any = data
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            label = _label(node)
            if label:
                parts.append(f"{path} ({label})")
                path = ""
            continue
        if part in ("sql", "webhook", "callable") and isinstance(node, Mapping):
            continue  # the discriminated union's branch: not a key of the document
        if path:
            parts.append(path)
        path = str(part)
        node = node.get(part) if isinstance(node, Mapping) else None
    if path:
        parts.append(path)
    return ": ".join(parts)


def _label(node: object) -> str:
    if isinstance(node, Mapping):
        for key in ("name", "table"):
            value = node.get(key)
            if isinstance(value, str):
                return value
    return ""
