"""Fixtures with real servers on loopback (see loopback_servers.py).

`smtp_server` yields host, port, `messages` (every accepted message as an
`email.message.EmailMessage`) and `sink` (to refuse chosen recipients or every DATA).
`webhook_server` yields the URL, the recorded requests, and knobs for scripted answers.
Both can move to tests/conftest.py together with loopback_servers.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopback_servers import (
    SmtpServer,
    WebhookServer,
    running_smtp_server,
    running_webhook_server,
)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 and a free port, for the duration of one test."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A real HTTP server on 127.0.0.1 recording POSTs, answering with scripted statuses."""
    with running_webhook_server() as server:
        yield server
