"""Configuration: one settings class, from environment variables (`LAPSE_*`) and flags.

It refuses unsafe values: in production a controllable clock, no SMTP host, no key for the
admin UI's sessions and open metrics on an address other than loopback; anywhere a webhook URL
without the secret that signs it. Every refusal names the setting and says why.
What settings alone cannot see is refused where it shows: every API endpoint but `/health`,
`/metrics` (which takes LAPSE_METRICS_TOKEN when set) and the OpenAPI documents needs a token
(lapse.api.deps), and `lapse serve` in production will not start while no token exists at all,
rather than print a new admin secret into its logs as the first start of the embedded default
does (lapse.cli).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lapse.errors import ConfigError
from lapse.policy.durations import Duration, DurationSyntaxError


def retention_duration(text: str) -> Duration:
    """A retention such as "90 days" or "1 year"; ValueError unless it is a positive duration."""
    try:
        duration = Duration.parse(text)
    except DurationSyntaxError as exc:
        raise ValueError(f"{text!r} is not a duration such as '90 days': {exc}") from None
    if duration.is_zero:
        raise ValueError(f"{text!r}: a retention must be longer than zero, e.g. '90 days'")
    return duration


class Settings(BaseSettings):
    """Everything a lapse process needs to know, with safe defaults for the embedded mode."""

    model_config = SettingsConfigDict(env_prefix="LAPSE_", extra="forbid", frozen=True)

    env: Literal["development", "production"] = "development"
    database_url: str | None = (
        None  # default: the embedded SQLite file (see store.default_sqlite_url)
    )
    policy: str = "inactivity-cleanup"  # a policy file path or a preset name
    templates_dir: Path | None = None  # overrides for notice templates
    product: str = "lapse"  # the product name used in notices
    # links and contacts the notice templates show (a sentence is left out when unset)
    login_url: str | None = None
    billing_url: str | None = None
    support_contact: str | None = None
    sales_contact: str | None = None

    # time: "manual" lets tests move time over the API; "accelerated" runs simulated time
    # `clock_rate` times faster than real time (the demo); both are refused in production
    clock: Literal["system", "manual", "accelerated"] = "system"
    clock_start: datetime | None = None
    clock_rate: float = Field(default=60.0, gt=0, le=1_000_000)
    clock_origin: datetime | None = None  # the real time at which it showed clock_start

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(default=8400, ge=1, le=65535)
    # `lapse worker`: where it serves its own /metrics (its counters); unset: no endpoint
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # the bearer secret Prometheus presents to /metrics (the API's and a worker's); unset: open,
    # which production allows only on a loopback LAPSE_HOST
    metrics_token: str | None = Field(default=None, min_length=16)
    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    max_batch: int = Field(default=10_000, ge=1)

    # scheduler and dispatcher
    worker_id: str | None = None
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    deletions_per_minute: int = Field(default=60, ge=1)
    max_attempts: int = Field(default=120, ge=1)  # about five days of retries (see dispatch)
    # how long finished outbox rows of closed cases, and their in-app notifications, are kept
    # ("90 days"); unset: kept forever
    outbox_retention: str | None = None
    # how long event ids are kept to recognise repeated deliveries ("30 days"); events older
    # than that are refused; unset: ids are kept forever and no event is too old
    event_retention: str | None = None
    prune_seconds: float = Field(default=3600.0, gt=0)  # how often the loops prune

    # email (SMTP); without a host, emails go to the local outbox (viewable over the API)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout: float = Field(default=10.0, gt=0)
    mail_from: str = "lapse@localhost"
    mail_from_name: str = "lapse"

    # webhooks (Standard Webhooks): notices sent `via: [webhook]`, and host effects
    notice_webhook_url: str | None = None
    host_webhook_url: str | None = None
    webhook_secret: str | None = None

    # data (lapse.data): where the host keeps account data, a YAML or JSON file of connectors
    # (docs/data.md); and the key signing export download links (random per process if unset,
    # so set it when several API processes serve the same links)
    connectors: Path | None = None
    export_secret: str | None = Field(default=None, min_length=16)
    export_link_seconds: int = Field(default=600, ge=10, le=86_400)

    # the admin UI (lapse.admin): the key signing its session cookies (random per process when
    # unset in development, so sessions end with the process; required in production, and the
    # same in every API process behind one address) and how long a login lasts
    admin_session_key: str | None = Field(default=None, min_length=32)
    admin_session_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 86_400)

    @field_validator("clock_start", "clock_origin")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-01-01T00:00:00Z")
        return value.astimezone(UTC) if value is not None else None

    @field_validator("outbox_retention", "event_retention")
    @classmethod
    def _retention(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        retention_duration(value)  # raises ValueError with what is wrong
        return value.strip()

    @property
    def outbox_retention_duration(self) -> Duration | None:
        """LAPSE_OUTBOX_RETENTION parsed (None: finished rows are kept forever)."""
        return retention_duration(self.outbox_retention) if self.outbox_retention else None

    @property
    def event_retention_duration(self) -> Duration | None:
        """LAPSE_EVENT_RETENTION parsed (None: event ids are kept forever)."""
        return retention_duration(self.event_retention) if self.event_retention else None

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        problems = []
        if self.env == "production" and self.clock != "system":
            problems.append(
                f"LAPSE_CLOCK={self.clock} is refused in production: time must be the real time"
            )
        if (self.notice_webhook_url or self.host_webhook_url) and not self.webhook_secret:
            problems.append(
                "a webhook URL is set but LAPSE_WEBHOOK_SECRET is not: webhooks must be signed"
            )
        if self.env == "production" and self.smtp_host is None:
            problems.append("LAPSE_SMTP_HOST is required in production: notices must reach people")
        if self.env == "production" and self.admin_session_key is None:
            problems.append(
                "LAPSE_ADMIN_SESSION_KEY is required in production: the admin UI signs its "
                "sessions with it (at least 32 characters, e.g. `openssl rand -hex 32`; the same "
                "in every API process)"
            )
        if self.env == "production" and self.metrics_token is None and not loopback(self.host):
            problems.append(
                f"LAPSE_METRICS_TOKEN is required in production when LAPSE_HOST ({self.host}) is "
                "not a loopback address: /metrics would be open to whoever reaches it (at least "
                "16 characters, e.g. `openssl rand -hex 32`; Prometheus sends it as a bearer token)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def loopback(host: str) -> bool:
    """True if `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags); ConfigError if bad."""
    from pydantic import ValidationError

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            name = f"LAPSE_{where.upper()}" if where != "settings" else where
            lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
