"""Prometheus metrics: `REGISTRY` holds this process's counters (the API's `/metrics` shows
them, and a worker's own endpoint: `lapse worker --metrics-port`); `DATABASE` the gauges the
API refreshes from the database at each scrape (any one process gives the whole picture, so
workers leave them out)."""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

REGISTRY = CollectorRegistry(auto_describe=True)
DATABASE = CollectorRegistry(auto_describe=True)

STEPS = Counter(
    "lapse_account_steps", "Account steps processed by the scheduler", registry=REGISTRY
)
BATCHES = Histogram(
    "lapse_scheduler_batch_seconds",
    "Time to claim and process one scheduler batch",
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERIES = Counter(
    "lapse_outbox_deliveries",
    "Outbox delivery attempts by channel and result",
    ["channel", "result"],
    registry=REGISTRY,
)
OUTBOX_PRUNED = Counter(
    "lapse_outbox_pruned",
    "Finished outbox rows of closed cases deleted by the retention (LAPSE_OUTBOX_RETENTION)",
    registry=REGISTRY,
)
NOTIFICATIONS_PRUNED = Counter(
    "lapse_notifications_pruned",
    "In-app notifications of closed cases deleted by the retention (LAPSE_OUTBOX_RETENTION)",
    registry=REGISTRY,
)
EVENTS_PRUNED = Counter(
    "lapse_event_ids_pruned",
    "Event ids forgotten by the retention (LAPSE_EVENT_RETENTION)",
    registry=REGISTRY,
)
SIGNALS = Counter("lapse_signals_received", "Signals received", registry=REGISTRY)
CHECKS = Counter("lapse_checks", "check() decisions answered over HTTP", registry=REGISTRY)
ACCOUNTS = Gauge(
    "lapse_accounts", "Accounts by state (refreshed on scrape)", ["state"], registry=DATABASE
)
OUTBOX = Gauge(
    "lapse_outbox_rows",
    "Outbox rows by status (refreshed on scrape)",
    ["status"],
    registry=DATABASE,
)


def serve(host: str, port: int, token: str | None) -> WSGIServer:
    """Serve `REGISTRY` at http://host:port/metrics in a daemon thread (a worker's endpoint).

    With `token` (LAPSE_METRICS_TOKEN) a request must bear it (`Authorization: Bearer ...`) or
    gets 401. OSError if the address cannot be bound. Stop it with `shutdown()` and
    `server_close()`.
    """
    app = make_wsgi_app(REGISTRY)
    if token is not None:
        app = _bearer_only(app, token)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class: type[WSGIServer] = type(
        "MetricsServer", (ThreadingWSGIServer,), {"address_family": family}
    )
    server = make_server(host, port, app, server_class=server_class, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="lapse-metrics", daemon=True).start()
    return server


def _bearer_only(app: WSGIApp, token: str) -> WSGIApp:
    expected = token.encode()

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        scheme, _, presented = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        # the scheme is case-insensitive (RFC 9110 11.1), the secret is not
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), expected):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", 'Bearer realm="lapse"'),
            ],
        )
        return [b"this endpoint needs an `Authorization: Bearer <LAPSE_METRICS_TOKEN>` header\n"]

    return guarded


class _Quiet(WSGIRequestHandler):
    """No line on stderr per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
