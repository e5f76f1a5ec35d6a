"""`any_store`: the protocol tests also run on MemoryStore, which users' tests rely on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from lapse.store.memory import MemoryStore
from lapse.store.sql import SqlStore, create_db_engine


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(
    request: pytest.FixtureRequest,
    clock: Callable[[], datetime],
    database: Callable[[str], str],
) -> Iterator[SqlStore | MemoryStore]:
    """MemoryStore, and SqlStore on SQLite and on PostgreSQL."""
    if request.param == "memory":
        yield MemoryStore(clock=clock, wall=clock)
        return
    store = SqlStore(create_db_engine(database(request.param)), clock=clock, wall=clock)
    try:
        yield store
    finally:
        store.close()
