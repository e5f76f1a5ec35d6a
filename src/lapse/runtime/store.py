"""The storage interface the engine runs on, and the in-memory store.

The engine changes an account only inside a unit of work: load the snapshot, decide in the core,
then write the new snapshot, its next due time, its outbox items and its audit entries together.
The SQL stores implement the same interface with one database transaction per unit.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from lapse.core.model import Account, AuditEntry, Effect

OutboxStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """An effect waiting to leave lapse (notice, host effect, delete, purge)."""

    id: int
    account_id: str
    effect: Effect
    created_at: datetime
    status: OutboxStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    delivered_at: datetime | None = None
    next_attempt_at: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across retries: the receiver can drop duplicates."""
        effect = self.effect
        detail = (
            getattr(effect, "key", None) or getattr(effect, "name", None) or type(effect).__name__
        )
        raw = f"{self.account_id}|{effect.case_id}|{detail}|{effect.at.isoformat()}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tombstone:
    """What remains of a deleted account: no personal data, only a hash of its address."""

    account_id: str
    deleted_at: datetime
    flow: str
    case_id: str
    address_hash: str | None
    address_mode: str
    retired_until: datetime | None  # None with mode "retire": forever


def address_hash(address: str) -> str:
    """The hash kept in tombstones to refuse retired addresses without keeping them."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """Everything one unit of work writes, atomically."""

    account: Account
    next_due_at: datetime | None
    effects: Sequence[Effect] = ()
    audit: Sequence[AuditEntry] = ()
    created: bool = False
    tombstone: Tombstone | None = None
    event_id: str | None = None


class UnitOfWork(Protocol):
    """One transaction on one account."""

    def load(self, account_id: str) -> Account | None:
        """The account's snapshot, locked for this unit."""
        ...

    def write(self, change: Change) -> list[OutboxItem]:
        """Write the change; returns the outbox items it created."""
        ...

    def seen_event(self, account_id: str, event_id: str) -> bool:
        """True if this event id was already applied to the account."""
        ...


