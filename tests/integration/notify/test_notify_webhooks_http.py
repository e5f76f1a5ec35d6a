"""WebhookSender against a real HTTP server on loopback, verified with verify_webhook."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from lapse.core.model import HostEffect
from lapse.errors import DeliveryError
from lapse.notify.webhooks import (
    WebhookDeliveryError,
    WebhookSender,
    effect_event_type,
    effect_payload,
    generate_secret,
    verify_webhook,
)
from loopback_servers import WebhookServer, free_port

SECRET = generate_secret()
EFFECT = HostEffect(
    account_id="acme-42",
    case_id="payment-lock#1",
    flow="payment-lock",
    phase="locked",
    name="stop_scheduled_campaigns",
    trigger="enter",
    at=datetime(2025, 2, 24, 9, 30, tzinfo=UTC),
)


def deliver(sender: WebhookSender, message_id: str = "outbox-1") -> None:
    asyncio.run(
        sender.send(
            effect_event_type(EFFECT),
            effect_payload(EFFECT, policy_version="1"),
            message_id=message_id,
            timestamp=datetime.now(UTC),
        )
    )


def test_a_delivered_effect_verifies_on_the_receiving_side(webhook_server: WebhookServer) -> None:
    deliver(WebhookSender(webhook_server.url, SECRET))
    [request] = webhook_server.requests
    assert request.path == "/hooks/lapse"
    assert request.headers["webhook-id"] == "outbox-1"
    assert request.headers["content-type"] == "application/json"
    document = verify_webhook(SECRET, request.headers, request.body)
    assert document["type"] == "lapse.effect.stop_scheduled_campaigns"
    assert document["data"]["account_id"] == "acme-42"
    assert document["data"]["policy_version"] == "1"
    assert json.loads(request.body) == document


def test_retries_carry_the_same_id_and_a_fresh_valid_signature(
    webhook_server: WebhookServer,
) -> None:
    webhook_server.statuses = [503]
    sender = WebhookSender(webhook_server.url, SECRET)
    with pytest.raises(DeliveryError):
        deliver(sender)
    deliver(sender)
    first, second = webhook_server.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "outbox-1"
    seen: set[str] = set()
    verify_webhook(SECRET, second.headers, second.body, seen=seen)
    # a receiver that remembers ids drops a duplicate of an at-least-once delivery
    with pytest.raises(Exception, match="replay"):
        verify_webhook(SECRET, second.headers, second.body, seen=seen)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_delivered(webhook_server: WebhookServer, status: int) -> None:
    webhook_server.statuses = [status]
    deliver(WebhookSender(webhook_server.url, SECRET))


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses(webhook_server: WebhookServer, status: int) -> None:
    webhook_server.statuses = [status]
    with pytest.raises(WebhookDeliveryError) as info:
        deliver(WebhookSender(webhook_server.url, SECRET))
    assert info.value.permanent is False
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_are_permanent(webhook_server: WebhookServer, status: int) -> None:
    webhook_server.statuses = [status]
    with pytest.raises(WebhookDeliveryError) as info:
        deliver(WebhookSender(webhook_server.url, SECRET))
    assert info.value.permanent is True
    assert info.value.status == status


def test_retry_after_is_passed_on(webhook_server: WebhookServer) -> None:
    webhook_server.statuses = [429]
    webhook_server.headers = {"Retry-After": "120"}
    with pytest.raises(WebhookDeliveryError) as info:
        deliver(WebhookSender(webhook_server.url, SECRET))
    assert info.value.retry_after == 120.0


def test_redirects_are_not_followed(webhook_server: WebhookServer) -> None:
    webhook_server.statuses = [301]
    webhook_server.headers = {"Location": "https://elsewhere.example/hooks"}
    with pytest.raises(WebhookDeliveryError, match="redirects are not followed") as info:
        deliver(WebhookSender(webhook_server.url, SECRET))
    assert info.value.permanent is False
    assert len(webhook_server.requests) == 1


def test_a_slow_endpoint_times_out_as_retryable(webhook_server: WebhookServer) -> None:
    webhook_server.delay = 5
    started = time.monotonic()
    with pytest.raises(WebhookDeliveryError, match=r"no answer within 0.3s") as info:
        deliver(WebhookSender(webhook_server.url, SECRET, timeout=0.3))
    assert time.monotonic() - started < 3
    assert info.value.permanent is False
    assert info.value.status is None


def test_an_endpoint_that_is_down_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks"
    with pytest.raises(WebhookDeliveryError, match="ConnectError") as info:
        deliver(WebhookSender(url, SECRET))
    assert info.value.permanent is False


def test_a_shared_client_is_used_and_left_open(webhook_server: WebhookServer) -> None:
    async def twice() -> bool:
        async with httpx.AsyncClient() as client:
            sender = WebhookSender(webhook_server.url, SECRET, client=client)
            for n in range(2):
                await sender.send(
                    "lapse.effect.x", {}, message_id=f"m{n}", timestamp=datetime.now(UTC)
                )
            return client.is_closed

    assert asyncio.run(twice()) is False
    assert [r.headers["webhook-id"] for r in webhook_server.requests] == ["m0", "m1"]
