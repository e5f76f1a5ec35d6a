"""Body size limit (413 before the body is read) and bad request bodies."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

from api_helpers import Factory, Server, problem

LIMIT = 4096


def _raw(server: Server, head: str, body: bytes) -> tuple[int, dict[str, object]]:
    """Send a request over a plain socket; return the status and the JSON body of the answer."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    status = int(header.split()[1])
    return status, json.loads(payload)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(make_server: Factory) -> None:
    server = make_server(max_body_bytes=LIMIT)
    head = (
        "POST /v1/signals HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.tokens['write']}\r\nContent-Length: 50000000\r\n\r\n"
    )
    # only the first bytes of the 50 MB body are ever sent: the answer comes before the rest
    status, body = _raw(server, head, b'{"signals": [')
    assert status == 413
    assert body["type"] == "https://lapse.dev/problems/too-large"
    assert body["detail"] == (
        "the request body (50000000 bytes) exceeds the limit of 4096 bytes "
        "(LAPSE_MAX_BODY_BYTES); send smaller batches"
    )


def test_a_chunked_body_over_the_limit_is_refused(make_server: Factory) -> None:
    server = make_server(max_body_bytes=LIMIT)
    head = (
        "POST /v1/signals HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.tokens['write']}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6))
    status, body = _raw(server, head, chunks)
    assert status == 413
    assert "more than 4096 bytes" in str(body["detail"])


def test_bodies_under_the_limit_pass_also_chunked(make_server: Factory) -> None:
    server = make_server(max_body_bytes=LIMIT)
    server.account("a")
    payload = json.dumps({"signals": [{"account": "a", "name": "login"}]}).encode()

    def chunks() -> object:
        yield payload[:10]
        yield payload[10:]

    response = server.client(server.tokens["write"]).post(
        "/v1/signals", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["received"] == 1
    big = server.admin.post(
        "/v1/signals", json={"signals": [{"account": "a", "name": "login"}] * 200}
    )
    assert problem(big, 413, "too-large")["detail"].startswith("the request body (")


def test_request_body_mistakes(server: Server) -> None:
    admin = server.admin
    not_json = admin.post(
        "/v1/signals", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = problem(not_json, 422, "invalid-request")
    assert body["errors"][0]["type"] == "json_invalid"
    empty = problem(admin.post("/v1/events"), 422, "invalid-request")
    assert empty["errors"][0]["path"] == "body"
    wrong_type = problem(admin.post("/v1/events", json={"events": "e1"}), 422, "invalid-request")
    assert wrong_type["errors"][0]["path"] == "body.events"
    method = problem(admin.delete("/v1/signals"), 405, "about:blank")
    assert method["detail"] == "DELETE is not allowed on /v1/signals; see /openapi.json"
