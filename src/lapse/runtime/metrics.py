"""Prometheus metrics: `REGISTRY` holds this process's counters (the API's `/metrics` shows
them, and a worker's own endpoint: `lapse worker --metrics-port`); `DATABASE` the gauges the
API refreshes from the database at each scrape (any one process gives the whole picture, so
workers leave them out)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
