"""Who is in the demo, and what happened to them: the accounts of the demo email service.

A crowd of healthy accounts, and a cast of accounts whose histories are backdated so that at the
demo's start (`now`) they sit in every phase of the three presets' flows, with the next steps
minutes of demo time away. Everything is computed from `now` and a seed, deterministically.

Each account is a `Plan`: what the host database holds about it at `now` (users, contacts,
campaigns, subscription...). Cast members join lapse before their history (`joins_at`) and live
it through `history`: the events and facts the host reported at the time. The crowd is imported
at `now` with its last activity. `script` holds what the host reports during the demo itself
(a terms-of-service violation, a payment that goes through...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from lapse.demo.names import Names
from lapse.policy.durations import Duration, add, subtract
from lapse.policy.model import FactValue

#: contact limits of the marketing plans (the `plan_contact_limit` fact)
CONTACT_LIMITS: Mapping[str, int] = {"free": 100, "starter": 500, "growth": 2500, "pro": 10000}
PRODUCT_DOMAIN = "mailwise.example"  # the demo email service's own domain (personal mailboxes)


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A person on a host account; `role` is also the lapse member role (admins get notices)."""

    email: str
    name: str
    role: str
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One account of the demo host as it stands at the demo's start."""

    id: str
    kind: str  # standard, trial, test (marketing) or personal, beta (mailboxes)
    plan: str  # free, starter, growth, pro, trial, test, personal, beta
    name: str
    country: str
    created_at: datetime
    users: tuple[User, ...]
    subscription_active: bool
    subscription_expires_at: datetime | None = None
    trial_ends_at: datetime | None = None
    contacts: int  # contacts not archived, at the demo's start
    bounce_rate: float = 0.0
    campaigns: int = 0
    last_campaign_at: datetime | None = None
    last_api_at: datetime | None = None
    joins_at: datetime  # when lapse learns about the account
    facts_at_join: Mapping[str, FactValue] = field(default_factory=dict)  # before `history`
    role: str = ""  # the account's part in the story ("" for the crowd)
    story: str = ""  # what happens to it, in a sentence
    expect: tuple[str, ...] = ()  # "flow/phase" open at the demo's start, or "deleted"

    @property
    def address(self) -> str:
        """The account's primary address: its first user, an admin."""
        return self.users[0].email

    @property
    def contact_limit(self) -> int | None:
        """The plan's contact limit (marketing plans only)."""
        return CONTACT_LIMITS.get(self.plan)

    def signals(self) -> dict[str, datetime]:
        """Last activity the host saw: campaigns sent, API requests, logins."""
        found: dict[str, datetime] = {}
        if self.last_campaign_at is not None:
            found["campaign_sent"] = self.last_campaign_at
        if self.last_api_at is not None:
            found["api_request"] = self.last_api_at
        logins = [u.last_login_at for u in self.users if u.last_login_at is not None]
        if logins:
            found["login"] = max(logins)
        return found

    def facts(self) -> dict[str, FactValue]:
        """The facts the host reports about the account at the demo's start."""
        found: dict[str, FactValue] = {"subscription_active": self.subscription_active}
        if self.kind == "standard":
            limit = self.contact_limit
            found["contacts"] = self.contacts
            if limit is not None:
                found["plan_contact_limit"] = limit
            found["bounce_rate"] = self.bounce_rate
        if self.trial_ends_at is not None:
            found["trial_ends_at"] = self.trial_ends_at
        if self.subscription_expires_at is not None:
            found["subscription_expires_at"] = self.subscription_expires_at
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class HostInput:
    """Something the host reports to lapse at a moment: an event, facts, or a legal hold."""

    at: datetime
    account_id: str
    what: Literal["event", "facts", "legal_hold"]
    name: str = ""  # the event's name
    event_id: str | None = None
    facts: Mapping[str, FactValue] = field(default_factory=dict)
    reason: str = ""
    by: str = ""  # who placed a legal hold
    text: str = ""  # what happened, for the guide
    archive_contacts: int = 0  # the host archives this many contacts (a clean-up)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cast:
    """Every account of the demo, the history to replay, and the script of the demo itself."""

    now: datetime
    accounts: tuple[Plan, ...]
    history: tuple[HostInput, ...]  # before `now`, in time order
    script: tuple[HostInput, ...]  # after `now`, in time order

    def by_role(self, role: str) -> Plan:
        """The cast member playing `role`."""
        for plan in self.accounts:
            if plan.role == role:
                return plan
        raise KeyError(role)


