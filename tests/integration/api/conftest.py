"""Fixtures of the API tests: servers on a fresh database (a SQLite file, or a PostgreSQL
database on the suite's throwaway cluster) with a manual clock. See api_helpers.py."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import START, Factory, Server, serve
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lapse.runtime.bootstrap import build
from lapse.runtime.settings import load_settings

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def api_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each server."""
    from lapse.store.migrate import migrate

    path = tmp_path_factory.mktemp("api-template") / "lapse.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def make_server(
    request: pytest.FixtureRequest, tmp_path: Path, api_sqlite_template: Path
) -> Iterator[Factory]:
    """`make_server(backend="sqlite", policy="account-locks", clock="manual", **settings)`."""
    servers: list[Server] = []
    admins: list[tuple[Any, str]] = []

    def make(backend: str = "sqlite", **overrides: Any) -> Server:
        overrides.setdefault("policy", "account-locks")
        overrides.setdefault("clock", "manual")
        if overrides["clock"] == "manual":
            overrides.setdefault("clock_start", START)
        if backend == "sqlite":
            path = tmp_path / f"api-{next(_numbers)}.db"
            shutil.copyfile(api_sqlite_template, path)
            url = f"sqlite:///{path}"
        else:
            server_url: str = request.getfixturevalue("postgres_url")
            template: str = request.getfixturevalue("postgres_template")
            name = f"lapse_api_{os.getpid()}_{next(_numbers)}"
            admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
            admins.append((admin, name))
            url = make_url(server_url).set(database=name).render_as_string(False)
        services = build(load_settings(database_url=url, **overrides))
        server = serve(services)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    for admin, name in admins:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def server(make_server: Factory) -> Server:
    """An API on SQLite with the account-locks preset and a manual clock at START."""
    return make_server()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_server(request: pytest.FixtureRequest, make_server: Factory) -> Server:
    """The same API on SQLite and on PostgreSQL."""
    return make_server(request.param)
