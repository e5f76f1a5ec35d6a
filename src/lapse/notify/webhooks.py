"""Signed webhooks to the host product, per the Standard Webhooks specification.

A request carries `webhook-id` (the outbox row's idempotency key: the same on every retry, so the
receiver can drop duplicates of an at-least-once delivery), `webhook-timestamp` (the attempt's
time, in Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` of
`id.timestamp.body` with the `whsec_...` secret). The body is the specification's envelope:
`{"type": ..., "timestamp": ..., "data": {...}}`.

Event types: `lapse.effect.<name>` for a phase's host effects (stop_scheduled_campaigns, ...), and
`lapse.notice` for notices delivered by webhook (the host sends or shows them itself).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Mapping, MutableSet
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from lapse.core.model import HostEffect, NoticeEffect
from lapse.errors import ConfigError, DeliveryError, LapseError
from lapse.notify.templates import RenderedNotice

NOTICE_EVENT = "lapse.notice"
EFFECT_EVENT_PREFIX = "lapse.effect."

#: how far a receiver accepts a timestamp from its own clock (the specification's default)
DEFAULT_TOLERANCE = timedelta(minutes=5)

_RETRY_STATUSES = frozenset({408, 425, 429})
_USER_AGENT = "lapse-webhooks/1"


class WebhookVerificationFailed(LapseError):
    """A received webhook is not authentic or not fresh: bad signature, replay, stale timestamp."""

    code = "webhook-verification-failed"


class WebhookDeliveryError(DeliveryError):
    """The endpoint did not accept the webhook; `status` is None when no response came back."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, permanent=permanent)
        self.status = status
        self.retry_after = retry_after  # seconds the endpoint asked us to wait, if it said


