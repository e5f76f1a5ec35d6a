"""The demo host's rows, generated from the cast: deterministic for a seed and a start time.

What the rows say agrees with what lapse is told: the last campaign's `sent_at` is the
`campaign_sent` signal, the API key's `last_used_at` is `api_request`, the users' logins are
`login`, the contacts not archived are the `contacts` fact, the subscription columns are the
subscription facts. Ids are assigned here, so foreign keys are known without reading back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy import Engine, Table

from lapse.demo import host
from lapse.demo.cast import Cast, Plan
from lapse.demo.names import Names

Row = dict[str, Any]

LIST_NAMES = ["Newsletter", "Customers", "Leads", "Webinar sign-ups", "VIP", "Partners", "Events"]
FORM_FIELDS = [["email"], ["email", "first_name"], ["email", "first_name", "last_name", "company"]]
TRIGGERS = ["subscribed", "birthday", "abandoned_cart", "tag_added", "date_reached"]
FOLDERS = ["inbox", "inbox", "inbox", "archive", "sent", "spam"]
SETTINGS = {
    "signature": "-- {name}",
    "language": "en",
    "spam_filter": "standard",
    "forwarding": "off",
}
DOMAINS = ["mail", "post", "inbox", "web", "net", "online", "box", "office"]


class _Ids:
    """One id sequence per table."""

    def __init__(self) -> None:
        self._seq: dict[str, Iterator[int]] = {}

    def next(self, table: str) -> int:
        seq = self._seq.get(table)
        if seq is None:
            seq = self._seq[table] = count(1)
        return next(seq)


class Generator:
    """Turns plans into host rows."""

    def __init__(self, cast: Cast, seed: int) -> None:
        self.cast = cast
        self.now = cast.now
        self.names = Names(seed + 1)
        self.random = self.names.random
        self.ids = _Ids()
        self.rows: dict[str, list[Row]] = {name: [] for name in host.metadata.tables}

    def add(self, table: str, **row: Any) -> Row:
        self.rows[table].append(row)
        return row

    def between(self, start: datetime, end: datetime) -> datetime:
        """A moment between two others (`start` if they are out of order)."""
        span = (end - start).total_seconds()
        return start + timedelta(seconds=self.random.uniform(0, span)) if span > 0 else start

    def all(self) -> dict[str, list[Row]]:
        """Every table's rows for every account."""
        for plan in self.cast.accounts:
            self.account(plan)
        return self.rows

    def account(self, plan: Plan) -> None:
        self.add(
            "accounts",
            id=plan.id,
            name=plan.name,
            kind=plan.kind,
            plan=plan.plan,
            country=plan.country,
            owner_email=plan.address,
            created_at=plan.created_at,
            subscription_status=self._status(plan),
            subscription_expires_at=plan.subscription_expires_at,
            trial_ends_at=plan.trial_ends_at,
            contact_limit=plan.contact_limit,
            bounce_rate=plan.bounce_rate,
        )
        user_ids = []
        for user in plan.users:
            uid = self.ids.next("users")
            user_ids.append(uid)
            self.add(
                "users",
                id=uid,
                account_id=plan.id,
                email=user.email,
                name=user.name,
                role=user.role,
                created_at=plan.created_at,
                last_login_at=user.last_login_at,
            )
        if plan.plan in ("starter", "growth", "pro", "personal", "beta"):
            self.payment_method(plan)
        if plan.kind in ("personal", "beta"):
            self.mailbox(plan)
        else:
            self.marketing(plan, user_ids[0])

    def _status(self, plan: Plan) -> str:
        if plan.subscription_active:
            return "active"
        if plan.plan in ("starter", "growth", "pro", "personal", "beta"):
            return "past_due" if plan.kind == "standard" else "expired"
        return "none"

    def payment_method(self, plan: Plan) -> None:
        brand = self.names.pick(["visa", "mastercard", "amex", "sepa"])
        expires = self.now + timedelta(days=self.random.randint(-60, 1200))
        self.add(
            "payment_methods",
            id=self.ids.next("payment_methods"),
            account_id=plan.id,
            brand=brand,
            last4=f"{self.random.randint(0, 9999):04d}",
            exp_month=expires.month,
            exp_year=expires.year,
            holder=plan.users[0].name,
            is_default=True,
        )

    def mailbox(self, plan: Plan) -> None:
        end = min(self.now, plan.subscription_expires_at or self.now)
        for _ in range(self.random.randint(15, 45)):
            first, last = self.names.person()
            self.add(
                "messages",
                id=self.ids.next("messages"),
                account_id=plan.id,
                folder=self.names.pick(FOLDERS),
                sender=f"{first}.{last}@{self.names.pick(DOMAINS)}.example".lower(),
                subject=self.names.subject(),
                received_at=self.between(plan.created_at, end),
                size_bytes=self.random.randint(2_000, 900_000),
            )
        self.contacts(plan, [])
        for name, value in SETTINGS.items():
            self.add(
                "mail_settings", account_id=plan.id, name=name, value=value.format(name=plan.name)
            )

    def contacts(self, plan: Plan, list_ids: list[int]) -> list[int]:
        """The account's contacts (those not archived number `plan.contacts`)."""
        ids = []
        for index in range(plan.contacts):
            first, last = self.names.person()
            cid = self.ids.next("contacts")
            roll = self.random.random()
            status = "subscribed" if roll > 0.08 else "unsubscribed" if roll > 0.03 else "bounced"
            self.add(
                "contacts",
                id=cid,
                account_id=plan.id,
                email=f"{first}.{last}{index}@{self.names.pick(DOMAINS)}.example".lower(),
                first_name=first,
                last_name=last,
                status=status,
                created_at=self.between(plan.created_at, self.now),
            )
            ids.append(cid)
            if list_ids:
                for list_id in self.random.sample(list_ids, k=min(len(list_ids), 1 + (roll < 0.4))):
                    self.add(
                        "list_memberships", account_id=plan.id, list_id=list_id, contact_id=cid
                    )
        return ids

    def marketing(self, plan: Plan, owner_id: int) -> None:
        lists = []
        for name in self.random.sample(LIST_NAMES, k=self.random.randint(1, 3)):
            list_id = self.ids.next("contact_lists")
            lists.append(list_id)
            self.add(
                "contact_lists",
                id=list_id,
                account_id=plan.id,
                name=name,
                created_at=plan.created_at,
            )
        contact_ids = self.contacts(plan, lists)
        template_ids = []
        for _ in range(self.random.randint(1, 4)):
            template_id = self.ids.next("templates")
            template_ids.append(template_id)
            subject = self.names.subject()
            self.add(
                "templates",
                id=template_id,
                account_id=plan.id,
                name=subject[:40],
                subject=subject,
                body_html=f"<h1>{subject}</h1><p>{self.names.pick(self.names.buzz)}</p>",
                created_at=plan.created_at,
            )
        self.campaigns(plan, lists, template_ids, contact_ids)
        if plan.last_api_at is not None:
            self.api_key(plan, owner_id, plan.last_api_at)
        if plan.kind == "test":
            return
        form_ids = []
        for _ in range(self.random.randint(0, 2)):
            form_id = self.ids.next("forms")
            form_ids.append(form_id)
            self.add(
                "forms",
                id=form_id,
                account_id=plan.id,
                list_id=self.random.choice(lists),
                name=f"{self.names.word().capitalize()} sign-up",
                fields=json.dumps(self.random.choice(FORM_FIELDS)),
                active=True,
            )
        for _ in range(self.random.randint(0, 2)):
            title = self.names.subject()
            self.add(
                "landing_pages",
                id=self.ids.next("landing_pages"),
                account_id=plan.id,
                form_id=self.random.choice(form_ids) if form_ids else None,
                slug="-".join(title.lower().split()[:4]),
                title=title,
                published=self.random.random() < 0.7,
            )
        if plan.subscription_active or plan.kind == "standard":
            self.add(
                "domain_settings",
                id=self.ids.next("domain_settings"),
                account_id=plan.id,
                domain=plan.address.split("@")[1],
                spf_ok=self.random.random() < 0.9,
                dkim_ok=self.random.random() < 0.85,
                dmarc_policy=self.names.pick(["none", "quarantine", "reject"]),
                verified_at=self.between(plan.created_at, self.now),
            )
        for _ in range(self.random.randint(0, 5)):
            width = self.random.choice([320, 600, 800, 1200])
            self.add(
                "images",
                id=self.ids.next("images"),
                account_id=plan.id,
                filename=f"{self.names.word()}-{self.random.randint(1, 99)}.png",
                bytes=self.random.randint(8_000, 2_000_000),
                width=width,
                height=width * self.random.choice([1, 2, 3]) // 3,
                uploaded_at=self.between(plan.created_at, self.now),
            )
        for _ in range(self.random.randint(0, 2)):
            self.add(
                "automations",
                id=self.ids.next("automations"),
                account_id=plan.id,
                list_id=self.random.choice(lists),
                template_id=self.random.choice(template_ids),
                name=f"{self.names.word().capitalize()} journey",
                trigger=self.names.pick(TRIGGERS),
                active=True,
                created_at=self.between(plan.created_at, self.now),
            )
        self.usage(plan)

    def campaigns(
        self, plan: Plan, lists: list[int], templates: list[int], contacts: list[int]
    ) -> None:
        sent_times: list[datetime] = []
        moment = plan.last_campaign_at
        for _ in range(plan.campaigns if moment is not None else 0):
            if moment is None or moment < plan.created_at:
                break
            sent_times.append(moment)
            moment = moment - timedelta(days=self.random.uniform(5, 35))
        drafts = plan.campaigns - len(sent_times)
        for sent_at in [*reversed(sent_times), *([None] * drafts)]:
            campaign_id = self.ids.next("campaigns")
            subject = self.names.subject()
            recipients = len(contacts) if sent_at is not None else 0
            self.add(
                "campaigns",
                id=campaign_id,
                account_id=plan.id,
                list_id=self.random.choice(lists),
                template_id=self.random.choice(templates),
                name=subject[:60],
                subject=subject,
                status="sent" if sent_at is not None else "draft",
                scheduled_at=sent_at,
                sent_at=sent_at,
                recipients=recipients,
            )
            if sent_at is None:
                continue
            created = sent_at - timedelta(days=self.random.uniform(1, 6))
            for event, at in (
                ("created", created),
                ("scheduled", created + timedelta(hours=2)),
                ("sending", sent_at - timedelta(minutes=1)),
                ("sent", sent_at),
            ):
                self.add(
                    "campaign_events",
                    id=self.ids.next("campaign_events"),
                    account_id=plan.id,
                    campaign_id=campaign_id,
                    event=event,
                    at=at,
                )
            self.actions(plan, campaign_id, sent_at, contacts, recipients)

    def actions(
        self, plan: Plan, campaign_id: int, sent_at: datetime, contacts: list[int], sent: int
    ) -> None:
        """Opens, clicks, unsubscribes and bounces of a sample of the recipients."""
        sample = self.random.sample(contacts, k=min(len(contacts), 20))
        tally = {"open": 0, "click": 0, "unsubscribe": 0, "bounce": 0}
        bounce = max(plan.bounce_rate, 0.005)
        for contact_id in sample:
            roll = self.random.random()
            if roll < bounce:
                found = ["bounce"]
            elif roll < 0.35:
                found = ["open", "click"] if roll < 0.1 else ["open"]
            elif roll < 0.36:
                found = ["open", "unsubscribe"]
            else:
                continue
            at = sent_at + timedelta(minutes=self.random.uniform(1, 4000))
            for action in found:
                tally[action] += 1
                self.add(
                    "contact_actions",
                    id=self.ids.next("contact_actions"),
                    account_id=plan.id,
                    contact_id=contact_id,
                    campaign_id=campaign_id,
                    action=action,
                    at=at,
                    url=f"https://{plan.address.split('@')[1]}/{self.names.word()}"
                    if action == "click"
                    else None,
                )
        scale = sent / len(sample) if sample else 0
        self.add(
            "reports",
            id=self.ids.next("reports"),
            account_id=plan.id,
            campaign_id=campaign_id,
            sent=sent,
            opens=round(tally["open"] * scale),
            clicks=round(tally["click"] * scale),
            bounces=round(tally["bounce"] * scale),
            unsubscribes=round(tally["unsubscribe"] * scale),
            generated_at=sent_at + timedelta(days=3),
        )

    def api_key(self, plan: Plan, user_id: int, last_used: datetime) -> None:
        secret = f"{plan.id}:{self.random.getrandbits(64):016x}"
        self.add(
            "api_keys",
            id=self.ids.next("api_keys"),
            account_id=plan.id,
            user_id=user_id,
            name=self.names.pick(["CRM sync", "Website", "Zapier", "Shop"]),
            prefix=hashlib.sha256(secret.encode()).hexdigest()[:8],
            secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
            created_at=self.between(plan.created_at, last_used),
            last_used_at=last_used,
        )

    def usage(self, plan: Plan) -> None:
        month = self.now.replace(day=1)
        for _ in range(6):
            month = (month - timedelta(days=1)).replace(day=1)
            if month < plan.created_at.replace(day=1):
                break
            self.add(
                "usage",
                id=self.ids.next("usage"),
                account_id=plan.id,
                month=f"{month:%Y-%m}",
                emails_sent=self.random.randint(0, 40) * max(plan.contacts, 1),
                api_calls=self.random.randint(0, 5000) if plan.last_api_at else 0,
            )


