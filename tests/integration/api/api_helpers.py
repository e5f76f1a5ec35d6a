"""Helpers of the API tests: a real lapse API on a loopback port (uvicorn in a thread over
`create_app`) and the problem+json assertion. The fixtures are in conftest.py.

Tests talk to the server with httpx over TCP. Each server gets three tokens, one per scope, and
the `admin` client; `server.client(token)` makes a client with any other token (or none).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn

from lapse.api import create_app
from lapse.runtime.bootstrap import Services

#: every API test starts on Friday 31 January 2025, 09:00 UTC
START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)
START_ISO = "2025-01-31T09:00:00Z"


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


#: `make_server(backend="sqlite", **settings)`: the fixture that starts servers
Factory = Callable[..., Server]


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
