"""Storage: the contract (`base`), SQL tables and migrations, `SqlStore` and `MemoryStore`.

`open_store(url)` is the one way in: `sqlite:///path.db` (the embedded default),
`postgresql+psycopg://...` (production), or `memory://` (tests). Nothing connects at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lapse.store.base import Store
    from lapse.store.memory import MemoryStore
    from lapse.store.sql import SqlStore

    def _conforms(sql: SqlStore, memory: MemoryStore) -> tuple[Store, Store]:
        """mypy proves here that both stores implement the whole Store protocol."""
        return sql, memory


def data_dir() -> Path:
    """Where lapse keeps files: $LAPSE_DATA_DIR, $XDG_DATA_HOME/lapse or ~/.local/share/lapse."""
    explicit = os.environ.get("LAPSE_DATA_DIR")
    if explicit:
        path = Path(explicit)
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        path = Path(xdg) / "lapse" if xdg else Path.home() / ".local" / "share" / "lapse"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_sqlite_url() -> str:
    """The embedded database: `sqlite:///<data dir>/lapse.db` (the directory is created)."""
    return f"sqlite:///{data_dir() / 'lapse.db'}"


def open_store(
    url: str | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    migrate: bool = True,
    lease: timedelta | None = None,
) -> SqlStore | MemoryStore:
    """A store for `url` (default: the embedded SQLite file), migrated to the current schema.

    `lease` (the workers' claim lease) bounds how long a PostgreSQL connection may sit idle
    inside a transaction (see `create_db_engine`)."""
    url = url or default_sqlite_url()
    if url.startswith("memory:"):
        from lapse.store.memory import MemoryStore

        return MemoryStore(clock=clock)
    from lapse.store.sql import SqlStore, create_db_engine

    if migrate:
        from lapse.store.migrate import migrate as run_migrations

        run_migrations(url)
    return SqlStore(create_db_engine(url, lease=lease), clock=clock)


__all__ = ["data_dir", "default_sqlite_url", "open_store"]
