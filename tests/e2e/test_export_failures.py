"""Exports that cannot complete, over real HTTP (uvicorn on a loopback port, httpx): a connector
that cannot export is refused before a link is issued; a store that fails at once answers with a
problem instead of a 200 cut short; a store that fails half-way through the download aborts the
connection, so the client sees an incomplete transfer and no ZIP that looks complete."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from lapse.api import create_app
from lapse.data import CallableConnector, ConnectorDataHandler, WebhookConnector
from lapse.data.base import Connector
from lapse.runtime.bootstrap import Services, build
from lapse.runtime.settings import load_settings

START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)
SECRET = "export-secret-for-tests-0123456789"


class Running:
    """lapse's API in a uvicorn thread, with an admin token."""

    def __init__(self, services: Services) -> None:
        self.services = services
        _, self.token = services.store.create_token(
            name="admin", scopes=["admin"], now=services.clock.now()
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(services), log_level="critical", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.01)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def link(self) -> httpx.Response:
        """Ask for an export of account 'acme'."""
        return self.client.post(
            "/v1/accounts/acme/exports", headers={"Authorization": f"Bearer {self.token}"}
        )

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.services.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """`serve(connectors)`: a running API on a fresh SQLite file with account 'acme'."""
    running: list[Running] = []

    def make(connectors: Sequence[Connector]) -> Running:
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path / f'lapse-{len(running)}.db'}",
            policy="inactivity-cleanup",
            clock="manual",
            clock_start=START,
            export_secret=SECRET,
        )
        services = build(settings, data=ConnectorDataHandler(connectors))
        services.engine.add_account("acme", kind="standard", created_at=START)
        server = Running(services)
        running.append(server)
        return server

    yield make
    for server in running:
        server.stop()


def _count(account_id: str, location: str) -> int:
    return 0


def _delete(account_id: str, location: str) -> None:
    return None


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://lapse.dev/problems/{code}"
    return body


def test_a_connector_without_export_is_refused_before_a_link(serve: Any) -> None:
    server = serve(
        [CallableConnector("search", [("documents", "contacts")], count=_count, delete=_delete)]
    )
    body = _problem(server.link(), 409, "export-unavailable")
    assert body["detail"] == (
        "no export is possible: connector 'search' has no export function, so an export "
        "would miss its data (documents); give it `export=`"
    )


def test_a_store_failing_at_once_answers_with_a_problem(serve: Any) -> None:
    def host(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="the files service is down")

    files = WebhookConnector(
        "files",
        "http://files.test/lapse",
        "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        [("attachments", "images")],
        transport=httpx.MockTransport(host),
    )
    server = serve([files])
    link = server.link()
    assert link.status_code == 201, link.text  # the host is asked only when the link is followed
    body = _problem(server.client.get(link.json()["url"]), 502, "connector-failed")
    assert body["detail"].startswith("connector 'files': lapse.data.export to http://files.test/")
    assert "HTTP 500" in body["detail"]


def _rows(n: int, fail_after: int | None = None) -> Iterator[tuple[object, ...]]:
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise ConnectionError("the search index went away")
        # incompressible enough that the archive comes out in many chunks
        yield (i, hashlib.sha256(str(i).encode()).hexdigest() * 4)


def _read(response: httpx.Response, into: bytearray) -> None:
    """Read the body into `into` (which keeps what came before an error)."""
    for chunk in response.iter_bytes():
        into.extend(chunk)


def test_a_failure_mid_stream_aborts_the_download(serve: Any) -> None:
    def export(account_id: str, location: str) -> tuple[list[str], Iterator[tuple[object, ...]]]:
        if location == "documents":
            return ["id", "text"], _rows(5000)
        return ["id", "text"], _rows(5000, fail_after=2500)

    search = CallableConnector(
        "search",
        [("history", "reports"), ("documents", "contacts")],  # exported parents first: documents
        count=_count,
        delete=_delete,
        export=export,
    )
    server = serve([search])
    link = server.link()
    assert link.status_code == 201, link.text
    received = bytearray()
    with server.client.stream("GET", link.json()["url"]) as response:
        assert response.status_code == 200  # the first chunks went out before the failure
        assert response.headers["content-type"] == "application/zip"
        with pytest.raises(httpx.RemoteProtocolError):  # the transfer stopped short
            _read(response, received)
    assert len(received) > 100_000  # documents was complete and sent
    with pytest.raises(zipfile.BadZipFile):  # no central directory: not a valid-looking ZIP
        zipfile.ZipFile(io.BytesIO(bytes(received)))