def insert(engine: Engine, rows: dict[str, list[Row]]) -> dict[str, int]:
    """Insert every table's rows, parents first, in one transaction; returns rows per table."""
    counts: dict[str, int] = {}
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite:
            # a new file being filled: durability comes with the final commit
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
        for table in host.metadata.sorted_tables:
            batch = rows.get(table.name, [])
            counts[table.name] = len(batch)
            if not batch:
                continue
            if not sqlite:
                conn.execute(_table(table.name).insert(), batch)
                continue
            # SQLite through the driver: SQLAlchemy's per-value processing costs more than the
            # insert itself; values are stored in the very format SQLAlchemy reads back
            names = [column.name for column in table.columns]
            statement = (
                f"INSERT INTO {table.name} ({', '.join(names)}) "
                f"VALUES ({', '.join('?' for _ in names)})"
            )
            conn.exec_driver_sql(
                statement, [tuple(_sqlite(row.get(name)) for name in names) for row in batch]
            )
    return counts


def _sqlite(value: Any) -> Any:
    if value.__class__ is datetime:
        # every time here is UTC: SQLAlchemy's format, "2025-01-31 09:00:00.000000"
        return f"{value.isoformat(' ', 'microseconds')[:26]}"
    return value


def _table(name: str) -> Table:
    return host.metadata.tables[name]


def generate(engine: Engine, cast: Cast, seed: int) -> dict[str, int]:
    """Create the host schema and fill it for the cast; returns rows per table."""
    host.create_host_schema(engine)
    return insert(engine, Generator(cast, seed).all())
