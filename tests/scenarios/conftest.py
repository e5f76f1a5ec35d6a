"""Scenario fixtures: one lapse per preset on a controlled clock, and typical accounts.

Every scenario starts on Friday 31 January 2025, 09:00 UTC (a month end, so calendar months get
clamped: one month after 31 January is 28 February). Time only moves when a test moves it:
`engine.run_until(...)` processes every due time on the way, like a scheduler that never falls
behind; `clock.advance(...)` followed by `engine.run_due()` is a scheduler that was down.

Every test runs twice, with the same assertions (the fixtures are parametrized):

- `engine`: an in-process `Engine` on a `ManualClock`, notices and host effects recorded in
  memory;
- `http`: a real `lapse serve` process on a manual clock, spoken to over real HTTP, its emails
  delivered to a real SMTP server, its host effects (signed webhooks) to a real receiver and its
  deletions and purges to the host's data through a webhook data connector, all on loopback;
  `scenario.engine` is then an `HttpEngine` answering with the same objects, and what was sent
  is read from what those servers received (see http_engine.py). One server per preset serves
  the session; each test starts it over (`POST /v1/clock/reset`).

The outages are real over HTTP too: `engine.notices.down = True` makes the SMTP server refuse
every message, and `slow_deletions()` makes the host refuse lapse's deletion requests. Two
helpers exist for what differs by nature: `outage_error` (the error a notice fails with during an
email outage) and `email_text` (an email's plain text as it left).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from lapse.core.model import CaseStatus, DeleteEffect
from lapse.errors import DeliveryError
from lapse.notify.context import notice_context
from lapse.notify.templates import TemplateRenderer
from lapse.policy import load_preset
from lapse.runtime.channels import MemoryData
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from loopback_servers import (
    SmtpServer,
    WebhookServer,
    running_smtp_server,
    running_webhook_server,
)

from .http_engine import SMTP_DOWN, DataHost, HttpClock, HttpEngine, LapseServer

#: the fixed start of every scenario
START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    """A UTC moment (09:00 unless told otherwise: every scenario runs at 09:00)."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@dataclass
class DeletionQueue(MemoryData):
    """A data handler whose deletions lag: it refuses them (the engine retries) while `busy`."""

    busy: bool = True

    def delete(self, effect: DeleteEffect, at: datetime) -> Mapping[str, object]:
        if self.busy:
            raise DeliveryError("the deletion queue is busy")
        return super().delete(effect, at)


