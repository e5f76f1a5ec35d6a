"""Values shared by the data tests (a plain module: test modules import it by this name)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from lapse.data import ConnectorDataHandler, SqlTables
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store.sql import SqlStore

#: every data test starts on Friday 31 January 2025, 09:00 UTC
START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)


@dataclass
class Wired:
    """An engine on lapse's database with the host's tables registered."""

    engine: Engine
    clock: ManualClock
    store: SqlStore
    data: ConnectorDataHandler
    connector: SqlTables