def lead_up(target: datetime, duration: Duration) -> datetime:
    """A moment m with `m + duration == target` in calendar arithmetic, when one exists.

    Months clamp to the end of shorter months, so some targets (31 August, six months after
    February) have no exact answer: then the closest moment whose end is not earlier than
    `target` (so the step happens in the demo, a day or three late, never in the past)."""
    first = subtract(target, duration)
    candidates = [first, first + (target - add(first, duration))]
    exact = [m for m in candidates if add(m, duration) == target]
    if exact:
        return exact[0]
    later = [m for m in candidates if add(m, duration) > target]
    return min(later, key=lambda m: add(m, duration)) if later else first


MONTH = Duration(months=1)
SIX_MONTHS = Duration(months=6)
YEAR = Duration(months=12)


class _Builder:
    """Makes plans with consistent users, plan limits and activity."""

    def __init__(self, now: datetime, names: Names) -> None:
        self.now = now
        self.names = names
        self.random = names.random

    def ago(self, **delta: float) -> datetime:
        return self.now - timedelta(**delta)

    def ahead(self, **delta: float) -> datetime:
        return self.now + timedelta(**delta)

    def team(self, domain: str, size: int, *, last_login: datetime | None) -> tuple[User, ...]:
        """An admin (the owner) and `size - 1` colleagues with mixed roles."""
        people: list[User] = []
        seen: set[str] = set()
        roles = ["admin", "member", "member", "viewer", "billing", "admin"]
        for index in range(size):
            first, last = self.names.person()
            local = f"{first}.{last}".lower().replace("'", "")
            while local in seen:
                local += str(index)
            seen.add(local)
            login = last_login
            if login is not None and index:
                login = login - timedelta(days=self.random.uniform(0, 40))
            people.append(
                User(
                    email=f"{local}@{domain}",
                    name=f"{first} {last}",
                    role="admin" if index == 0 else self.names.pick(roles),
                    last_login_at=login,
                )
            )
        return tuple(people)

    def marketing(
        self,
        *,
        kind: str = "standard",
        plan: str,
        created_at: datetime,
        subscription_active: bool,
        contacts: int,
        campaigns: int,
        last_campaign_at: datetime | None,
        last_api_at: datetime | None = None,
        last_login: datetime | None = None,
        joins_at: datetime | None = None,
        **extra: object,
    ) -> Plan:
        name, ident = self.names.company()
        domain = f"{ident}.example"
        size = 1 if kind == "test" else self.random.randint(1, 5)
        return Plan(
            id=ident if kind != "test" else f"{ident}-test",
            kind=kind,
            plan=plan,
            name=name,
            country=self.names.pick(self.names.countries),
            created_at=created_at,
            users=self.team(domain, size, last_login=last_login),
            subscription_active=subscription_active,
            contacts=contacts,
            campaigns=campaigns,
            last_campaign_at=last_campaign_at,
            last_api_at=last_api_at,
            joins_at=joins_at or self.now,
            **extra,  # type: ignore[arg-type]
        )

    def mailbox(
        self,
        *,
        kind: str,
        created_at: datetime,
        expires_at: datetime,
        last_login: datetime | None,
        joins_at: datetime | None = None,
        **extra: object,
    ) -> Plan:
        first, last = self.names.person()
        handle = self.names.handle(first, last)
        user = User(
            email=f"{handle}@{PRODUCT_DOMAIN}",
            name=f"{first} {last}",
            role="owner",
            last_login_at=last_login,
        )
        return Plan(
            id=handle,
            kind=kind,
            plan=kind,
            name=f"{first} {last}",
            country=self.names.pick(self.names.countries),
            created_at=created_at,
            users=(user,),
            subscription_active=expires_at > self.now,
            subscription_expires_at=expires_at,
            contacts=self.random.randint(5, 25),
            joins_at=joins_at or self.now,
            **extra,  # type: ignore[arg-type]
        )


