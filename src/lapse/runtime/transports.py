"""Where effects go: the interfaces, and the in-memory implementations (the local outbox).

Real transports (SMTP, signed webhooks, data connectors) implement the same interfaces.
A transport raises `DeliveryError` to refuse; the dispatcher retries with backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from lapse.core.model import DeleteEffect, HostEffect, NoticeEffect, PurgeEffect
from lapse.errors import DeliveryError

__all__ = ["DeliveryError"]


class NoticeTransport(Protocol):
    """Delivers notices to people (email, webhook, in-app)."""

    def send(
        self, notice: NoticeEffect, recipients: tuple[str, ...], key: str, at: datetime
    ) -> None:
        """Deliver or raise DeliveryError; `key` is the idempotency key."""
        ...


class HostTransport(Protocol):
    """Delivers named effects to the host product."""

    def send(self, effect: HostEffect, key: str, at: datetime) -> None:
        """Deliver or raise DeliveryError."""
        ...


class DataHandler(Protocol):
    """Carries out deletions and purges of the host's data; returns a receipt."""

    def delete(self, effect: DeleteEffect, at: datetime) -> Mapping[str, object]:
        """Delete every registered row of the account; return counts per store."""
        ...

    def purge(self, effect: PurgeEffect, at: datetime) -> Mapping[str, object]:
        """Delete the named categories of the account; return counts."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SentNotice:
    """One notice as delivered to one recipient by the in-memory outbox."""

    at: datetime
    account_id: str
    case_id: str
    flow: str
    phase: str
    key: str
    template: str
    recipient: str
    via: tuple[str, ...]
    deadline: datetime | None
    idempotency_key: str


@dataclass
class MemoryOutbox:
    """Records notices instead of sending them; can be switched off to simulate an outage."""

    sent: list[SentNotice] = field(default_factory=list)
    down: bool = False
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def send(
        self, notice: NoticeEffect, recipients: tuple[str, ...], key: str, at: datetime
    ) -> None:
        """Record one SentNotice per recipient (once per idempotency key and recipient)."""
        if self.down:
            raise DeliveryError("the outbox is down")
        for recipient in recipients:
            if (key, recipient) in self._seen:
                continue
            self._seen.add((key, recipient))
            self.sent.append(
                SentNotice(
                    at=at,
                    account_id=notice.account_id,
                    case_id=notice.case_id,
                    flow=notice.flow,
                    phase=notice.phase,
                    key=notice.key,
                    template=notice.template,
                    recipient=recipient,
                    via=notice.via,
                    deadline=notice.deadline,
                    idempotency_key=key,
                )
            )

    def for_account(self, account_id: str) -> list[SentNotice]:
        """Notices sent for one account, in order."""
        return [n for n in self.sent if n.account_id == account_id]


@dataclass
class MemoryHost:
    """Records host effects instead of calling the host."""

    calls: list[tuple[datetime, HostEffect]] = field(default_factory=list)

    def send(self, effect: HostEffect, key: str, at: datetime) -> None:
        """Record the call."""
        self.calls.append((at, effect))


@dataclass
class MemoryData:
    """Records deletions and purges; the host's data lives elsewhere (see data connectors)."""

    deleted: list[tuple[datetime, DeleteEffect]] = field(default_factory=list)
    purged: list[tuple[datetime, PurgeEffect]] = field(default_factory=list)

    def delete(self, effect: DeleteEffect, at: datetime) -> Mapping[str, object]:
        """Record the deletion."""
        self.deleted.append((at, effect))
        return {"stores": {}}

    def purge(self, effect: PurgeEffect, at: datetime) -> Mapping[str, object]:
        """Record the purge."""
        self.purged.append((at, effect))
        return {"categories": list(effect.categories)}
