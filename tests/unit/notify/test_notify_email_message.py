"""SmtpSettings and the message SmtpTransport builds (no network: see tests/integration/notify)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from lapse.errors import ConfigError, DeliveryError
from lapse.notify.email import SmtpSettings, SmtpTransport
from lapse.notify.templates import RenderedNotice

NOTICE = RenderedNotice(
    subject="Your account has been locked: é café",
    text="Hello,\n\nYour account is locked.\n",
    html="<p>Hello,</p><p>Your account is <strong>locked</strong>.</p>",
)
SETTINGS = SmtpSettings(sender_address="notices@acme.example", sender_name="Acme Notices")


def test_message_is_multipart_alternative_text_then_html() -> None:
    msg = SmtpTransport(SETTINGS).build("admin@customer.example", NOTICE, message_id="abc123")
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == NOTICE.text
    assert parts[1].get_content().strip() == NOTICE.html
    assert msg.get_body(preferencelist=("html",)) is parts[1]


def test_headers_identify_an_automatic_message() -> None:
    date = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    msg = SmtpTransport(SETTINGS).build(
        "admin@customer.example",
        NOTICE,
        message_id="abc123",
        headers={"X-Lapse-Case": "payment-lock#1"},
        date=date,
    )
    assert msg["From"] == "Acme Notices <notices@acme.example>"
    assert msg["To"] == "admin@customer.example"
    assert msg["Subject"] == NOTICE.subject
    assert msg["Date"] == "Sat, 01 Mar 2025 08:00:00 +0000"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Lapse-Case"] == "payment-lock#1"


def test_message_id_is_deterministic_per_outbox_id() -> None:
    transport = SmtpTransport(SETTINGS)
    first = transport.build("a@customer.example", NOTICE, message_id="k1")["Message-ID"]
    again = transport.build("a@customer.example", NOTICE, message_id="k1")["Message-ID"]
    other = transport.build("a@customer.example", NOTICE, message_id="k2")["Message-ID"]
    assert first == again == "<k1@acme.example>"
    assert other != first
    assert transport.message_id("odd id/with spaces") == "<odd-id/with-spaces@acme.example>"
    assert transport.message_id("<given@elsewhere.example>") == "<given@elsewhere.example>"
    custom = SmtpTransport(
        SmtpSettings(sender_address="n@acme.example", message_id_domain="ids.acme.example")
    )
    assert custom.message_id("k1") == "<k1@ids.acme.example>"


@pytest.mark.parametrize(
    "headers",
    [{"Subject": "spoofed"}, {"Message-ID": "<x@y>"}, {"X-Evil": "a\r\nBcc: victim@x.example"}],
)
def test_callers_cannot_replace_or_inject_headers(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="header"):
        SmtpTransport(SETTINGS).build("a@customer.example", NOTICE, message_id="k", headers=headers)


@pytest.mark.parametrize("to", ["not-an-address", "a@b.example\r\nBcc: c@d.example", ""])
def test_a_malformed_recipient_is_a_permanent_failure_without_connecting(to: str) -> None:
    # port 9 (discard) is never contacted: the message is refused before any connection
    transport = SmtpTransport(
        SmtpSettings(host="127.0.0.1", port=9, sender_address="n@acme.example")
    )
    with pytest.raises(DeliveryError) as info:
        asyncio.run(transport.send(to, NOTICE, message_id="k"))
    assert info.value.permanent is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"use_tls": True, "starttls": True}, "exclude each other"),
        ({"username": "u"}, "together"),
        ({"port": 70000}, "out of range"),
        ({"timeout": 0}, "positive"),
        ({"sender_address": "nobody"}, "not an address"),
    ],
)
def test_settings_refuse_unsafe_or_inconsistent_values(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        SmtpSettings(**kwargs)  # type: ignore[arg-type]


def test_password_is_not_in_the_settings_repr() -> None:
    settings = SmtpSettings(username="u", password="hunter2", sender_address="n@acme.example")
    assert "hunter2" not in repr(settings)
