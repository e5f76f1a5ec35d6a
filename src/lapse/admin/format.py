"""How the admin UI says times, durations and lapse's words to support staff: "8 April 2026",
"6 days left", "Warning email", in the policy's time zone, never raw ISO timestamps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from lapse.core.decisions import time_left
from lapse.core.model import AuditEntry, DeleteEffect, HostEffect, NoticeEffect, PurgeEffect
from lapse.core.timeline import describe
from lapse.policy.model import Policy
from lapse.store.base import OutboxItem

#: projected timeline events (lapse.core.timeline) and audit entries, in words
EVENT_LABELS: Mapping[str, str] = {
    "case.opens": "Case opens",
    "phase.enters": "Phase begins",
    "notice": "Email",
    "delete": "Deletion",
    "purge": "Data purge",
    "case.closes": "Case closes",
    "host-effect": "Product hook",
    "held": "Held by legal hold",
    "renotice": "Warned again",
    "account.created": "Account created",
    "account.deleted": "Account deleted",
    "account.tombstoned": "Deletion receipt",
    "case.opened": "Case opened",
    "case.closed": "Case closed",
    "case.extended": "Deadline extended",
    "phase.entered": "Phase began",
    "notice.created": "Notice created",
    "notice.dispatched": "Notice sent",
    "delete.requested": "Deletion requested",
    "delete.ordered": "Deletion ordered",
    "purge.requested": "Purge requested",
    "purge.done": "Purge done",
    "purge.receipt": "Purge receipt",
    "outcome.held": "Held by legal hold",
    "outcome.renotice": "Warned again",
    "hold.placed": "Legal hold placed",
    "hold.lifted": "Legal hold lifted",
    "event.received": "Event received",
    "event.ignored": "Event ignored",
    "outbox.retried": "Delivery retried",
}

#: the CSS tone of an event: what a reader should notice first
EVENT_TONES: Mapping[str, str] = {
    "delete": "danger",
    "delete.requested": "danger",
    "delete.ordered": "danger",
    "account.deleted": "danger",
    "account.tombstoned": "danger",
    "purge": "warn",
    "purge.requested": "warn",
    "purge.done": "warn",
    "purge.receipt": "warn",
    "notice": "info",
    "notice.created": "info",
    "notice.dispatched": "info",
    "held": "hold",
    "outcome.held": "hold",
    "hold.placed": "hold",
    "hold.lifted": "hold",
}


def event_label(kind: str) -> str:
    """'Warning email' for 'notice'; an unknown kind spelled out."""
    return EVENT_LABELS.get(kind) or kind.replace(".", " ").replace("-", " ").capitalize()


def event_tone(kind: str) -> str:
    """'danger', 'warn', 'info', 'hold' or 'plain'."""
    return EVENT_TONES.get(kind, "plain")


@dataclass(frozen=True, slots=True)
class Clock:
    """Times as of one request's `now`, in the policy's time zone."""

    now: datetime
    zone: tzinfo
    zone_name: str

    def local(self, moment: datetime) -> datetime:
        """The moment in the policy's time zone."""
        return moment.astimezone(self.zone)

    def date(self, moment: datetime | None) -> str:
        """'8 April 2026'."""
        if moment is None:
            return "—"
        local = self.local(moment)
        return f"{local.day} {local:%B %Y}"

    def when(self, moment: datetime | None) -> str:
        """'8 April 2026, 09:00 UTC'."""
        if moment is None:
            return "—"
        local = self.local(moment)
        zone = self.zone_name if self.zone_name.upper() == "UTC" else local.strftime("%Z")
        return f"{self.date(moment)}, {local:%H:%M} {zone}".rstrip()

    def iso(self, moment: datetime) -> str:
        """The exact instant, for a tooltip and the machine-readable `datetime` attribute."""
        return moment.isoformat().replace("+00:00", "Z")

    def left(self, moment: datetime | None) -> str:
        """'6 days left', or 'passed 3 hours ago' for a moment already gone."""
        if moment is None:
            return ""
        if moment > self.now:
            return f"{time_left(self.now, moment)} left"
        if moment == self.now:
            return "now"
        return f"passed {time_left(moment, self.now)} ago"

    def relative(self, moment: datetime | None) -> str:
        """'in 6 days', '3 hours ago' or 'now'."""
        if moment is None:
            return ""
        if moment > self.now:
            return f"in {time_left(self.now, moment)}"
        if moment == self.now:
            return "now"
        return f"{time_left(moment, self.now)} ago"

    def span(self, delta: timedelta) -> str:
        """'7 days', '1 day 4 hours', 'less than a minute'; negative spans with a minus."""
        if delta < timedelta(0):
            return "-" + self.span(-delta)
        if delta == timedelta(0):
            return "0"
        return time_left(self.now, self.now + delta) or ""


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 account', '3 accounts'."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def words(name: str) -> str:
    """'send_campaign' -> 'send campaign', 'inbox-locked' -> 'inbox locked'."""
    return name.replace("_", " ").replace("-", " ")


def effect_summary(item: OutboxItem) -> str:
    """What an outbox row carries, in a few words."""
    effect = item.effect
    if isinstance(effect, NoticeEffect):
        return f"email {effect.template} ({words(effect.phase)})"
    if isinstance(effect, HostEffect):
        return f"product hook {effect.name} ({effect.trigger} {words(effect.phase)})"
    if isinstance(effect, PurgeEffect):
        return f"purge of {', '.join(effect.categories)}"
    if isinstance(effect, DeleteEffect):
        return f"deletion of the account (address: {effect.address.mode})"
    return type(effect).__name__


def history_text(entry: AuditEntry, policy: Policy) -> str:
    """One line of plain English for an audit entry (the core's words, and the runtime's
    entries it does not describe: registration, receipts, retries)."""
    d = entry.detail
    if entry.kind == "account.created":
        imported = " (imported with its history)" if d.get("imported") else ""
        return f"registered as a {d.get('kind')} account{imported}"
    if entry.kind == "account.tombstoned":
        address = {"release": "released", "retire": "retired"}.get(str(d.get("address")), "")
        return (
            f"data deleted everywhere it is registered: {d.get('rows')} rows, receipt "
            f"{d.get('receipt')}; address {address}"
        )
    if entry.kind == "purge.receipt":
        categories = d.get("categories")
        names = ", ".join(str(c) for c in categories) if isinstance(categories, list) else ""
        return f"purged {names}: {d.get('rows')} rows, receipt {d.get('receipt')}"
    if entry.kind == "outbox.retried":
        error = f" (last error: {d.get('error')})" if d.get("error") else ""
        return (
            f"{d.get('by')} retried outbox row {d.get('row')} ({d.get('channel')}) after "
            f"{d.get('attempts')} attempts{error}"
        )
    return describe(entry, policy)