def generate_secret() -> str:
    """A new random signing secret in the specification's format, `whsec_<base64>`."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _signer(secret: str) -> Webhook:
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    # the library decodes leniently (garbage decodes to some bytes); refuse it here instead
    if len(key) < 16:
        raise ConfigError(
            "webhook secret must be 'whsec_' followed by base64 of at least 16 random bytes "
            "(generate one with lapse.notify.generate_secret())"
        )
    return Webhook(secret)


def _iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z, as in the specification's examples."""
    if moment.tzinfo is None:
        raise ValueError("webhook timestamps must be aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    # Webhook.sign() replaces the tzinfo instead of converting: hand it UTC already
    if moment.tzinfo is None:
        raise ValueError("webhook timestamps must be aware")
    return moment.astimezone(UTC)


def encode_body(event_type: str, payload: Mapping[str, object], timestamp: datetime) -> bytes:
    """The request body: the specification's envelope around `payload`, as compact JSON."""
    envelope = {"type": event_type, "timestamp": _iso(timestamp), "data": dict(payload)}
    return json.dumps(envelope, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class WebhookSender:
    """POSTs signed events to one endpoint; raises DeliveryError unless it answers 2xx."""

    def __init__(
        self,
        url: str,
        secret: str,
        timeout: float = 10.0,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"webhook url {url!r} must be an http:// or https:// URL")
        if timeout <= 0:
            raise ConfigError("webhook timeout must be positive")
        self.url = url
        self.timeout = timeout
        self._signer = _signer(secret)
        self._client = client  # a shared client (connection pooling) owned by the caller

    def headers(self, message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
        """The signed headers for one attempt."""
        if not message_id or any(c in message_id for c in " \r\n,"):
            raise ValueError(f"invalid webhook id {message_id!r}")
        moment = _utc(timestamp)
        signature = self._signer.sign(msg_id=message_id, timestamp=moment, data=body.decode())
        return {
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
        }

    async def send(
        self,
        event_type: str,
        payload: Mapping[str, object],
        *,
        message_id: str,
        timestamp: datetime,
    ) -> None:
        """Deliver one event; `timestamp` is the attempt's time (receivers reject old ones)."""
        body = encode_body(event_type, payload, timestamp)
        headers = self.headers(message_id, timestamp, body)
        try:
            if self._client is not None:
                response = await self._client.post(
                    self.url, content=body, headers=headers, timeout=self.timeout
                )
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise WebhookDeliveryError(
                f"webhook {self.url}: no answer within {self.timeout:g}s ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise WebhookDeliveryError(f"webhook {self.url}: {type(exc).__name__}: {exc}") from exc
        _check_status(self.url, response)


def _check_status(url: str, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"webhook {url}: HTTP {status} {response.reason_phrase}".rstrip()
    if 300 <= status < 400:
        # the specification treats redirects as failures; the URL is probably outdated
        location = response.headers.get("location")
        raise WebhookDeliveryError(
            f"{detail} (redirects are not followed{f'; to {location}' if location else ''})",
            status=status,
        )
    if status in _RETRY_STATUSES or status >= 500:
        raise WebhookDeliveryError(
            detail, status=status, retry_after=_retry_after(response.headers.get("retry-after"))
        )
    # any other 4xx: the endpoint understood and refused this event; resending will not help
    raise WebhookDeliveryError(detail, status=status, permanent=True)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: rare from webhook receivers, and the backoff copes anyway


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: datetime | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    seen: MutableSet[str] | None = None,
) -> dict[str, Any]:
    """Check a received webhook and return its JSON body; raise WebhookVerificationFailed.

    Refuses a missing header, a timestamp more than `tolerance` from `now`, a signature that
    does not match, and (with `seen`, the ids already accepted) a message received twice.
    """
    signer = _signer(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [
        name
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if not lowered.get(name)
    ]
    if missing:
        raise WebhookVerificationFailed(f"missing header(s): {', '.join(missing)}")
    msg_id = lowered["webhook-id"]
    try:
        sent = datetime.fromtimestamp(int(lowered["webhook-timestamp"]), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise WebhookVerificationFailed(
            f"webhook-timestamp {lowered['webhook-timestamp']!r} is not Unix seconds"
        ) from exc
    now = _utc(now) if now is not None else datetime.now(UTC)
    if sent < now - tolerance:
        raise WebhookVerificationFailed(
            f"webhook-timestamp {_iso(sent)} is more than {tolerance} old: stale or replayed"
        )
    if sent > now + tolerance:
        raise WebhookVerificationFailed(
            f"webhook-timestamp {_iso(sent)} is more than {tolerance} in the future"
        )
    try:
        text = body.decode() if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise WebhookVerificationFailed("body is not UTF-8") from exc
    expected = signer.sign(msg_id=msg_id, timestamp=sent, data=text).partition(",")[2]
    offered = [
        sig
        for version, _, sig in (p.partition(",") for p in lowered["webhook-signature"].split())
        if version == "v1"
    ]
    if not any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in offered):
        raise WebhookVerificationFailed("no webhook-signature matches the body and secret")
    if seen is not None:
        if msg_id in seen:
            raise WebhookVerificationFailed(f"webhook-id {msg_id!r} was already received: replay")
        seen.add(msg_id)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise WebhookVerificationFailed("body is not JSON") from exc
    if not isinstance(document, dict):
        raise WebhookVerificationFailed("body is not a JSON object")
    return document


# --- payloads -----------------------------------------------------------------------------------


def effect_event_type(effect: HostEffect) -> str:
    """'lapse.effect.<name>', e.g. 'lapse.effect.stop_scheduled_campaigns'."""
    return EFFECT_EVENT_PREFIX + effect.name


def effect_payload(effect: HostEffect, *, policy_version: str | None = None) -> dict[str, object]:
    """The `data` of a host effect webhook: which account, which case, what to do, and why."""
    return {
        "account_id": effect.account_id,
        "effect": effect.name,
        "trigger": effect.trigger,  # "enter", "exit" (of the phase) or "close" (of the case)
        "case_id": effect.case_id,
        "flow": effect.flow,
        "phase": effect.phase,
        "at": _iso(effect.at),  # lifecycle time the effect belongs to (not the send time)
        "policy_version": policy_version,
    }


def notice_payload(
    effect: NoticeEffect,
    *,
    recipient: str,
    context: Mapping[str, object] | None = None,
    rendered: RenderedNotice | None = None,
) -> dict[str, object]:
    """The `data` of a `lapse.notice` webhook: the notice, its deadline, and the rendered text."""
    context = context or {}
    deadline = context.get("deadline", effect.deadline)
    return {
        "account_id": effect.account_id,
        "recipient": recipient,
        "audience": effect.to,
        "case_id": effect.case_id,
        "flow": effect.flow,
        "phase": effect.phase,
        "notice_key": effect.key,
        "template": effect.template,
        "reason": effect.reason,
        "due_at": _iso(effect.due_at),
        "deadline": _iso(deadline) if isinstance(deadline, datetime) else None,
        "time_left": context.get("time_left"),
        "late": bool(context.get("late", False)),
        "subject": rendered.subject if rendered is not None else None,
        "text": rendered.text if rendered is not None else None,
        "html": rendered.html if rendered is not None else None,
    }
