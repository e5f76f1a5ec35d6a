"""`MemoryStore`: the whole storage contract in process memory.

For unit tests, simulations and the in-memory `Engine`, and public for users' own tests. It keeps
the same promises as `SqlStore`: a unit's writes appear together on commit and not at all on an
exception, outbox rows are created once per idempotency key, claims lease accounts to a worker,
and the audit log is the same hash chain (so `verify_audit` works, and tests can tamper with it).
Due times live in a heap, so the scheduler's cost grows with what is due, not with the accounts.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from lapse.core.model import Account, AuditEntry, NoticeEffect
from lapse.errors import AccountExists, Conflict, InvalidInput
from lapse.store import codec
from lapse.store.base import (
    PRUNE_CHUNK,
    PRUNE_KINDS,
    PRUNE_STATUSES,
    RATE_WINDOW,
    AccountSummary,
    AuditProblem,
    AuditRecord,
    AuditVerification,
    Change,
    DataProgress,
    DataRun,
    NoticeStepFn,
    Notification,
    NotificationDraft,
    OutboxItem,
    OutboxRows,
    SignalBatchResult,
    StaleWrite,
    StepFn,
    StoredPolicy,
    StoredReceipt,
    TokenInfo,
    Tombstone,
    address_hash,
    check_chunk,
    check_rows,
)
from lapse.store.tables import to_utc

log = logging.getLogger("lapse.store")

GENESIS = "0" * 64
TOKEN_TOUCH = timedelta(minutes=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def unknown_accounts_message(unknown: Sequence[str], deleted: Sequence[str]) -> str:
    """The InvalidInput message for signals reported for unknown or deleted accounts."""
    parts = []
    for what, ids in (("unknown", unknown), ("deleted", deleted)):
        if ids:
            shown = ", ".join(repr(i) for i in ids[:20])
            more = f" and {len(ids) - 20} more" if len(ids) > 20 else ""
            parts.append(f"{what} account{'s' if len(ids) != 1 else ''}: {shown}{more}")
    return "; ".join(parts) + "; nothing was recorded"


@dataclass
class _Row:
    """One account as stored."""

    account: Account
    version: int = 1
    state: str = "active"
    next_due_at: datetime | None = None
    wake_signals: frozenset[str] = frozenset()
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None


@dataclass
class _OutboxRow:
    item: OutboxItem
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None


@dataclass
class _Token:
    info: TokenInfo
    token_hash: str


@dataclass
class _State:
    rows: dict[str, _Row] = field(default_factory=dict)
    heap: list[tuple[datetime, str]] = field(default_factory=list)
    # the ids of applied events, by (account id, event id), with when each was received
    events: dict[tuple[str, str], datetime] = field(default_factory=dict)
    outbox: dict[int, _OutboxRow] = field(default_factory=dict)
    outbox_keys: dict[str, int] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    head: tuple[int, str] = (0, GENESIS)
    tombstones: dict[str, Tombstone] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)
    tokens: dict[str, _Token] = field(default_factory=dict)
    runs: dict[str, tuple[DataRun, str | None, datetime | None]] = field(default_factory=dict)
    receipts: dict[str, StoredReceipt] = field(default_factory=dict)
    deletion_starts: dict[int, datetime] = field(default_factory=dict)
    # the ids of each notice's rows, by (account id, case id, notice key)
    notice_rows: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    policies: list[StoredPolicy] = field(default_factory=list)


class MemoryUnit:
    """A unit of work on a MemoryStore: writes are buffered and applied together on commit."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._pending: list[Change] = []
        self._accounts: dict[str, Account] = {}
        self._events: set[tuple[str, str]] = set()
        self._keys: set[str] = set()
        self._created: list[OutboxItem] = []
        self._erase: list[str] = []
        self._receipts: set[str] = set()
        self._delivered: list[tuple[int, datetime, int]] = []

    def load(self, account_id: str) -> Account | None:
        """The account's snapshot (this unit's own writes included)."""
        if account_id in self._accounts:
            return self._accounts[account_id]
        row = self._store._state.rows.get(account_id)
        return row.account if row is not None else None

    def seen_event(self, account_id: str, event_id: str) -> bool:
        """True if this event id was already applied to the account."""
        key = (account_id, event_id)
        return key in self._events or key in self._store._state.events

    def write(self, change: Change) -> list[OutboxItem]:
        """Buffer the change; returns the outbox rows it will create."""
        account_id = change.account.id
        exists = account_id in self._accounts or account_id in self._store._state.rows
        if change.created and exists:
            raise AccountExists(f"account {account_id!r} already exists")
        if not change.created and not exists:
            raise StaleWrite(f"account {account_id!r} does not exist (any more)")
        receipt = change.receipt
        if receipt is not None:
            if receipt.id in self._receipts or receipt.id in self._store._state.receipts:
                raise Conflict(f"receipt {receipt.id} was already written")
            self._receipts.add(receipt.id)
        self._pending.append(change)
        self._accounts[account_id] = change.account
        if change.event_id is not None:
            self._events.add((account_id, change.event_id))
        created = self._store._new_outbox(change, self._keys)
        self._created.extend(created)
        return created

    def erase(self, account_id: str) -> dict[str, int]:
        """Count the account's event ids, notifications and notices; erased on commit."""
        state = self._store._state
        self._erase.append(account_id)
        return {
            "events": sum(1 for a, _ in state.events if a == account_id)
            + sum(1 for a, _ in self._events if a == account_id),
            "notifications": sum(1 for n in state.notifications if n.account_id == account_id),
            "outbox_notices": sum(
                1
                for row in state.outbox.values()
                if row.item.account_id == account_id and isinstance(row.item.effect, NoticeEffect)
            ),
        }

    def delivered(self, item_id: int, at: datetime, *, worker: str) -> bool:
        """Mark the pending row delivered on commit, if `worker` holds its claim or nobody
        does (the unit holds the store's lock, so nobody claims it before the commit)."""
        row = self._store._state.outbox.get(item_id)
        if row is None or row.item.status != "pending" or row.claimed_by not in (worker, None):
            return False
        self._delivered.append((item_id, at, row.item.attempts + 1))
        return True

    def _commit(self) -> None:
        store = self._store
        for account_id in self._erase:
            store._erase(account_id)
        for change in self._pending:
            store._apply(change, worker=None)
        for item in self._created:
            store._add_outbox(item)
        for item_id, at, attempts in self._delivered:
            store._set(
                item_id,
                status="delivered",
                delivered_at=at,
                attempts=attempts,
                next_attempt_at=None,
            )


