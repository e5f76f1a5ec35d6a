"""Where the host keeps account data, and what lapse does with it: delete, purge, export.

Register connectors from Python:

```python
from lapse.data import ConnectorDataHandler, SqlTables, Table

app = SqlTables(
    "app",
    "postgresql+psycopg://app@db/app",
    [
        Table("contact_actions", through="contacts", category="contact_actions"),
        Table("contacts", account="account_id", category="contacts"),
        Table("accounts", account="id", category="account"),
    ],
)
engine = Engine(policy, store=store, data=ConnectorDataHandler([app]))
```

or from a file with `LAPSE_CONNECTORS=connectors.yaml` (see `lapse.data.config` and
docs/data.md). The names below are imported lazily: `import lapse.data` connects to nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lapse.data.base import Connector, ConnectorError, ExportTable, Ledger, Location
    from lapse.data.callables import CallableConnector
    from lapse.data.config import connectors_from, load_connectors
    from lapse.data.export import ExportDenied, write_archive
    from lapse.data.handler import ConnectorDataHandler
    from lapse.data.sql import SqlTables, Table
    from lapse.data.webhook import WebhookConnector

__all__ = [
    "CallableConnector",
    "Connector",
    "ConnectorDataHandler",
    "ConnectorError",
    "ExportDenied",
    "ExportTable",
    "Ledger",
    "Location",
    "SqlTables",
    "Table",
    "WebhookConnector",
    "connectors_from",
    "load_connectors",
    "write_archive",
]

_WHERE = {
    "CallableConnector": "lapse.data.callables",
    "Connector": "lapse.data.base",
    "ConnectorDataHandler": "lapse.data.handler",
    "ConnectorError": "lapse.data.base",
    "ExportDenied": "lapse.data.export",
    "ExportTable": "lapse.data.base",
    "Ledger": "lapse.data.base",
    "Location": "lapse.data.base",
    "SqlTables": "lapse.data.sql",
    "Table": "lapse.data.sql",
    "WebhookConnector": "lapse.data.webhook",
    "connectors_from": "lapse.data.config",
    "load_connectors": "lapse.data.config",
    "write_archive": "lapse.data.export",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lapse.data' has no attribute {name!r}")
    return getattr(import_module(module), name)
