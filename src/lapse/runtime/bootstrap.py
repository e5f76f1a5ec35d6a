"""The one place that wires a lapse process together from its settings.

settings -> policy, clock, store (migrated if embedded), template renderer, channels, engine.
Nothing connects at import time; `build()` is called by the CLI, the API factory and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog

from lapse.core.model import Account, HostEffect, NoticeEffect
from lapse.errors import ConfigError, DeliveryError, LapseError
from lapse.notify.context import notice_context
from lapse.notify.email import SmtpSettings, SmtpTransport
from lapse.notify.templates import RenderedNotice, TemplateRenderer
from lapse.notify.webhooks import WebhookSender, effect_event_type, effect_payload, notice_payload
from lapse.policy import Policy, resolve_policy
from lapse.runtime.channels import DataHandler, InAppNotifications
from lapse.runtime.clock import AcceleratedClock, Clock, ManualClock, SystemClock
from lapse.runtime.dispatch import AnyChannel
from lapse.runtime.engine import Engine
from lapse.runtime.settings import Settings
from lapse.runtime.versions import PolicyApplied, load_stored
from lapse.runtime.worker import Loops
from lapse.store import default_sqlite_url, open_store
from lapse.store.base import OutboxItem, Store, key_digest
from lapse.store.migrate import migrate

log = structlog.get_logger("lapse")


class Renderer:
    """Renders a notice for one recipient with the deployment's templates."""

    def __init__(self, templates: TemplateRenderer, policy: Policy, clock: Clock, product: str):
        self.templates = templates
        self.policy = policy
        self.clock = clock
        self.product = product

    def context(self, notice: NoticeEffect, account: Account, recipient: str) -> dict[str, object]:
        """What the templates see for this notice and recipient, as of now."""
        return notice_context(
            notice,
            account=account,
            policy=self.policy,
            now=self.clock.now(),
            recipient=recipient,
            product=self.product,
        )

    def __call__(self, notice: NoticeEffect, account: Account, recipient: str) -> RenderedNotice:
        """Subject, text and HTML of the notice as of now."""
        return self.render(notice, self.context(notice, account, recipient))

    def render(self, notice: NoticeEffect, context: dict[str, object]) -> RenderedNotice:
        """Subject, text and HTML of the notice from its context."""
        try:
            return self.templates.render(notice.template, context, self.policy)
        except ConfigError as exc:
            # a broken override template: keep the notice (and its phase) waiting, visibly,
            # until the template is fixed; the row retries with backoff
            raise DeliveryError(f"template {notice.template!r} cannot be rendered: {exc}") from exc


class SmtpChannel:
    """Email notices through an SMTP server."""

    def __init__(self, transport: SmtpTransport, render: Renderer) -> None:
        self.transport = transport
        self.render = render

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """Render for the row's recipient and send; the idempotency key is the Message-ID."""
        notice = _notice(item)
        if account is None or item.recipient is None:
            raise DeliveryError("nobody to send this notice to", permanent=True)
        context = self.render.context(notice, account, item.recipient)
        rendered = self.render.render(notice, context)
        await self.transport.send(
            item.recipient,
            rendered,
            message_id=key_digest(item.idempotency_key),
            headers=notice_headers(notice, context),
            date=self.render.clock.now(),  # lapse's clock, like webhook timestamps
        )


def notice_headers(notice: NoticeEffect, context: Mapping[str, object]) -> dict[str, str]:
    """What a notice email says about itself, for mail filters and support tools: the account,
    the case, the notice key and template, and the deadline the message states (UTC; absent
    when the case has none)."""
    headers = {
        "X-Lapse-Account": notice.account_id,
        "X-Lapse-Case": notice.case_id,
        "X-Lapse-Notice": notice.key,
        "X-Lapse-Template": notice.template,
    }
    deadline = context.get("deadline")
    if isinstance(deadline, datetime):
        headers["X-Lapse-Deadline"] = deadline.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return headers


class LocalMailbox:
    """The embedded default without SMTP: the outbox row itself is the record (see the API)."""

    def __init__(self, render: Renderer) -> None:
        self.render = render

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """Render once (so a broken template fails here, visibly) and keep it in the outbox."""
        if account is None or item.recipient is None:
            raise DeliveryError("nobody to send this notice to", permanent=True)
        self.render(_notice(item), account, item.recipient)


