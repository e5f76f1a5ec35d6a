"""The demo host: the database of an email service that lapse looks after in `lapse demo`.

Marketing accounts (kinds standard, trial, test) keep contacts, lists, templates, campaigns,
reports, forms, landing pages, automations...; personal and beta accounts are mailboxes. Every
table carries the account key `account_id` and belongs to one data category (the names the
policy purges), so lapse can delete an account's rows everywhere, children before parents.
Foreign keys are enforced (SQLite needs `PRAGMA foreign_keys=ON` on each connection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

metadata = MetaData()


def _owned(name: str, *columns: Column[Any]) -> Table:
    """A table of account data: an integer id, the account key `account_id`, then `columns`."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column("account_id", ForeignKey("accounts.id"), nullable=False, index=True),
        *columns,
    )


accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("plan", String(16), nullable=False),
    Column("country", String(2), nullable=False),
    Column("owner_email", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("subscription_status", String(16), nullable=False),  # active, none, past_due
    Column("subscription_expires_at", DateTime(timezone=True)),
    Column("trial_ends_at", DateTime(timezone=True)),
    Column("contact_limit", Integer),
    Column("bounce_rate", Float, nullable=False, default=0.0),
)

users = _owned(
    "users",
    Column("email", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # owner, admin, member, billing, viewer
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_login_at", DateTime(timezone=True)),
)

api_keys = _owned(
    "api_keys",
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
)

payment_methods = _owned(
    "payment_methods",
    Column("brand", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("is_default", Boolean, nullable=False),
)

contact_lists = _owned(
    "contact_lists",
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

contacts = _owned(
    "contacts",
    Column("email", String(200), nullable=False),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("status", String(16), nullable=False),  # subscribed, unsubscribed, bounced, archived
    Column("created_at", DateTime(timezone=True), nullable=False),
)

list_memberships = Table(
    "list_memberships",
    metadata,
    Column("account_id", ForeignKey("accounts.id"), nullable=False, index=True),
    Column("list_id", ForeignKey("contact_lists.id"), primary_key=True),
    Column("contact_id", ForeignKey("contacts.id"), primary_key=True),
)

templates = _owned(
    "templates",
    Column("name", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body_html", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

campaigns = _owned(
    "campaigns",
    Column("list_id", ForeignKey("contact_lists.id"), nullable=False),
    Column("template_id", ForeignKey("templates.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # draft, scheduled, sent
    Column("scheduled_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    Column("recipients", Integer, nullable=False),
)

campaign_events = _owned(  # the campaign timelines: created, scheduled, sending, sent
    "campaign_events",
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("event", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

contact_actions = _owned(  # what contacts did with the campaigns: opens, clicks, unsubscribes
    "contact_actions",
    Column("contact_id", ForeignKey("contacts.id"), nullable=False),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("action", String(16), nullable=False),  # open, click, unsubscribe, bounce
    Column("at", DateTime(timezone=True), nullable=False),
    Column("url", String(300)),
)

reports = _owned(
    "reports",
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("sent", Integer, nullable=False),
    Column("opens", Integer, nullable=False),
    Column("clicks", Integer, nullable=False),
    Column("bounces", Integer, nullable=False),
    Column("unsubscribes", Integer, nullable=False),
    Column("generated_at", DateTime(timezone=True), nullable=False),
)

forms = _owned(
    "forms",
    Column("list_id", ForeignKey("contact_lists.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("fields", Text, nullable=False),  # JSON
    Column("active", Boolean, nullable=False),
)

landing_pages = _owned(
    "landing_pages",
    Column("form_id", ForeignKey("forms.id")),
    Column("slug", String(200), nullable=False),
    Column("title", String(200), nullable=False),
    Column("published", Boolean, nullable=False),
)

domain_settings = _owned(
    "domain_settings",
    Column("domain", String(200), nullable=False),
    Column("spf_ok", Boolean, nullable=False),
    Column("dkim_ok", Boolean, nullable=False),
    Column("dmarc_policy", String(16), nullable=False),
    Column("verified_at", DateTime(timezone=True)),
)

images = _owned(
    "images",
    Column("filename", String(200), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("uploaded_at", DateTime(timezone=True), nullable=False),
)

automations = _owned(
    "automations",
    Column("list_id", ForeignKey("contact_lists.id"), nullable=False),
    Column("template_id", ForeignKey("templates.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

usage = _owned(
    "usage",
    Column("month", String(7), nullable=False),  # 2025-01
    Column("emails_sent", Integer, nullable=False),
    Column("api_calls", Integer, nullable=False),
)

messages = _owned(  # the mailbox of personal and beta accounts
    "messages",
    Column("folder", String(16), nullable=False),
    Column("sender", String(200), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("size_bytes", Integer, nullable=False),
)

mail_settings = Table(
    "mail_settings",
    metadata,
    Column("account_id", ForeignKey("accounts.id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(300), nullable=False),
)

#: the data category of each table: what the policy's purges and the receipts name
CATEGORIES: Mapping[str, str] = {
    "accounts": "account",
    "users": "users",
    "api_keys": "api_keys",
    "payment_methods": "payment_details",
    "contact_lists": "contact_lists",
    "contacts": "contacts",
    "list_memberships": "contact_lists",
    "templates": "templates",
    "campaigns": "campaigns",
    "campaign_events": "campaign_timelines",
    "contact_actions": "contact_actions",
    "reports": "reports",
    "forms": "forms",
    "landing_pages": "landing_pages",
    "domain_settings": "domain_settings",
    "images": "images",
    "automations": "automations",
    "usage": "usage",
    "messages": "mailbox",
    "mail_settings": "settings",
}


#: columns left out of exports: secrets an account holder has no use for and nobody may read
EXCLUDED: Mapping[str, tuple[str, ...]] = {"api_keys": ("secret_hash",)}


def account_key(table: str) -> str:
    """The column holding the account's id in `table`."""
    return "id" if table == "accounts" else "account_id"


def _foreign_keys_on(dbapi_connection: Any, _: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def host_engine(url: str) -> Engine:
    """An engine on the host database; on SQLite with foreign keys enforced."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _foreign_keys_on)
    return engine


def create_host_schema(engine: Engine) -> None:
    """Create every table of the demo host."""
    metadata.create_all(engine)
