"""The storage contract: what the runtime needs from a store, and the values that cross it.

Two implementations: `MemoryStore` (lapse.store.memory) for tests and the pure-Python facade, and
`SqlStore` (lapse.store.sql) for SQLite (embedded default) and PostgreSQL (production).

Rules every implementation keeps:
- A `Change` is written atomically: snapshot, next due time, outbox rows, audit entries,
  tombstone, event id. Nothing of it is visible without the rest.
- Outbox rows are created exactly once per idempotency key (a second insert is ignored), so
  re-running a step after a crash never creates a notice twice.
- Audit entries are appended to one hash chain in commit order.
- Driver errors are converted into `StoreError` subclasses at this boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from lapse.core.model import Account, AuditEntry, Effect, value
from lapse.errors import InvalidInput, LapseError


class StoreError(LapseError):
    """The database refused or failed an operation."""

    code = "store-error"


class StaleWrite(StoreError):
    """The account changed since it was loaded (another worker took it over); nothing written."""

    code = "stale-write"


OutboxStatus = Literal["pending", "delivered", "failed", "skipped"]
Channel = Literal["email", "webhook", "in_app", "host", "data"]
#: which pending rows `claim_outbox` takes: every one, the deliveries (every channel but
#: "data"), or the data runs (deletions and purges, channel "data")
OutboxRows = Literal["all", "deliveries", "data"]
OUTBOX_ROWS: tuple[OutboxRows, ...] = ("all", "deliveries", "data")

#: the outbox rows `Store.prune_outbox` may delete: finished notices and host effects (a
#: deletion's or purge's row stays with its receipt and its place in the rate limit)
PRUNE_KINDS = ("notice", "host")
PRUNE_STATUSES = ("delivered", "skipped")
PRUNE_CHUNK = 5000  # rows looked at per transaction


def check_rows(rows: str) -> None:
    """Refuse an unknown `rows` of `claim_outbox` (a typo would claim nothing, silently)."""
    if rows not in OUTBOX_ROWS:
        raise InvalidInput(
            f"rows: {rows!r} is not one of {', '.join(repr(r) for r in OUTBOX_ROWS)}"
        )


def check_chunk(chunk: int) -> None:
    """Refuse a prune's chunk size below 1 (before anything is read or deleted)."""
    if chunk < 1:
        raise InvalidInput(f"chunk must be at least 1, not {chunk}")


#: the window of the global deletion rate limit (`Store.start_deletion`)
RATE_WINDOW = timedelta(minutes=1)


def key_time(at: datetime) -> str:
    """The first part of an idempotency key: the effect's time, UTC, to the second
    (`20260531120000`)."""
    text = at.astimezone(UTC).isoformat()
    return text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]