class WebhookNotices:
    """Notices sent `via: [webhook]`: a signed `lapse.notice` event with the rendered text."""

    def __init__(self, sender: WebhookSender, render: Renderer, clock: Clock) -> None:
        self.sender = sender
        self.render = render
        self.clock = clock

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """POST the notice."""
        notice = _notice(item)
        recipient = item.recipient or (account.address if account else None) or ""
        context = self.render.context(notice, account, recipient) if account else None
        rendered = self.render(notice, account, recipient) if account is not None else None
        await self.sender.send(
            "lapse.notice",
            notice_payload(notice, recipient=recipient, context=context, rendered=rendered),
            message_id=item.idempotency_key,
            timestamp=self.clock.now(),
        )


class WebhookHost:
    """Host effects as signed `lapse.effect.<name>` events."""

    def __init__(self, sender: WebhookSender, policy: Policy, clock: Clock) -> None:
        self.sender = sender
        self.policy = policy
        self.clock = clock

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """POST the effect."""
        effect = item.effect
        if not isinstance(effect, HostEffect):
            raise DeliveryError(f"outbox row {item.id} is not a host effect", permanent=True)
        await self.sender.send(
            effect_event_type(effect),
            effect_payload(effect, policy_version=self.policy.version),
            message_id=item.idempotency_key,
            timestamp=self.clock.now(),
        )


class LocalHost:
    """No host endpoint configured: host effects are logged and kept in the outbox."""

    async def deliver(self, item: OutboxItem, account: Account | None) -> None:
        """Log the effect."""
        effect = item.effect
        if isinstance(effect, HostEffect):
            log.info("host effect", account=effect.account_id, effect=effect.name)


def _notice(item: OutboxItem) -> NoticeEffect:
    if not isinstance(item.effect, NoticeEffect):
        raise DeliveryError(f"outbox row {item.id} is not a notice", permanent=True)
    return item.effect


@dataclass
class Services:
    """A wired lapse process."""

    settings: Settings
    policy: Policy
    clock: Clock
    store: Store
    database_url: str
    templates: TemplateRenderer
    render: Renderer
    engine: Engine
    adoption: PolicyApplied | None = None  # what starting with the policy did (see build)

    def close(self) -> None:
        """Release the database connections (lapse's and the data connectors')."""
        self.engine.data.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def loops(self) -> Loops:
        """The scheduler and dispatcher loops for this engine."""
        return Loops(
            self.engine,
            poll=self.settings.poll_seconds,
            retention=self.settings.outbox_retention_duration,
            event_retention=self.settings.event_retention_duration,
            prune_every=self.settings.prune_seconds,
        )


PolicyFrom = Literal["settings", "store"]


