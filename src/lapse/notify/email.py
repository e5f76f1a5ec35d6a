"""Email notices over SMTP (aiosmtplib): one multipart/alternative message per recipient.

Delivery through the outbox is at-least-once: a crash after the server accepted a message but
before the outbox row was marked delivered sends it again. The Message-ID is therefore derived
from the outbox row's idempotency key, never random, so mail systems and clients that drop
duplicate Message-IDs show the notice once.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from lapse.errors import ConfigError, DeliveryError
from lapse.notify.templates import RenderedNotice

#: headers this transport owns; callers may not replace them through `headers=`
_OWN_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version"}
    | {"content-type", "content-transfer-encoding"}
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
_ADDRESS = re.compile(r"[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """Where and how to send email; `starttls=None` upgrades when the server offers it."""

    host: str = "localhost"
    port: int | None = None  # None: 465 with use_tls, 587 with starttls=True, else 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool | None = None
    use_tls: bool = False
    validate_certs: bool = True
    ca_file: str | None = None  # PEM bundle to trust instead of the system's CAs (private CA)
    timeout: float = 30.0
    sender_address: str = "lapse@localhost"
    sender_name: str = ""
    message_id_domain: str | None = None  # default: the domain of sender_address

    def __post_init__(self) -> None:
        if self.use_tls and self.starttls:
            raise ConfigError("smtp: use_tls (implicit TLS) and starttls exclude each other")
        if (self.username is None) != (self.password is None):
            raise ConfigError("smtp: username and password must be given together")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"smtp: port {self.port} is out of range")
        if self.timeout <= 0:
            raise ConfigError("smtp: timeout must be positive")
        if not _ADDRESS.match(self.sender_address):
            raise ConfigError(f"smtp: sender_address {self.sender_address!r} is not an address")


class SmtpTransport:
    """Sends rendered notices through one SMTP server, one connection per message."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.id_domain = settings.message_id_domain or settings.sender_address.rpartition("@")[2]

    def message_id(self, message_id: str) -> str:
        """The Message-ID header for an outbox id: '<id@domain>', the same on every retry."""
        if message_id.startswith("<") and message_id.endswith(">") and "@" in message_id:
            return message_id
        local = _ID_UNSAFE.sub("-", message_id).strip(".") or "notice"
        return f"<{local}@{self.id_domain}>"

    def build(
        self,
        to: str,
        rendered: RenderedNotice,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        date: datetime | None = None,
    ) -> EmailMessage:
        """The message `send` would transmit (text part first, HTML as the preferred part)."""
        _check_recipient(to)
        msg = EmailMessage()
        s = self.settings
        msg["From"] = Address(display_name=s.sender_name, addr_spec=s.sender_address)
        msg["To"] = to
        msg["Subject"] = rendered.subject
        msg["Date"] = format_datetime(date or datetime.now(UTC))
        msg["Message-ID"] = self.message_id(message_id)
        # RFC 3834: tells autoresponders (vacation replies, ticket systems) not to answer
        msg["Auto-Submitted"] = "auto-generated"
        # the Microsoft equivalent, honoured by Exchange out-of-office replies
        msg["X-Auto-Response-Suppress"] = "All"
        for name, value in (headers or {}).items():
            if name.lower() in _OWN_HEADERS:
                raise ValueError(f"header {name!r} is set by the transport")
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                raise ValueError(f"header {name!r} contains a line break or colon")
            msg[name] = value
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        return msg

    async def send(
        self,
        to: str,
        rendered: RenderedNotice,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        date: datetime | None = None,
    ) -> None:
        """Deliver one notice to `to`, dated `date` (default: now); raise DeliveryError
        (permanent for 5xx refusals)."""
        try:
            message = self.build(to, rendered, message_id=message_id, headers=headers, date=date)
        except ValueError as exc:
            # nothing a retry could change: the recipient or the headers are malformed
            raise DeliveryError(f"cannot build a message to {to!r}: {exc}", permanent=True) from exc
        s = self.settings
        port = s.port or (465 if s.use_tls else 587 if s.starttls else 25)
        sock: socket.socket | None = None
        try:
            sock = await _connect(s.host, port, s.timeout)
            client = aiosmtplib.SMTP(
                hostname=s.host,  # still needed: the TLS certificate is checked against it
                sock=sock,
                username=s.username,
                password=s.password,
                start_tls=s.starttls,
                use_tls=s.use_tls,
                validate_certs=s.validate_certs,
                cert_bundle=s.ca_file,
                timeout=s.timeout,
            )
            async with client:
                await client.send_message(message, sender=s.sender_address, recipients=[to])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _refused(to, exc.recipients) from exc
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise _refused(to, [exc]) from exc
        except aiosmtplib.SMTPDataError as exc:
            # 5xx after DATA: the server rejected this very message; resending it won't help
            raise DeliveryError(
                f"smtp {s.host}: message to {to} refused: {exc.code} {exc.message}",
                permanent=_permanent(exc.code),
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # sender refused, authentication failed, HELO refused: the deployment's problem, not
            # the recipient's; retrying lets delivery resume once the configuration is fixed
            raise DeliveryError(f"smtp {s.host}: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"smtp {s.host}:{port}: {exc}") from exc
        finally:
            if sock is not None:
                await _closed(sock)


async def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket to the first address of `host` that answers within `timeout`.

    lapse opens the socket itself (instead of letting aiosmtplib do it) only to be able to tell
    when it is closed again; see `_closed`.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError | TimeoutError = OSError(f"no address found for {host!r}")
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


async def _closed(sock: socket.socket, limit: float = 2.0) -> None:
    """Wait (bounded) until asyncio has really closed the connection's socket.

    A TLS connection is closed only after the close_notify exchange with the server, a few loop
    iterations after the client gave up on it. A caller whose event loop ends right after
    `send` (asyncio.run per batch) would otherwise leave the socket open, unreported until
    garbage collection.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while sock.fileno() != -1 and loop.time() < deadline:
        await asyncio.sleep(0.005)
    sock.close()  # a no-op when asyncio closed it; else the connection is abandoned for good


def _refused(to: str, refusals: list[aiosmtplib.SMTPRecipientRefused]) -> DeliveryError:
    detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals) or to
    permanent = bool(refusals) and all(_permanent(r.code) for r in refusals)
    return DeliveryError(f"recipient refused: {detail}", permanent=permanent)


def _permanent(code: int) -> bool:
    return 500 <= code < 600


def _check_recipient(to: str) -> None:
    if not isinstance(to, str) or not _ADDRESS.match(to):
        raise ValueError(f"{to!r} is not an email address")
