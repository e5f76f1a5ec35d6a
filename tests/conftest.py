"""Fixtures shared by every test directory: a throwaway PostgreSQL cluster and migrated stores.

`postgres_url` starts one PostgreSQL cluster per test session (lapse.testing.throwaway_postgres).
When the server binaries are missing the PostgreSQL tests are skipped with a loud message, except
under CI (the `CI` environment variable), where a missing database must fail the run.
`store` is parametrized over a SQLite file and a fresh PostgreSQL database, both migrated.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lapse.store.migrate import migrate
from lapse.store.sql import SqlStore, create_db_engine
from lapse.testing import postgres_available, throwaway_postgres
from loopback_servers import (
    SmtpServer,
    WebhookServer,
    running_smtp_server,
    running_webhook_server,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as on a terminal, however the suite was started: a shell without job control
    starts background commands (`./dev test &` in a script) with SIGINT ignored, which the
    processes the tests start would inherit, and `lapse serve` would then stop on the tests'
    SIGINT with 0 instead of 130 (uvicorn re-raises the signal it handled, into SIG_IGN)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class TestClock:
    """A settable clock for stores under test (recorded_at, created_at)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward and return the new time."""
        self.now += delta
        return self.now


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of the session's throwaway PostgreSQL cluster (its `postgres` database)."""
    reason = postgres_available()
    if reason is not None:
        message = f"PostgreSQL tests cannot run: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: a missing database fails the run)")
        # loud: printed at once, and listed again in the summary (-ra) as the skip reason
        # (a warning would become an error under filterwarnings=error)
        print(f"\n!!! {message}: SKIPPING EVERY POSTGRESQL TEST !!!", file=sys.__stderr__)
        pytest.skip(f"!!! {message} !!!")
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_template(postgres_url: str) -> str:
    """A database migrated once, copied for each test with CREATE DATABASE ... TEMPLATE."""
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CREATE DATABASE lapse_template"))
    engine.dispose()
    url = make_url(postgres_url).set(database="lapse_template").render_as_string(False)
    migrate(url)
    return "lapse_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "lapse.db"
    migrate(f"sqlite:///{path}")
    return path


_counter = itertools.count(1)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A factory: `database("sqlite" | "postgres")` -> the URL of an empty migrated database."""

    def make(kind: str) -> str:
        if kind == "sqlite":
            template: Path = request.getfixturevalue("sqlite_template")
            path = tmp_path / f"lapse-{next(_counter)}.db"
            shutil.copyfile(template, path)
            return f"sqlite:///{path}"
        server: str = request.getfixturevalue("postgres_url")
        template_name: str = request.getfixturevalue("postgres_template")
        name = f"lapse_test_{os.getpid()}_{next(_counter)}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        request.addfinalizer(drop)
        return make_url(server).set(database=name).render_as_string(False)

    return make


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, database: Callable[[str], str]) -> str:
    """A migrated, empty database of each kind: a SQLite file, or a fresh PostgreSQL database."""
    return database(request.param)


@pytest.fixture
def clock() -> TestClock:
    """The clock the `store` fixture records with (starts at 2024-01-01 UTC)."""
    return TestClock()


@pytest.fixture
def store(store_url: str, clock: TestClock) -> Iterator[SqlStore]:
    """A SqlStore on an empty migrated database (SQLite and PostgreSQL)."""
    sql_store = SqlStore(create_db_engine(store_url), clock=clock, wall=clock)
    try:
        yield sql_store
    finally:
        sql_store.close()


# --- real servers on loopback (SMTP, webhook receiver): see loopback_servers.py ---------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 and a free port, for the duration of one test."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A real HTTP server on 127.0.0.1 recording POSTs, answering with scripted statuses."""
    with running_webhook_server() as server:
        yield server