class Scenario:
    """An engine running one preset on a manual clock, with short questions about an account:
    in-process, or (given an `HttpEngine`) a `lapse serve` process over HTTP."""

    preset = ""

    def __init__(self, http: HttpEngine | None = None) -> None:
        self.policy = load_preset(self.preset)
        self.engine: Engine | HttpEngine
        self.clock: ManualClock | HttpClock
        if http is None:
            self.clock = ManualClock(START)
            self.engine = Engine(self.policy, clock=self.clock)
        else:
            self.engine, self.clock = http, http.clock

    @property
    def over_http(self) -> bool:
        return isinstance(self.engine, HttpEngine)

    def slow_deletions(self) -> DeletionQueue | DataHost:
        """From now on deletions wait in a queue until `queue.busy = False` (over HTTP: the
        host refuses lapse's deletion requests, which lapse retries)."""
        if isinstance(self.engine, HttpEngine):
            self.engine.server.data_host.busy = True
            return self.engine.server.data_host
        queue = DeletionQueue()
        self.engine.data = queue
        return queue

    @property
    def now(self) -> datetime:
        return self.clock.now()

    # --- what lapse sent -------------------------------------------------------------------

    def sent(self, account_id: str, template: str | None = None) -> list[tuple[datetime, str, str]]:
        """(when, template, recipient) of every notice delivered for the account, in order."""
        return [
            (n.at, n.template, n.recipient)
            for n in self.engine.notices.for_account(account_id)
            if template is None or n.template == template
        ]

    def recipients(self, account_id: str, template: str) -> list[str]:
        """Who received `template` (sorted)."""
        return sorted(r for _, _, r in self.sent(account_id, template))

    def email_text(self, account_id: str, template: str, recipient: str) -> str:
        """The plain text of the email of `template` to `recipient`, as it left: over HTTP the
        one the SMTP server received; in-process rendered as `lapse serve` renders it, with the
        default templates, as of the moment its outbox row was delivered."""
        if isinstance(self.engine, HttpEngine):
            return self.engine.notices.text(account_id, template, recipient)
        (item,) = [
            i
            for i in self.engine.store.outbox(account_id=account_id, status="delivered")
            if getattr(i.effect, "template", "") == template and i.recipient == recipient
        ]
        assert item.delivered_at is not None
        context = notice_context(
            item.effect,  # type: ignore[arg-type]
            account=self.engine.account(account_id),
            policy=self.policy,
            now=item.delivered_at,
            recipient=recipient,
        )
        return TemplateRenderer().render(template, context).text

    @property
    def outage_error(self) -> str:
        """Why a notice fails while `engine.notices.down`: the in-memory outbox is down, or the
        SMTP server refuses every message."""
        return f"smtp 127.0.0.1: {SMTP_DOWN}" if self.over_http else "the outbox is down"

    def host(self, account_id: str) -> list[tuple[datetime, str, str]]:
        """(when, effect name, trigger) of every host effect delivered for the account."""
        return [
            (at, effect.name, effect.trigger)
            for at, effect in self.engine.host.calls
            if effect.account_id == account_id
        ]

    def deletions(self, account_id: str) -> list[datetime]:
        """When the account's data was deleted (at most once)."""
        return [at for at, e in self.engine.data.deleted if e.account_id == account_id]

    def purges(self, account_id: str) -> list[tuple[datetime, tuple[str, ...]]]:
        """(when, categories) of every purge carried out on the account."""
        return [
            (at, e.categories) for at, e in self.engine.data.purged if e.account_id == account_id
        ]

    # --- what the account may do -----------------------------------------------------------

    def allowed(self, account_id: str, action: str) -> bool:
        return self.engine.check(account_id, action).allowed

    def denied_actions(self, account_id: str) -> set[str]:
        """Every action of the policy the account may not do right now."""
        return {a for a in self.policy.actions if not self.allowed(account_id, a)}

    def state(self, account_id: str) -> str:
        return self.engine.status(account_id).state

    def case(self, account_id: str, flow: str) -> CaseStatus | None:
        """The account's open case of `flow`, as status shows it."""
        for case in self.engine.status(account_id).cases:
            if case.flow == flow:
                return case
        return None

    def open_flows(self, account_id: str) -> list[str]:
        return sorted(c.flow for c in self.engine.status(account_id).cases)

    def audit_kinds(self, account_id: str) -> list[str]:
        return [r.entry.kind for r in self.engine.store.audit(account_id=account_id, limit=100_000)]


class Flexmail(Scenario):
    """inactivity-cleanup: a customer with two admins and a plain member."""

    preset = "inactivity-cleanup"
    ADMINS = ("ann@acme.example", "bob@acme.example")
    MEMBER = "carl@acme.example"
    ADDRESS = "billing@acme.example"

    def customer(self, account_id: str = "acme", *, address: str | None = None) -> str:
        """A standard account that signs up now (START unless the clock moved)."""
        self.engine.add_account(
            account_id,
            kind="standard",
            address=address or self.ADDRESS,
            members=[(a, "admin") for a in self.ADMINS] + [(self.MEMBER, "member")],
        )
        return account_id

    def test_account(self, account_id: str = "sandbox", *, address: str | None = None) -> str:
        """A Flexmail test account that signs up now."""
        self.engine.add_account(
            account_id,
            kind="test",
            address=address or "dev@acme.example",
            members=[(self.ADMINS[0], "admin")],
        )
        return account_id


