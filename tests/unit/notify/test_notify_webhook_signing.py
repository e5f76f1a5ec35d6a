"""Standard Webhooks signing and verification, and the payload documents (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from notify_scenarios import ADMIN, run_until
from standardwebhooks import Webhook

from lapse.core.model import HostEffect
from lapse.errors import ConfigError
from lapse.notify.context import notice_context
from lapse.notify.templates import TemplateRenderer
from lapse.notify.webhooks import (
    NOTICE_EVENT,
    WebhookSender,
    WebhookVerificationFailed,
    effect_event_type,
    effect_payload,
    encode_body,
    generate_secret,
    notice_payload,
    verify_webhook,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's example secret
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EFFECT = HostEffect(
    account_id="acme-42",
    case_id="payment-lock#1",
    flow="payment-lock",
    phase="locked",
    name="stop_scheduled_campaigns",
    trigger="enter",
    at=datetime(2025, 2, 24, 9, 30, tzinfo=UTC),
)


def signed(message_id: str = "msg_1", timestamp: datetime = NOW) -> tuple[dict[str, str], bytes]:
    sender = WebhookSender("https://host.example/hooks", SECRET)
    body = encode_body(effect_event_type(EFFECT), effect_payload(EFFECT), timestamp)
    return sender.headers(message_id, timestamp, body), body


def test_signed_request_verifies_and_returns_the_envelope() -> None:
    headers, body = signed()
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    document = verify_webhook(SECRET, headers, body, now=NOW)
    assert document == {
        "type": "lapse.effect.stop_scheduled_campaigns",
        "timestamp": "2025-03-01T12:00:00Z",
        "data": {
            "account_id": "acme-42",
            "effect": "stop_scheduled_campaigns",
            "trigger": "enter",
            "case_id": "payment-lock#1",
            "flow": "payment-lock",
            "phase": "locked",
            "at": "2025-02-24T09:30:00Z",
            "policy_version": None,
        },
    }


def test_the_reference_library_accepts_our_signature() -> None:
    # interoperability: any Standard Webhooks receiver (here the reference library) verifies it
    now = datetime.now(UTC)
    headers, body = signed(timestamp=now)
    assert Webhook(SECRET).verify(body, headers)["type"] == "lapse.effect.stop_scheduled_campaigns"


def test_non_utc_timestamps_sign_the_same_instant() -> None:
    # the reference library replaces (not converts) the zone when signing: guard against it
    plus_two = NOW.astimezone(ZoneInfo("Europe/Brussels"))
    headers, body = signed(timestamp=plus_two)
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    verify_webhook(SECRET, headers, body, now=NOW)


def test_header_names_are_case_insensitive() -> None:
    headers, body = signed()
    verify_webhook(SECRET, {k.title(): v for k, v in headers.items()}, body.decode(), now=NOW)


def test_a_tampered_body_or_wrong_secret_is_refused() -> None:
    headers, body = signed()
    with pytest.raises(WebhookVerificationFailed, match="no webhook-signature matches"):
        verify_webhook(SECRET, headers, body.replace(b"acme-42", b"acme-43"), now=NOW)
    with pytest.raises(WebhookVerificationFailed, match="no webhook-signature matches"):
        verify_webhook(generate_secret(), headers, body, now=NOW)
    forged = {**headers, "webhook-id": "msg_2"}
    with pytest.raises(WebhookVerificationFailed, match="no webhook-signature matches"):
        verify_webhook(SECRET, forged, body, now=NOW)


def test_any_matching_signature_is_enough_for_key_rotation() -> None:
    headers, body = signed()
    rotated = {
        **headers,
        "webhook-signature": f"v1,bm9wZQ== v2,x junk {headers['webhook-signature']}",
    }
    verify_webhook(SECRET, rotated, body, now=NOW)


def test_stale_and_future_timestamps_are_refused() -> None:
    headers, body = signed()
    with pytest.raises(WebhookVerificationFailed, match="old: stale or replayed"):
        verify_webhook(SECRET, headers, body, now=NOW + timedelta(minutes=6))
    with pytest.raises(WebhookVerificationFailed, match="in the future"):
        verify_webhook(SECRET, headers, body, now=NOW - timedelta(minutes=6))
    verify_webhook(SECRET, headers, body, now=NOW + timedelta(minutes=4))
    verify_webhook(
        SECRET, headers, body, now=NOW + timedelta(minutes=9), tolerance=timedelta(minutes=10)
    )


def test_a_replayed_id_is_refused_when_the_receiver_remembers_ids() -> None:
    headers, body = signed()
    seen: set[str] = set()
    verify_webhook(SECRET, headers, body, now=NOW, seen=seen)
    assert seen == {"msg_1"}
    with pytest.raises(WebhookVerificationFailed, match="already received: replay"):
        verify_webhook(SECRET, headers, body, now=NOW, seen=seen)


def test_missing_or_malformed_headers_are_refused() -> None:
    headers, body = signed()
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(WebhookVerificationFailed, match=f"missing header.*{name}"):
            verify_webhook(SECRET, partial, body, now=NOW)
    with pytest.raises(WebhookVerificationFailed, match="not Unix seconds"):
        verify_webhook(SECRET, {**headers, "webhook-timestamp": "yesterday"}, body, now=NOW)


def test_bodies_that_are_not_json_objects_are_refused() -> None:
    sender = WebhookSender("https://host.example/hooks", SECRET)
    for body, message in (
        (b"[1, 2]", "not a JSON object"),
        (b"{oops", "not JSON"),
        (b"\xff", "not UTF-8"),
    ):
        headers = sender.headers("m", NOW, body) if message != "not UTF-8" else signed()[0]
        with pytest.raises(WebhookVerificationFailed, match=message):
            verify_webhook(SECRET, headers, body, now=NOW)


def test_secrets_are_checked() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    WebhookSender("https://host.example/hooks", secret)
    for bad in ("", "whsec_", "whsec_!!!!not-base64!!!!", "whsec_c2hvcnQ="):
        with pytest.raises(ConfigError, match="whsec_"):
            WebhookSender("https://host.example/hooks", bad)


@pytest.mark.parametrize("url", ["ftp://host.example/x", "host.example/hooks", "https://"])
def test_urls_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        WebhookSender(url, SECRET)


def test_ids_with_separators_are_refused() -> None:
    sender = WebhookSender("https://host.example/hooks", SECRET)
    with pytest.raises(ValueError, match="invalid webhook id"):
        sender.headers("a b", NOW, b"{}")


def test_notice_payload_is_a_stable_document() -> None:
    s = run_until("payment-lock", "lock-started")
    ctx = notice_context(s.effect, account=s.account, policy=s.policy, now=s.now, recipient=ADMIN)
    rendered = TemplateRenderer().render(s.effect.template, ctx)
    payload = notice_payload(s.effect, recipient=ADMIN, context=ctx, rendered=rendered)
    assert payload == {
        "account_id": "acme-42",
        "recipient": ADMIN,
        "audience": "admins",
        "case_id": "payment-lock#1",
        "flow": "payment-lock",
        "phase": "locked",
        "notice_key": "locked/lock-started",
        "template": "lock-started",
        "reason": s.effect.reason,
        "due_at": "2025-02-24T09:30:00Z",
        "deadline": "2025-08-24T09:30:00Z",
        "time_left": "181 days",
        "late": False,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    }
    bare = notice_payload(s.effect, recipient=ADMIN)
    assert set(bare) == set(payload)
    assert bare["deadline"] == "2025-08-24T09:30:00Z"
    assert bare["subject"] is None
    body = json.loads(encode_body(NOTICE_EVENT, payload, NOW))
    assert body["type"] == "lapse.notice"
    assert body["data"] == payload


def test_effect_payload_carries_the_policy_version() -> None:
    assert effect_payload(EFFECT, policy_version="3")["policy_version"] == "3"
    assert effect_event_type(EFFECT) == "lapse.effect.stop_scheduled_campaigns"
    with pytest.raises(ValueError, match="aware"):
        encode_body("x", {}, datetime(2025, 1, 1))
