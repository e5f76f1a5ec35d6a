"""The demo while it runs: the host's scripted reports, and a live feed of what lapse does.

`HostScript` plays the host: at their demo times it reports the script's events and facts
through the engine's public API (as the product would over HTTP) and changes its own database
to match. `Feed` tails lapse's audit log and prints one line per step worth seeing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import select, update

from lapse.core.model import AuditEntry
from lapse.core.timeline import describe
from lapse.demo import host
from lapse.demo.cast import HostInput
from lapse.demo.guide import clock_text
from lapse.runtime.clock import AcceleratedClock
from lapse.runtime.engine import Engine

Say = Callable[[str], None]

#: audit kinds the feed shows (notice.created is followed by notice.dispatched: one line)
SHOWN = {
    "case.opened",
    "phase.entered",
    "notice.dispatched",
    "case.closed",
    "purge.receipt",
    "account.tombstoned",
    "outcome.held",
    "hold.placed",
    "hold.lifted",
    "event.received",
}


class HostScript:
    """Reports the script's host inputs when the demo clock reaches them."""

    def __init__(
        self,
        engine: Engine,
        clock: AcceleratedClock,
        script: tuple[HostInput, ...],
        host_url: str,
        say: Say,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.script = script
        self.host_url = host_url
        self.say = say
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lapse-demo-host", daemon=True)

    def start(self) -> None:
        """Start playing the script."""
        self._thread.start()

    def stop(self) -> None:
        """Stop (what was not reported yet is not)."""
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        for item in self.script:
            if self.stop_event.wait(self.clock.real_seconds_until(item.at)):
                return
            try:
                self.report(item)
            except Exception as exc:  # the demo goes on; say what failed
                self.say(f"  host report for {item.account_id} failed: {exc}")

    def report(self, item: HostInput) -> None:
        """Change the host database if the item says so, then tell lapse."""
        if item.archive_contacts:
            self._archive(item.account_id, item.archive_contacts)
        if item.what == "event":
            self.engine.event(
                item.account_id,
                item.name,
                at=self.clock.now(),
                event_id=item.event_id,
                reason=item.reason or None,
            )
        elif item.what == "facts":
            self.engine.set_facts(item.account_id, dict(item.facts))
        else:
            self.engine.legal_hold(item.account_id, on=True, by=item.by, reason=item.reason)

    def _archive(self, account_id: str, count: int) -> None:
        """Archive the account's `count` most recent contacts in the host database."""
        engine = host.host_engine(self.host_url)
        contacts = host.contacts
        try:
            with engine.begin() as conn:
                ids = (
                    select(contacts.c.id)
                    .where(contacts.c.account_id == account_id, contacts.c.status != "archived")
                    .order_by(contacts.c.id.desc())
                    .limit(count)
                )
                conn.execute(
                    update(contacts).where(contacts.c.id.in_(ids)).values(status="archived")
                )
        finally:
            engine.dispose()


class Feed:
    """Prints what lapse does, as it happens, from the audit log."""

    def __init__(
        self, engine: Engine, clock: AcceleratedClock, start: datetime, say: Say, poll: float = 0.5
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.start_at = start
        self.say = say
        self.poll = poll
        self.stop_event = threading.Event()
        self._after = self._head()
        self._thread = threading.Thread(target=self._run, name="lapse-demo-feed", daemon=True)

    def _head(self) -> int | None:
        """The last audit sequence number so far: the feed shows what comes after it."""
        after: int | None = None
        while True:
            records = self.engine.store.audit(after=after, limit=5000)
            if not records:
                return after
            after = records[-1].seq

    def start(self) -> None:
        """Start printing."""
        self.say("Live (real time  demo time  account: what lapse did):")
        self._thread.start()

    def stop(self) -> None:
        """Stop printing."""
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self.stop_event.wait(self.poll):
            try:
                records = self.engine.store.audit(after=self._after, limit=1000)
            except Exception:  # the database is busy or closing: try again next time
                continue
            for record in records:
                self._after = record.seq
                if record.entry.kind in SHOWN:
                    self.say(self.line(record.entry))

    def line(self, entry: AuditEntry) -> str:
        """One line for an audit entry."""
        when = clock_text(entry.at, self.start_at, self.clock.rate)
        return f"  {when}  {entry.account_id}: {self.text(entry)}"

    def text(self, entry: AuditEntry) -> str:
        """What the entry says, with the receipt's counts for deletions and purges."""
        detail = entry.detail
        if entry.kind == "account.tombstoned":
            return f"deleted, address {detail.get('address')}d; {_receipt(detail)}"
        if entry.kind == "purge.receipt":
            raw = detail.get("categories")
            categories = ", ".join(str(c) for c in raw) if isinstance(raw, list | tuple) else ""
            return f"purged {categories}; {_receipt(detail)}"
        if entry.kind == "notice.dispatched":
            flow = self.engine.policy.flows.get(entry.flow or "")
            title = flow.title if flow is not None else entry.flow
            return f"{title}: email {str(detail.get('key', '')).split('/')[-1]} sent"
        return describe(entry, self.engine.policy)


def _receipt(detail: Mapping[str, object]) -> str:
    """'receipt del_...: 1,234 rows removed' from an audit entry about a deletion or purge."""
    receipt = detail.get("receipt")
    rows = detail.get("rows")
    if not isinstance(receipt, str):
        return "receipt recorded"
    removed = f": {rows:,} host rows removed" if isinstance(rows, int) else ""
    return f"receipt {receipt}{removed}"
