"""SmtpTransport against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from lapse.core.inputs import new_account
from lapse.core.lifecycle import apply_event
from lapse.core.model import Member, NoticeEffect
from lapse.errors import DeliveryError
from lapse.notify import notice_context
from lapse.notify.email import SmtpSettings, SmtpTransport
from lapse.notify.templates import RenderedNotice, TemplateRenderer
from lapse.policy import load_preset
from loopback_servers import SmtpServer, free_port, running_smtp_server

SENDER = "notices@acme.example"
ADMIN = "admin@customer.example"


def transport(server: SmtpServer, **kwargs: object) -> SmtpTransport:
    settings = SmtpSettings(
        host=server.host,
        port=server.port,
        sender_address=SENDER,
        sender_name="Acme Notices",
        timeout=5,
        **kwargs,  # type: ignore[arg-type]
    )
    return SmtpTransport(settings)


def lock_notice() -> RenderedNotice:
    """The real 'lock-started' notice of the account-locks preset, for a payment failure."""
    policy = load_preset("account-locks")
    now = datetime(2025, 2, 24, 9, 30, tzinfo=UTC)
    account = new_account(
        policy,
        account_id="acme-42",
        kind="standard",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        members=(Member(email=ADMIN, role="admin"),),
    )
    step = apply_event(account, policy, "payment_failed", now, now)
    effect = next(e for e in step.effects if isinstance(e, NoticeEffect))
    context = notice_context(effect, account=step.account, policy=policy, now=now, recipient=ADMIN)
    return TemplateRenderer(product="Acme").render(effect.template, context)


def test_a_real_notice_arrives_with_both_parts_and_its_headers(smtp_server: SmtpServer) -> None:
    rendered = lock_notice()
    asyncio.run(
        transport(smtp_server).send(
            ADMIN, rendered, message_id="3f2a9c", headers={"X-Lapse-Case": "payment-lock#1"}
        )
    )
    [message] = smtp_server.messages
    assert smtp_server.sink.envelopes == [(SENDER, [ADMIN])]
    assert message["From"] == "Acme Notices <notices@acme.example>"
    assert message["To"] == ADMIN
    assert message["Subject"] == rendered.subject
    assert message["Message-ID"] == "<3f2a9c@acme.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Lapse-Case"] == "payment-lock#1"
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().replace("\r\n", "\n") == rendered.text  # CRLF on the wire
    assert html.get_content().replace("\r\n", "\n").strip() == rendered.html.strip()
    assert "Update your payment method" in text.get_content()
    assert "24 August 2025" in html.get_content()


def test_non_ascii_subject_and_body_survive_the_trip(smtp_server: SmtpServer) -> None:
    notice = RenderedNotice(
        subject="Votre compte a été verrouillé — café", text="Déjà vu ✓\n", html="<p>Déjà vu ✓</p>"
    )
    asyncio.run(transport(smtp_server).send(ADMIN, notice, message_id="k1"))
    [message] = smtp_server.messages
    assert message["Subject"] == notice.subject
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == notice.text


def test_a_retry_carries_the_same_message_id(smtp_server: SmtpServer) -> None:
    # at-least-once delivery: a resend after a crash must be recognisable as the same message
    send = transport(smtp_server).send
    asyncio.run(send(ADMIN, lock_notice(), message_id="outbox-17"))
    asyncio.run(send(ADMIN, lock_notice(), message_id="outbox-17"))
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert ids == ["<outbox-17@acme.example>", "<outbox-17@acme.example>"]


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 No such user here", True), ("451 4.3.0 Mailbox busy, try later", False)],
)
def test_a_refused_recipient_is_permanent_only_for_5xx(
    smtp_server: SmtpServer, reply: str, permanent: bool
) -> None:
    smtp_server.sink.refuse[ADMIN] = reply
    with pytest.raises(DeliveryError) as info:
        asyncio.run(transport(smtp_server).send(ADMIN, lock_notice(), message_id="k"))
    assert info.value.permanent is permanent
    assert reply.split()[0] in str(info.value)
    assert ADMIN in str(info.value)
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("554 5.7.1 Message rejected as spam", True), ("452 4.3.1 Insufficient storage", False)],
)
def test_a_refused_message_is_permanent_only_for_5xx(
    smtp_server: SmtpServer, reply: str, permanent: bool
) -> None:
    smtp_server.sink.refuse_data = reply
    with pytest.raises(DeliveryError) as info:
        asyncio.run(transport(smtp_server).send(ADMIN, lock_notice(), message_id="k"))
    assert info.value.permanent is permanent


def test_server_down_is_a_retryable_failure() -> None:
    port = free_port()  # nothing listens here
    settings = SmtpSettings(host="127.0.0.1", port=port, sender_address=SENDER, timeout=5)
    with pytest.raises(DeliveryError) as info:
        asyncio.run(SmtpTransport(settings).send(ADMIN, lock_notice(), message_id="k"))
    assert info.value.permanent is False
    assert f"127.0.0.1:{port}" in str(info.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections but never says a word (a hung SMTP server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


def test_a_hung_server_times_out_as_a_retryable_failure(silent_server: int) -> None:
    settings = SmtpSettings(
        host="127.0.0.1", port=silent_server, sender_address=SENDER, timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        asyncio.run(SmtpTransport(settings).send(ADMIN, lock_notice(), message_id="k"))
    assert time.monotonic() - started < 5
    assert info.value.permanent is False


class _Authenticator:
    def __call__(
        self, server: object, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (b"lapse", b"s3cret")
        return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """A submission-style server: STARTTLS required, then AUTH required."""
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with running_smtp_server(
        tls_context=context,
        require_starttls=True,
        authenticator=_Authenticator(),
        auth_required=True,
    ) as server:
        yield server


def test_starttls_and_login(tls_server: SmtpServer, certificate: tuple[Path, Path]) -> None:
    ca_file = str(certificate[0])
    good = transport(
        tls_server, username="lapse", password="s3cret", starttls=True, ca_file=ca_file
    )
    asyncio.run(good.send(ADMIN, lock_notice(), message_id="k"))
    assert len(tls_server.messages) == 1


def test_wrong_password_is_retryable(
    tls_server: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    ca_file = str(certificate[0])
    bad = transport(tls_server, username="lapse", password="wrong", starttls=True, ca_file=ca_file)
    with pytest.raises(DeliveryError) as info:
        asyncio.run(bad.send(ADMIN, lock_notice(), message_id="k"))
    # wrong credentials are the deployment's problem: retry once the configuration is fixed
    assert info.value.permanent is False
    assert "535" in str(info.value)
    assert tls_server.messages == []


def test_an_untrusted_certificate_is_refused(tls_server: SmtpServer) -> None:
    untrusting = transport(tls_server, username="lapse", password="s3cret", starttls=True)
    with pytest.raises(DeliveryError) as info:
        asyncio.run(untrusting.send(ADMIN, lock_notice(), message_id="k"))
    assert info.value.permanent is False
    assert tls_server.messages == []


def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with running_smtp_server(ssl_context=context) as server:
        sender = transport(server, use_tls=True, ca_file=str(cert))
        asyncio.run(sender.send(ADMIN, lock_notice(), message_id="k"))
        assert len(server.messages) == 1


def test_lapse_dates_its_emails_by_its_own_clock_and_labels_them(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # under a controlled clock an email is dated when lapse sent it, like webhook timestamps,
    # not when the test ran
    from email.utils import parsedate_to_datetime

    from lapse.runtime.bootstrap import build
    from lapse.runtime.settings import load_settings

    start = datetime(2025, 1, 31, 9, tzinfo=UTC)
    services = build(
        load_settings(
            database_url=f"sqlite:///{tmp_path / 'lapse.db'}",
            policy="account-locks",
            clock="manual",
            clock_start=start,
            smtp_host=smtp_server.host,
            smtp_port=smtp_server.port,
        )
    )
    try:
        engine = services.engine
        engine.add_account("acme", kind="standard", members=[(ADMIN, "admin")])
        engine.event("acme", "payment_failed", event_id="inv-1")
        engine.deliver()
    finally:
        services.close()
    [message] = smtp_server.messages
    assert parsedate_to_datetime(message["Date"]) == start
    # and it says what it is about, for mail filters and support tools
    assert {k: v for k, v in message.items() if k.startswith("X-Lapse-")} == {
        "X-Lapse-Account": "acme",
        "X-Lapse-Case": "payment-lock#1",
        "X-Lapse-Notice": "locked/lock-started",
        "X-Lapse-Template": "lock-started",
        "X-Lapse-Deadline": "2025-07-31T09:00:00Z",  # six months on, as the message states
    }