class StartMail(Scenario):
    """staged-expiry: a personal mailbox whose paid year ends on a given date."""

    preset = "staged-expiry"
    ADDRESS = "jane@startmail.example"

    def mailbox(
        self,
        account_id: str = "jane",
        *,
        expires_at: datetime,
        kind: str = "personal",
        address: str | None = None,
        members: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """An account (signed up a year before START) whose subscription ends at `expires_at`."""
        self.engine.add_account(
            account_id,
            kind=kind,
            created_at=utc(2024, 1, 31),
            address=address or self.ADDRESS,
            members=members,
        )
        self.engine.set_fact(account_id, "subscription_expires_at", expires_at)
        return account_id

    def renew(self, account_id: str, until: datetime) -> None:
        """The holder pays: the subscription now runs until `until`."""
        self.engine.set_fact(account_id, "subscription_expires_at", until)


class SendX(Scenario):
    """account-locks: a paying team within its limits, or a free trial."""

    preset = "account-locks"
    ADMINS = ("owner@shop.example", "ops@shop.example")
    MEMBER = "writer@shop.example"
    ADDRESS = "owner@shop.example"

    def team(self, account_id: str = "shop", *, contacts: int = 800, limit: int = 1000) -> str:
        """A paying (standard) account: two admins, one member, within its plan, 1% bounces."""
        self.engine.add_account(
            account_id,
            kind="standard",
            created_at=utc(2024, 6, 1),
            address=self.ADDRESS,
            members=[(a, "admin") for a in self.ADMINS] + [(self.MEMBER, "member")],
        )
        self.engine.set_facts(
            account_id,
            facts={
                "contacts": contacts,
                "plan_contact_limit": limit,
                "bounce_rate": 0.01,
                "subscription_active": True,
            },
        )
        return account_id

    def trial(self, account_id: str = "tryout", *, ends_at: datetime) -> str:
        """A free trial account whose trial ends at `ends_at`."""
        self.engine.add_account(
            account_id,
            kind="trial",
            created_at=utc(2025, 1, 17),
            address="maker@tryout.example",
            members=[("maker@tryout.example", "admin")],
        )
        self.engine.set_fact(account_id, "trial_ends_at", ends_at)
        return account_id


# --- fixtures: each scenario in-process and over HTTP ------------------------------------------

VARIANTS = ["engine", "http"]
S = TypeVar("S", bound=Scenario)


@pytest.fixture(scope="session")
def scenario_smtp() -> Iterator[SmtpServer]:
    """The SMTP server the lapse processes of the session send their emails to."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
def scenario_webhooks() -> Iterator[WebhookServer]:
    """The receiver the lapse processes of the session send their host effects to."""
    with running_webhook_server() as server:
        yield server


@pytest.fixture(scope="session")
def scenario_data() -> Iterator[DataHost]:
    """The host's data the lapse processes of the session delete through a webhook connector."""
    with running_webhook_server() as server:
        yield DataHost(server)


@pytest.fixture(scope="session")
def lapse_servers(
    tmp_path_factory: pytest.TempPathFactory,
    scenario_smtp: SmtpServer,
    scenario_webhooks: WebhookServer,
    scenario_data: DataHost,
) -> Iterator[Callable[[str], LapseServer]]:
    """`lapse_servers(preset)`: the session's `lapse serve` process for a preset (started on
    first use, stopped at the end of the session)."""
    servers: dict[str, LapseServer] = {}
    directory: Path = tmp_path_factory.mktemp("lapse-serve")

    def server(preset: str) -> LapseServer:
        if preset not in servers:
            servers[preset] = LapseServer(
                preset,
                directory=directory,
                start=START,
                smtp=scenario_smtp,
                webhooks=scenario_webhooks,
                data_host=scenario_data,
            )
        return servers[preset]

    yield server
    for running in servers.values():
        running.stop()


def _scenario(kind: type[S], request: pytest.FixtureRequest) -> S:
    if request.param == "engine":
        return kind()
    server: LapseServer = request.getfixturevalue("lapse_servers")(kind.preset)
    sink = server.smtp.sink

    def mail_works_again() -> None:
        sink.refuse_mail = sink.refuse_data = None
        sink.refuse.clear()

    request.addfinalizer(mail_works_again)
    return kind(HttpEngine(server, load_preset(kind.preset)))


@pytest.fixture(params=VARIANTS)
def flexmail(request: pytest.FixtureRequest) -> Flexmail:
    """The inactivity-cleanup preset at START: in-process, then over HTTP."""
    return _scenario(Flexmail, request)


@pytest.fixture(params=VARIANTS)
def startmail(request: pytest.FixtureRequest) -> StartMail:
    """The staged-expiry preset at START: in-process, then over HTTP."""
    return _scenario(StartMail, request)


@pytest.fixture(params=VARIANTS)
def sendx(request: pytest.FixtureRequest) -> SendX:
    """The account-locks preset at START: in-process, then over HTTP."""
    return _scenario(SendX, request)