def build(
    settings: Settings,
    *,
    data: DataHandler | None = None,
    clock: Clock | None = None,
    migrate_embedded: bool = True,
    policy_from: PolicyFrom = "settings",
    adopt: bool = True,
    started_by: str = "lapse",
) -> Services:
    """Build every component from the settings; ConfigError says what is wrong and where.

    The policy is LAPSE_POLICY (`policy_from="settings"`), or the store's active policy when it
    has one (`"store"`: workers, previews). With `adopt`, the policy is then compared with the
    store's active one (`Engine.adopt_policy`): recorded on a first start, applied automatically
    when no open case would move, refused (PolicyMismatch, a ConfigError) otherwise.
    """
    policy = resolve_policy(settings.policy) if policy_from == "settings" else None
    if clock is None:
        if settings.clock == "manual":
            clock = ManualClock(settings.clock_start or datetime.now(UTC))
        elif settings.clock == "accelerated":
            clock = AcceleratedClock(
                settings.clock_start or datetime.now(UTC),
                settings.clock_rate,
                origin=settings.clock_origin,
            )
        else:
            clock = SystemClock()
    url = settings.database_url or default_sqlite_url()
    if migrate_embedded and url.startswith("sqlite"):
        migrate(url)  # the embedded default needs zero setup; PostgreSQL uses `lapse migrate`
    # migrated above if embedded; never implicitly otherwise (concurrent starts would race)
    store = open_store(
        url, clock=clock.now, migrate=False, lease=timedelta(seconds=settings.lease_seconds)
    )
    if policy is None:
        try:
            active = store.active_policy()
            policy = load_stored(active) if active is not None else resolve_policy(settings.policy)
        except LapseError:
            _close(store)
            raise
    templates = TemplateRenderer(
        settings.templates_dir,
        product=settings.product,
        links={
            "login_url": settings.login_url,
            "billing_url": settings.billing_url,
            "support_contact": settings.support_contact,
            "sales_contact": settings.sales_contact,
        },
    )
    problems = templates.problems(policy)
    if problems:
        _close(store)
        raise ConfigError("notice templates:\n  " + "\n  ".join(problems))
    render = Renderer(templates, policy, clock, settings.product)
    channels: dict[str, AnyChannel] = {}
    if settings.smtp_host:
        smtp = SmtpTransport(
            SmtpSettings(
                host=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password,
                starttls=settings.smtp_starttls or None,
                use_tls=settings.smtp_tls,
                timeout=settings.smtp_timeout,
                sender_address=settings.mail_from,
                sender_name=settings.mail_from_name,
            )
        )
        channels["email"] = SmtpChannel(smtp, render)
    else:
        channels["email"] = LocalMailbox(render)
    channels["in_app"] = InAppNotifications(
        render=lambda notice, account: _subject_and_text(render, notice, account)
    )
    if settings.notice_webhook_url and settings.webhook_secret:
        channels["webhook"] = WebhookNotices(
            WebhookSender(settings.notice_webhook_url, settings.webhook_secret), render, clock
        )
    if settings.host_webhook_url and settings.webhook_secret:
        channels["host"] = WebhookHost(
            WebhookSender(settings.host_webhook_url, settings.webhook_secret), policy, clock
        )
    else:
        channels["host"] = LocalHost()
    if data is None and settings.connectors is not None:
        try:
            data = _connectors(settings, policy)
        except ConfigError:
            _close(store)
            raise
    engine = Engine(
        policy,
        store=store,
        clock=clock,
        channels=channels,
        data=data or DataHandler(),
        worker_id=settings.worker_id,
        batch_size=settings.batch_size,
        max_attempts=settings.max_attempts,
        lease=timedelta(seconds=settings.lease_seconds),
        deliver_inline=False,
        deletions_per_minute=settings.deletions_per_minute,
        event_retention=settings.event_retention_duration,
    )
    services = Services(
        settings=settings,
        policy=policy,
        clock=clock,
        store=store,
        database_url=url,
        templates=templates,
        render=render,
        engine=engine,
    )
    _follow_policy(services, channels)
    if adopt:
        try:
            services.adoption = engine.adopt_policy(
                by=f"{started_by} {engine.worker_id}",
                shown=settings.policy,
                follow=policy_from == "store",
            )
        except LapseError:
            services.close()
            raise
    return services


def _follow_policy(services: Services, channels: Mapping[str, AnyChannel]) -> None:
    """What holds the policy besides the engine follows it when it changes (a policy applied
    by another process); a policy whose notice templates are missing is refused first."""
    templates = services.templates

    def check(policy: Policy) -> None:
        problems = templates.problems(policy)
        if problems:
            raise ConfigError(
                f"policy {policy.name} v{policy.version}: notice templates:\n  "
                + "\n  ".join(problems)
            )

    def follow(policy: Policy) -> None:
        services.policy = policy
        services.render.policy = policy
        for channel in channels.values():
            if isinstance(channel, WebhookHost):
                channel.policy = policy

    services.engine.policy_versions.checks.append(check)
    services.engine.policy_versions.followers.append(follow)


def _close(store: Store) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _connectors(settings: Settings, policy: Policy) -> DataHandler:
    """The data handler for LAPSE_CONNECTORS, checked against the host's databases."""
    from lapse.data.handler import ConnectorDataHandler

    assert settings.connectors is not None
    handler = ConnectorDataHandler.from_file(settings.connectors)
    try:
        handler.check(policy)
    except ConfigError as exc:
        handler.close()
        raise ConfigError(f"LAPSE_CONNECTORS={settings.connectors}: {exc}") from None
    return handler


def _subject_and_text(render: Renderer, notice: NoticeEffect, account: Account) -> tuple[str, str]:
    rendered = render(notice, account, account.address or "")
    return rendered.subject, rendered.text
