"""In-process channels: the local outbox, recorded host effects, and in-app notifications.

These are what the embedded default and the pure-Python `Engine` use. Real transports (SMTP,
signed webhooks) are adapted to the same `Channel` interface in `lapse.runtime.bootstrap`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lapse.core.model import Account, DeleteEffect, HostEffect, NoticeEffect, PurgeEffect
from lapse.errors import DeliveryError
from lapse.policy.model import Policy
from lapse.store.base import NotificationDraft, OutboxItem, Store


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
    channel: str
    deadline: datetime | None
    idempotency_key: str


@dataclass
class MemoryOutbox:
    """Records notices instead of sending them; `down = True` simulates an outage."""

    clock: Callable[[], datetime] | None = None
    sent: list[SentNotice] = field(default_factory=list)
    down: bool = False
    _seen: set[str] = field(default_factory=set)

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """Record the notice once per idempotency key (receivers drop duplicates)."""
        if self.down:
            raise DeliveryError("the outbox is down")
        effect = item.effect
        assert isinstance(effect, NoticeEffect)
        if item.idempotency_key in self._seen:
            return
        self._seen.add(item.idempotency_key)
        self.sent.append(
            SentNotice(
                at=self.clock() if self.clock else effect.at,
                account_id=effect.account_id,
                case_id=effect.case_id,
                flow=effect.flow,
                phase=effect.phase,
                key=effect.key,
                template=effect.template,
                recipient=item.recipient or "",
                channel=item.channel,
                deadline=effect.deadline,
                idempotency_key=item.idempotency_key,
            )
        )

    def for_account(self, account_id: str) -> list[SentNotice]:
        """Notices sent for one account, in order."""
        return [n for n in self.sent if n.account_id == account_id]


@dataclass
class MemoryHost:
    """Records host effects instead of calling the host."""

    calls: list[tuple[datetime, HostEffect]] = field(default_factory=list)
    down: bool = False

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """Record the call."""
        if self.down:
            raise DeliveryError("the host is down")
        effect = item.effect
        assert isinstance(effect, HostEffect)
        self.calls.append((effect.at, effect))

    def names(self, account_id: str) -> list[str]:
        """The effect names sent for one account, in order."""
        return [e.name for _, e in self.calls if e.account_id == account_id]


class InAppNotifications:
    """Delivers `in_app` notices by storing them where the API reads them.

    A `LocalChannel`: it only renders; the dispatcher stores the notification in the same
    transaction that marks its outbox row delivered, so a row delivered again after a crash or
    a lost claim never leaves a second notification.
    """

    def __init__(
        self, render: Callable[[NoticeEffect, Account], tuple[str, str]] | None = None
    ) -> None:
        self.render = render

    def notification(self, item: OutboxItem, account: Account | None) -> NotificationDraft:
        """The rendered notice for the account."""
        effect = item.effect
        assert isinstance(effect, NoticeEffect)
        if account is None:
            raise DeliveryError("the account no longer exists", permanent=True)
        if self.render is not None:
            subject, body = self.render(effect, account)
        else:
            subject, body = effect.template, effect.reason
        return NotificationDraft(
            account_id=effect.account_id,
            case_id=effect.case_id,
            template=effect.template,
            subject=subject,
            body=body,
            at=effect.at,
        )


class DataHandler:
    """Carries out deletions and purges of the host's data; returns the data part of the
    receipt (`locations`: rows removed per connector and location, `started_at`, `verified`).

    The base class removes nothing outside lapse: lapse's own rows are handled by the engine.
    `lapse.data.ConnectorDataHandler` does the work through SQL, webhook and callable connectors.
    """

    def attach(
        self,
        *,
        store: Store,
        now: Callable[[], datetime],
        policy: Policy,
        worker: str,
        lease: timedelta,
    ) -> None:
        """Called by the engine it serves (the base class needs nothing)."""

    def delete(self, effect: DeleteEffect, at: datetime) -> Mapping[str, object]:
        """Delete every registered row of the account."""
        return {"locations": [], "verified": True}

    def purge(self, effect: PurgeEffect, at: datetime) -> Mapping[str, object]:
        """Delete the named categories of the account."""
        return {"locations": [], "verified": True}

    def close(self) -> None:
        """Release connections (the base class holds none)."""


@dataclass
class MemoryData(DataHandler):
    """Records deletions and purges (for tests and the pure-Python engine)."""

    deleted: list[tuple[datetime, DeleteEffect]] = field(default_factory=list)
    purged: list[tuple[datetime, PurgeEffect]] = field(default_factory=list)

    def delete(self, effect: DeleteEffect, at: datetime) -> Mapping[str, object]:
        """Record the deletion."""
        self.deleted.append((at, effect))
        return super().delete(effect, at)

    def purge(self, effect: PurgeEffect, at: datetime) -> Mapping[str, object]:
        """Record the purge."""
        self.purged.append((at, effect))
        return super().purge(effect, at)
