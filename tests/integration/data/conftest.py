"""Fixtures of the data tests: lapse's database and a host database of the same kind (two SQLite
files, or two PostgreSQL databases on the suite's cluster), and engines wired to both."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import data_host
import pytest
from data_helpers import START, Wired
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lapse.data import ConnectorDataHandler, SqlTables
from lapse.policy import load_preset
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.store.sql import SqlStore, create_db_engine

_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """sqlite or postgres: the kind of both lapse's and the host's database."""
    return str(request.param)


@pytest.fixture
def lapse_url(backend: str, database: Callable[[str], str]) -> str:
    """lapse's own migrated database."""
    return database(backend)


@pytest.fixture
def host_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The host product's database, with the schema of data_host and no rows."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'host-{next(_numbers)}.db'}"
        data_host.create(url)
        yield url
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"host_{os.getpid()}_{next(_numbers)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(server).set(database=name).render_as_string(False)
        data_host.create(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def wire(lapse_url: str, host_url: str) -> Iterator[Callable[..., Wired]]:
    """`wire(preset, batch_size=7, extra=[connectors])`: an engine, closed after the test."""
    opened: list[Wired] = []

    def make(preset: str, *, batch_size: int = 7, extra: list[Any] | None = None) -> Wired:
        clock = ManualClock(START)
        store = SqlStore(create_db_engine(lapse_url), clock=clock.now)
        connector = SqlTables("app", host_url, data_host.registered(), batch_size=batch_size)
        data = ConnectorDataHandler([connector, *(extra or [])])
        policy = load_preset(preset)
        data.check(policy)
        engine = Engine(policy, store=store, clock=clock, data=data)
        wired = Wired(engine=engine, clock=clock, store=store, data=data, connector=connector)
        opened.append(wired)
        return wired

    yield make
    for wired in opened:
        wired.data.close()
        wired.store.close()
