"""`lapse.Engine`: the facade that drives the whole lifecycle over a store and a clock.

Every change to an account is one unit of work: load the snapshot, decide in the core, write the
new snapshot with its next due time, outbox rows and audit entries together. The scheduler does
the same for due accounts in claimed batches. Effects leave through the outbox afterwards, never
from inside a transaction; only a dispatched notice lets its phase end.

The same class runs the embedded service (SQLite), production workers (PostgreSQL) and tests
(the in-memory store, a manual clock, the local outbox).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter

from lapse.core import decisions, inputs, lifecycle
from lapse.core.decisions import Restrictions
from lapse.core.migrate import MigrationMode, PolicyPreview
from lapse.core.model import (
    Account,
    AuditEntry,
    CaseStatus,
    Decision,
    DeleteEffect,
    Member,
    NoticeEffect,
    PurgeEffect,
    Status,
    Step,
    Timeline,
    TimelineEvent,
)
from lapse.core.timeline import describe, timeline
from lapse.data import receipts
from lapse.errors import (
    AccountDeleted,
    AccountExists,
    AddressRetired,
    InvalidInput,
    LapseError,
    NotFound,
    UnknownAccount,
    UnknownAction,
)
from lapse.policy.durations import Duration, add, subtract
from lapse.policy.model import STATE_STRENGTH, FactValue, Policy
from lapse.runtime import heap
from lapse.runtime.channels import (
    DataHandler,
    InAppNotifications,
    MemoryData,
    MemoryHost,
    MemoryOutbox,
)
from lapse.runtime.clock import Clock, SystemClock
from lapse.runtime.dispatch import (
    MAX_ATTEMPTS,
    AnyChannel,
    ClaimLost,
    Dispatcher,
    DispatchReport,
    NotYet,
)
from lapse.runtime.outbox import drafts
from lapse.runtime.versions import PolicyApplied, PolicyVersions
from lapse.store.base import (
    Change,
    Deliveries,
    NotificationDraft,
    OutboxItem,
    SignalBatchResult,
    Store,
    StoredReceipt,
    Tombstone,
    UnitOfWork,
    address_hash,
)
from lapse.store.memory import MemoryStore

_second = itemgetter(1)  # a signal report's name
_third = itemgetter(2)  # and its time
_zone = attrgetter("tzinfo")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    """What `run_due` / `run_until` did."""

    processed: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EventReport:
    """One event of a batch for `Engine.events`."""

    account_id: str
    name: str
    event_id: str | None = None  # the host's id: an id already applied is skipped
    at: datetime | None = None  # the event's own time (default: now)
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FactReport:
    """The facts of one account in a batch for `Engine.set_facts_many` (None unsets a fact)."""

    account_id: str
    facts: Mapping[str, FactValue | None]
    at: datetime | None = None


def default_worker_id() -> str:
    """host:pid, unique enough to tell workers apart in claims and logs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def account_state(account: Account, policy: Policy) -> str:
    """The strongest state among the account's open cases (deleted > suspended > ...)."""
    if account.deleted_at is not None:
        return "deleted"
    state = "active"
    for case in account.cases:
        flow = policy.flows.get(case.flow)
        if flow is None:
            continue
        candidate = flow.state_in(lifecycle.position_phase(case, flow))
        if STATE_STRENGTH[candidate] > STATE_STRENGTH[state]:
            state = candidate
    return state