class Store(Protocol):
    """Where accounts, the schedule, the outbox, the audit log and tombstones live."""

    def unit(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work (use as a context manager)."""
        ...

    def get(self, account_id: str) -> Account | None:
        """Read a snapshot without locking."""
        ...

    def next_due(self, account_id: str) -> datetime | None:
        """When the account next needs the scheduler."""
        ...

    def due(self, now: datetime, limit: int) -> list[str]:
        """Accounts due at `now`, earliest first."""
        ...

    def earliest_due(self) -> datetime | None:
        """The earliest next due time of any account."""
        ...

    def pending_outbox(self, now: datetime, limit: int) -> list[OutboxItem]:
        """Outbox items ready for (another) delivery attempt."""
        ...

    def mark_outbox(self, item: OutboxItem) -> None:
        """Record a delivery attempt's result."""
        ...

    def outbox(self, account_id: str | None = None) -> list[OutboxItem]:
        """Every outbox item (of one account)."""
        ...

    def audit(self, account_id: str) -> list[AuditEntry]:
        """The account's audit entries, oldest first."""
        ...

    def tombstone(self, account_id: str) -> Tombstone | None:
        """The tombstone of a deleted account."""
        ...

    def retired(self, address: str, now: datetime) -> Tombstone | None:
        """The tombstone retiring this address, if it is still retired at `now`."""
        ...


@dataclass
class _MemoryState:
    accounts: dict[str, Account] = field(default_factory=dict)
    due_at: dict[str, datetime | None] = field(default_factory=dict)
    heap: list[tuple[datetime, str]] = field(default_factory=list)
    outbox: dict[int, OutboxItem] = field(default_factory=dict)
    audit: dict[str, list[AuditEntry]] = field(default_factory=dict)
    tombstones: dict[str, Tombstone] = field(default_factory=dict)
    events: set[tuple[str, str]] = field(default_factory=set)


class _MemoryUnit:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def load(self, account_id: str) -> Account | None:
        return self.store._state.accounts.get(account_id)

    def seen_event(self, account_id: str, event_id: str) -> bool:
        return (account_id, event_id) in self.store._state.events

    def write(self, change: Change) -> list[OutboxItem]:
        state = self.store._state
        account = change.account
        state.accounts[account.id] = account
        state.due_at[account.id] = change.next_due_at
        if change.next_due_at is not None:
            heapq.heappush(state.heap, (change.next_due_at, account.id))
        if change.audit:
            state.audit.setdefault(account.id, []).extend(change.audit)
        if change.tombstone is not None:
            state.tombstones[account.id] = change.tombstone
        if change.event_id is not None:
            state.events.add((account.id, change.event_id))
        items = []
        for effect in change.effects:
            item = OutboxItem(
                id=next(self.store._ids),
                account_id=account.id,
                effect=effect,
                created_at=effect.at,
            )
            state.outbox[item.id] = item
            items.append(item)
        return items


class MemoryStore:
    """Everything in process memory: for tests, simulations and the pure-Python facade."""

    def __init__(self) -> None:
        self._state = _MemoryState()
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    @contextmanager
    def unit(self) -> Iterator[UnitOfWork]:
        """One unit of work; changes are applied as written (single writer under a lock)."""
        with self._lock:
            yield _MemoryUnit(self)

    def get(self, account_id: str) -> Account | None:
        """Read a snapshot."""
        return self._state.accounts.get(account_id)

    def next_due(self, account_id: str) -> datetime | None:
        """When the account next needs the scheduler."""
        return self._state.due_at.get(account_id)

    def due(self, now: datetime, limit: int) -> list[str]:
        """Accounts due at `now`, earliest first (a heap: cost grows with what is due)."""
        out: list[str] = []
        heap = self._state.heap
        with self._lock:
            while heap and heap[0][0] <= now and len(out) < limit:
                at, account_id = heapq.heappop(heap)
                if self._state.due_at.get(account_id) == at and account_id not in out:
                    out.append(account_id)
        return out

    def earliest_due(self) -> datetime | None:
        """The earliest next due time of any account (drops stale heap entries)."""
        heap = self._state.heap
        with self._lock:
            while heap and self._state.due_at.get(heap[0][1]) != heap[0][0]:
                heapq.heappop(heap)
            return heap[0][0] if heap else None

    def pending_outbox(self, now: datetime, limit: int) -> list[OutboxItem]:
        """Outbox items ready for a delivery attempt."""
        ready = [
            item
            for item in self._state.outbox.values()
            if item.status == "pending"
            and (item.next_attempt_at is None or item.next_attempt_at <= now)
        ]
        return ready[:limit]

    def mark_outbox(self, item: OutboxItem) -> None:
        """Record a delivery attempt's result."""
        self._state.outbox[item.id] = item

    def retry_outbox(self, item_id: int) -> OutboxItem:
        """Put a failed item back in the queue."""
        item = replace(self._state.outbox[item_id], status="pending", next_attempt_at=None)
        self._state.outbox[item_id] = item
        return item

    def outbox(self, account_id: str | None = None) -> list[OutboxItem]:
        """Every outbox item, oldest first."""
        return [
            item
            for item in self._state.outbox.values()
            if account_id is None or item.account_id == account_id
        ]

    def audit(self, account_id: str) -> list[AuditEntry]:
        """The account's audit entries, in the order written."""
        return list(self._state.audit.get(account_id, ()))

    def tombstone(self, account_id: str) -> Tombstone | None:
        """The tombstone of a deleted account."""
        return self._state.tombstones.get(account_id)

    def retired(self, address: str, now: datetime) -> Tombstone | None:
        """The tombstone retiring `address`, if any is still in force."""
        digest = address_hash(address)
        for stone in self._state.tombstones.values():
            if (
                stone.address_hash == digest
                and stone.address_mode == "retire"
                and (stone.retired_until is None or stone.retired_until > now)
            ):
                return stone
        return None

    def account_ids(self) -> list[str]:
        """Every stored account id."""
        return list(self._state.accounts)