def build_cast(now: datetime, seed: int = 7) -> Cast:
    """The demo's accounts, history and script for a demo starting at `now`."""
    names = Names(seed)
    b = _Builder(now, names)
    rnd = names.random
    plans: list[Plan] = []
    history: list[HostInput] = []
    script: list[HostInput] = []
    day = timedelta(days=1)

    def inactive(
        role: str, starts: datetime, story: str, expect: tuple[str, ...], *, replay: bool = True
    ) -> Plan:
        """A free account whose last campaign and API request were 12 months before `starts`."""
        last = lead_up(starts, YEAR)
        plan = b.marketing(
            plan="free",
            created_at=last - timedelta(days=rnd.randint(200, 900)),
            subscription_active=False,
            contacts=rnd.randint(30, 90),
            campaigns=rnd.randint(3, 8),
            last_campaign_at=last,
            last_api_at=last - timedelta(days=rnd.randint(1, 60)),
            last_login=min(starts, now) - timedelta(days=rnd.randint(20, 90)),
            joins_at=starts - day if replay else now,
            role=role,
            story=story,
            expect=expect,
        )
        plans.append(plan)
        return plan

    # --- inactivity-cleanup: inactivity ---------------------------------------------------
    inactive(
        "inactive-enters-grace",
        b.ahead(minutes=5),
        "No campaign or API request for 12 months and no subscription: enters the 30-day grace "
        "period 5 demo minutes in; its admins get the first email.",
        (),
        replay=False,
    )
    inactive(
        "inactive-enters-grace-later",
        b.ahead(hours=3),
        "Also inactive for almost 12 months: enters grace 3 demo hours in.",
        (),
        replay=False,
    )
    inactive(
        "grace-new",
        b.ago(days=2),
        "In the grace period for 2 days: sending is disabled, the first email went out.",
        ("inactivity/grace",),
    )
    inactive(
        "grace-final-warning",
        b.ago(days=23) + timedelta(minutes=12),
        "In grace for 23 days: the final warning (7 days before deletion) goes out 12 demo "
        "minutes in.",
        ("inactivity/grace",),
    )
    inactive(
        "grace-deleted",
        b.ago(days=30) + timedelta(minutes=45),
        "Both emails went out; nobody reacted. Deleted 45 demo minutes in, with a receipt; "
        "its address is released.",
        ("inactivity/grace",),
    )
    inactive(
        "inactive-deleted-earlier",
        b.ago(days=75),
        "Deleted 45 days before the demo after its grace period: only a tombstone is left.",
        ("deleted",),
    )
    saved = inactive(
        "inactive-saved",
        b.ago(days=40),
        "Entered grace 40 days ago and contacted sales 10 days later: the case closed and the "
        "flow re-armed (a fresh 12 months).",
        (),
    )
    history.append(
        HostInput(
            at=b.ago(days=30),
            account_id=saved.id,
            what="event",
            name="contacted_sales",
            event_id=f"crm-{saved.id}-1",
            text="contacted sales: the account is kept",
        )
    )

    # --- inactivity-cleanup: test accounts -------------------------------------------------
    test_soon = b.marketing(
        kind="test",
        plan="test",
        created_at=b.ago(days=30) + timedelta(minutes=3),
        subscription_active=False,
        contacts=rnd.randint(3, 12),
        campaigns=1,
        last_campaign_at=b.ago(days=20),
        last_login=b.ago(days=2),
        role="test-account-expires",
        story="A test account aged 29 days 23 hours 57 minutes: deleted 3 demo minutes in, "
        "without warning (test accounts get no grace period).",
    )
    plans.append(test_soon)
    plans.append(
        b.marketing(
            kind="test",
            plan="test",
            created_at=b.ago(days=45),
            subscription_active=False,
            contacts=rnd.randint(3, 12),
            campaigns=0,
            last_campaign_at=None,
            last_login=b.ago(days=40),
            joins_at=b.ago(days=45),
            role="test-account-deleted-earlier",
            story="A test account deleted 15 days before the demo, on its 30th day.",
            expect=("deleted",),
        )
    )

    # --- staged-expiry: personal and beta mailboxes ----------------------------------------
    def expiring(
        role: str, kind: str, expires: datetime, story: str, expect: tuple[str, ...]
    ) -> Plan:
        replay = expires < now
        plan = b.mailbox(
            kind=kind,
            created_at=expires - timedelta(days=365 * rnd.randint(1, 3)),
            expires_at=expires,
            last_login=min(expires, now) - timedelta(days=rnd.randint(0, 20)),
            joins_at=expires - day if replay else now,
            role=role,
            story=story,
            expect=expect,
        )
        plans.append(plan)
        return plan

    expiring(
        "mailbox-expires",
        "personal",
        b.ahead(minutes=8),
        "A personal mailbox whose paid year ends 8 demo minutes in: one month of grace begins "
        "(no sending, no IMAP) and the owner is told.",
        (),
    )
    expiring(
        "mailbox-grace",
        "beta",
        b.ago(days=10),
        "A beta mailbox that expired 10 days ago: in grace, sending and IMAP disabled.",
        ("expiry/grace",),
    )
    expiring(
        "mailbox-locked",
        "personal",
        b.ago(days=75),
        "Expired 75 days ago: the inbox is locked; only logging in and renewing work.",
        ("expiry/inbox-locked",),
    )
    expiring(
        "mailbox-final-warning",
        "personal",
        lead_up(b.ahead(minutes=30) + timedelta(days=14), SIX_MONTHS),
        "Locked for almost five months: the final warning (14 days before it may be deleted) "
        "goes out 30 demo minutes in.",
        ("expiry/inbox-locked",),
    )
    expiring(
        "mailbox-terminated",
        "beta",
        lead_up(b.ahead(minutes=25), SIX_MONTHS),
        "Reaches six months after expiry 25 demo minutes in: eligible for deletion, deleted at "
        "once; its address is retired for good.",
        ("expiry/inbox-locked",),
    )
    held = expiring(
        "legal-hold",
        "personal",
        b.ago(days=215),
        "Expired seven months ago and eligible for deletion, but under a legal hold: the "
        "deletion waits, visibly, until the hold is lifted.",
        ("expiry/termination",),
    )
    history.append(
        HostInput(
            at=b.ago(days=50),
            account_id=held.id,
            what="legal_hold",
            by="legal@mailwise.example",
            reason="Preservation order in case 24-CV-1187: keep every message until released",
            text="legal hold placed",
        )
    )
    expiring(
        "mailbox-deleted-earlier",
        "beta",
        b.ago(days=250),
        "Deleted two months before the demo, six months after it expired; address retired.",
        ("deleted",),
    )
    renewed = expiring(
        "mailbox-renewed",
        "personal",
        b.ago(days=20),
        "Expired 20 days ago and renewed 5 days ago: IMAP is back, the case is closed.",
        (),
    )
    renewal = add(renewed.subscription_expires_at or now, YEAR)
    history.append(
        HostInput(
            at=b.ago(days=5),
            account_id=renewed.id,
            what="facts",
            facts={"subscription_expires_at": renewal, "subscription_active": True},
            text="renewed for a year",
        )
    )
    # the host database holds the renewed subscription; lapse learned it 5 days ago
    plans[-1] = replace(
        renewed,
        subscription_expires_at=renewal,
        subscription_active=True,
        facts_at_join={"subscription_expires_at": renewed.subscription_expires_at or now},
    )

    # --- account-locks: payment, contact limit and bounce rate locks ------------------------
    def paying(
        role: str,
        story: str,
        expect: tuple[str, ...],
        joins: datetime,
        last_login: datetime | None = None,
        **kw: object,
    ) -> Plan:
        kw.setdefault("plan", names.pick(["starter", "growth", "pro"]))
        kw.setdefault("contacts", rnd.randint(60, 400))
        kw.setdefault("subscription_active", kw["plan"] != "free")
        plan = b.marketing(
            created_at=min(joins, now) - timedelta(days=rnd.randint(200, 1200)),
            campaigns=rnd.randint(6, 14),
            last_campaign_at=min(joins, now) - timedelta(days=rnd.randint(2, 20)),
            last_api_at=min(joins, now) - timedelta(days=rnd.randint(0, 5)),
            last_login=last_login or b.ago(days=rnd.randint(0, 5)),
            joins_at=joins,
            role=role,
            story=story,
            expect=expect,
            **kw,  # type: ignore[arg-type]
        )
        plans.append(plan)
        return plan

    def payment_failed(plan: Plan, at: datetime) -> None:
        history.append(
            HostInput(
                at=at,
                account_id=plan.id,
                what="event",
                name="payment_failed",
                event_id=f"inv-{plan.id}-{at:%Y%m}",
                reason="card declined (insufficient funds)",
                text="payment failed",
            )
        )

    recovers = paying(
        "payment-locked-recovers",
        "Locked for 3 weeks after a failed payment; the payment goes through 50 demo minutes "
        "in and the lock lifts at once.",
        ("payment-lock/locked",),
        b.ago(days=22),
        subscription_active=False,
    )
    payment_failed(recovers, b.ago(days=21))
    script.append(
        HostInput(
            at=b.ahead(minutes=50),
            account_id=recovers.id,
            what="event",
            name="payment_succeeded",
            event_id=f"inv-{recovers.id}-retry",
            text="the retried payment goes through: unlocked",
        )
    )
    warned = lead_up(b.ahead(minutes=40) + timedelta(days=30), SIX_MONTHS)
    retention_warning = paying(
        "payment-retention-warning",
        "Locked for five months: the warning that history may be lost after six months goes "
        "out 40 demo minutes in.",
        ("payment-lock/locked",),
        warned - day,
        subscription_active=False,
    )
    payment_failed(retention_warning, warned)
    purged = paying(
        "payment-retention-expired",
        "Locked for seven months: campaign timelines, reports and contact actions were purged "
        "at six months (with a receipt); the account stays locked.",
        ("payment-lock/retention-expired",),
        b.ago(days=213),
        subscription_active=False,
    )
    payment_failed(purged, b.ago(days=212))
    two = paying(
        "two-locks",
        "Locked twice: a failed payment 40 days ago and, since 12 days ago, more contacts than "
        "its plan allows. 35 demo minutes in it archives old contacts: the contact-limit lock "
        "lifts, the payment lock stays.",
        ("payment-lock/locked", "contact-limit-lock/locked"),
        b.ago(days=41),
        plan="starter",
        contacts=540,
        subscription_active=False,
        facts_at_join={"contacts": 480},
    )
    payment_failed(two, b.ago(days=40))
    history.append(
        HostInput(
            at=b.ago(days=12),
            account_id=two.id,
            what="facts",
            facts={"contacts": 540},
            text="imported 60 contacts: over the plan's 500",
        )
    )
    script.append(
        HostInput(
            at=b.ahead(minutes=35),
            account_id=two.id,
            what="facts",
            facts={"contacts": 470},
            archive_contacts=70,
            text="archives 70 old contacts: back under the limit",
        )
    )

    def over_limit(role: str, since: datetime, story: str, expect: tuple[str, ...]) -> None:
        plan = paying(
            role,
            story,
            expect,
            since - day,
            plan="free",
            contacts=rnd.randint(120, 160),
            facts_at_join={"contacts": 90},
        )
        history.append(
            HostInput(
                at=since,
                account_id=plan.id,
                what="facts",
                facts={"contacts": plan.contacts},
                text=f"{plan.contacts} contacts on the free plan's 100",
            )
        )

    over_limit(
        "contact-limit-locked",
        b.ago(days=60),
        "Over its plan's contact limit for two months: locked read-only until it upgrades or "
        "removes contacts.",
        ("contact-limit-lock/locked",),
    )
    over_limit(
        "contact-limit-retention-expired",
        b.ago(days=240),
        "Over its contact limit for eight months: history purged at six months.",
        ("contact-limit-lock/retention-expired",),
    )

    def bouncing(
        role: str, since: datetime, rate: float, story: str, expect: tuple[str, ...]
    ) -> None:
        plan = paying(
            role, story, expect, since - day, bounce_rate=rate, facts_at_join={"bounce_rate": 0.01}
        )
        history.append(
            HostInput(
                at=since,
                account_id=plan.id,
                what="facts",
                facts={"bounce_rate": rate},
                text=f"bounce rate {rate:.0%}",
            )
        )

    bouncing(
        "bounce-locked",
        b.ago(days=21),
        0.09,
        "9% of its emails bounce: locked for three weeks until the list is cleaned.",
        ("bounce-rate-lock/locked",),
    )
    bouncing(
        "bounce-retention-expired",
        b.ago(days=200),
        0.12,
        "Bouncing at 12% for over six months: locked, history purged.",
        ("bounce-rate-lock/retention-expired",),
    )

    # --- account-locks: terms-of-service suspensions ----------------------------------------
    tos = paying(
        "tos-suspended",
        "Sends a phishing campaign: suspended 20 demo minutes in, without warning, and deleted "
        "at once; its address is retired.",
        (),
        now,
    )
    script.append(
        HostInput(
            at=b.ahead(minutes=20),
            account_id=tos.id,
            what="event",
            name="tos_violation",
            event_id=f"abuse-{tos.id}-1",
            reason="phishing campaign reported by recipients",
            text="abuse desk reports a phishing campaign",
        )
    )
    tos_before = paying(
        "tos-deleted-earlier",
        "Suspended for spamming three weeks before the demo: deleted at once.",
        ("deleted",),
        b.ago(days=22),
        last_login=b.ago(days=23),
    )
    history.append(
        HostInput(
            at=b.ago(days=21),
            account_id=tos_before.id,
            what="event",
            name="tos_violation",
            event_id=f"abuse-{tos_before.id}-1",
            reason="spam complaints above 1%",
            text="suspended for spamming",
        )
    )

    # --- account-locks: free trials ---------------------------------------------------------
    def trial(role: str, ends: datetime, story: str, expect: tuple[str, ...]) -> None:
        created = ends - timedelta(days=14)
        plans.append(
            b.marketing(
                kind="trial",
                plan="trial",
                created_at=created,
                subscription_active=False,
                contacts=rnd.randint(10, 60),
                campaigns=rnd.randint(0, 3),
                last_campaign_at=min(ends, now) - timedelta(days=rnd.randint(1, 6)),
                last_login=min(ends, now) - timedelta(days=rnd.randint(0, 3)),
                joins_at=min(created, now),
                trial_ends_at=ends,
                role=role,
                story=story,
                expect=expect,
            )
        )

    trial(
        "trial-ends",
        b.ahead(minutes=15),
        "A free trial that ends 15 demo minutes in: sending, forms and landing pages stop; "
        "its data is kept.",
        (),
    )
    trial(
        "trial-expired",
        b.ago(days=9),
        "A trial that ended 9 days ago: data kept, sending paused until it upgrades.",
        ("trial-expiry/trial-expired",),
    )
    trial(
        "trial-purged",
        lead_up(b.ahead(minutes=55), SIX_MONTHS),
        "A trial that ended almost six months ago: its history is purged 55 demo minutes in "
        "(with a receipt).",
        ("trial-expiry/trial-expired",),
    )
    trial(
        "trial-retention-expired",
        b.ago(days=240),
        "A trial that ended eight months ago: history purged, forms and landing pages paused.",
        ("trial-expiry/retention-expired",),
    )

    plans.extend(_crowd(b))
    return Cast(
        now=now,
        accounts=tuple(plans),
        history=tuple(sorted(history, key=lambda i: i.at)),
        script=tuple(sorted(script, key=lambda i: i.at)),
    )


