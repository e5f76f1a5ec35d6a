"""Real servers on loopback for tests: an SMTP sink (aiosmtpd) and a webhook receiver (http.server).

Self-contained (the standard library, pytest-free, aiosmtpd; nothing from lapse), so it can move
next to tests/conftest.py for the end-to-end tests together with the fixtures in conftest.py.
A plain module with a distinctive name, not conftest: test modules import its types without
depending on which of several conftest.py files Python cached under the name `conftest`.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SmtpSink:
    """The aiosmtpd handler: accepts and parses messages, or refuses as told."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)  # (MAIL FROM, RCPT TOs)
    #: recipient address -> SMTP reply, e.g. "550 5.1.1 No such user" or "451 4.3.0 Try later"
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_data: str | None = None  # a reply to DATA instead of "250", e.g. "554 5.7.1 Spam"
    #: a reply to MAIL FROM instead of "250", e.g. "451 4.3.0 Try later": refuses every message
    refuse_mail: str | None = None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.refuse_mail is not None:
            return self.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_data is not None:
            return self.refuse_data
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    """What the `smtp_server` fixture yields."""

    host: str
    port: int
    sink: SmtpSink

    @property
    def messages(self) -> list[EmailMessage]:
        """Every message accepted so far, parsed, in arrival order."""
        return self.sink.messages


@contextmanager
def running_smtp_server(sink: SmtpSink | None = None, **smtp_options: Any) -> Iterator[SmtpServer]:
    """An aiosmtpd server on 127.0.0.1 and a free port; `smtp_options` go to aiosmtpd's SMTP."""
    sink = sink or SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    try:
        yield SmtpServer(host="127.0.0.1", port=port, sink=sink)
    finally:
        controller.stop()


@dataclass
class Received:
    """One HTTP request as the webhook server saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """What the `webhook_server` fixture yields; script `statuses` and `delay` before sending."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers in order; then 204
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    delay: float = 0.0  # seconds to wait before answering
    release: threading.Event = field(default_factory=threading.Event)
    #: answers each request itself when set: (status, a JSON document, raw bytes, or None for
    #: no body)
    responder: Callable[[Received], tuple[int, Any]] | None = None


def _handler(state: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            received = Received(
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            state.requests.append(received)
            if state.delay:
                state.release.wait(state.delay)  # released at teardown: no thread outlives
            document = None
            if state.responder is not None:
                status, document = state.responder(received)
            else:
                status = state.statuses.pop(0) if state.statuses else 204
            if isinstance(document, bytes):  # a body of its own (NDJSON, text...)
                content, kind = document, "application/octet-stream"
            else:
                content = b"" if document is None else json.dumps(document).encode()
                kind = "application/json"
            self.send_response(status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            if content:
                self.send_header("content-type", kind)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out closes early; writing the late answer then fails


@contextmanager
def running_webhook_server() -> Iterator[WebhookServer]:
    """An HTTP server on 127.0.0.1 recording POSTs and answering with scripted statuses."""
    state = WebhookServer(url="")
    server = _Server(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/lapse"
    # a short poll interval keeps shutdown() (which waits for the next poll) fast
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="webhook-server", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