def idempotency_key(time_part: str, *parts: str) -> str:
    """A stable key for one delivery: `key_time(effect.at)`, a dash, and 40 hex digits of the
    SHA-256 of the parts that identify it (account, case, effect key, time, channel, recipient).

    The time leads so that the keys a batch creates sort next to each other, and next to the
    newest ones (a scheduler creates notices at about their time): the unique index on the key
    then takes them on a few pages at its end. A hash alone lands every key on a random page of
    an index that grows with every notice ever sent, which costs a page write per row once the
    index outgrows the cache (20 µs instead of 6 per outbox row at 200,000 rows on SQLite).
    Keys made before this form (the 40 hex digits alone) are the same digest: a new key ends
    with the old one."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    return f"{time_part}-{digest}"


def key_digest(key: str) -> str:
    """The digest part of a key `idempotency_key` made; any other key (made before the time
    led, or given explicitly) as it is. An email's Message-ID is made of it: short enough for
    the header to stay on one line, and the same as older versions gave the same notice."""
    if len(key) == 55 and key[14] == "-" and key[:14].isdigit():
        return key[15:]
    return key


@value  # built for every outbox row / account a step writes: see lapse.core.model.value
class OutboxDraft:
    """An outbox row to create: one effect, one channel, one recipient (for notices)."""

    account_id: str
    case_id: str
    effect: Effect
    channel: Channel
    recipient: str | None = None  # an email address for notices; None for host/data effects
    key: str = ""  # idempotency key; computed from the other fields when empty

    def idempotency_key(self) -> str:
        """The key that makes creating this row exactly-once."""
        if self.key:
            return self.key
        effect = self.effect
        name = (
            getattr(effect, "key", None) or getattr(effect, "name", None) or type(effect).__name__
        )
        return idempotency_key(
            key_time(effect.at),
            self.account_id,
            self.case_id,
            str(name),
            effect.at.isoformat(),
            self.channel,
            self.recipient or "",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """A stored outbox row."""

    id: int
    account_id: str
    case_id: str
    effect: Effect
    channel: Channel
    recipient: str | None
    idempotency_key: str
    created_at: datetime
    status: OutboxStatus = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tombstone:
    """What remains of a deleted account: no personal data, only a hash of its address."""

    account_id: str
    deleted_at: datetime
    flow: str
    case_id: str
    address_hash: str | None
    address_mode: str  # "release" or "retire"
    retired_until: datetime | None  # with "retire": None means forever
    receipt: dict[str, object] = field(default_factory=dict)


def address_hash(address: str) -> str:
    """The hash kept in tombstones to refuse retired addresses without keeping them."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class DataProgress:
    """One location's progress in a deletion or purge run (lapse.data keeps it between batches)."""

    connector: str
    location: str
    category: str
    removed: int = 0  # rows confirmed removed
    in_flight: Any = None  # the connector's record of the batch under way (JSON), or None
    passes: int = 0  # times the location was emptied (verification may send it round again)
    started_at: datetime | None = None
    finished_at: datetime | None = None  # None while the location is being worked on