def _crowd(b: _Builder) -> list[Plan]:
    """Healthy accounts: paying and free marketing accounts, trials, test accounts, mailboxes."""
    rnd = b.random
    crowd: list[Plan] = []
    for _ in range(210):
        paying = rnd.random() < 0.8
        plan = rnd.choice(["starter", "growth", "pro"]) if paying else "free"
        limit = CONTACT_LIMITS[plan]
        crowd.append(
            b.marketing(
                plan=plan,
                created_at=b.ago(days=rnd.randint(60, 1800)),
                subscription_active=paying,
                contacts=rnd.randint(15, min(limit, 160)),
                campaigns=rnd.randint(3, 12),
                last_campaign_at=b.ago(days=rnd.uniform(0.5, 60 if paying else 150)),
                last_api_at=b.ago(hours=rnd.uniform(1, 600)) if rnd.random() < 0.5 else None,
                last_login=b.ago(hours=rnd.uniform(1, 300)),
                bounce_rate=round(rnd.uniform(0.0, 0.03), 4),
            )
        )
    for _ in range(30):
        ends = b.ahead(days=rnd.uniform(0.5, 13.5))
        crowd.append(
            b.marketing(
                kind="trial",
                plan="trial",
                created_at=ends - timedelta(days=14),
                subscription_active=False,
                contacts=rnd.randint(5, 60),
                campaigns=rnd.randint(0, 2),
                last_campaign_at=b.ago(days=rnd.uniform(0.1, 0.4)),
                last_login=b.ago(hours=rnd.uniform(1, 48)),
                trial_ends_at=ends,
            )
        )
    for _ in range(12):
        crowd.append(
            b.marketing(
                kind="test",
                plan="test",
                created_at=b.ago(days=rnd.uniform(1, 25)),
                subscription_active=False,
                contacts=rnd.randint(2, 10),
                campaigns=rnd.randint(0, 1),
                last_campaign_at=b.ago(hours=rnd.uniform(1, 20)),
                last_login=b.ago(hours=rnd.uniform(1, 20)),
            )
        )
    for kind, count in (("personal", 45), ("beta", 20)):
        for _ in range(count):
            crowd.append(
                b.mailbox(
                    kind=kind,
                    created_at=b.ago(days=rnd.randint(30, 1500)),
                    expires_at=b.ahead(days=rnd.uniform(5, 330)),
                    last_login=b.ago(hours=rnd.uniform(1, 400)),
                )
            )
    return crowd
