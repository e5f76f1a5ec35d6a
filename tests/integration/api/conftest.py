"""A real lapse API on a loopback port: uvicorn in a thread over `create_app`, a fresh database
(a SQLite file, or a PostgreSQL database on the suite's throwaway cluster) and a manual clock.

Tests talk to it with httpx over TCP. Each server gets three tokens, one per scope, and the
`admin` client; `server.client(token)` makes a client with any other token (or none).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lapse.api import create_app
from lapse.runtime.bootstrap import Services, build
from lapse.runtime.settings import load_settings

#: every API test starts on Friday 31 January 2025, 09:00 UTC
START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)
START_ISO = "2025-01-31T09:00:00Z"

_numbers = itertools.count(1)


@dataclass
class Server:
    """A running API with its services, tokens and an admin client."""

    url: str
    services: Services
    tokens: dict[str, str]
    uvicorn: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client on the server, with `token` as bearer (none if None)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)
        self.clients.append(client)
        return client

    @property
    def admin(self) -> httpx.Client:
        """A client with the admin token."""
        if not hasattr(self, "_admin"):
            self._admin = self.client(self.tokens["admin"])
        return self._admin

    def account(self, account_id: str, kind: str = "standard", **body: Any) -> dict[str, Any]:
        """Create an account with one admin member; returns the response body."""
        body.setdefault("members", [{"email": f"{account_id}@example.com", "role": "admin"}])
        response = self.admin.post("/v1/accounts", json={"id": account_id, "kind": kind, **body})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    def advance(self, by: str, **extra: Any) -> dict[str, Any]:
        """Move the manual clock forward through the API."""
        response = self.admin.post("/v1/clock", json={"advance": by, **extra})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def stop(self) -> None:
        """Stop uvicorn and close the clients and the store."""
        for client in self.clients:
            client.close()
        self.uvicorn.should_exit = True
        self.thread.join(10)
        close = getattr(self.services.store, "close", None)
        if close is not None:
            close()


def serve(services: Services) -> Server:
    """Start uvicorn with the app in a thread on a free loopback port."""
    tokens = {}
    for scope in ("read", "write", "admin"):
        _, secret = services.store.create_token(
            name=f"{scope}-token", scopes=[scope], now=services.clock.now()
        )
        tokens[scope] = secret
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(services), log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    return Server(
        url=f"http://127.0.0.1:{port}",
        services=services,
        tokens=tokens,
        uvicorn=server,
        thread=thread,
    )


@pytest.fixture(scope="session")
def api_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each server."""
    from lapse.store.migrate import migrate

    path = tmp_path_factory.mktemp("api-template") / "lapse.db"
    migrate(f"sqlite:///{path}")
    return path


Factory = Callable[..., Server]


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


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert `response` is a problem+json of this status and code; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    expected = f"https://lapse.dev/problems/{code}" if code != "about:blank" else code
    assert body["type"] == expected, body
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body