class MemoryStore:
    """The storage contract in process memory (thread-safe under one lock)."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self._wall = wall or _utcnow  # for claim leases: real time, even under a manual clock
        self._state = _State()
        self._ids = itertools.count(1)
        self._notification_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._clock = clock or _utcnow

    # --- units and reads --------------------------------------------------------------------

    @contextmanager
    def unit(self) -> Iterator[MemoryUnit]:
        """A unit of work: applied on normal exit, discarded on exception."""
        with self._lock:
            unit = MemoryUnit(self)
            yield unit
            unit._commit()

    def create_many(self, changes: Sequence[Change]) -> list[OutboxItem]:
        """Create many new accounts in one unit (bulk import); all or nothing."""
        created: list[OutboxItem] = []
        with self.unit() as unit:
            for change in changes:
                created += unit.write(change)
        return created

    def get(self, account_id: str) -> Account | None:
        """A snapshot (None if unknown; deleted accounts keep a stub)."""
        row = self._state.rows.get(account_id)
        return row.account if row is not None else None

    def get_many(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """Several snapshots (unknown ids are absent)."""
        rows = self._state.rows
        return {i: rows[i].account for i in account_ids if i in rows}

    def versions(self, account_ids: Sequence[str]) -> dict[str, int]:
        """The write counter of each account."""
        rows = self._state.rows
        return {i: rows[i].version for i in account_ids if i in rows}

    def next_due(self, account_id: str) -> datetime | None:
        """When the account next needs the scheduler."""
        row = self._state.rows.get(account_id)
        return row.next_due_at if row is not None else None

    def earliest_due(self) -> datetime | None:
        """The earliest next due time of any account (drops stale heap entries)."""
        with self._lock:
            heap = self._state.heap
            rows = self._state.rows
            while heap:
                at, account_id = heap[0]
                row = rows.get(account_id)
                if row is not None and row.next_due_at == at:
                    return at
                heapq.heappop(heap)
            return None

    def list_accounts(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        flow: str | None = None,
        after: str | None = None,
        limit: int = 100,
        positions: Sequence[tuple[str, int]] | None = None,
        search: str | None = None,
    ) -> list[AccountSummary]:
        """Accounts ordered by id, filtered, paginated by `after` (the last id seen)."""
        out: list[AccountSummary] = []
        wanted = set(positions) if positions is not None else None
        needle = search.strip().lower() if search else None
        for account_id in sorted(self._state.rows):
            if after is not None and account_id <= after:
                continue
            row = self._state.rows[account_id]
            account = row.account
            flows = tuple(c.flow for c in sorted(account.cases, key=lambda c: c.id))
            if state is not None and row.state != state:
                continue
            if kind is not None and account.kind != kind:
                continue
            if flow is not None and flow not in flows:
                continue
            if wanted is not None and not any(
                (c.flow, c.phase_index) in wanted for c in account.cases
            ):
                continue
            if needle and not any(
                needle in text.lower()
                for text in (account_id, account.address or "", *(m.email for m in account.members))
            ):
                continue
            out.append(
                AccountSummary(
                    id=account_id,
                    kind=account.kind,
                    state=row.state,
                    created_at=account.created_at,
                    next_due_at=row.next_due_at,
                    open_flows=flows,
                    legal_hold=account.legal_hold is not None,
                    deleted_at=account.deleted_at,
                )
            )
            if len(out) >= limit:
                break
        return out

    def count_by_state(self) -> dict[str, int]:
        """How many accounts are in each state."""
        counts: dict[str, int] = {}
        for row in self._state.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def count_cases(self) -> dict[tuple[str, int], int]:
        """How many open cases are at each (flow, phase index)."""
        counts: dict[tuple[str, int], int] = {}
        for row in self._state.rows.values():
            for case in row.account.cases:
                key = (case.flow, case.phase_index)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def accounts_due(self, until: datetime, *, limit: int = 1000) -> list[tuple[str, datetime]]:
        """(id, next due time) of the accounts due at or before `until`, earliest first."""
        due = sorted(
            (row.next_due_at, account_id)
            for account_id, row in self._state.rows.items()
            if row.next_due_at is not None
            and row.next_due_at <= until
            and row.account.deleted_at is None
        )
        return [(account_id, at) for at, account_id in due[:limit]]

    def account_ids(self) -> list[str]:
        """Every stored account id."""
        return list(self._state.rows)

    # --- writing ----------------------------------------------------------------------------

    def _new_outbox(self, change: Change, pending_keys: set[str]) -> list[OutboxItem]:
        now = self._clock()
        created = []
        for draft in change.outbox:
            key = draft.idempotency_key()
            if key in self._state.outbox_keys or key in pending_keys:
                continue
            pending_keys.add(key)
            created.append(
                OutboxItem(
                    id=next(self._ids),
                    account_id=draft.account_id,
                    case_id=draft.case_id,
                    effect=draft.effect,
                    channel=draft.channel,
                    recipient=draft.recipient,
                    idempotency_key=key,
                    created_at=now,
                    next_attempt_at=draft.effect.at,
                )
            )
        return created

    def _add_outbox(self, item: OutboxItem) -> None:
        state = self._state
        state.outbox[item.id] = _OutboxRow(item)
        state.outbox_keys[item.idempotency_key] = item.id
        if isinstance(item.effect, NoticeEffect):
            key = (item.account_id, item.case_id, item.effect.key)
            state.notice_rows.setdefault(key, []).append(item.id)

    def _delivered_at(self, account_id: str, case_id: str, key: str) -> datetime | None:
        """When every row of the notice was delivered (the latest), None if one was not."""
        ids = self._state.notice_rows.get((account_id, case_id, key))
        if not ids:
            return None
        times = []
        for item_id in ids:
            item = self._state.outbox[item_id].item
            if item.status != "delivered" or item.delivered_at is None:
                return None
            times.append(item.delivered_at)
        return max(times)

    def _deliveries(self, account: Account) -> dict[tuple[str, str], datetime]:
        """The account's `Deliveries`: notices recorded undispatched whose rows all went."""
        out: dict[tuple[str, str], datetime] = {}
        for case in account.cases:
            for record in case.notices:
                if record.dispatched_at is None:
                    at = self._delivered_at(account.id, case.id, record.key)
                    if at is not None:
                        out[(case.id, record.key)] = at
        return out

    def _apply(self, change: Change, *, worker: str | None) -> None:
        state = self._state
        account = change.account
        row = state.rows.get(account.id)
        if row is None:
            row = _Row(account=account, version=0)
            state.rows[account.id] = row
        row.account = account
        row.version += 1
        row.state = change.state
        row.next_due_at = change.next_due_at
        row.wake_signals = change.wake_signals
        if worker is not None:
            row.claimed_by = None
            row.claim_expires_at = None
        if change.next_due_at is not None:
            heapq.heappush(state.heap, (change.next_due_at, account.id))
        if change.event_id is not None:
            state.events[account.id, change.event_id] = self._clock()
        if change.tombstone is not None:
            state.tombstones[change.tombstone.account_id] = change.tombstone
        if change.receipt is not None:
            seq = len(state.receipts) + 1
            state.receipts[change.receipt.id] = replace(change.receipt, seq=seq)
        if change.audit:
            self._append(change.audit)

    def _append(self, entries: Sequence[AuditEntry]) -> None:
        seq, prev = self._state.head
        recorded_at = self._clock()
        for entry in entries:
            seq += 1
            detail = codec.encode_detail(entry.detail)
            payload = codec.audit_payload(seq, entry, recorded_at, detail)
            digest = hashlib.sha256(prev.encode() + codec.canonical_json(payload)).hexdigest()
            self._state.audit.append(
                AuditRecord(
                    seq=seq,
                    entry=replace(entry, detail=codec.decode_detail(detail)),
                    recorded_at=recorded_at,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        self._state.head = (seq, prev)

    # --- scheduler --------------------------------------------------------------------------

    def claim_due(self, now: datetime, limit: int, worker: str, lease: timedelta) -> list[str]:
        """Claim up to `limit` due accounts whose claim is free or expired."""
        wall = self._wall()  # leases run on real time, whatever clock decides what is due
        out: list[str] = []
        held: list[tuple[datetime, str]] = []
        with self._lock:
            heap = self._state.heap
            rows = self._state.rows
            while heap and heap[0][0] <= now and len(out) < limit:
                at, account_id = heapq.heappop(heap)
                row = rows.get(account_id)
                if row is None or row.next_due_at != at:
                    continue  # a stale entry: the account was rescheduled since
                if row.claim_expires_at is not None and row.claim_expires_at >= wall:
                    held.append((at, account_id))  # claimed by someone: keep it queued
                    continue
                row.claimed_by = worker
                row.claim_expires_at = wall + lease
                out.append(account_id)
                held.append((at, account_id))  # stays due until a step moves it
            for entry in held:
                heapq.heappush(heap, entry)
        return out

    def process(self, account_ids: Sequence[str], step: StepFn, worker: str) -> list[OutboxItem]:
        """Step each account still claimed by `worker`; write the changes; release the claims."""
        created: list[OutboxItem] = []
        with self._lock:
            keys: set[str] = set()
            for account_id in dict.fromkeys(account_ids):
                row = self._state.rows.get(account_id)
                if row is None or row.claimed_by != worker:
                    continue
                try:
                    change = step(row.account, self._deliveries(row.account))
                except Exception:
                    log.exception("step failed for account %s; it stays due", account_id)
                    continue
                if change is None:
                    row.claimed_by = None
                    row.claim_expires_at = None
                    continue
                items = self._new_outbox(change, keys)
                self._apply(change, worker=worker)
                for item in items:
                    self._add_outbox(item)
                created.extend(items)
        return created

    def process_due(
        self, now: datetime, limit: int, worker: str, lease: timedelta, step: StepFn
    ) -> list[str]:
        """Claim and process due accounts under one hold of the lock."""
        with self._lock:
            claimed = self.claim_due(now, limit, worker, lease)
            self.process(claimed, step, worker)
        return claimed

    def wake_undispatched(self, now: datetime) -> list[str]:
        """Make due at `now` the accounts whose delivered notices are recorded undispatched."""
        woken: list[str] = []
        with self._lock:
            for account_id, row in self._state.rows.items():
                if row.account.deleted_at is None and self._deliveries(row.account):
                    if row.next_due_at is None or row.next_due_at > now:
                        row.next_due_at = now
                        row.version += 1
                        heapq.heappush(self._state.heap, (now, account_id))
                    woken.append(account_id)
        return woken

    # --- ingestion --------------------------------------------------------------------------

    def record_signals(
        self,
        reports: Sequence[tuple[str, str, datetime]],
        *,
        resolution: timedelta,
        now: datetime,
    ) -> SignalBatchResult:
        """Record (account, signal, time) reports, coalesced; wake accounts that wait on them."""
        latest: dict[tuple[str, str], datetime] = {}
        try:
            for account_id, name, at in reports:
                seen = latest.get((account_id, name))
                if seen is None or at > seen:
                    latest[(account_id, name)] = at
        except TypeError as exc:
            raise InvalidInput(f"signal times must have a time zone: {exc}") from None
        for key, at in latest.items():
            latest[key] = to_utc(at)  # refuses naive times; stored in UTC like the SQL stores
        with self._lock:
            rows = self._state.rows
            ids = {key[0] for key in latest}
            unknown = sorted(i for i in ids if i not in rows)
            deleted = sorted(i for i in ids if i in rows and rows[i].account.deleted_at)
            if unknown or deleted:
                raise InvalidInput(unknown_accounts_message(unknown, deleted))
            updates: dict[str, dict[str, datetime]] = {}
            for (account_id, name), at in latest.items():
                seen = rows[account_id].account.signals.get(name)
                if seen is None or (at - resolution >= seen and at > seen):
                    updates.setdefault(account_id, {})[name] = at
            written = sum(len(names) for names in updates.values())
            for account_id, names in updates.items():
                row = rows[account_id]
                row.account = replace(row.account, signals={**row.account.signals, **names})
            # only what moved forward wakes: a repeat or an older report changes nothing
            woken: list[str] = []
            for account_id, names in updates.items():
                row = rows[account_id]
                waits = bool(row.wake_signals) and not row.wake_signals.isdisjoint(names)
                if waits and (row.next_due_at is None or row.next_due_at > now):
                    row.next_due_at = now
                    row.version += 1
                    heapq.heappush(self._state.heap, (now, account_id))
                    woken.append(account_id)
        return SignalBatchResult(
            received=len(reports), written=written, woken=len(woken), woken_ids=tuple(woken)
        )

    # --- outbox -----------------------------------------------------------------------------

    def claim_outbox(
        self,
        now: datetime,
        limit: int,
        worker: str,
        lease: timedelta,
        *,
        rows: OutboxRows = "all",
    ) -> list[OutboxItem]:
        """Claim pending rows whose next attempt is due, oldest first."""
        check_rows(rows)
        wall = self._wall()
        with self._lock:
            ready = [
                row
                for row in self._state.outbox.values()
                if row.item.status == "pending"
                and (rows == "all" or (row.item.channel == "data") == (rows == "data"))
                and row.item.next_attempt_at is not None
                and row.item.next_attempt_at <= now
                and (row.claim_expires_at is None or row.claim_expires_at < wall)
            ]
            ready.sort(key=lambda row: (row.item.next_attempt_at or now, row.item.id))
            out = []
            for row in ready[: max(limit, 0)]:
                row.claimed_by = worker
                row.claim_expires_at = wall + lease
                out.append(row.item)
            return out

    def extend_outbox_claim(self, item_id: int, worker: str, lease: timedelta) -> bool:
        """Keep `worker`'s claim on a pending row for `lease` from now."""
        with self._lock:
            row = self._state.outbox.get(item_id)
            if row is None or row.claimed_by != worker or row.item.status != "pending":
                return False
            row.claim_expires_at = self._wall() + lease
            return True

    def _outbox_row(self, item_id: int) -> _OutboxRow:
        row = self._state.outbox.get(item_id)
        if row is None:
            raise InvalidInput(f"no outbox row {item_id}")
        return row

    def _set(self, item_id: int, **values: object) -> None:
        with self._lock:
            row = self._outbox_row(item_id)
            row.item = replace(row.item, **values)  # type: ignore[arg-type]
            row.claimed_by = None
            row.claim_expires_at = None

    def _ours(self, item_id: int, worker: str) -> _OutboxRow | None:
        """The row if `worker` still holds its claim (and it is pending), else None."""
        row = self._outbox_row(item_id)
        if row.claimed_by != worker or row.item.status != "pending":
            return None
        return row

    def _finish(self, item_id: int, worker: str, **values: object) -> bool:
        with self._lock:
            row = self._ours(item_id, worker)
            if row is None:
                return False
            self._set(item_id, **values)
            return True

    def outbox_delivered(self, item_id: int, at: datetime, *, worker: str) -> bool:
        """Mark a row delivered, if `worker` still holds its claim."""
        with self._lock:
            row = self._ours(item_id, worker)
            if row is None:
                return False
            self._set(
                item_id,
                status="delivered",
                delivered_at=at,
                attempts=row.item.attempts + 1,
                next_attempt_at=None,
            )
            return True

    def notice_delivered(
        self,
        item_id: int,
        at: datetime,
        *,
        worker: str,
        step: NoticeStepFn,
        notification: NotificationDraft | None = None,
    ) -> bool:
        """Mark a notice row delivered, store its notification, and once every row of the
        notice is, write `step`: all or nothing, under one hold of the lock."""
        with self._lock:
            if not isinstance(self._outbox_row(item_id).item.effect, NoticeEffect):
                raise InvalidInput(f"outbox row {item_id} is not a notice")
            row = self._ours(item_id, worker)
            if row is None:
                return False
            item = row.item
            effect = item.effect
            assert isinstance(effect, NoticeEffect)
            times: list[datetime | None] = [at]
            siblings = self._state.notice_rows.get((item.account_id, item.case_id, effect.key))
            for other in siblings or ():
                if other != item_id:
                    got = self._state.outbox[other].item
                    times.append(got.delivered_at if got.status == "delivered" else None)
            with self.unit() as unit:  # applied at the end of the block, discarded if it raises
                account = unit.load(item.account_id)
                if account is not None and all(t is not None for t in times):
                    change = step(account, max(t for t in times if t is not None))
                    if change is not None:
                        unit.write(change)
                # the step succeeded: the row and the notification go with it
                self._set(
                    item_id,
                    status="delivered",
                    delivered_at=at,
                    attempts=item.attempts + 1,
                    next_attempt_at=None,
                )
                if notification is not None:
                    self._notify(notification)
            return True

    def outbox_failed(
        self, item_id: int, error: str, next_attempt_at: datetime | None, *, worker: str
    ) -> bool:
        """Record a failed attempt: retried at `next_attempt_at`, or failed for good if None."""
        with self._lock:
            row = self._ours(item_id, worker)
            if row is None:
                return False
            self._set(
                item_id,
                status="pending" if next_attempt_at is not None else "failed",
                last_error=error,
                attempts=row.item.attempts + 1,
                next_attempt_at=next_attempt_at,
            )
            return True

    def outbox_skipped(self, item_id: int, reason: str, *, worker: str) -> bool:
        """Mark a row that must not be delivered any more."""
        return self._finish(
            item_id, worker, status="skipped", last_error=reason, next_attempt_at=None
        )

    def outbox_deferred(self, item_id: int, until: datetime, reason: str, *, worker: str) -> bool:
        """Put a claimed row back to wait until `until`; not a failed attempt (its count stays)."""
        return self._finish(
            item_id, worker, status="pending", last_error=reason, next_attempt_at=until
        )

    def start_deletion(
        self, item_id: int, account_id: str, now: datetime, per_minute: int
    ) -> datetime | None:
        """Take one of the minute's deletion starts for `item_id` (see Store.start_deletion)."""
        with self._lock:
            starts = self._state.deletion_starts
            if item_id in starts:
                return None
            recent = [t for t in starts.values() if now - RATE_WINDOW < t <= now]
            if len(recent) >= per_minute:
                return max(min(recent) + RATE_WINDOW, now + timedelta(seconds=1))
            starts[item_id] = now
            return None

    def next_outbox_attempt(self) -> datetime | None:
        """The earliest `next_attempt_at` of a pending row (when the dispatcher retries next)."""
        times = [
            row.item.next_attempt_at
            for row in self._state.outbox.values()
            if row.item.status == "pending" and row.item.next_attempt_at is not None
        ]
        return min(times, default=None)

    def retry_outbox(self, item_id: int, *, audit: Sequence[AuditEntry] = ()) -> OutboxItem:
        """Put a failed row back to pending, due now, and append `audit`, together."""
        with self._lock:
            row = self._outbox_row(item_id)
            if row.item.status != "failed":
                raise Conflict(f"outbox row {item_id} is {row.item.status}, not failed")
            self._set(item_id, status="pending", next_attempt_at=self._clock())
            if audit:
                self._append(audit)
            return row.item

    def outbox(
        self,
        *,
        account_id: str | None = None,
        status: str | None = None,
        after: int | None = None,
        limit: int = 100,
        before: int | None = None,
        newest_first: bool = False,
    ) -> list[OutboxItem]:
        """Outbox rows, oldest (or newest) first, filtered and paginated by id."""
        out = []
        for item_id in sorted(self._state.outbox, reverse=newest_first):
            item = self._state.outbox[item_id].item
            if after is not None and item_id <= after:
                continue
            if before is not None and item_id >= before:
                continue
            if account_id is not None and item.account_id != account_id:
                continue
            if status is not None and item.status != status:
                continue
            out.append(item)
            if len(out) >= limit:
                break
        return out

    def notice_delivery(self, account_id: str, case_id: str, key: str) -> datetime | None:
        """When every row of a notice was delivered (the latest time), or None if any is not."""
        return self._delivered_at(account_id, case_id, key)

    def prune_outbox(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete finished outbox rows of closed cases (see Store.prune_outbox)."""
        check_chunk(chunk)
        with self._lock:
            state = self._state
            found = []
            for row in state.outbox.values():
                item = row.item
                finished = item.delivered_at or item.created_at
                if (
                    codec.effect_kind(item.effect) in PRUNE_KINDS
                    and item.status in PRUNE_STATUSES
                    and finished < before
                    and not self._case_open(item.account_id, item.case_id)
                ):
                    found.append(item)
            if not dry_run:
                for item in found:
                    del state.outbox[item.id]
                    state.outbox_keys.pop(item.idempotency_key, None)
                    if isinstance(item.effect, NoticeEffect):
                        key = (item.account_id, item.case_id, item.effect.key)
                        ids = state.notice_rows.get(key, [])
                        if item.id in ids:
                            ids.remove(item.id)
                        if not ids:
                            state.notice_rows.pop(key, None)
        if progress is not None:
            progress(len(found))
        return len(found)

    def prune_notifications(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the in-app notifications of closed cases created before `before`."""
        check_chunk(chunk)
        with self._lock:
            state = self._state
            kept = [
                n
                for n in state.notifications
                if n.created_at >= before or self._case_open(n.account_id, n.case_id)
            ]
            count = len(state.notifications) - len(kept)
            if not dry_run:
                state.notifications = kept
        if progress is not None:
            progress(count)
        return count

    def prune_events(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Forget the event ids received before `before`."""
        check_chunk(chunk)
        with self._lock:
            state = self._state
            old = [key for key, received in state.events.items() if received < before]
            if not dry_run:
                for key in old:
                    del state.events[key]
        if progress is not None:
            progress(len(old))
        return len(old)

    def _case_open(self, account_id: str, case_id: str) -> bool:
        row = self._state.rows.get(account_id)
        return row is not None and any(case.id == case_id for case in row.account.cases)

    # --- audit ------------------------------------------------------------------------------

    def audit(
        self, *, account_id: str | None = None, after: int | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Audit records in chain order."""
        out = []
        for record in self._state.audit:
            if after is not None and record.seq <= after:
                continue
            if account_id is not None and record.entry.account_id != account_id:
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def recent_audit(
        self, *, account_id: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Audit records newest first, paginated by `before` (the last seq seen)."""
        out = []
        for record in reversed(self._state.audit):
            if before is not None and record.seq >= before:
                continue
            if account_id is not None and record.entry.account_id != account_id:
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries that belong to no account step."""
        if entries:
            with self._lock:
                self._append(entries)

    def verify_audit(
        self, *, progress: Callable[[int, int], None] | None = None
    ) -> AuditVerification:
        """Walk the whole chain and report every edited, inserted or removed row."""
        problems: list[AuditProblem] = []
        last: AuditRecord | None = None
        before: AuditRecord | None = None
        records = sorted(self._state.audit, key=lambda r: r.seq)
        total = max(self._state.head[0], len(records))
        for checked, record in enumerate(records, 1):
            if progress is not None and checked % 2000 == 0:
                progress(checked, total)
            detail = codec.encode_detail(record.entry.detail)
            payload = codec.audit_payload(record.seq, record.entry, record.recorded_at, detail)
            digest = hashlib.sha256(
                record.prev_hash.encode() + codec.canonical_json(payload)
            ).hexdigest()
            if digest != record.hash:
                problems.append(AuditProblem(seq=record.seq, problem="edited", detail="content"))
            expected = last.seq + 1 if last is not None else 1
            if record.seq > expected:
                problems.extend(
                    AuditProblem(seq=s, problem="removed", detail=f"seq {s} is missing")
                    for s in range(expected, record.seq)
                )
            elif last is not None and record.prev_hash != last.hash:
                if before is not None and record.prev_hash == before.hash:
                    problems.append(
                        AuditProblem(seq=last.seq, problem="inserted", detail="not in the chain")
                    )
                elif not any(p.seq == last.seq and p.problem == "edited" for p in problems):
                    problems.append(
                        AuditProblem(seq=last.seq, problem="edited", detail="hash rewritten")
                    )
            before, last = last, record
        head_seq, head_hash = self._state.head
        last_seq = last.seq if last else 0
        if last_seq > head_seq:
            problems.extend(
                AuditProblem(seq=s, problem="inserted", detail=f"past the head (seq {head_seq})")
                for s in range(head_seq + 1, last_seq + 1)
            )
        elif last_seq < head_seq:
            problems.append(
                AuditProblem(
                    seq=last_seq + 1,
                    problem="head mismatch",
                    detail=f"seq {last_seq + 1} to {head_seq} were removed from the tail",
                )
            )
        elif (last.hash if last else GENESIS) != head_hash:
            problems.append(AuditProblem(seq=last_seq, problem="head mismatch", detail="hash"))
        if progress is not None:
            progress(len(records), total)
        problems.sort(key=lambda p: p.seq)
        return AuditVerification(checked=len(self._state.audit), problems=tuple(problems))

    def _erase(self, account_id: str) -> None:
        state = self._state
        state.events = {e: at for e, at in state.events.items() if e[0] != account_id}
        state.notifications = [n for n in state.notifications if n.account_id != account_id]
        for row in state.outbox.values():
            effect = row.item.effect
            if row.item.account_id != account_id:
                continue
            if isinstance(effect, NoticeEffect):
                row.item = replace(
                    row.item, recipient=None, effect=replace(effect, recipients=(), reason="")
                )
            if row.item.last_error is not None:  # it can name the recipient
                row.item = replace(row.item, last_error=None)

    # --- data runs and receipts ---------------------------------------------------------------

    def claim_data_run(self, run: DataRun, *, worker: str, lease: timedelta) -> DataRun:
        """Start the run or take it over (free, expired or ours); Conflict if another has it."""
        with self._lock:
            wall = self._wall()
            got = self._state.runs.get(run.id)
            if got is None:
                stored = replace(run, progress=())
            else:
                stored, owner, until = got
                if owner not in (None, worker) and until is not None and until > wall:
                    raise Conflict(
                        f"the {stored.kind} of account {stored.account_id!r} (run {run.id}) is "
                        f"under way in worker {owner} until {until:%Y-%m-%d %H:%M:%S} UTC at least"
                    )
            self._state.runs[run.id] = (stored, worker, wall + lease)
            return stored

    def save_progress(
        self, run_id: str, progress: DataProgress, *, worker: str, lease: timedelta
    ) -> None:
        """Store one location's progress and extend the claim; StaleWrite if it was lost."""
        with self._lock:
            got = self._state.runs.get(run_id)
            if got is None or got[1] != worker:
                raise StaleWrite(f"run {run_id} is no longer claimed by worker {worker}")
            run = got[0]
            others = tuple(
                p
                for p in run.progress
                if (p.connector, p.location) != (progress.connector, progress.location)
            )
            ordered = tuple(sorted((*others, progress), key=lambda p: (p.connector, p.location)))
            until = self._wall() + lease
            self._state.runs[run_id] = (replace(run, progress=ordered), worker, until)
            # the outbox row that asked for the run is held as long as the run
            for row in self._state.outbox.values():
                item = row.item
                if (
                    item.account_id == run.account_id
                    and item.channel == "data"
                    and item.status == "pending"
                    and row.claimed_by == worker
                ):
                    row.claim_expires_at = until

    def receipts(
        self,
        *,
        account_id: str | None = None,
        kind: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[StoredReceipt]:
        """Receipts in the order they were written, filtered, paginated by `after` (a seq)."""
        out = []
        for receipt in self._state.receipts.values():
            if account_id is not None and receipt.account_id != account_id:
                continue
            if kind is not None and receipt.kind != kind:
                continue
            if after is not None and receipt.seq <= after:
                continue
            out.append(receipt)
            if len(out) >= limit:
                break
        return out

    def receipt(self, receipt_id: str) -> StoredReceipt | None:
        """One receipt by id."""
        return self._state.receipts.get(receipt_id)

    # --- tombstones, notifications, tokens --------------------------------------------------

    def tombstone(self, account_id: str) -> Tombstone | None:
        """The tombstone of a deleted account."""
        return self._state.tombstones.get(account_id)

    def retired(self, address: str, now: datetime) -> Tombstone | None:
        """The tombstone retiring this address, if it is still retired at `now`."""
        digest = address_hash(address)
        found = [
            stone
            for stone in self._state.tombstones.values()
            if stone.address_hash == digest
            and stone.address_mode == "retire"
            and (stone.retired_until is None or stone.retired_until > now)
        ]
        return max(found, key=lambda s: s.deleted_at) if found else None

    def retired_among(self, addresses: Sequence[str], now: datetime) -> dict[str, Tombstone]:
        """Those of `addresses` still retired at `now`, each with its latest tombstone."""
        out: dict[str, Tombstone] = {}
        for address in addresses:
            stone = self.retired(address, now)
            if stone is not None:
                out[address] = stone
        return out

    def add_notification(
        self, *, account_id: str, case_id: str, template: str, subject: str, body: str, at: datetime
    ) -> Notification:
        """Store an in-app notification."""
        return self._notify(
            NotificationDraft(
                account_id=account_id,
                case_id=case_id,
                template=template,
                subject=subject,
                body=body,
                at=at,
            )
        )

    def _notify(self, draft: NotificationDraft) -> Notification:
        with self._lock:
            note = Notification(
                id=next(self._notification_ids),
                account_id=draft.account_id,
                case_id=draft.case_id,
                template=draft.template,
                subject=draft.subject,
                body=draft.body,
                created_at=draft.at,
            )
            self._state.notifications.append(note)
            return note

    def notifications(self, account_id: str, *, unread_only: bool = False) -> list[Notification]:
        """The account's in-app notifications, newest first."""
        found = [
            n
            for n in self._state.notifications
            if n.account_id == account_id and (not unread_only or n.read_at is None)
        ]
        return sorted(found, key=lambda n: (n.created_at, n.id), reverse=True)

    def create_token(
        self, *, name: str, scopes: Sequence[str], now: datetime
    ) -> tuple[TokenInfo, str]:
        """Create an API token; returns its info and the secret (kept only as a hash)."""
        token_id = secrets.token_hex(6)
        secret = f"lapse_{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(id=token_id, name=name, scopes=tuple(scopes), created_at=now)
        with self._lock:
            self._state.tokens[token_id] = _Token(info, hashlib.sha256(secret.encode()).hexdigest())
        return info, secret

    def verify_token(self, secret: str, now: datetime) -> TokenInfo | None:
        """The token's info if the secret is valid and not revoked."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        with self._lock:
            for token in self._state.tokens.values():
                if secrets.compare_digest(token.token_hash, digest):
                    if token.info.revoked_at is not None:
                        return None
                    info = token.info
                    last = info.last_used_at
                    if last is None or now - last >= TOKEN_TOUCH:
                        token.info = replace(info, last_used_at=now)
                    return info
        return None

    def list_tokens(self) -> list[TokenInfo]:
        """Every token (without secrets)."""
        return sorted((t.info for t in self._state.tokens.values()), key=lambda i: i.created_at)

    def revoke_token(self, token_id: str, now: datetime) -> None:
        """Revoke a token."""
        with self._lock:
            token = self._state.tokens.get(token_id)
            if token is None:
                raise InvalidInput(f"no API token {token_id!r}")
            if token.info.revoked_at is None:
                token.info = replace(token.info, revoked_at=now)

    # --- policies ---------------------------------------------------------------------------

    def active_policy(self) -> StoredPolicy | None:
        """The policy applied last (None before the first start)."""
        found = self._state.policies
        return found[-1] if found else None

    def active_policy_seq(self) -> int:
        """The seq of the active policy (0 if none)."""
        found = self._state.policies
        return found[-1].seq if found else 0

    def policies(self) -> list[StoredPolicy]:
        """Every policy applied, oldest first."""
        return list(self._state.policies)

    def record_policy(self, policy: StoredPolicy, audit: Sequence[AuditEntry]) -> StoredPolicy:
        """Make `policy` the active one, with its audit entries, at once."""
        with self._lock:
            stored = replace(policy, seq=self.active_policy_seq() + 1)
            self._state.policies.append(stored)
            if audit:
                self._append(audit)
        return stored

    def open_cases_by_version(self) -> dict[str, int]:
        """How many open cases of accounts not deleted were opened under each policy version."""
        counts: dict[str, int] = {}
        for row in self._state.rows.values():
            if row.account.deleted_at is None:
                for case in row.account.cases:
                    counts[case.policy_version] = counts.get(case.policy_version, 0) + 1
        return counts

    def erase(self) -> None:
        """Erase every account and everything about it; API tokens and policies stay."""
        with self._lock:
            self._state = _State(tokens=self._state.tokens, policies=self._state.policies)
