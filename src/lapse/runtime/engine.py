"""`lapse.Engine`: the facade that drives the whole lifecycle over a store and a clock.

Every operation is one unit of work on one account: load the snapshot, decide in the core, write
the new snapshot with its next due time, outbox items and audit entries together. Effects leave
through the outbox afterwards (never from inside a unit): notices are dispatched, and only a
dispatched notice lets its phase end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from lapse.core import decisions, inputs, lifecycle
from lapse.core.decisions import Restrictions
from lapse.core.lifecycle import recipients
from lapse.core.model import (
    Account,
    AuditEntry,
    Decision,
    DeleteEffect,
    HostEffect,
    Member,
    NoticeEffect,
    PurgeEffect,
    Status,
    Step,
    Timeline,
    TimelineEvent,
)
from lapse.core.timeline import describe, timeline
from lapse.errors import (
    AccountDeleted,
    AccountExists,
    AddressRetired,
    InvalidInput,
    UnknownAccount,
    UnknownAction,
)
from lapse.policy.durations import Duration, add
from lapse.policy.model import FactValue, Policy
from lapse.runtime.clock import Clock, SystemClock
from lapse.runtime.store import (
    Change,
    MemoryStore,
    OutboxItem,
    Store,
    Tombstone,
    UnitOfWork,
    address_hash,
)
from lapse.runtime.transports import (
    DataHandler,
    DeliveryError,
    HostTransport,
    MemoryData,
    MemoryHost,
    MemoryOutbox,
    NoticeTransport,
)

MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    """What one `run_due` did."""

    processed: int
    delivered: int
    failed: int


class Engine:
    """Load a policy, report what happens to accounts, ask what they may do, run due work."""

    def __init__(
        self,
        policy: Policy,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        notices: NoticeTransport | None = None,
        host: HostTransport | None = None,
        data: DataHandler | None = None,
        deliver_inline: bool = True,
    ) -> None:
        self.policy = policy
        self.store: Store = store or MemoryStore()
        self.clock: Clock = clock or SystemClock()
        self.notices: NoticeTransport = notices or MemoryOutbox()
        self.host: HostTransport = host or MemoryHost()
        self.data: DataHandler = data or MemoryData()
        self.deliver_inline = deliver_inline
        self._cache: dict[str, Restrictions] = {}

    # --- accounts -------------------------------------------------------------------------

    def add_account(
        self,
        account_id: str,
        *,
        kind: str,
        created_at: datetime | None = None,
        address: str | None = None,
        members: Iterable[Member | tuple[str, str]] = (),
    ) -> Account:
        """Register an account; refused if the id exists or the address is retired."""
        now = self.clock.now()
        account = inputs.new_account(
            self.policy,
            account_id=account_id,
            kind=kind,
            created_at=created_at or now,
            address=address,
            members=[
                m if isinstance(m, Member) else Member(email=m[0], role=m[1]) for m in members
            ],
        )
        if account.address is not None:
            stone = self.store.retired(account.address, now)
            if stone is not None:
                until = f" until {stone.retired_until:%Y-%m-%d}" if stone.retired_until else ""
                raise AddressRetired(
                    f"address {account.address} belonged to a deleted account and is retired{until}"
                )
        with self.store.unit() as unit:
            if unit.load(account_id) is not None or self.store.tombstone(account_id):
                raise AccountExists(f"account {account_id!r} already exists")
            step = lifecycle.advance(account, self.policy, now)
            self._write(unit, step, created=True, extra_audit={"kind": kind})
        self._after()
        return self.account(account_id)

    def account(self, account_id: str) -> Account:
        """The stored snapshot; raises UnknownAccount."""
        account = self.store.get(account_id)
        if account is None:
            raise UnknownAccount(f"no account {account_id!r}")
        return account

    def add_member(self, account_id: str, email: str, role: str = "member") -> None:
        """Add a member (role `admin` receives notices), or change a member's role."""
        self._update(account_id, lambda a, now: inputs.add_member(a, email, role))

    def remove_member(self, account_id: str, email: str) -> None:
        """Remove a member."""
        self._update(account_id, lambda a, now: inputs.remove_member(a, email))

    def set_kind(self, account_id: str, kind: str) -> None:
        """Change the account's kind."""
        self._update(account_id, lambda a, now: inputs.set_kind(a, self.policy, kind))

    # --- reports ----------------------------------------------------------------------------

    def signal(self, account_id: str, name: str, at: datetime | None = None) -> None:
        """Report activity (`login`, `campaign_sent`...)."""
        self._update(
            account_id, lambda a, now: inputs.record_signal(a, self.policy, name, at or now)
        )

    def set_fact(
        self, account_id: str, name: str, value: FactValue | None, at: datetime | None = None
    ) -> None:
        """Report a fact's value (None unsets it)."""
        self._update(
            account_id, lambda a, now: inputs.set_fact(a, self.policy, name, value, at or now)
        )

    def event(
        self,
        account_id: str,
        name: str,
        *,
        at: datetime | None = None,
        event_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Report an event; False if this event id was already applied (idempotent)."""
        now = self.clock.now()
        with self.store.unit() as unit:
            account = self._load(unit, account_id)
            if event_id is not None and unit.seen_event(account_id, event_id):
                return False
            step = lifecycle.apply_event(
                account, self.policy, name, at or now, now, event_id=event_id, reason=reason
            )
            self._write(unit, step, event_id=event_id)
        self._after()
        return True

    # --- administrators ---------------------------------------------------------------------

    def reactivate(
        self,
        account_id: str,
        *,
        by: str,
        reason: str,
        case_id: str | None = None,
        snooze_until: datetime | None = None,
    ) -> None:
        """Close one or every reversible open case at once."""
        self._act(
            account_id,
            lambda a, now: lifecycle.reactivate(
                a,
                self.policy,
                now,
                by=by,
                reason=reason,
                case_id=case_id,
                snooze_until=snooze_until,
            ),
        )

    def extend(
        self,
        account_id: str,
        *,
        case_id: str,
        by: str,
        reason: str,
        duration: Duration | str | None = None,
        until: datetime | None = None,
    ) -> None:
        """Move a case's deadline later."""
        if isinstance(duration, str):
            duration = Duration.parse(duration)
        self._act(
            account_id,
            lambda a, now: lifecycle.extend(
                a,
                self.policy,
                now,
                case_id=case_id,
                by=by,
                reason=reason,
                duration=duration,
                until=until,
            ),
        )

    def legal_hold(self, account_id: str, *, on: bool, by: str, reason: str) -> None:
        """Place or lift a legal hold (blocks every delete and purge)."""
        self._act(
            account_id,
            lambda a, now: lifecycle.set_legal_hold(
                a, self.policy, now, on=on, by=by, reason=reason
            ),
        )

    def open_case(self, account_id: str, *, flow: str, by: str, reason: str | None = None) -> None:
        """Start a flow by hand (lock, suspend)."""
        self._act(
            account_id,
            lambda a, now: lifecycle.open_case(
                a, self.policy, now, flow=flow, by=by, reason=reason
            ),
        )

    # --- scheduling and delivery ------------------------------------------------------------

    def run_due(self, limit: int = 10_000) -> RunReport:
        """Process every account due now, then deliver the outbox, until nothing is left."""
        processed = delivered = failed = 0
        while True:
            now = self.clock.now()
            batch = self.store.due(now, limit)
            for account_id in batch:
                with self.store.unit() as unit:
                    account = unit.load(account_id)
                    if account is None:
                        continue
                    self._write(unit, lifecycle.advance(account, self.policy, now))
                processed += 1
            ok, bad = self.deliver()
            delivered += ok
            failed += bad
            if not batch and not ok:
                return RunReport(processed=processed, delivered=delivered, failed=failed)

    def run_until(self, moment: datetime | Duration | str) -> RunReport:
        """With a ManualClock: move time to `moment` (or by a duration such as '30 days'),
        stopping at every due time on the way: on-time processing, as a scheduler that never
        falls behind would do it.
        """
        set_clock = getattr(self.clock, "set", None)
        if set_clock is None:
            raise InvalidInput("run_until() needs an engine built with a ManualClock")
        if isinstance(moment, str):
            moment = Duration.parse(moment)
        if isinstance(moment, Duration):
            moment = add(self.clock.now(), moment)
        processed = delivered = failed = 0
        while True:
            report = self.run_due()
            processed += report.processed
            delivered += report.delivered
            failed += report.failed
            upcoming = self.store.earliest_due()
            if upcoming is None or upcoming > moment:
                break
            set_clock(max(upcoming, self.clock.now()))
        if moment > self.clock.now():
            set_clock(moment)
            report = self.run_due()
            processed += report.processed
            delivered += report.delivered
            failed += report.failed
        return RunReport(processed=processed, delivered=delivered, failed=failed)

    def deliver(self, limit: int = 10_000) -> tuple[int, int]:
        """Attempt every ready outbox item once; returns (delivered, failed attempts)."""
        delivered = failed = 0
        now = self.clock.now()
        for item in self.store.pending_outbox(now, limit):
            try:
                self._deliver(item, now)
            except DeliveryError as exc:
                failed += 1
                attempts = item.attempts + 1
                self.store.mark_outbox(
                    replace(
                        item,
                        attempts=attempts,
                        last_error=str(exc),
                        status="failed" if attempts >= MAX_ATTEMPTS else "pending",
                        next_attempt_at=now + timedelta(minutes=min(2**attempts, 360)),
                    )
                )
            else:
                delivered += 1
        return delivered, failed

    def _deliver(self, item: OutboxItem, now: datetime) -> None:
        effect = item.effect
        if isinstance(effect, NoticeEffect):
            to = effect.recipients or recipients(self.account(item.account_id), effect.to)
            if not to:
                raise DeliveryError(f"notice {effect.key} has no recipient")
            self.notices.send(effect, to, item.idempotency_key, now)
            self._done(item, now)
            self._act(
                item.account_id,
                lambda a, t: lifecycle.notice_dispatched(
                    a, self.policy, t, case_id=effect.case_id, key=effect.key, at=now
                ),
                deliver=False,
            )
        elif isinstance(effect, HostEffect):
            self.host.send(effect, item.idempotency_key, now)
            self._done(item, now)
        elif isinstance(effect, DeleteEffect):
            self._carry_out_delete(item, effect, now)
        else:
            self._carry_out_purge(item, effect, now)

    def _carry_out_delete(self, item: OutboxItem, effect: DeleteEffect, now: datetime) -> None:
        account = self.account(item.account_id)
        case = account.case(effect.case_id)
        if account.deleted_at is not None or case is None or case.destruct != "requested":
            self._done(item, now, note="skipped: the case no longer requests deletion")
            return
        receipt = self.data.delete(effect, now)
        with self.store.unit() as unit:
            current = self._load(unit, item.account_id)
            step = lifecycle.outcome_done(current, self.policy, now, case_id=effect.case_id)
            stone = self._tombstone(current, effect, now)
            gone = Account(
                id=current.id,
                kind=current.kind,
                created_at=current.created_at,
                deleted_at=step.account.deleted_at,
            )
            self._write(
                unit,
                replace(step, account=gone),
                tombstone=stone,
                extra_audit={"receipt": dict(receipt)},
            )
        self._done(item, now)

    def _carry_out_purge(self, item: OutboxItem, effect: PurgeEffect, now: datetime) -> None:
        account = self.account(item.account_id)
        case = account.case(effect.case_id)
        if case is None or case.destruct != "requested":
            self._done(item, now, note="skipped: the case no longer requests the purge")
            return
        self.data.purge(effect, now)
        self._act(
            item.account_id,
            lambda a, t: lifecycle.outcome_done(a, self.policy, t, case_id=effect.case_id),
            deliver=False,
        )
        self._done(item, now)

    def _tombstone(self, account: Account, effect: DeleteEffect, now: datetime) -> Tombstone:
        rule = effect.address
        until = None
        if rule.mode == "retire" and rule.duration is not None:
            until = add(now, rule.duration, self.policy.timezone)
        return Tombstone(
            account_id=account.id,
            deleted_at=now,
            flow=effect.flow,
            case_id=effect.case_id,
            address_hash=address_hash(account.address) if account.address else None,
            address_mode=rule.mode,
            retired_until=until,
        )

    def _done(self, item: OutboxItem, now: datetime, note: str | None = None) -> None:
        self.store.mark_outbox(
            replace(
                item,
                status="delivered",
                attempts=item.attempts + 1,
                delivered_at=now,
                last_error=note,
            )
        )

    # --- answers ----------------------------------------------------------------------------

    def check(self, account_id: str, action: str) -> Decision:
        """May the account do `action` now? (from the cached restriction set)"""
        cached = self._cache.get(account_id)
        if cached is None:
            cached = decisions.restrictions(self.account(account_id), self.policy, self.clock.now())
            self._cache[account_id] = cached
        if action not in self.policy.actions:
            raise UnknownAction(
                f"unknown action {action!r}; "
                f"the policy gates: {', '.join(self.policy.action_order)}"
            )
        return cached.check(action)

    def restrictions(self, account_id: str) -> Restrictions:
        """The account's combined restriction set."""
        return decisions.restrictions(self.account(account_id), self.policy, self.clock.now())

    def status(self, account_id: str) -> Status:
        """State, open cases, deadlines, time left, banner."""
        return decisions.status(
            self.account(account_id),
            self.policy,
            self.clock.now(),
            self.store.next_due(account_id),
        )

    def timeline(self, account_id: str) -> Timeline:
        """Past events (audit) and the projected future if nothing changes."""
        account = self.account(account_id)
        projected = timeline(account, self.policy, self.clock.now())
        past = tuple(
            TimelineEvent(
                at=entry.at,
                kind=entry.kind,
                flow=entry.flow or "",
                case_id=entry.case_id,
                phase=str(entry.detail["phase"]) if "phase" in entry.detail else None,
                text=describe(entry, self.policy),
            )
            for entry in self.store.audit(account_id)
        )
        return replace(projected, past=past)

    # --- plumbing ---------------------------------------------------------------------------

    def _load(self, unit: UnitOfWork, account_id: str) -> Account:
        account = unit.load(account_id)
        if account is None:
            stone = self.store.tombstone(account_id)
            if stone is not None:
                raise AccountDeleted(
                    f"account {account_id!r} was deleted {stone.deleted_at:%Y-%m-%d}"
                )
            raise UnknownAccount(f"no account {account_id!r}")
        if account.deleted_at is not None:
            raise AccountDeleted(f"account {account_id!r} was deleted")
        return account

    def _update(self, account_id: str, change: Callable[[Account, datetime], Account]) -> None:
        """Apply an input change; advance only if it changed anything."""
        now = self.clock.now()
        with self.store.unit() as unit:
            account = self._load(unit, account_id)
            updated = change(account, now)
            if updated is account:
                return
            self._write(unit, lifecycle.advance(updated, self.policy, now))
        self._after()

    def _act(
        self,
        account_id: str,
        action: Callable[[Account, datetime], Step],
        *,
        deliver: bool = True,
    ) -> None:
        now = self.clock.now()
        with self.store.unit() as unit:
            step = action(self._load(unit, account_id), now)
            self._write(unit, step)
        if deliver:
            self._after()

    def _write(
        self,
        unit: UnitOfWork,
        step: Step,
        *,
        created: bool = False,
        tombstone: Tombstone | None = None,
        event_id: str | None = None,
        extra_audit: Mapping[str, object] | None = None,
    ) -> None:
        audit = step.audit
        if created or tombstone is not None:
            kind = "account.created" if created else "account.tombstoned"
            entry = AuditEntry(
                account_id=step.account.id,
                at=self.clock.now(),
                kind=kind,
                detail=dict(extra_audit or {}),
            )
            audit = (entry, *audit) if created else (*audit, entry)
        unit.write(
            Change(
                account=step.account,
                next_due_at=step.next_due_at,
                effects=step.effects,
                audit=audit,
                created=created,
                tombstone=tombstone,
                event_id=event_id,
            )
        )
        self._cache.pop(step.account.id, None)

    def _after(self) -> None:
        if self.deliver_inline:
            self.deliver()

    def set_inputs(
        self,
        account_id: str,
        *,
        signals: Mapping[str, datetime] | None = None,
        facts: Mapping[str, FactValue | None] | None = None,
    ) -> None:
        """Report several signals and facts in one unit of work."""

        def change(account: Account, now: datetime) -> Account:
            for name, at in (signals or {}).items():
                account = inputs.record_signal(account, self.policy, name, at)
            for name, value in (facts or {}).items():
                account = inputs.set_fact(account, self.policy, name, value, now)
            return account

        self._update(account_id, change)