@dataclass(frozen=True, slots=True, kw_only=True)
class DataRun:
    """A deletion or purge of one account's data, resumable after a crash."""

    id: str  # also the receipt's id
    account_id: str
    case_id: str
    flow: str
    kind: str  # "delete" or "purge"
    categories: tuple[str, ...]  # purged categories; empty for a deletion
    started_at: datetime
    progress: tuple[DataProgress, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReceipt:
    """A deletion or purge receipt as stored: its canonical body and that body's hash."""

    id: str
    account_id: str
    case_id: str
    flow: str
    kind: str  # "delete" or "purge"
    finished_at: datetime
    body: Mapping[str, Any]  # the whole receipt, `hash` included
    hash: str
    seq: int = 0  # the store's order of receipts (assigned on write)


@value  # built for every outbox row / account a step writes: see lapse.core.model.value
class Change:
    """Everything one account step writes, atomically."""

    account: Account
    next_due_at: datetime | None
    state: str = "active"  # the account's state name, for listing accounts by state
    wake_signals: frozenset[str] = frozenset()  # signals that wake the account at once
    outbox: Sequence[OutboxDraft] = ()
    audit: Sequence[AuditEntry] = ()
    created: bool = False  # a new account: insert, refuse if the id exists
    tombstone: Tombstone | None = None
    event_id: str | None = None  # remember this event id for the account (idempotency)
    event_name: str | None = None
    event_at: datetime | None = None  # the event's own time (kept with its id)
    receipt: StoredReceipt | None = None  # a deletion or purge receipt, written with the rest


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSummary:
    """One row of an account listing (admin UI, API)."""

    id: str
    kind: str
    state: str
    created_at: datetime
    next_due_at: datetime | None
    open_flows: tuple[str, ...]
    legal_hold: bool
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalBatchResult:
    """What a batch of signals did."""

    received: int
    written: int  # rows inserted or moved forward (after coalescing and resolution)
    woken: int  # accounts woken at once because a signal can stop an open case
    woken_ids: tuple[str, ...] = ()  # those accounts (their cached decisions are stale)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """A stored audit entry with its place in the hash chain."""

    seq: int
    entry: AuditEntry
    recorded_at: datetime
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditProblem:
    """One break in the audit chain."""

    seq: int
    problem: str  # "edited", "inserted", "removed", "head mismatch"
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditVerification:
    """The result of walking the whole audit chain."""

    checked: int
    problems: tuple[AuditProblem, ...]

    @property
    def ok(self) -> bool:
        """True if the chain is intact."""
        return not self.problems


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """An API token as stored (the secret itself is never stored, only its hash)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """An in-app notification for an account."""

    id: int
    account_id: str
    case_id: str
    template: str
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None = None


#: how open cases moved to a policy: the first policy of the store, automatically (no open case
#: was opened under another version), or by an explicit migration keeping or re-planning deadlines
PolicyMode = Literal["initial", "automatic", "keep", "replan"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPolicy:
    """A policy document as applied to the store: the newest one is the active policy."""

    name: str
    version: str
    digest: str  # sha256 of `source`
    # the whole document, so every process loads exactly what was applied
    source: str = field(repr=False)
    applied_at: datetime
    applied_by: str
    mode: PolicyMode
    close_removed: bool = False  # cases of removed flows or phases were closed
    seq: int = 0  # the store's order of applications (assigned on write)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationDraft:
    """An in-app notification to store with the delivery of its outbox row."""

    account_id: str
    case_id: str
    template: str
    subject: str
    body: str
    at: datetime


#: (case id, notice key) -> when every outbox row of that notice was delivered, for the notices
#: an account still records as not dispatched: what a scheduler step needs to heal an account
#: whose delivery was marked but whose dispatch was not (a crash between the two, before they
#: were one transaction). Empty for nearly every account.
Deliveries = Mapping[tuple[str, str], datetime]

#: a scheduler step: the account as loaded and its `Deliveries` -> the change to write, or None
StepFn = Callable[[Account, Deliveries], Change | None]

#: the step that records a notice dispatched: the account and when its last row was delivered
NoticeStepFn = Callable[[Account, datetime], Change | None]


class UnitOfWork(Protocol):
    """One transaction on one account (API requests, admin actions, deliveries)."""

    def load(self, account_id: str) -> Account | None:
        """The account's snapshot, locked until the unit ends."""
        ...

    def seen_event(self, account_id: str, event_id: str) -> bool:
        """True if this event id was already applied to the account."""
        ...

    def write(self, change: Change) -> list[OutboxItem]:
        """Write the change; returns the outbox rows it created (not those that existed)."""
        ...

    def erase(self, account_id: str) -> dict[str, int]:
        """Erase the account's personal rows outside its snapshot: received event ids, in-app
        notifications, and the recipients and reasons of its notices in the outbox (their rows
        stay, as the record of what was sent when). Returns the rows touched per kind."""
        ...

    def delivered(self, item_id: int, at: datetime, *, worker: str) -> bool:
        """Mark a pending outbox row delivered together with the unit's writes, if `worker`
        holds its claim or nobody does (False, marking nothing, if another worker holds it
        or it is no longer pending). A delete or purge row is finished this way, in the unit
        that records its outcome: a worker killed after that commit leaves no row that a
        restart would carry out a second time. A row nobody holds is one whose claim ran out
        during a long run and whose next attempt failed and released it (the run itself was
        this worker's: data runs have their own claim): the run's finisher records it."""
        ...


class Store(Protocol):
    """Where accounts, the schedule, the outbox, the audit log and tombstones live."""

    # --- units and reads ------------------------------------------------------------------

    def unit(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work: commit on normal exit, roll back on exception."""
        ...

    def create_many(self, changes: Sequence[Change]) -> list[OutboxItem]:
        """Create many new accounts (each Change with created=True) in one transaction."""
        ...

    def get(self, account_id: str) -> Account | None:
        """A snapshot, without locking (None if unknown; deleted accounts keep a stub)."""
        ...

    def get_many(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """Several snapshots in one round trip (unknown ids are absent)."""
        ...

    def versions(self, account_ids: Sequence[str]) -> dict[str, int]:
        """The write counter of each account (bumped by every write): for cache validation."""
        ...

    def next_due(self, account_id: str) -> datetime | None:
        """When the account next needs the scheduler."""
        ...

    def earliest_due(self) -> datetime | None:
        """The earliest next due time of any account."""
        ...

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
        """Accounts ordered by id, filtered, paginated by `after` (the last id seen).

        `positions`: only accounts with an open case at one of these (flow, phase index)
        (an empty sequence matches nothing); `search`: only accounts whose id, address or a
        member's email contains this text, whatever its case (the admin UI's filters)."""
        ...

    def count_by_state(self) -> dict[str, int]:
        """How many accounts are in each state (for metrics and the admin UI)."""
        ...

    def count_cases(self) -> dict[tuple[str, int], int]:
        """How many open cases are at each (flow, phase index) (the admin UI's dashboard; an
        index equal to the flow's phase count is a case past its phases, its outcome due)."""
        ...

    def accounts_due(self, until: datetime, *, limit: int = 1000) -> list[tuple[str, datetime]]:
        """(id, next due time) of the accounts the scheduler next needs at or before `until`,
        earliest first, at most `limit` (the admin UI's upcoming page: an account whose next
        due time is later has nothing happening before `until`)."""
        ...

    # --- scheduler --------------------------------------------------------------------------

    def claim_due(self, now: datetime, limit: int, worker: str, lease: timedelta) -> list[str]:
        """Claim up to `limit` accounts due at `now` whose claim is free or expired.

        One atomic statement; on PostgreSQL `FOR UPDATE SKIP LOCKED`, so concurrent workers
        never claim the same account. The claim lasts `lease`; a dead worker's claims are taken
        over once it expires.
        """
        ...

    def process(self, account_ids: Sequence[str], step: StepFn, worker: str) -> list[OutboxItem]:
        """In one transaction: load the claimed accounts, call `step` on each (with its
        `Deliveries`), write the changes, release the claims. Accounts no longer claimed by
        `worker` are skipped.
        `step` must be pure and fast; if it raises for one account, that account is skipped
        (and stays due) and the others are written."""
        ...

    def process_due(
        self, now: datetime, limit: int, worker: str, lease: timedelta, step: StepFn
    ) -> list[str]:
        """`claim_due` and `process` in one transaction: claim up to `limit` accounts due at
        `now` (free or expired claims only, earliest due first; on PostgreSQL by locking them
        with `FOR UPDATE SKIP LOCKED`), step each (with its `Deliveries`) and write the
        changes. Returns the ids claimed. An account whose step raises keeps a claim of
        `lease` and is retried once it expires; a worker that dies mid-batch leaves nothing
        behind (its transaction rolls back), so its accounts are due again at once. On
        PostgreSQL its statements may run at most `lease` each (`statement_timeout`), and a
        connection left idle inside the transaction is ended by the server
        (`idle_in_transaction_session_timeout`, set by `create_db_engine`), so a hung worker
        cannot hold the row locks for ever."""
        ...

    def wake_undispatched(self, now: datetime) -> list[str]:
        """Make due at `now` every account with an open case whose notice is still recorded
        as not dispatched although every outbox row of it was delivered (left by a process
        killed between the two before they were one transaction); returns their ids. The
        scheduler step then records the dispatch from the rows (see `Deliveries`)."""
        ...

    # --- ingestion --------------------------------------------------------------------------

    def record_signals(
        self,
        reports: Sequence[tuple[str, str, datetime]],
        *,
        resolution: timedelta,
        now: datetime,
    ) -> SignalBatchResult:
        """Record (account id, signal, time) reports: coalesced to the latest time per account
        and signal; a report less than `resolution` after the stored time writes nothing.
        Accounts whose `wake_signals` include a signal whose stored time this batch moved
        forward become due at `now` (a repeat within the resolution, or an older report,
        writes nothing and wakes nothing). Unknown or deleted account ids raise InvalidInput
        and nothing is written."""
        ...

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
        """Claim pending rows whose next attempt is due (atomically, like claim_due), oldest
        first: all of them, only the deliveries (`"deliveries"`: notices and host effects), or
        only the deletions and purges (`"data"`), which run in a loop of their own."""
        ...

    def extend_outbox_claim(self, item_id: int, worker: str, lease: timedelta) -> bool:
        """Keep `worker`'s claim on a pending row for `lease` from now (wall time), for work
        that outlasts a lease (a long deletion); False if it no longer holds the claim."""
        ...

    # The results of an attempt are written only by the worker holding the row's claim
    # (`claimed_by`, the row still pending): a worker whose lease ran out and whose row another
    # worker claimed since gets False and changes nothing, so it never overwrites the other's
    # result. InvalidInput if there is no such row.

    def outbox_delivered(self, item_id: int, at: datetime, *, worker: str) -> bool:
        """Mark a row delivered (host effects, deletions, purges: notices use
        `notice_delivered`)."""
        ...

    def notice_delivered(
        self,
        item_id: int,
        at: datetime,
        *,
        worker: str,
        step: NoticeStepFn,
        notification: NotificationDraft | None = None,
    ) -> bool:
        """In one transaction: mark a notice row delivered, store its in-app `notification`
        (if any), and once every row of the notice is delivered, write `step(account, when the
        last row was)` (the notice dispatched). A crash leaves all of it or none of it; a
        retried in-app row can never store its notification twice."""
        ...

    def outbox_failed(
        self, item_id: int, error: str, next_attempt_at: datetime | None, *, worker: str
    ) -> bool:
        """Record a failed attempt: retried at `next_attempt_at`, or failed for good if None."""
        ...

    def outbox_skipped(self, item_id: int, reason: str, *, worker: str) -> bool:
        """Mark a row that must not be delivered any more (its case closed meanwhile)."""
        ...

    def next_outbox_attempt(self) -> datetime | None:
        """The earliest `next_attempt_at` of a pending row (when the dispatcher retries next)."""
        ...

    def outbox_deferred(self, item_id: int, until: datetime, reason: str, *, worker: str) -> bool:
        """Put a claimed row back to wait until `until`; not a failed attempt (its count stays)."""
        ...

    def start_deletion(
        self, item_id: int, account_id: str, now: datetime, per_minute: int
    ) -> datetime | None:
        """Take one of the `per_minute` deletion starts of the minute before `now` (all workers
        together) for the delete row `item_id`: None if it may start (or already started),
        else the earliest moment a start frees up. Atomic across workers."""
        ...

    def retry_outbox(self, item_id: int, *, audit: Sequence[AuditEntry] = ()) -> OutboxItem:
        """Put a failed row back to pending, due now, and append `audit` (who asked), in one
        transaction."""
        ...

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
        """Outbox rows, oldest first (newest first with `newest_first`, as the admin UI lists
        them), filtered and paginated by id: above `after`, below `before`."""
        ...

    def notice_delivery(self, account_id: str, case_id: str, key: str) -> datetime | None:
        """When every row of a notice was delivered (the latest time), or None if any is not."""
        ...

    def prune_outbox(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the outbox rows that are finished history (see `prunable`): notices and host
        effects delivered (or skipped) before `before`, of cases that are closed. Rows that
        failed, are pending, or carry a deletion or purge stay. Works through the rows in
        id order, `chunk` at a time, each chunk one transaction; `progress(rows so far)` after
        each. With `dry_run`, counts and deletes nothing. Returns the number of rows."""
        ...

    def prune_notifications(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the in-app notifications created before `before` of cases that are closed
        (read or not: the case they told about is over); those of open cases stay. Chunks,
        progress, `dry_run` and the result as in `prune_outbox`."""
        ...

    def prune_events(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Forget the ids of the events received before `before` (kept only to recognise a
        repeated delivery), oldest first, `chunk` ids per transaction; `progress` and
        `dry_run` as in `prune_outbox`. The engine refuses events older than the retention,
        so a forgotten id can never be applied twice. Returns the number of ids."""
        ...

    # --- audit ------------------------------------------------------------------------------

    def audit(
        self, *, account_id: str | None = None, after: int | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Audit records in chain order."""
        ...

    def recent_audit(
        self, *, account_id: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Audit records newest first, paginated by `before` (the last seq seen)."""
        ...

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries that belong to no account step (admin login, token creation...)."""
        ...

    def verify_audit(
        self, *, progress: Callable[[int, int], None] | None = None
    ) -> AuditVerification:
        """Walk the whole chain and report every edited, inserted or removed row; `progress`
        is told (rows checked, rows the chain's head counts) every few thousand rows."""
        ...

    # --- data runs and receipts ---------------------------------------------------------------

    def claim_data_run(self, run: DataRun, *, worker: str, lease: timedelta) -> DataRun:
        """Start the run (the first time) or take it over (free, expired or already ours);
        returns it with its stored progress. Conflict if another worker holds it."""
        ...

    def save_progress(
        self, run_id: str, progress: DataProgress, *, worker: str, lease: timedelta
    ) -> None:
        """Store one location's progress and extend the claim (and the worker's claim on the
        account's pending data outbox rows), in one transaction; StaleWrite if the run is no
        longer claimed by `worker`."""
        ...

    def receipts(
        self,
        *,
        account_id: str | None = None,
        kind: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[StoredReceipt]:
        """Receipts in the order they were written, filtered, paginated by `after` (a seq)."""
        ...

    def receipt(self, receipt_id: str) -> StoredReceipt | None:
        """One receipt by id."""
        ...

    # --- tombstones, notifications, tokens --------------------------------------------------

    def tombstone(self, account_id: str) -> Tombstone | None:
        """The tombstone of a deleted account."""
        ...

    def retired(self, address: str, now: datetime) -> Tombstone | None:
        """The tombstone retiring this address, if it is still retired at `now`."""
        ...

    def retired_among(self, addresses: Sequence[str], now: datetime) -> dict[str, Tombstone]:
        """Those of `addresses` still retired at `now`, each with its tombstone (one query)."""
        ...

    def add_notification(
        self, *, account_id: str, case_id: str, template: str, subject: str, body: str, at: datetime
    ) -> Notification:
        """Store an in-app notification."""
        ...

    def notifications(self, account_id: str, *, unread_only: bool = False) -> list[Notification]:
        """The account's in-app notifications, newest first."""
        ...

    def create_token(
        self, *, name: str, scopes: Sequence[str], now: datetime
    ) -> tuple[TokenInfo, str]:
        """Create an API token; returns its info and the secret (shown once, stored hashed)."""
        ...

    def verify_token(self, secret: str, now: datetime) -> TokenInfo | None:
        """The token's info if the secret is valid and not revoked."""
        ...

    def list_tokens(self) -> list[TokenInfo]:
        """Every token (without secrets)."""
        ...

    def revoke_token(self, token_id: str, now: datetime) -> None:
        """Revoke a token."""
        ...

    # --- policies ---------------------------------------------------------------------------

    def active_policy(self) -> StoredPolicy | None:
        """The policy applied last (None before the first start)."""
        ...

    def active_policy_seq(self) -> int:
        """The seq of the active policy (0 if none): a cheap read processes poll to notice that
        another process applied a new policy."""
        ...

    def policies(self) -> list[StoredPolicy]:
        """Every policy applied, oldest first (the versions open cases may come from)."""
        ...

    def record_policy(self, policy: StoredPolicy, audit: Sequence[AuditEntry]) -> StoredPolicy:
        """Make `policy` the active one, with its audit entries, in one transaction; returns it
        with its `seq`."""
        ...

    def open_cases_by_version(self) -> dict[str, int]:
        """How many open cases of accounts not deleted were opened under each policy version."""
        ...

    # --- simulations ------------------------------------------------------------------------

    def erase(self) -> None:
        """Erase every account and everything about it: snapshots, events, the outbox, the
        audit chain (it starts again from genesis), tombstones, notifications. API tokens and
        the applied policies stay.
        Only for starting a simulation on a controlled clock over (`POST /v1/clock/reset`)."""
        ...
