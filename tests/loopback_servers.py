"""Real servers on loopback for tests: an SMTP sink (aiosmtpd), a webhook receiver (http.server)
and `lapse` itself as a subprocess serving HTTP (`LapseProcess`).

Self-contained (the standard library, pytest-free, aiosmtpd, httpx; nothing imported from lapse),
so it can move next to tests/conftest.py for the end-to-end tests together with the fixtures in
conftest.py.
A plain module with a distinctive name, not conftest: test modules import its types without
depending on which of several conftest.py files Python cached under the name `conftest`.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

LAPSE = str(Path(sys.executable).parent / "lapse")  # the console script of this environment


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


# --- lapse as a subprocess ------------------------------------------------------------------------


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without the caller's LAPSE_* settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAPSE_")}
    env.update(settings)
    return env


def wait_healthy(
    url: str,
    *,
    proc: subprocess.Popen[str] | None = None,
    timeout: float = 30,
    what: Callable[[], str] = lambda: "",
) -> float:
    """Poll `url`/health until it answers 200; the seconds it took. Fails (with `what()`, the
    process's output) if `proc` exits first or `timeout` passes."""
    started = time.monotonic()
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() - started > timeout:
            raise AssertionError(f"{url} did not start:\n{what()}")
        time.sleep(0.05)


class LapseProcess:
    """`lapse ARGS...` serving HTTP on 127.0.0.1:`port`, and what it printed (read by a thread as
    it comes). Started when constructed: returns once /health answers (`ready`: the seconds it
    took from the start of the process)."""

    def __init__(
        self, args: Sequence[str], env: Mapping[str, str], port: int, *, timeout: float = 30
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [LAPSE, *args],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            wait_healthy(self.url, proc=self.proc, timeout=timeout, what=lambda: self.output)
        except AssertionError:
            self.stop()
            raise
        self.ready = time.monotonic() - started

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def token(self) -> str | None:
        """The admin token printed on first start, if any."""
        for line in self.lines:
            if "admin token" in line:
                return line.split()[-1]
        return None

    def stop(self) -> int:
        """Ctrl-C, then wait (killed if it hangs); the exit code (130: uvicorn shuts down, then
        re-raises the signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