class Engine:
    """Load a policy, report what happens to accounts, ask what they may do, run due work."""

    def __init__(
        self,
        policy: Policy,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        channels: Mapping[str, AnyChannel] | None = None,
        data: DataHandler | None = None,
        worker_id: str | None = None,
        lease: timedelta = timedelta(minutes=1),
        batch_size: int = 1000,
        max_attempts: int = MAX_ATTEMPTS,
        deliver_inline: bool = True,
        cache_ttl: timedelta | None = None,
        deletions_per_minute: int | None = None,
        event_retention: Duration | None = None,
    ) -> None:
        self.policy = policy
        #: the global deletion rate limit (all workers on the store together); None: no limit
        self.deletions_per_minute = deletions_per_minute
        #: how long event ids are kept (LAPSE_EVENT_RETENTION); events older are refused
        self.event_retention = event_retention
        self.clock: Clock = clock or SystemClock()
        self.store: Store = store or MemoryStore(clock=self.clock.now)
        self.notices = MemoryOutbox(clock=self.clock.now)
        self.host = MemoryHost()
        self.worker_id = worker_id or default_worker_id()
        self.lease = lease
        self._data: DataHandler = MemoryData()
        self.data = data or MemoryData()
        wired: dict[str, AnyChannel] = {
            "email": self.notices,
            "host": self.host,
            "in_app": InAppNotifications(),
        }
        wired.update(channels or {})
        self.channels = wired
        self.batch_size = batch_size
        self.deliver_inline = deliver_inline
        self.cache_ttl = cache_ttl
        self.dispatcher = Dispatcher(
            store=self.store,
            clock=self.clock,
            channels=self.channels,
            carry_out=self._carry_out,
            notice_delivered=self._notice_delivered,
            worker=self.worker_id,
            lease=lease,
            max_attempts=max_attempts,
        )
        self._cache: dict[str, tuple[Restrictions, datetime]] = {}
        self._versions: dict[str, int] = {}
        self._channel_names = frozenset(self.channels)
        #: policy versions: the active policy in the store, migrations, previews
        self.policy_versions = PolicyVersions(self)

    @property
    def data(self) -> DataHandler:
        """What deletes, purges and exports the host's data (`lapse.data`)."""
        return self._data

    @data.setter
    def data(self, handler: DataHandler) -> None:
        handler.attach(
            store=self.store,
            now=self.clock.now,
            policy=self.policy,
            worker=self.worker_id,
            lease=self.lease,
        )
        self._data = handler

    # --- accounts -------------------------------------------------------------------------

    def add_account(
        self,
        account_id: str,
        *,
        kind: str,
        created_at: datetime | None = None,
        address: str | None = None,
        members: Iterable[Member | tuple[str, str]] = (),
        signals: Mapping[str, datetime] | None = None,
        facts: Mapping[str, FactValue] | None = None,
    ) -> Account:
        """Register an account; refused if the id exists or the address is retired.

        `signals` (last seen times) and `facts` are what the host already knows about an
        existing account: they count from the first evaluation, so an old account imported with
        its recent activity does not open an inactivity case first."""
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
        for name, at in (signals or {}).items():
            account = inputs.record_signal(account, self.policy, name, at)  # validates `at`
            if at > now:
                raise InvalidInput(f"signal {name}: {at.isoformat()} is in the future")
        for name, value in (facts or {}).items():
            account = inputs.set_fact(account, self.policy, name, value, now)
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
            created = AuditEntry(
                account_id=account_id, at=now, kind="account.created", detail={"kind": kind}
            )
            step = lifecycle.advance(account, self.policy, now)
            self._write(unit, step, created=True, audit_before=(created,))
        self._after()
        return self.account(account_id)

    def import_accounts(self, accounts: Iterable[Account], *, chunk: int = 5000) -> int:
        """Import existing accounts (with their members, signals and facts) in bulk.

        Each account is evaluated at once, as `add_account` would: an account already past its
        inactivity threshold opens its case at the moment it began to qualify. Ids must be new
        and addresses not retired; a chunk with an existing id or a retired address is refused
        whole (earlier chunks stay imported). Returns how many were imported.
        """
        now = self.clock.now()
        count = 0
        batch: list[Change] = []

        def write(changes: list[Change]) -> None:
            # the retired addresses of the whole chunk in one query, not one per account
            addresses = [c.account.address for c in changes if c.account.address is not None]
            retired = self.store.retired_among(addresses, now) if addresses else {}
            for change in changes:
                stone = retired.get(change.account.address or "")
                if stone is not None:
                    until = f" until {stone.retired_until:%Y-%m-%d}" if stone.retired_until else ""
                    raise AddressRetired(
                        f"account {change.account.id!r}: address {change.account.address} "
                        f"belonged to a deleted account and is retired{until}; its chunk of "
                        f"{len(changes)} accounts was not imported"
                    )
            self.store.create_many(changes)

        for given in accounts:
            checked = inputs.new_account(  # validates id, kind, address and members
                self.policy,
                account_id=given.id,
                kind=given.kind,
                created_at=given.created_at,
                address=given.address,
                members=given.members,
            )
            # stored as add_account stores them: addresses and member emails as normalised
            account = replace(given, address=checked.address, members=checked.members)
            created = AuditEntry(
                account_id=account.id,
                at=now,
                kind="account.created",
                detail={"kind": account.kind, "imported": True},
            )
            step = lifecycle.advance(account, self.policy, now)
            batch.append(self._change(step, created=True, audit_before=(created,)))
            if len(batch) >= chunk:
                write(batch)
                count += len(batch)
                batch = []
        if batch:
            write(batch)
            count += len(batch)
        self._after()
        return count

    def account(self, account_id: str) -> Account:
        """The stored snapshot; raises UnknownAccount."""
        account = self.store.get(account_id)
        if account is None:
            raise UnknownAccount(f"no account {account_id!r}")
        migration = self.policy_versions.current(account, writing=False)
        return migration.account if migration is not None else account

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
        """Report one signal (activity) for one account: see `report_signals` for batches."""
        self.report_signals([(account_id, name, at or self.clock.now())])

    def report_signals(self, reports: Sequence[tuple[str, str, datetime]]) -> SignalBatchResult:
        """Report a batch of (account id, signal, time): coalesced, one write per account
        and signal at most, accounts woken only where a signal can stop an open case."""
        known = self.policy.signals
        # checked in C over the whole batch (a loop here costs a tenth of the ingestion); the
        # loop below only runs to say which report is wrong
        names = set(map(_second, reports))
        zones = set(map(_zone, map(_third, reports)))
        if not names.issubset(known) or None in zones:
            for index, (_, name, at) in enumerate(reports):
                if name not in known:
                    raise InvalidInput(
                        f"signals[{index}]: unknown signal {name!r}; "
                        f"the policy knows: {', '.join(sorted(known))}"
                    )
                if at.tzinfo is None:
                    raise InvalidInput(
                        f"signals[{index}]: timestamp {at.isoformat()} has no time zone"
                    )
        now = self.clock.now()
        resolution = add(now, self.policy.resolution, self.policy.timezone) - now
        result = self.store.record_signals(reports, resolution=resolution, now=now)
        if result.woken:
            self._forget(result.woken_ids)  # only those may change; the rest keep their cases
            if self.deliver_inline:
                self.run_due()
        return result

    def set_fact(
        self, account_id: str, name: str, value: FactValue | None, at: datetime | None = None
    ) -> None:
        """Report a fact's value (None unsets it); the account is re-evaluated at once."""
        self.set_facts(account_id, {name: value}, at=at)

    def set_facts(
        self,
        account_id: str,
        facts: Mapping[str, FactValue | None],
        at: datetime | None = None,
    ) -> None:
        """Report several facts of one account in one unit of work."""

        def change(account: Account, now: datetime) -> Account:
            for name, value in facts.items():
                account = inputs.set_fact(account, self.policy, name, value, at or now)
            return account

        self._update(account_id, change)

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
        self._recent_enough(name, at, now)
        with self.store.unit() as unit:
            account = self._load(unit, account_id)
            if event_id is not None and unit.seen_event(account_id, event_id):
                return False
            step = lifecycle.apply_event(
                account, self.policy, name, at or now, now, event_id=event_id, reason=reason
            )
            self._write(unit, step, event_id=event_id, event_name=name)
        self._after()
        return True

    def events(self, reports: Sequence[EventReport]) -> list[bool]:
        """Apply a batch of events in order, all or nothing (one unit of work); an event whose
        id was applied before, or earlier in the batch, is skipped: False in its place."""
        now = self.clock.now()
        applied: list[bool] = []
        seen: set[tuple[str, str]] = set()
        with self.store.unit() as unit:
            for index, report in enumerate(reports):
                with _located(f"events[{index}]"):
                    self._recent_enough(report.name, report.at, now)
                    account = self._load(unit, report.account_id)
                    if report.event_id is not None:
                        key = (report.account_id, report.event_id)
                        if key in seen or unit.seen_event(*key):
                            applied.append(False)
                            continue
                        seen.add(key)
                    step = lifecycle.apply_event(
                        account,
                        self.policy,
                        report.name,
                        report.at or now,
                        now,
                        event_id=report.event_id,
                        reason=report.reason,
                    )
                    self._write(unit, step, event_id=report.event_id, event_name=report.name)
                    applied.append(True)
        self._after()
        return applied

    def _recent_enough(self, name: str, at: datetime | None, now: datetime) -> None:
        """Refuse an event older than the event-id retention: its id may have been pruned,
        so a repeated delivery of it could no longer be recognised (and would apply twice)."""
        retention = self.event_retention
        if retention is None or at is None or at.tzinfo is None:
            return  # no retention, "now", or a naive time (refused by the core, saying so)
        oldest = subtract(now, retention)
        if at < oldest:
            raise InvalidInput(
                f"event {name!r} at {at.isoformat()} is older than the event retention "
                f"({retention}, LAPSE_EVENT_RETENTION): its id may be forgotten, so a repeat "
                f"could not be told apart; events from {oldest.isoformat()} on are accepted"
            )

    def set_facts_many(self, reports: Sequence[FactReport]) -> int:
        """Report facts of many accounts, all or nothing (one unit of work); returns how many
        accounts changed."""
        now = self.clock.now()
        changed = 0
        with self.store.unit() as unit:
            for index, report in enumerate(reports):
                with _located(f"facts[{index}]"):
                    account = self._load(unit, report.account_id)
                    updated = account
                    for name, value in report.facts.items():
                        updated = inputs.set_fact(
                            updated, self.policy, name, value, report.at or now
                        )
                    if updated is not account:
                        self._write(unit, lifecycle.advance(updated, self.policy, now))
                        changed += 1
        self._after()
        return changed

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
        """Close one or every reversible open case at once (unlock)."""
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
        """Move a case's deadline (and every later one) later."""
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

    def delete_now(self, account_id: str, *, by: str, reason: str, flow: str | None = None) -> str:
        """Order the account deleted now (refused under a legal hold); returns the flow whose
        `delete` outcome, address rule and receipt are used (`lifecycle.deletion_flow`). The
        deletion itself goes through the outbox like any other, so a worker carries it out
        (at once here when delivering inline)."""
        chosen = lifecycle.deletion_flow(self.account(account_id), self.policy, flow).name
        self._act(
            account_id,
            lambda a, now: lifecycle.delete_now(
                a, self.policy, now, by=by, reason=reason, flow=chosen
            ),
        )
        return chosen

    def open_case(self, account_id: str, *, flow: str, by: str, reason: str | None = None) -> None:
        """Start a flow by hand (lock, suspend)."""
        self._act(
            account_id,
            lambda a, now: lifecycle.open_case(
                a, self.policy, now, flow=flow, by=by, reason=reason
            ),
        )

    def lock(self, account_id: str, *, by: str, reason: str, flow: str | None = None) -> str:
        """Lock the account by hand: open a reversible flow (by default the one event-started
        flow that applies to its kind); returns the flow opened."""
        return self._open_by_hand(account_id, flow=flow, by=by, reason=reason, irreversible=False)

    def suspend(self, account_id: str, *, by: str, reason: str, flow: str | None = None) -> str:
        """Suspend the account: open an irreversible flow (by default the one that applies to
        its kind); returns the flow opened."""
        return self._open_by_hand(account_id, flow=flow, by=by, reason=reason, irreversible=True)

    def _open_by_hand(
        self, account_id: str, *, flow: str | None, by: str, reason: str, irreversible: bool
    ) -> str:
        account = self.account(account_id)
        verb = "suspend" if irreversible else "lock"
        if flow is None:
            candidates = [
                f.name
                for f in self.policy.flows_for(account.kind)
                if f.irreversible == irreversible and f.starts_on
            ]
            if len(candidates) != 1:
                found = f": {', '.join(candidates)}" if candidates else ""
                raise InvalidInput(
                    f"{len(candidates)} event-started {'ir' if irreversible else ''}reversible "
                    f"flows can {verb} accounts of kind {account.kind!r}{found}; name the flow"
                )
            flow = candidates[0]
        else:
            chosen = self.policy.flows.get(flow)
            if chosen is not None and chosen.irreversible != irreversible:
                other = "suspend" if chosen.irreversible else "lock"
                raise InvalidInput(
                    f"flow {flow!r} is {'' if chosen.irreversible else 'not '}irreversible: "
                    f"{other} opens it, not {verb}"
                )
        self.open_case(account_id, flow=flow, by=by, reason=reason)
        return flow

    # --- scheduling and delivery ------------------------------------------------------------

    def run_due(self) -> RunReport:
        """Process every account due now and deliver the outbox, until nothing is left."""
        processed = 0
        report = DispatchReport()
        while True:
            batch = self._step_batch()
            processed += len(batch)
            delivered = self.deliver() if self.deliver_inline else DispatchReport()
            report = report + delivered
            if not batch and not (delivered.delivered or delivered.skipped):
                return RunReport(
                    processed=processed,
                    delivered=report.delivered,
                    failed=report.failed,
                    skipped=report.skipped,
                )

    def step_once(self) -> int:
        """One scheduler pass: claim and process at most one batch; returns its size."""
        return len(self._step_batch())

    def _step_batch(self) -> list[str]:
        """Claim and process one batch of due accounts (one transaction); returns their ids."""
        now = self.clock.now()
        with heap.paused():  # a batch's objects die with it: see lapse.runtime.heap
            batch = self.store.process_due(
                now, self.batch_size, self.worker_id, self.lease, self._step_fn(now)
            )
        self._forget(batch)
        return batch

    def _step_fn(self, now: datetime) -> Callable[[Account, Deliveries], Change | None]:
        policy = self.policy

        def step(account: Account, delivered: Deliveries) -> Change | None:
            if account.deleted_at is not None:
                return None
            # `delivered`: notices whose rows went out but whose dispatch was never recorded
            migration = self.policy_versions.current(account)
            if migration is not None:  # opened under another version: migrated first
                return self._change(self.policy_versions.step(migration, dispatched=delivered))
            return self._change(lifecycle.advance(account, policy, now, dispatched=delivered))

        return step

    def recover_notices(self) -> list[str]:
        """Wake the accounts whose delivered notices were never recorded as dispatched (a
        process killed between the two steps, before they were one transaction), then run
        them if delivering inline; returns their ids. Workers call it when they start."""
        woken = self.store.wake_undispatched(self.clock.now())
        self._forget(woken)
        if woken and self.deliver_inline:
            self.run_due()
        return woken

    def prune_outbox(
        self,
        retention: Duration | str,
        *,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the outbox rows of closed cases that finished (delivered or skipped) more
        than `retention` ago (LAPSE_OUTBOX_RETENTION); the number of rows (only counted with
        `dry_run`). What was decided stays in the audit log, which is never pruned."""
        before = self._cutoff(retention)
        return self.store.prune_outbox(before, dry_run=dry_run, progress=progress)

    def prune_notifications(
        self,
        retention: Duration | str,
        *,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the in-app notifications of closed cases created more than `retention` ago
        (they go with the outbox rows, under LAPSE_OUTBOX_RETENTION); the number deleted."""
        before = self._cutoff(retention)
        return self.store.prune_notifications(before, dry_run=dry_run, progress=progress)

    def prune_events(
        self,
        retention: Duration | str,
        *,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Forget the ids of events received more than `retention` ago (LAPSE_EVENT_RETENTION,
        which also makes `event` refuse events older than that); the number of ids."""
        before = self._cutoff(retention)
        return self.store.prune_events(before, dry_run=dry_run, progress=progress)

    def _cutoff(self, retention: Duration | str) -> datetime:
        if isinstance(retention, str):
            retention = Duration.parse(retention)
        if retention.is_zero:
            raise InvalidInput("a retention must be longer than zero, e.g. '90 days'")
        return subtract(self.clock.now(), retention)

    def run_until(self, moment: datetime | Duration | str) -> RunReport:
        """With a ManualClock: move time to `moment` (or by a duration such as '30 days'),
        stopping at every due time on the way: on-time processing, as a scheduler that never
        falls behind would do it."""
        set_clock = getattr(self.clock, "set", None)
        if set_clock is None:
            raise InvalidInput("run_until() needs an engine built with a ManualClock")
        if isinstance(moment, str):
            moment = Duration.parse(moment)
        if isinstance(moment, Duration):
            moment = add(self.clock.now(), moment)
        total = RunReport()
        while True:
            total = _plus(total, self.run_due())
            upcoming = self.store.earliest_due()
            retry = self.store.next_outbox_attempt()
            candidates = [t for t in (upcoming, retry) if t is not None and t <= moment]
            if not candidates:
                break
            set_clock(max(min(candidates), self.clock.now()))
        if moment > self.clock.now():
            set_clock(moment)
            total = _plus(total, self.run_due())
        return total

    def deliver(self) -> DispatchReport:
        """Deliver every outbox row ready now (one pass per call of the dispatcher)."""
        total = DispatchReport()
        while True:
            report = asyncio.run(self.dispatcher.run_once())
            total = total + report
            if not (report.delivered or report.failed or report.skipped):
                return total

    def outbox_row(self, item_id: int) -> OutboxItem:
        """One outbox row by id; raises NotFound."""
        rows = self.store.outbox(after=item_id - 1, limit=1)
        if not rows or rows[0].id != item_id:
            raise NotFound(f"no outbox row {item_id}")
        return rows[0]

    def retry_outbox(self, item_id: int, *, by: str) -> OutboxItem:
        """Put a failed outbox row back to pending, due now; the audit says who, in the same
        transaction. The permanent audit chain keeps the row's last error with its addresses
        replaced by `<address>` (an SMTP refusal quotes the recipient)."""
        item = self.outbox_row(item_id)
        retried = AuditEntry(
            account_id=item.account_id,
            at=self.clock.now(),
            kind="outbox.retried",
            case_id=item.case_id,
            detail={
                "by": by,
                "row": item_id,
                "channel": item.channel,
                "attempts": item.attempts,
                # the audit outlives a deletion: no recipient address in it
                "error": _no_addresses(item.last_error),
            },
        )
        return self.store.retry_outbox(item_id, audit=[retried])

    def outbox_counts(self) -> dict[str, int]:
        """How many outbox rows are pending and failed: the backlog and what needs a person
        (delivered rows only grow; the dispatcher's counters measure them)."""
        counts: dict[str, int] = {}
        for status in ("pending", "failed"):
            count = 0
            after: int | None = None
            while True:
                rows = self.store.outbox(status=status, after=after, limit=5000)
                count += len(rows)
                if len(rows) < 5000:
                    break
                after = rows[-1].id
            counts[status] = count
        return counts

    def scheduler_lag(self) -> timedelta:
        """How far the scheduler is behind: now minus the earliest due time (zero if none)."""
        earliest = self.store.earliest_due()
        if earliest is None:
            return timedelta(0)
        return max(self.clock.now() - earliest, timedelta(0))

    def _notice_delivered(
        self, item: OutboxItem, now: datetime, notification: NotificationDraft | None
    ) -> bool:
        """A notice row went out: mark it delivered and, if all its rows did, record the
        notice dispatched, in one transaction (False if another worker took the row over)."""
        effect = item.effect
        assert isinstance(effect, NoticeEffect)

        def dispatched(account: Account, delivered: datetime) -> Change | None:
            migration = self.policy_versions.current(account)
            # opened under another version: migrated first, in the same change
            before = self.policy_versions.step(migration) if migration is not None else None
            if before is not None:
                account = before.account
            case = account.case(effect.case_id)
            record = case.notice(effect.key) if case is not None else None
            if account.deleted_at is not None or record is None or record.dispatched_at is not None:
                return None if before is None else self._change(before)
            step = lifecycle.notice_dispatched(
                account,
                self.policy,
                self.clock.now(),
                case_id=effect.case_id,
                key=effect.key,
                at=delivered,
            )
            if before is not None:
                step = Step(
                    account=step.account,
                    effects=(*before.effects, *step.effects),
                    audit=(*before.audit, *step.audit),
                    next_due_at=step.next_due_at,
                )
            return self._change(step)

        done = self.store.notice_delivered(
            item.id, now, worker=self.worker_id, step=dispatched, notification=notification
        )
        self._forget((item.account_id,))
        return done

    def _carry_out(self, item: OutboxItem, now: datetime) -> str:
        """Carry out a delete or purge row; returns why it was skipped, or ''."""
        effect = item.effect
        account = self.store.get(item.account_id)
        case = account.case(effect.case_id) if account is not None else None
        if account is None or account.deleted_at is not None:
            return "the account no longer exists"
        if case is None or case.destruct != "requested":
            return "the case no longer requests it (stopped, or held by a legal hold)"
        if isinstance(effect, DeleteEffect):
            limit = self.deletions_per_minute
            if limit is not None:
                wait = self.store.start_deletion(item.id, item.account_id, now, limit)
                if wait is not None:
                    raise NotYet(
                        wait,
                        f"waiting for the deletion rate limit ({limit} deletions per minute)",
                    )
            data = self.data.delete(effect, now)
            self._tombstone(item, effect, data, started=now)
        else:
            assert isinstance(effect, PurgeEffect)
            data = self.data.purge(effect, now)
            self._purged(item, effect, data, started=now)
        return ""

    def _finish(self, unit: UnitOfWork, item: OutboxItem, now: datetime) -> None:
        """Mark the delete or purge row delivered in the unit that records its outcome; if
        another worker holds the row by now (this one's claim ran out), undo the unit: the
        row's holder records it."""
        if not unit.delivered(item.id, now, worker=self.worker_id):
            raise ClaimLost(f"outbox row {item.id} was taken over by another worker")

    def _policy_ref(self) -> dict[str, str]:
        return {
            "name": self.policy.name,
            "version": self.policy.version,
            "digest": self.policy.digest,
        }

    def _tombstone(
        self,
        item: OutboxItem,
        effect: DeleteEffect,
        data: Mapping[str, object],
        *,
        started: datetime,
    ) -> None:
        """After the host's data went: erase lapse's own rows of the account, keep the
        tombstone and the sealed receipt, audit the receipt's hash and mark the deletion's
        outbox row delivered, in one unit."""
        now = self.clock.now()
        with self.store.unit() as unit:
            current = self._load(unit, effect.account_id)
            step = lifecycle.outcome_done(current, self.policy, now, case_id=effect.case_id)
            erased = unit.erase(current.id)
            lapse_rows = {
                "members": len(current.members),
                "signals": len(current.signals),
                "facts": len(current.facts),
                "cases": len(current.cases),
                "address": 1 if current.address else 0,
                **erased,
            }
            rule = effect.address
            until = None
            if rule.mode == "retire" and rule.duration is not None:
                until = add(now, rule.duration, self.policy.timezone)
            address: dict[str, object] = {"mode": rule.mode}
            if rule.mode == "retire":
                address["until"] = receipts.iso(until) if until is not None else None
            body = receipts.build(
                kind="delete",
                account_id=current.id,
                case_id=effect.case_id,
                flow=effect.flow,
                categories=(),
                policy=self._policy_ref(),
                started_at=started,
                finished_at=now,
                data=data,
                lapse=lapse_rows,
                address=address,
            )
            stone = Tombstone(
                account_id=current.id,
                deleted_at=now,
                flow=effect.flow,
                case_id=effect.case_id,
                # only a retired address needs its hash (to refuse it); a released one leaves
                # no trace of itself, not even an unsalted hash anyone could test guesses on
                address_hash=(
                    address_hash(current.address)
                    if current.address and rule.mode == "retire"
                    else None
                ),
                address_mode=rule.mode,
                retired_until=until,
                receipt=body,
            )
            gone = Account(
                id=current.id,
                kind=current.kind,
                created_at=current.created_at,
                deleted_at=step.account.deleted_at,
            )
            tombstoned = AuditEntry(
                account_id=current.id,
                at=now,
                kind="account.tombstoned",
                case_id=effect.case_id,
                flow=effect.flow,
                detail={
                    "address": rule.mode,
                    "receipt": body["id"],
                    "receipt_hash": body["hash"],
                    "rows": body["rows"],
                },
            )
            self._write(
                unit,
                replace(step, account=gone),
                tombstone=stone,
                receipt=_stored(body, now),
                audit_after=(tombstoned,),
            )
            self._finish(unit, item, now)

    def _purged(
        self,
        item: OutboxItem,
        effect: PurgeEffect,
        data: Mapping[str, object],
        *,
        started: datetime,
    ) -> None:
        """After a purge: close the outcome, keep the sealed receipt, audit its hash and mark
        the purge's outbox row delivered, in one unit."""
        now = self.clock.now()
        with self.store.unit() as unit:
            current = self._load(unit, effect.account_id)
            step = lifecycle.outcome_done(current, self.policy, now, case_id=effect.case_id)
            body = receipts.build(
                kind="purge",
                account_id=current.id,
                case_id=effect.case_id,
                flow=effect.flow,
                categories=effect.categories,
                policy=self._policy_ref(),
                started_at=started,
                finished_at=now,
                data={
                    "id": receipts.receipt_id("purge", current.id, effect.case_id, effect.phase),
                    **data,
                },
            )
            purged = AuditEntry(
                account_id=current.id,
                at=now,
                kind="purge.receipt",
                case_id=effect.case_id,
                flow=effect.flow,
                detail={
                    "categories": list(effect.categories),
                    "receipt": body["id"],
                    "receipt_hash": body["hash"],
                    "rows": body["rows"],
                },
            )
            self._write(unit, step, receipt=_stored(body, now), audit_after=(purged,))
            self._finish(unit, item, now)

    # --- answers ----------------------------------------------------------------------------

    def check(self, account_id: str, action: str) -> Decision:
        """May the account do `action` now? From the cached restriction set (fast path)."""
        cached = self._cache.get(account_id)
        if cached is None or (self.cache_ttl is not None and self.clock.now() >= cached[1]):
            restrictions = decisions.restrictions(
                self.account(account_id), self.policy, self.clock.now()
            )
            expires = self.clock.now() + (self.cache_ttl or timedelta(0))
            cached = (restrictions, expires)
            self._cache[account_id] = cached
        if action not in self.policy.actions:
            raise UnknownAction(
                f"unknown action {action!r}; "
                f"the policy gates: {', '.join(self.policy.action_order)}"
            )
        return cached[0].check(action)

    def check_exact(self, account_id: str, action: str) -> Decision:
        """One decision, exact across processes (validated like `check_many`, unlike `check`,
        whose cache only sees this process's writes)."""
        if action not in self.policy.actions:
            raise UnknownAction(
                f"unknown action {action!r}; "
                f"the policy gates: {', '.join(self.policy.action_order)}"
            )
        return self.check_many([(account_id, action)])[0]

    def check_many(self, pairs: Sequence[tuple[str, str]]) -> list[Decision]:
        """Decisions for many (account, action) pairs, exact across processes: the cache is
        validated against each account's write counter in one query."""
        actions = self.policy.actions
        for index, (_, action) in enumerate(pairs):
            if action not in actions:
                raise UnknownAction(
                    f"checks[{index}]: unknown action {action!r}; "
                    f"the policy gates: {', '.join(self.policy.action_order)}"
                )
        ids = list(dict.fromkeys(account_id for account_id, _ in pairs))
        versions = self.store.versions(ids)
        missing = [i for i in ids if i not in versions]
        if missing:
            raise UnknownAccount(f"no account {', '.join(repr(m) for m in missing[:10])}")
        stale = [i for i in ids if self._versions.get(i) != versions[i]]
        if stale:
            now = self.clock.now()
            for account_id, stored in self.store.get_many(stale).items():
                migration = self.policy_versions.current(stored, writing=False)
                account = migration.account if migration is not None else stored
                self._cache[account_id] = (
                    decisions.restrictions(account, self.policy, now),
                    now,
                )
                self._versions[account_id] = versions[account_id]
        cache = self._cache
        return [cache[account_id][0].check(action) for account_id, action in pairs]

    def restrictions(self, account_id: str) -> Restrictions:
        """The account's combined restriction set."""
        return decisions.restrictions(self.account(account_id), self.policy, self.clock.now())

    def status(self, account_id: str) -> Status:
        """State, open cases, deadlines, time left, banner; undelivered notices say why."""
        status = decisions.status(
            self.account(account_id),
            self.policy,
            self.clock.now(),
            self.store.next_due(account_id),
        )
        if not any(c.waiting for c in status.cases):
            return status
        problems: dict[tuple[str, str], str] = {}
        for item in self.store.outbox(account_id=account_id, limit=10_000):
            if item.status in ("failed", "pending") and item.last_error:
                key = getattr(item.effect, "key", "")
                state = "failed" if item.status == "failed" else "retrying"
                problems[(item.case_id, key)] = (
                    f"{state} after {item.attempts} attempt{'s' if item.attempts != 1 else ''}: "
                    f"{item.last_error}"
                )
        if not problems:
            return status
        cases = [
            replace(case, waiting=tuple(_annotate(case, text, problems) for text in case.waiting))
            for case in status.cases
        ]
        return replace(status, cases=tuple(cases))

    def timeline(self, account_id: str) -> Timeline:
        """Past events (the audit log) and the projected future if nothing changes."""
        account = self.account(account_id)
        projected = timeline(account, self.policy, self.clock.now())
        past = tuple(
            TimelineEvent(
                at=record.entry.at,
                kind=record.entry.kind,
                flow=record.entry.flow or "",
                case_id=record.entry.case_id,
                phase=str(record.entry.detail["phase"]) if "phase" in record.entry.detail else None,
                text=describe(record.entry, self.policy),
            )
            for record in self.store.audit(account_id=account_id, limit=10_000)
        )
        return replace(projected, past=past)

    # --- policy versions (lapse.runtime.versions) ---------------------------------------------

    def adopt_policy(
        self, *, by: str, shown: str | None = None, follow: bool = False
    ) -> PolicyApplied:
        """At start: record this policy as the store's active one (first start), go on (it is
        the active one), apply it automatically (no open case would move), or refuse it with
        PolicyMismatch, which says how to preview and apply it. With `follow`, switch to the
        store's active policy instead (workers)."""
        return self.policy_versions.adopt(by=by, shown=shown, follow=follow)

    def apply_policy(
        self,
        policy: Policy,
        *,
        mode: MigrationMode,
        by: str,
        close_removed: bool = False,
        chunk: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> PolicyApplied:
        """Make `policy` the active policy; open cases opened under another version keep their
        deadlines (`keep`) or are re-planned (`replan`); cases whose flow or phase is gone
        refuse the whole change unless `close_removed` closes them. Audited, idempotent."""
        return self.policy_versions.apply(
            policy, mode=mode, by=by, close_removed=close_removed, chunk=chunk, progress=progress
        )

    def preview_policy(
        self,
        policy: Policy,
        *,
        modes: Iterable[MigrationMode] = ("keep", "replan"),
        close_removed: bool = False,
        chunk: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> PolicyPreview:
        """What `apply_policy(policy)` would do to the stored accounts, per mode; writes
        nothing."""
        return self.policy_versions.preview(
            policy, modes=modes, close_removed=close_removed, chunk=chunk, progress=progress
        )

    def refresh_policy(self, *, max_age: float = 0.0) -> bool:
        """Switch to the store's active policy if another process applied a new one."""
        return self.policy_versions.refresh(max_age=max_age)

    # --- simulations ------------------------------------------------------------------------

    def erase(self) -> None:
        """Erase every account and everything about it (API tokens stay) and the cached
        decisions: a simulation on a controlled clock starts over (POST /v1/clock/reset)."""
        self.store.erase()
        self._cache.clear()
        self._versions.clear()

    # --- plumbing ---------------------------------------------------------------------------

    def _load(self, unit: UnitOfWork, account_id: str) -> Account:
        account = self._load_current(unit, account_id)
        if account is None:
            stone = self.store.tombstone(account_id)
            if stone is not None:
                raise AccountDeleted(
                    f"account {account_id!r} was deleted on {stone.deleted_at:%Y-%m-%d}"
                )
            raise UnknownAccount(f"no account {account_id!r}")
        if account.deleted_at is not None:
            raise AccountDeleted(f"account {account_id!r} was deleted")
        return account

    def _load_current(self, unit: UnitOfWork, account_id: str) -> Account | None:
        """The account locked in the unit; one with a case opened under another policy version
        is migrated first, and written so (see lapse.runtime.versions)."""
        account = unit.load(account_id)
        migration = self.policy_versions.current(account) if account is not None else None
        if migration is None:
            return account
        step = self.policy_versions.step(migration)
        self._write(unit, step)
        return step.account

    def _use_policy(self, policy: Policy) -> None:
        """Run `policy` from now on (PolicyVersions decides when): cached decisions go."""
        self.policy = policy
        self._cache.clear()
        self._versions.clear()
        self.data = self._data  # the data handler records the policy in its receipts

    def _update(self, account_id: str, change: Callable[[Account, datetime], Account]) -> None:
        """Apply an input change; write and re-evaluate only if it changed anything."""
        now = self.clock.now()
        with self.store.unit() as unit:
            account = self._load(unit, account_id)
            updated = change(account, now)
            if updated is account:
                return
            self._write(unit, lifecycle.advance(updated, self.policy, now))
        self._after()

    def _act(self, account_id: str, action: Callable[[Account, datetime], Step]) -> None:
        now = self.clock.now()
        with self.store.unit() as unit:
            self._write(unit, action(self._load(unit, account_id), now))
        self._after()

    def _change(
        self,
        step: Step,
        *,
        created: bool = False,
        tombstone: Tombstone | None = None,
        receipt: StoredReceipt | None = None,
        event_id: str | None = None,
        event_name: str | None = None,
        audit_before: Sequence[AuditEntry] = (),
        audit_after: Sequence[AuditEntry] = (),
    ) -> Change:
        account = step.account
        return Change(
            account=account,
            next_due_at=step.next_due_at,
            state=account_state(account, self.policy),
            wake_signals=lifecycle.wake_signals(account, self.policy),
            outbox=drafts(step.effects, channels=self._channel_names),
            audit=(*audit_before, *step.audit, *audit_after),
            created=created,
            tombstone=tombstone,
            receipt=receipt,
            event_id=event_id,
            event_name=event_name,
        )

    def _write(self, unit: UnitOfWork, step: Step, **extra: object) -> None:
        unit.write(self._change(step, **extra))  # type: ignore[arg-type]
        self._forget((step.account.id,))

    def _forget(self, account_ids: Iterable[str]) -> None:
        for account_id in account_ids:
            self._cache.pop(account_id, None)
            self._versions.pop(account_id, None)

    def _after(self) -> None:
        if self.deliver_inline:
            self.deliver()


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefix the message of a LapseError raised inside with where it happened in a batch."""
    try:
        yield
    except LapseError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{where}: {exc.args[0]}", *exc.args[1:])
        raise


def _annotate(case: CaseStatus, text: str, problems: Mapping[tuple[str, str], str]) -> str:
    """Add the delivery problem to a 'notice ... is not dispatched yet' waiting reason."""
    for record in case.notices:
        if record.dispatched_at is None and text.startswith(f"notice {record.key} "):
            problem = problems.get((case.id, record.key))
            return f"{text} ({problem})" if problem else text
    return text


def _plus(a: RunReport, b: RunReport) -> RunReport:
    return RunReport(
        processed=a.processed + b.processed,
        delivered=a.delivered + b.delivered,
        failed=a.failed + b.failed,
        skipped=a.skipped + b.skipped,
    )


def _stored(body: Mapping[str, object], now: datetime) -> StoredReceipt:
    """The store's record of a sealed receipt."""
    return StoredReceipt(
        id=str(body["id"]),
        account_id=str(body["account"]),
        case_id=str(body["case"]),
        flow=str(body["flow"]),
        kind=str(body["kind"]),
        finished_at=now,
        body=dict(body),
        hash=str(body["hash"]),
    )


_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+")


def _no_addresses(text: str | None) -> str:
    """`text` with every email address replaced by `<address>` (an SMTP error names them)."""
    return _ADDRESS.sub("<address>", text or "")
