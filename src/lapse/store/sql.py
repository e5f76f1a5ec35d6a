"""`SqlStore`: the storage contract on SQLAlchemy Core, for SQLite and PostgreSQL (psycopg 3).

SQLite is the embedded default: WAL, one writer at a time (every write transaction starts with
`BEGIN IMMEDIATE`, so a unit holds the write lock from its first read and never has to retry).
PostgreSQL is the scale-out path: the scheduler claims due accounts by locking them with
`FOR UPDATE SKIP LOCKED` in the transaction that processes them (`process_due`), outbox rows are
claimed in one statement, a unit locks the account row it loads, and the audit chain is kept in
commit order by locking its single head row last in each writing transaction.

The hot paths (`process_due`, `record_signals`) work in bulk: IN queries to load a batch, one
statement per table to write it (executemany on SQLite, arrays on PostgreSQL: `bulk.Many`).
Driver errors become `StoreError`s here and nowhere else.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    Table,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.pool import ConnectionPoolEntry

from lapse.core.model import Account, AuditEntry
from lapse.errors import Conflict, InvalidInput, LapseError
from lapse.store import bulk, codec, datarun
from lapse.store import policies as policy_sql
from lapse.store.base import (
    PRUNE_CHUNK,
    PRUNE_KINDS,
    PRUNE_STATUSES,
    AccountSummary,
    AuditProblem,
    AuditRecord,
    AuditVerification,
    Change,
    DataProgress,
    DataRun,
    Deliveries,
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
    StoreError,
    TokenInfo,
    Tombstone,
    address_hash,
    check_chunk,
    check_rows,
)
from lapse.store.bulk import GENESIS, Dialect, Loaded, chunks
from lapse.store.memory import unknown_accounts_message
from lapse.store.queries import query
from lapse.store.tables import (
    Timestamp,
    accounts,
    api_tokens,
    audit,
    audit_head,
    cases,
    events,
    members,
    metadata,
    notifications,
    outbox,
    policies,
    tombstones,
)

log = logging.getLogger("lapse.store")

TOKEN_TOUCH = timedelta(minutes=1)  # last_used_at is refreshed at most this often
_VERIFY_CHUNK = 2000  # audit rows fetched (and progress reported) at a time by verify_audit
#: the transaction-level advisory lock that serialises deletion starts on PostgreSQL
_DELETION_LOCK = 0x6C61707365  # "lapse"

_ACCOUNT_COLUMNS = (
    accounts.c.id,
    accounts.c.kind,
    accounts.c.created_at,
    accounts.c.address,
    accounts.c.deleted_at,
    accounts.c.version,
    accounts.c.cases,
    accounts.c.armed_from,
    accounts.c.last_events,
    accounts.c.legal_hold,
    accounts.c.case_seq,
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _convert(exc: SQLAlchemyError) -> LapseError:
    """The lapse error for a driver or SQLAlchemy error."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, LapseError):  # raised by a bind processor (a naive timestamp...)
        return orig
    detail = str(orig if orig is not None else exc).strip().splitlines()[0]
    if isinstance(exc, IntegrityError):
        return StoreError(f"the database refused the write: {detail}")
    return StoreError(f"database error: {detail}")


def _driver_error(exc: Exception) -> StoreError:
    """The StoreError for an error the driver raised on one of the hot paths' own cursors."""
    lines = str(exc).strip().splitlines()
    return StoreError(f"database error: {lines[0] if lines else type(exc).__name__}")


def _sqlite_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # driver-level autocommit: the store emits BEGIN itself (see _sqlite_begin), the recipe
    # SQLAlchemy documents for pysqlite's broken transaction handling
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: due-time index and rows stay cached
    # checkpoint (and fsync) every ~40 MiB of WAL rather than every 4 MiB: a scheduler batch
    # rewrites ~1000 pages, and a page rewritten before the checkpoint is copied back once
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("lapse_read"):
        conn.exec_driver_sql("BEGIN")
    else:
        # take the write lock up front: a unit that read under a shared lock could not
        # upgrade it later without a deadlock-prone retry
        conn.exec_driver_sql("BEGIN IMMEDIATE")


#: the claim lease when none is given (LAPSE_LEASE_SECONDS' default)
DEFAULT_LEASE = timedelta(seconds=60)


def _ms(duration: timedelta) -> int:
    """A duration in whole milliseconds, at least one (PostgreSQL reads 0 as "no limit")."""
    return max(int(duration.total_seconds() * 1000), 1)


def create_db_engine(url: str, *, lease: timedelta | None = None, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine configured the way the store needs it (pragmas, UTC, begin mode).

    On PostgreSQL every connection gets `idle_in_transaction_session_timeout` = `lease`
    (default 60 s): no lapse transaction waits on its client that long, so one that does
    belongs to a hung or partitioned worker, and the server ends it, releasing its row locks
    (the scheduler's accounts are due again at once). `process_due` adds a `statement_timeout`
    of the same length to its own transactions.
    """
    if url.startswith("sqlite"):
        sqlite_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, connect_args=sqlite_args, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql"):
        idle = _ms(lease or DEFAULT_LEASE)
        connect_args = {"options": f"-c timezone=UTC -c idle_in_transaction_session_timeout={idle}"}
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    raise InvalidInput(f"unsupported database URL {url!r}: expected sqlite:/// or postgresql://")


class _Checkpointer:
    """Copies an SQLite file database's WAL back into the database on a thread of its own.

    SQLite does this inside the commit that makes the WAL pass `wal_autocheckpoint` pages: that
    commit then waits for the copy and an fsync (a quarter of a second for 40 MiB here), which
    stalls the scheduler for a fifth of its time when it writes large batches. After each batch
    the scheduler wakes this thread instead, which checkpoints (PASSIVE: never blocking a
    writer) while the next batch is evaluated; the commit-time checkpoint stays as a backstop.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="lapse-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        """A batch was committed."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (after the checkpoint under way, if any)."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        except sqlite3.Error:  # pragma: no cover - the store's own connections opened it
            log.exception("the WAL checkpoint thread cannot open %s", self._path)
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy or locked: the next batch tries again
                    log.debug("WAL checkpoint skipped", exc_info=True)
        finally:
            conn.close()


class SqlStore:
    """The storage contract on SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self._wall = wall or _utcnow  # for claim leases: real time, even under a manual clock
        self.dialect = engine.dialect.name
        self._pg = self.dialect == "postgresql"
        self._reader = engine.execution_options(lapse_read=True)
        self._clock = clock or _utcnow
        self._d = Dialect(self.dialect)
        ts = Timestamp()
        self._claim_due = text(query("claim_due", self.dialect)).bindparams(
            bindparam("now", type_=ts), bindparam("wall", type_=ts), bindparam("expires", type_=ts)
        )
        self._claim_outbox = text(query("claim_outbox", self.dialect)).bindparams(
            bindparam("now", type_=ts), bindparam("wall", type_=ts), bindparam("expires", type_=ts)
        )
        database = engine.url.database if self.dialect == "sqlite" else None
        # a file database (not ":memory:" nor a temporary one) gets a checkpoint thread once
        # the scheduler writes to it
        in_file = database and database != ":memory:" and not engine.url.query.get("uri")
        self._wal_path = database if in_file else None
        self._checkpointer: _Checkpointer | None = None
        self._checkpointer_lock = threading.Lock()

    def close(self) -> None:
        """Close every pooled connection (and stop the WAL checkpoint thread)."""
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        self.engine.dispose()

    def _wrote_batch(self) -> None:
        """After a scheduler batch on an SQLite file: let the checkpoint thread copy the WAL."""
        checkpointer = self._checkpointer
        if checkpointer is None:
            if self._wal_path is None:
                return
            with self._checkpointer_lock:
                checkpointer = self._checkpointer
                if checkpointer is None:
                    checkpointer = self._checkpointer = _Checkpointer(self._wal_path)
        checkpointer.wrote()

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except (DBAPIError, StatementError) as exc:
            raise _convert(exc) from exc
        except self._d.driver_error as exc:  # from the hot paths' driver cursors
            raise _driver_error(exc) from exc

    @contextmanager
    def _read_tx(self) -> Iterator[Connection]:
        try:
            with self._reader.connect() as conn:
                yield conn
        except (DBAPIError, StatementError) as exc:
            raise _convert(exc) from exc

    @contextmanager
    def unit(self) -> Iterator[SqlUnit]:
        """A unit of work: one transaction; commit on normal exit, roll back on exception."""
        with self._write_tx() as conn:
            yield SqlUnit(self, conn)

    # --- loading ------------------------------------------------------------------------------

    def _load(
        self,
        conn: Connection,
        ids: Sequence[str],
        *,
        worker: str | None = None,
        lock: bool = False,
    ) -> dict[str, Loaded]:
        return bulk.load(conn, self._d, ids, worker=worker, lock=lock)

    def _write(
        self,
        conn: Connection,
        items: Sequence[tuple[Loaded | None, Change]],
        *,
        worker: str | None = None,
        release: bool = False,
        created: bool = True,
    ) -> list[OutboxItem]:
        return bulk.write(
            conn,
            self._d,
            items,
            worker=worker,
            now=self._clock(),
            release=release,
            returning=created,
        )

    def create_many(self, changes: Sequence[Change]) -> list[OutboxItem]:
        """Create many new accounts in one transaction (bulk import); all or nothing."""
        if not changes:
            return []
        with self._write_tx() as conn:
            try:
                return self._write(conn, [(None, change) for change in changes])
            except (DBAPIError, StatementError) as exc:
                raise _convert(exc) from exc

    # --- audit chain --------------------------------------------------------------------------

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries that belong to no account step (admin login, token creation...)."""
        if not entries:
            return
        with self._write_tx() as conn:
            bulk.append_audit(conn, self._d, entries, self._clock())

    def audit(
        self, *, account_id: str | None = None, after: int | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Audit records in chain order."""
        stmt = select(audit).order_by(audit.c.seq).limit(limit)
        if account_id is not None:
            stmt = stmt.where(audit.c.account_id == account_id)
        if after is not None:
            stmt = stmt.where(audit.c.seq > after)
        with self._read_tx() as conn:
            return [_audit_record(row) for row in conn.execute(stmt).mappings()]

    def recent_audit(
        self, *, account_id: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Audit records newest first, paginated by `before` (the last seq seen)."""
        stmt = select(audit).order_by(audit.c.seq.desc()).limit(limit)
        if account_id is not None:
            stmt = stmt.where(audit.c.account_id == account_id)
        if before is not None:
            stmt = stmt.where(audit.c.seq < before)
        with self._read_tx() as conn:
            return [_audit_record(row) for row in conn.execute(stmt).mappings()]

    def verify_audit(
        self, *, progress: Callable[[int, int], None] | None = None
    ) -> AuditVerification:
        """Walk the whole chain and report every edited, inserted or removed row (and the
        progress: rows checked of the rows the head counts)."""
        problems: list[AuditProblem] = []
        checked = 0
        canonical = codec.canonical_json
        sha256 = hashlib.sha256
        # per row: (seq, prev_hash, hash, self-consistent)
        before: tuple[int, str, str] | None = None  # the row two back, for inserted rows
        last: tuple[int, str, str] | None = None
        reported: set[tuple[int, str]] = set()

        def report(seq: int, problem: str, detail: str) -> None:
            if (seq, problem) not in reported:
                reported.add((seq, problem))
                problems.append(AuditProblem(seq=seq, problem=problem, detail=detail))

        with self._read_tx() as conn:
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            ).first()
            total = int(head[0]) if head else 0
            result = conn.execution_options(yield_per=_VERIFY_CHUNK).execute(
                select(audit).order_by(audit.c.seq)
            )
            for row in result.mappings():
                checked += 1
                if progress is not None and checked % _VERIFY_CHUNK == 0:
                    progress(checked, max(total, checked))
                seq = int(row["seq"])
                payload = {
                    "seq": seq,
                    "account_id": row["account_id"],
                    "at": codec.ts(row["at"]),
                    "recorded_at": codec.ts(row["recorded_at"]),
                    "kind": row["kind"],
                    "case_id": row["case_id"],
                    "flow": row["flow"],
                    "detail": row["detail"],
                }
                digest = sha256(row["prev_hash"].encode() + canonical(payload)).hexdigest()
                if digest != row["hash"]:
                    report(seq, "edited", "the row's content does not match its hash")
                expected = last[0] + 1 if last is not None else 1
                if seq > expected:
                    for missing in range(expected, seq):
                        report(missing, "removed", f"seq {missing} is missing from the chain")
                elif last is not None and row["prev_hash"] != last[2]:
                    if before is not None and row["prev_hash"] == before[2]:
                        report(
                            last[0],
                            "inserted",
                            f"seq {last[0]} is not part of the chain: seq {seq} follows "
                            f"seq {before[0]}",
                        )
                    elif (last[0], "edited") not in reported:
                        report(
                            last[0],
                            "edited",
                            f"the hash of seq {last[0]} was rewritten: seq {seq} links to "
                            "a different one",
                        )
                elif last is None and row["prev_hash"] != GENESIS:
                    report(seq, "edited", "the first row does not start the chain")
                before, last = last, (seq, row["prev_hash"], row["hash"])
            head_seq, head_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            last_seq, last_hash = (last[0], last[2]) if last else (0, GENESIS)
            if last_seq > head_seq:
                for extra in range(head_seq + 1, last_seq + 1):
                    report(extra, "inserted", f"seq {extra} lies past the head (seq {head_seq})")
            elif last_seq < head_seq:
                report(
                    last_seq + 1,
                    "head mismatch",
                    f"the chain ends at seq {last_seq} but its head records seq {head_seq}: "
                    f"seq {last_seq + 1} to {head_seq} were removed from the tail",
                )
            elif last_hash != head_hash:
                report(last_seq, "head mismatch", f"the hash of seq {last_seq} is not the head's")
        if progress is not None:
            progress(checked, max(total, checked))
        problems.sort(key=lambda p: p.seq)
        return AuditVerification(checked=checked, problems=tuple(problems))

    # --- reads --------------------------------------------------------------------------------

    def get(self, account_id: str) -> Account | None:
        """A snapshot, without locking (None if unknown; deleted accounts keep a stub)."""
        with self._read_tx() as conn:
            got = self._load(conn, [account_id]).get(account_id)
        return got.account if got is not None else None

    def get_many(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """Several snapshots in one round trip (unknown ids are absent)."""
        with self._read_tx() as conn:
            loaded = self._load(conn, list(dict.fromkeys(account_ids)))
        return {account_id: got.account for account_id, got in loaded.items()}

    def versions(self, account_ids: Sequence[str]) -> dict[str, int]:
        """The write counter of each account (bumped by every write): for cache validation."""
        # a hot path (every batch check over HTTP validates its cache with it): on the driver
        # cursor, as in `bulk`, since SQLAlchemy's expanding IN costs more than the query
        out: dict[str, int] = {}
        d = self._d
        with self._read_tx() as conn:
            cur = bulk.raw_cursor(conn)
            try:
                for chunk in chunks(list(account_ids)):
                    where, params = d.in_("id", chunk)
                    cur.execute(f"SELECT id, version FROM accounts WHERE {where}", params)
                    out.update(cur.fetchall())
            except d.driver_error as exc:
                raise _driver_error(exc) from exc
            finally:
                cur.close()
        return out

    def next_due(self, account_id: str) -> datetime | None:
        """When the account next needs the scheduler."""
        with self._read_tx() as conn:
            value: datetime | None = conn.execute(
                select(accounts.c.next_due_at).where(accounts.c.id == account_id)
            ).scalar()
        return value

    def earliest_due(self) -> datetime | None:
        """The earliest next due time of any account."""
        with self._read_tx() as conn:
            value: datetime | None = conn.execute(
                select(accounts.c.next_due_at)
                .where(accounts.c.next_due_at.is_not(None))
                .order_by(accounts.c.next_due_at)
                .limit(1)
            ).scalar()
        return value

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
        if positions is not None and not positions:
            return []
        stmt = (
            select(
                accounts.c.id,
                accounts.c.kind,
                accounts.c.state,
                accounts.c.created_at,
                accounts.c.next_due_at,
                accounts.c.legal_hold.is_not(None),
                accounts.c.deleted_at,
            )
            .order_by(accounts.c.id)
            .limit(limit)
        )
        if state is not None:
            stmt = stmt.where(accounts.c.state == state)
        if kind is not None:
            stmt = stmt.where(accounts.c.kind == kind)
        if flow is not None:
            stmt = stmt.where(
                accounts.c.id.in_(select(cases.c.account_id).where(cases.c.flow == flow))
            )
        if positions:
            at = or_(*(and_(cases.c.flow == f, cases.c.phase_index == i) for f, i in positions))
            stmt = stmt.where(accounts.c.id.in_(select(cases.c.account_id).where(at)))
        if search:
            needle = search.strip().lower()
            stmt = stmt.where(
                or_(
                    func.lower(accounts.c.id).contains(needle, autoescape=True),
                    func.lower(accounts.c.address).contains(needle, autoescape=True),
                    accounts.c.id.in_(
                        select(members.c.account_id).where(
                            func.lower(members.c.email).contains(needle, autoescape=True)
                        )
                    ),
                )
            )
        if after is not None:
            stmt = stmt.where(accounts.c.id > after)
        with self._read_tx() as conn:
            rows = conn.execute(stmt).all()
            flows: dict[str, list[str]] = {}
            ids = [row[0] for row in rows]
            if ids:
                for account_id, name in conn.execute(
                    select(cases.c.account_id, cases.c.flow)
                    .where(cases.c.account_id.in_(ids))
                    .order_by(cases.c.account_id, cases.c.case_id)
                ):
                    flows.setdefault(account_id, []).append(name)
        return [
            AccountSummary(
                id=row[0],
                kind=row[1],
                state=row[2],
                created_at=row[3],
                next_due_at=row[4],
                open_flows=tuple(flows.get(row[0], ())),
                legal_hold=bool(row[5]),
                deleted_at=row[6],
            )
            for row in rows
        ]

    def count_by_state(self) -> dict[str, int]:
        """How many accounts are in each state (for metrics and the admin UI)."""
        with self._read_tx() as conn:
            rows = conn.execute(select(accounts.c.state, func.count()).group_by(accounts.c.state))
            return {str(state): int(count) for state, count in rows}

    def count_cases(self) -> dict[tuple[str, int], int]:
        """How many open cases are at each (flow, phase index)."""
        stmt = select(cases.c.flow, cases.c.phase_index, func.count()).group_by(
            cases.c.flow, cases.c.phase_index
        )
        with self._read_tx() as conn:
            return {(str(f), int(i)): int(count) for f, i, count in conn.execute(stmt)}

    def accounts_due(self, until: datetime, *, limit: int = 1000) -> list[tuple[str, datetime]]:
        """(id, next due time) of the accounts due at or before `until`, earliest first."""
        stmt = (
            select(accounts.c.id, accounts.c.next_due_at)
            .where(
                accounts.c.next_due_at.is_not(None),
                accounts.c.next_due_at <= until,
                accounts.c.deleted_at.is_(None),
            )
            .order_by(accounts.c.next_due_at, accounts.c.id)
            .limit(limit)
        )
        with self._read_tx() as conn:
            return [(str(i), at) for i, at in conn.execute(stmt)]

    # --- scheduler ----------------------------------------------------------------------------

    def claim_due(self, now: datetime, limit: int, worker: str, lease: timedelta) -> list[str]:
        """Claim up to `limit` due accounts whose claim is free or expired (one statement)."""
        if limit <= 0:
            return []
        wall = self._wall()  # leases run on real time, whatever clock decides what is due
        params = {
            "now": now,
            "wall": wall,
            "expires": wall + lease,
            "worker": worker,
            "limit": limit,
        }
        with self._write_tx() as conn:
            rows = list(conn.execute(self._claim_due, params))
        # RETURNING gives no order; the scheduler processes the earliest due first
        rows.sort(key=lambda row: (row[1], row[0]))
        return [str(row[0]) for row in rows]

    def process(self, account_ids: Sequence[str], step: StepFn, worker: str) -> list[OutboxItem]:
        """In one transaction: load the claimed accounts, step each, write, release claims."""
        if not account_ids:
            return []
        with self._write_tx() as conn:
            loaded = self._load(conn, list(dict.fromkeys(account_ids)), worker=worker, lock=True)
            items, untouched, _ = _step_all(loaded, step, _deliveries(conn, loaded))
            created = self._write(conn, items, worker=worker)
            if untouched:
                for chunk in chunks(untouched):
                    conn.execute(
                        update(accounts)
                        .where(accounts.c.id.in_(chunk), accounts.c.claimed_by == worker)
                        .values(claimed_by=None, claim_expires_at=None)
                    )
        return created

    def process_due(
        self, now: datetime, limit: int, worker: str, lease: timedelta, step: StepFn
    ) -> list[str]:
        """Claim up to `limit` due accounts and process them in one transaction (see Store)."""
        if limit <= 0:
            return []
        wall = self._wall()  # leases run on real time, whatever clock decides what is due
        d = self._d
        with self._write_tx() as conn:
            if self._pg:
                # a statement that runs longer than a lease is stuck (a batch takes tens of
                # milliseconds): ended, it rolls the batch back and frees its accounts
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {_ms(lease)}")
            loaded = bulk.load_due(conn, d, now, wall, limit)
            if not loaded:
                return []
            items, untouched, failed = _step_all(loaded, step, _deliveries(conn, loaded))
            self._write(conn, items, release=True, created=False)
            if untouched or failed:
                cur = bulk.raw_cursor(conn)
                expires = d.time(wall + lease)
                rows: list[tuple[str | None, Any, str]] = [(None, None, i) for i in untouched]
                rows += [(worker, expires, i) for i in failed]  # retried after the lease
                cur.executemany(d.claim_account, rows)
        self._wrote_batch()
        return list(loaded)

    def wake_undispatched(self, now: datetime) -> list[str]:
        """Make due at `now` the accounts whose delivered notices are recorded undispatched."""
        woken: list[str] = []
        after = ""
        delivered = exists().where(
            outbox.c.account_id == cases.c.account_id,
            outbox.c.case_id == cases.c.case_id,
            outbox.c.kind == "notice",
            outbox.c.status == "delivered",
        )
        while True:
            # open cases with a delivered notice, a page of accounts at a time
            with self._read_tx() as conn:
                ids = list(
                    conn.execute(
                        select(cases.c.account_id)
                        .distinct()
                        .where(cases.c.account_id > after, delivered)
                        .order_by(cases.c.account_id)
                        .limit(500)
                    ).scalars()
                )
                if not ids:
                    return woken
                loaded = {
                    account_id: got
                    for account_id, got in self._load(conn, ids).items()
                    if got.account.deleted_at is None
                }
                stuck = sorted(_deliveries(conn, loaded))
            after = ids[-1]
            if stuck:
                with self._write_tx() as conn:
                    conn.execute(
                        update(accounts)
                        .where(
                            accounts.c.id.in_(stuck),
                            or_(accounts.c.next_due_at.is_(None), accounts.c.next_due_at > now),
                        )
                        .values(next_due_at=now, version=accounts.c.version + 1)
                    )
                woken += stuck

    # --- ingestion ----------------------------------------------------------------------------

    def record_signals(
        self,
        reports: Sequence[tuple[str, str, datetime]],
        *,
        resolution: timedelta,
        now: datetime,
    ) -> SignalBatchResult:
        """Record (account, signal, time) reports, coalesced; wake accounts that wait on them."""
        latest: dict[tuple[str, str], datetime] = {}
        get = latest.get
        try:
            for account_id, name, at in reports:
                key = (account_id, name)
                seen = get(key)
                if seen is None or at > seen:
                    latest[key] = at
        except TypeError as exc:  # a naive datetime compared with an aware one
            raise InvalidInput(f"signal times must have a time zone: {exc}") from None
        if not latest:
            return SignalBatchResult(received=len(reports), written=0, woken=0)
        # the accounts in first-report order (dict keys: unique, ordered, built in C)
        ids = list(dict.fromkeys([account_id for account_id, _ in latest]))
        d = self._d
        time = d.time
        read_time = d.read_time
        with self._write_tx() as conn:
            cur = bulk.raw_cursor(conn)
            live: list[str] = []
            deleted: list[str] = []
            waiting: dict[str, Any] = {}  # the accounts some signal wakes, and those signals
            stored: dict[tuple[str, str], datetime] = {}
            for chunk in chunks(ids):
                where, params = d.in_("id", chunk)
                cur.execute(
                    f"SELECT id, deleted_at, wake_signals FROM accounts WHERE {where}", params
                )
                for account_id, deleted_at, wake in cur.fetchall():
                    if deleted_at is not None:
                        deleted.append(account_id)
                    else:
                        live.append(account_id)
                        if wake is not None:
                            waiting[account_id] = wake
                # the stored times decide here what moves forward, so reports inside the
                # resolution (most of them, for busy accounts) cost no write at all
                where, params = d.in_("account_id", chunk)
                cur.execute(
                    f"SELECT account_id, name, last_seen FROM signals WHERE {where}", params
                )
                for account_id, name, last_seen in cur.fetchall():
                    key = (account_id, name)
                    if key in latest:
                        stored[key] = read_time(last_seen)
            if len(live) != len(ids):
                unknown = sorted(set(ids) - set(live) - set(deleted))
                raise InvalidInput(unknown_accounts_message(unknown, sorted(deleted)))
            rows = []
            texts: dict[datetime, Any] = {}  # reports often share their times
            get_stored = stored.get
            get_text = texts.get
            try:
                for key, at in latest.items():
                    seen = get_stored(key)
                    if seen is None or (at - resolution >= seen and at > seen):
                        text = get_text(at)
                        if text is None:
                            text = texts[at] = time(at)
                        rows.append((key[0], key[1], text))
            except TypeError as exc:  # a naive datetime compared with a stored one
                raise InvalidInput(f"signal times must have a time zone: {exc}") from None
            written = 0
            if rows:
                cur.executemany(d.signal_report, rows)
                written = cur.rowcount
            # only signals that moved forward wake their account: a repeat within the
            # resolution or an older report costs no write here either
            wake_ids: list[str] = []
            if waiting:
                advanced: dict[str, set[str]] = {}
                for account_id, name, _ in rows:
                    if account_id in waiting:
                        advanced.setdefault(account_id, set()).add(name)
                read_json = d.read_json
                wake_ids = [
                    account_id
                    for account_id, names in advanced.items()
                    if not names.isdisjoint(read_json(waiting[account_id]))
                ]
            woken: list[str] = []
            for chunk in chunks(wake_ids):
                woken += conn.execute(
                    update(accounts)
                    .where(
                        accounts.c.id.in_(chunk),
                        (accounts.c.next_due_at.is_(None)) | (accounts.c.next_due_at > now),
                    )
                    .values(next_due_at=now, version=accounts.c.version + 1)
                    .returning(accounts.c.id)
                ).scalars()
        return SignalBatchResult(
            received=len(reports), written=written, woken=len(woken), woken_ids=tuple(woken)
        )

    # --- outbox -------------------------------------------------------------------------------

    def claim_outbox(
        self,
        now: datetime,
        limit: int,
        worker: str,
        lease: timedelta,
        *,
        rows: OutboxRows = "all",
    ) -> list[OutboxItem]:
        """Claim pending rows whose next attempt is due (atomically, like claim_due)."""
        check_rows(rows)
        if limit <= 0:
            return []
        wall = self._wall()  # leases run on real time, whatever clock decides what is due
        params = {
            "now": now,
            "wall": wall,
            "expires": wall + lease,
            "worker": worker,
            "limit": limit,
            "rows": rows,
        }
        with self._write_tx() as conn:
            ids = [row[0] for row in conn.execute(self._claim_outbox, params)]
            if not ids:
                return []
            claimed = conn.execute(
                select(outbox)
                .where(outbox.c.id.in_(ids))
                .order_by(outbox.c.next_attempt_at, outbox.c.id)
            ).mappings()
            return [_outbox_item(row) for row in claimed]

    def extend_outbox_claim(self, item_id: int, worker: str, lease: timedelta) -> bool:
        """Keep `worker`'s claim on a pending row for `lease` from now (wall time)."""
        with self._write_tx() as conn:
            result = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == item_id,
                    outbox.c.claimed_by == worker,
                    outbox.c.status == "pending",
                )
                .values(claim_expires_at=self._wall() + lease)
            )
        return bool(result.rowcount)

    @staticmethod
    def _finish(conn: Connection, item_id: int, worker: str, **values: Any) -> bool:
        """Write an attempt's result, releasing the claim, if `worker` still holds it."""
        result = conn.execute(
            update(outbox)
            .where(
                outbox.c.id == item_id,
                outbox.c.claimed_by == worker,
                outbox.c.status == "pending",
            )
            .values(**values, claimed_by=None, claim_expires_at=None)
        )
        if result.rowcount:
            return True
        if conn.execute(select(outbox.c.id).where(outbox.c.id == item_id)).first() is None:
            raise InvalidInput(f"no outbox row {item_id}")
        return False  # another worker took the row over after this one's lease ran out

    def _outbox_update(self, item_id: int, worker: str, **values: Any) -> bool:
        with self._write_tx() as conn:
            return self._finish(conn, item_id, worker, **values)

    def outbox_delivered(self, item_id: int, at: datetime, *, worker: str) -> bool:
        """Mark a row delivered, if `worker` still holds its claim."""
        return self._outbox_update(
            item_id,
            worker,
            **_delivered(at),
        )

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
        notice is, write `step`: one transaction."""
        with self._write_tx() as conn:
            row = conn.execute(
                select(outbox.c.account_id, outbox.c.case_id, outbox.c.name, outbox.c.kind).where(
                    outbox.c.id == item_id
                )
            ).first()
            if row is None:
                raise InvalidInput(f"no outbox row {item_id}")
            account_id, case_id, key, kind = row
            if kind != "notice":
                raise InvalidInput(f"outbox row {item_id} is not a notice")
            if self._pg:  # the account before its outbox rows: the order every writer locks in
                conn.execute(
                    select(accounts.c.id).where(accounts.c.id == account_id).with_for_update()
                )
            done = self._finish(
                conn,
                item_id,
                worker,
                **_delivered(at),
            )
            if not done:
                return False
            if notification is not None:
                conn.execute(insert(notifications).values(**_notification_row(notification)))
            delivered = _notice_delivery(conn, account_id, case_id, key)
            if delivered is not None:
                unit = SqlUnit(self, conn)
                account = unit.load(account_id)
                if account is not None:
                    change = step(account, delivered)
                    if change is not None:
                        unit.write(change)
        return True

    def outbox_failed(
        self, item_id: int, error: str, next_attempt_at: datetime | None, *, worker: str
    ) -> bool:
        """Record a failed attempt: retried at `next_attempt_at`, or failed for good if None."""
        return self._outbox_update(
            item_id,
            worker,
            status="pending" if next_attempt_at is not None else "failed",
            last_error=error,
            attempts=outbox.c.attempts + 1,
            next_attempt_at=next_attempt_at,
        )

    def outbox_skipped(self, item_id: int, reason: str, *, worker: str) -> bool:
        """Mark a row that must not be delivered any more (its case closed meanwhile)."""
        return self._outbox_update(
            item_id, worker, status="skipped", last_error=reason, next_attempt_at=None
        )

    def outbox_deferred(self, item_id: int, until: datetime, reason: str, *, worker: str) -> bool:
        """Put a claimed row back to wait until `until`; not a failed attempt (its count stays)."""
        return self._outbox_update(
            item_id, worker, status="pending", last_error=reason, next_attempt_at=until
        )

    def start_deletion(
        self, item_id: int, account_id: str, now: datetime, per_minute: int
    ) -> datetime | None:
        """Take one of the minute's deletion starts for `item_id` (see Store.start_deletion)."""
        with self._write_tx() as conn:
            if self._pg:  # one deciding worker at a time (SQLite has a single writer anyway)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DELETION_LOCK})
            return datarun.start_deletion(conn, item_id, account_id, now, per_minute)

    def next_outbox_attempt(self) -> datetime | None:
        """The earliest `next_attempt_at` of a pending row (when the dispatcher retries next)."""
        with self._read_tx() as conn:
            value: datetime | None = conn.execute(
                select(func.min(outbox.c.next_attempt_at)).where(outbox.c.status == "pending")
            ).scalar()
        return value

    def retry_outbox(self, item_id: int, *, audit: Sequence[AuditEntry] = ()) -> OutboxItem:
        """Put a failed row back to pending, due now, and append `audit`: one transaction."""
        with self._write_tx() as conn:
            status = conn.execute(select(outbox.c.status).where(outbox.c.id == item_id)).scalar()
            if status is None:
                raise InvalidInput(f"no outbox row {item_id}")
            if status != "failed":
                raise Conflict(f"outbox row {item_id} is {status}, not failed")
            conn.execute(
                update(outbox)
                .where(outbox.c.id == item_id)
                .values(status="pending", next_attempt_at=self._clock(), claimed_by=None)
            )
            if audit:
                bulk.append_audit(conn, self._d, audit, self._clock())
            row = conn.execute(select(outbox).where(outbox.c.id == item_id)).mappings().one()
            return _outbox_item(row)

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
        order = outbox.c.id.desc() if newest_first else outbox.c.id
        stmt = select(outbox).order_by(order).limit(limit)
        if before is not None:
            stmt = stmt.where(outbox.c.id < before)
        if account_id is not None:
            stmt = stmt.where(outbox.c.account_id == account_id)
        if status is not None:
            stmt = stmt.where(outbox.c.status == status)
        if after is not None:
            stmt = stmt.where(outbox.c.id > after)
        with self._read_tx() as conn:
            return [_outbox_item(row) for row in conn.execute(stmt).mappings()]

    def notice_delivery(self, account_id: str, case_id: str, key: str) -> datetime | None:
        """When every row of a notice was delivered (the latest time), or None if any is not."""
        with self._read_tx() as conn:
            return _notice_delivery(conn, account_id, case_id, key)

    def prune_outbox(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete finished outbox rows of closed cases (see Store.prune_outbox), a range of
        `chunk` ids per transaction, so the single SQLite writer is never held for long."""
        finished = func.coalesce(outbox.c.delivered_at, outbox.c.created_at)
        prunable = and_(
            outbox.c.kind.in_(PRUNE_KINDS),
            outbox.c.status.in_(PRUNE_STATUSES),
            finished < bindparam("before", before, type_=outbox.c.created_at.type),
            _case_closed(outbox),
        )
        return self._prune_ids(outbox, prunable, before, dry_run, chunk, progress)

    def prune_notifications(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the in-app notifications of closed cases created before `before` (see
        Store.prune_notifications), a range of `chunk` ids per transaction."""
        prunable = and_(
            notifications.c.created_at
            < bindparam("before", before, type_=notifications.c.created_at.type),
            _case_closed(notifications),
        )
        return self._prune_ids(notifications, prunable, before, dry_run, chunk, progress)

    def _prune_ids(
        self,
        table: Table,
        prunable: ColumnElement[bool],
        before: datetime,
        dry_run: bool,
        chunk: int,
        progress: Callable[[int], None] | None,
    ) -> int:
        """Walk `table` in ranges of `chunk` ids, one transaction each, deleting (or, with
        `dry_run`, counting) its `prunable` rows; stop at the first range created after
        `before` (ids follow creation)."""
        check_chunk(chunk)
        ids, created = table.c.id, table.c.created_at
        done = 0
        after = 0
        transaction = self._read_tx if dry_run else self._write_tx  # a dry run only reads
        while True:
            with transaction() as conn:
                window = (
                    select(ids, created).where(ids > after).order_by(ids).limit(chunk).subquery()
                )
                upto, oldest = conn.execute(
                    select(func.max(window.c.id), func.min(window.c.created_at))
                ).one()
                if upto is None:
                    break
                in_range = and_(ids > after, ids <= upto, prunable)
                if dry_run:
                    done += conn.execute(select(func.count()).where(in_range)).scalar_one()
                else:
                    # a row another transaction holds (an erasure blanking an account's rows)
                    # is left for the next round: pruning never waits on, or deadlocks with,
                    # the work that matters
                    rows = select(ids).where(in_range)
                    if self._pg:
                        rows = rows.with_for_update(skip_locked=True)
                    done += conn.execute(
                        delete(table).where(ids.in_(rows.scalar_subquery()))
                    ).rowcount
            after = upto
            if progress is not None:
                progress(done)
            if oldest >= before:
                break
        return done

    def prune_events(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        chunk: int = PRUNE_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Forget the event ids received before `before` (see Store.prune_events): the
        oldest `chunk` per transaction, by the received-time index."""
        check_chunk(chunk)
        old = events.c.received_at < bindparam("before", before, type_=events.c.received_at.type)
        if dry_run:
            with self._read_tx() as conn:
                done: int = conn.execute(select(func.count()).where(old)).scalar_one()
            if progress is not None:
                progress(done)
            return done
        done = 0
        while True:
            with self._write_tx() as conn:
                oldest = (
                    select(events.c.account_id, events.c.event_id)
                    .where(old)
                    .order_by(events.c.received_at)
                    .limit(chunk)
                )
                if self._pg:  # ids an event's own transaction holds wait for the next round
                    oldest = oldest.with_for_update(skip_locked=True)
                gone = conn.execute(
                    delete(events).where(tuple_(events.c.account_id, events.c.event_id).in_(oldest))
                ).rowcount
            done += gone
            if progress is not None:
                progress(done)
            if gone < chunk:
                break
        return done

    # --- tombstones ---------------------------------------------------------------------------

    def tombstone(self, account_id: str) -> Tombstone | None:
        """The tombstone of a deleted account."""
        with self._read_tx() as conn:
            row = (
                conn.execute(select(tombstones).where(tombstones.c.account_id == account_id))
                .mappings()
                .first()
            )
        return _tombstone(row) if row is not None else None

    def retired(self, address: str, now: datetime) -> Tombstone | None:
        """The tombstone retiring this address, if it is still retired at `now`."""
        stmt = (
            select(tombstones)
            .where(
                tombstones.c.address_hash == address_hash(address),
                tombstones.c.address_mode == "retire",
                tombstones.c.retired_until.is_(None) | (tombstones.c.retired_until > now),
            )
            .order_by(tombstones.c.deleted_at.desc())
            .limit(1)
        )
        with self._read_tx() as conn:
            row = conn.execute(stmt).mappings().first()
        return _tombstone(row) if row is not None else None

    def retired_among(self, addresses: Sequence[str], now: datetime) -> dict[str, Tombstone]:
        """Those of `addresses` still retired at `now`, each with its latest tombstone."""
        by_hash: dict[str, list[str]] = {}
        for address in addresses:
            by_hash.setdefault(address_hash(address), []).append(address)
        if not by_hash:
            return {}
        hashes = list(by_hash)
        rows: list[RowMapping] = []
        with self._read_tx() as conn:
            # one query for a usual import chunk; slices keep far under SQLite's variable limit
            for start in range(0, len(hashes), 5000):
                stmt = select(tombstones).where(
                    tombstones.c.address_hash.in_(hashes[start : start + 5000]),
                    tombstones.c.address_mode == "retire",
                    tombstones.c.retired_until.is_(None) | (tombstones.c.retired_until > now),
                )
                rows.extend(conn.execute(stmt).mappings().all())
        rows.sort(key=lambda row: row["deleted_at"])
        found: dict[str, Tombstone] = {}
        for row in rows:  # oldest first: the latest tombstone of an address wins
            stone = _tombstone(row)
            for address in by_hash.get(row["address_hash"], ()):
                found[address] = stone
        return found

    # --- data runs and receipts -----------------------------------------------------------------

    def claim_data_run(self, run: DataRun, *, worker: str, lease: timedelta) -> DataRun:
        """Start the run or take it over (free, expired or ours); Conflict if another has it."""
        with self._write_tx() as conn:
            return datarun.claim(conn, run, worker=worker, wall=self._wall(), lease=lease)

    def save_progress(
        self, run_id: str, progress: DataProgress, *, worker: str, lease: timedelta
    ) -> None:
        """Store one location's progress and extend the claim; StaleWrite if it was lost."""
        with self._write_tx() as conn:
            datarun.save(conn, run_id, progress, worker=worker, wall=self._wall(), lease=lease)

    def receipts(
        self,
        *,
        account_id: str | None = None,
        kind: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[StoredReceipt]:
        """Receipts in the order they were written, filtered, paginated by `after` (a seq)."""
        with self._read_tx() as conn:
            return datarun.list_receipts(
                conn, account_id=account_id, kind=kind, after=after, limit=limit
            )

    def receipt(self, receipt_id: str) -> StoredReceipt | None:
        """One receipt by id."""
        with self._read_tx() as conn:
            return datarun.get_receipt(conn, receipt_id)

    # --- notifications ------------------------------------------------------------------------

    def add_notification(
        self, *, account_id: str, case_id: str, template: str, subject: str, body: str, at: datetime
    ) -> Notification:
        """Store an in-app notification."""
        note = Notification(
            id=0,
            account_id=account_id,
            case_id=case_id,
            template=template,
            subject=subject,
            body=body,
            created_at=at,
        )
        with self._write_tx() as conn:
            item_id = conn.execute(
                insert(notifications)
                .values(
                    account_id=account_id,
                    case_id=case_id,
                    template=template,
                    subject=subject,
                    body=body,
                    created_at=at,
                )
                .returning(notifications.c.id)
            ).scalar_one()
        return replace(note, id=int(item_id))

    def notifications(self, account_id: str, *, unread_only: bool = False) -> list[Notification]:
        """The account's in-app notifications, newest first."""
        stmt = (
            select(notifications)
            .where(notifications.c.account_id == account_id)
            .order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
        )
        if unread_only:
            stmt = stmt.where(notifications.c.read_at.is_(None))
        with self._read_tx() as conn:
            return [Notification(**row) for row in conn.execute(stmt).mappings()]

    # --- tokens -------------------------------------------------------------------------------

    def create_token(
        self, *, name: str, scopes: Sequence[str], now: datetime
    ) -> tuple[TokenInfo, str]:
        """Create an API token; returns its info and the secret (shown once, stored hashed)."""
        token_id = secrets.token_hex(6)
        secret = f"lapse_{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(id=token_id, name=name, scopes=tuple(scopes), created_at=now)
        with self._write_tx() as conn:
            conn.execute(
                insert(api_tokens).values(
                    id=token_id,
                    name=name,
                    token_hash=_token_hash(secret),
                    scopes=list(scopes),
                    created_at=now,
                )
            )
        return info, secret

    def verify_token(self, secret: str, now: datetime) -> TokenInfo | None:
        """The token's info if the secret is valid and not revoked."""
        digest = _token_hash(secret)
        with self._read_tx() as conn:
            row = (
                conn.execute(select(api_tokens).where(api_tokens.c.token_hash == digest))
                .mappings()
                .first()
            )
        if row is None or row["revoked_at"] is not None:
            return None
        info = _token(row)
        last = info.last_used_at
        if last is None or now - last >= TOKEN_TOUCH:
            # a write per request would serialize the API on SQLite; a minute is precise enough
            with self._write_tx() as conn:
                conn.execute(
                    update(api_tokens).where(api_tokens.c.id == info.id).values(last_used_at=now)
                )
        return info

    def list_tokens(self) -> list[TokenInfo]:
        """Every token (without secrets)."""
        with self._read_tx() as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).mappings()
            return [_token(row) for row in rows]

    def revoke_token(self, token_id: str, now: datetime) -> None:
        """Revoke a token."""
        with self._write_tx() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if result.rowcount == 0:
                exists = conn.execute(
                    select(api_tokens.c.id).where(api_tokens.c.id == token_id)
                ).first()
                if exists is None:
                    raise InvalidInput(f"no API token {token_id!r}")

    # --- policies (lapse.store.policies) ----------------------------------------------------

    def active_policy(self) -> StoredPolicy | None:
        """The policy applied last (None before the first start)."""
        with self._read_tx() as conn:
            return policy_sql.active(conn)

    def active_policy_seq(self) -> int:
        """The seq of the active policy (0 if none): one indexed read, polled by processes."""
        with self._read_tx() as conn:
            return policy_sql.active_seq(conn)

    def policies(self) -> list[StoredPolicy]:
        """Every policy applied, oldest first."""
        with self._read_tx() as conn:
            return policy_sql.history(conn)

    def record_policy(self, policy: StoredPolicy, audit: Sequence[AuditEntry]) -> StoredPolicy:
        """Make `policy` the active one, with its audit entries, in one transaction."""
        with self._write_tx() as conn:
            seq = policy_sql.record(conn, policy)
            if audit:
                bulk.append_audit(conn, self._d, audit, self._clock())
        return replace(policy, seq=seq)

    def open_cases_by_version(self) -> dict[str, int]:
        """How many open cases of accounts not deleted were opened under each policy version."""
        with self._read_tx() as conn:
            return policy_sql.open_case_versions(conn, self.dialect)

    # --- simulations --------------------------------------------------------------------------

    def erase(self) -> None:
        """Erase every row of every table but the API tokens and the applied policies, children
        first; the audit chain starts again from genesis."""
        with self._write_tx() as conn:
            for table in reversed(metadata.sorted_tables):
                if table not in (api_tokens, audit_head, policies):
                    conn.execute(delete(table))
            conn.execute(update(audit_head).values(seq=0, hash=GENESIS))


_NO_DELIVERIES: Deliveries = {}


def _case_closed(table: Table) -> ColumnElement[bool]:
    """The row's case is closed (or its account deleted): it never writes to the row again."""
    return ~exists().where(
        cases.c.account_id == table.c.account_id, cases.c.case_id == table.c.case_id
    )


def _notice_delivery(conn: Connection, account_id: str, case_id: str, key: str) -> datetime | None:
    """When every row of a notice was delivered (the latest time), or None if any is not."""
    rows = conn.execute(
        select(outbox.c.status, outbox.c.delivered_at).where(
            outbox.c.account_id == account_id,
            outbox.c.case_id == case_id,
            outbox.c.name == key,
            outbox.c.kind == "notice",
        )
    ).all()
    if not rows or any(status != "delivered" for status, _ in rows):
        return None
    latest: datetime = max(at for _, at in rows)
    return latest


def _deliveries(conn: Connection, loaded: Mapping[str, Loaded]) -> Mapping[str, Deliveries]:
    """The `Deliveries` of the loaded accounts that have any, in one query per chunk: only
    accounts recording a notice as not dispatched yet are looked up (nearly none)."""
    waiting: dict[str, set[tuple[str, str]]] = {}
    for account_id, got in loaded.items():
        for case in got.account.cases:
            for record in case.notices:
                if record.dispatched_at is None:
                    waiting.setdefault(account_id, set()).add((case.id, record.key))
    if not waiting:
        return {}
    found: dict[tuple[str, str, str], datetime | None] = {}
    ids = list(waiting)
    for chunk in chunks(ids):
        case_ids = {case_id for i in chunk for case_id, _ in waiting[i]}
        rows = conn.execute(
            select(
                outbox.c.account_id,
                outbox.c.case_id,
                outbox.c.name,
                outbox.c.status,
                outbox.c.delivered_at,
            ).where(
                outbox.c.account_id.in_(chunk),
                outbox.c.case_id.in_(case_ids),
                outbox.c.kind == "notice",
            )
        )
        for account_id, case_id, key, status, delivered_at in rows:
            if (case_id, key) not in waiting[account_id]:
                continue
            where = (account_id, case_id, key)
            if status != "delivered" or delivered_at is None:
                found[where] = None  # one row not delivered: the notice is not
            elif where not in found:
                found[where] = delivered_at
            else:
                seen = found[where]
                if seen is not None and delivered_at > seen:
                    found[where] = delivered_at
    out: dict[str, dict[tuple[str, str], datetime]] = {}
    for (account_id, case_id, key), at in found.items():
        if at is not None:
            out.setdefault(account_id, {})[(case_id, key)] = at
    return out


def _notification_row(draft: NotificationDraft) -> dict[str, Any]:
    return {
        "account_id": draft.account_id,
        "case_id": draft.case_id,
        "template": draft.template,
        "subject": draft.subject,
        "body": draft.body,
        "created_at": draft.at,
    }


def _step_all(
    loaded: dict[str, Loaded], step: StepFn, deliveries: Mapping[str, Deliveries]
) -> tuple[list[tuple[Loaded | None, Change]], list[str], list[str]]:
    """Step every loaded account: (the changes to write, the accounts the step left alone, the
    accounts whose step raised)."""
    items: list[tuple[Loaded | None, Change]] = []
    untouched: list[str] = []
    failed: list[str] = []
    for account_id, got in loaded.items():
        try:
            change = step(got.account, deliveries.get(account_id, _NO_DELIVERIES))
        except Exception:
            # one bad account must not hold up the batch: it keeps (or gets) a claim and is
            # retried once the lease expires
            log.exception("step failed for account %s; it stays due", account_id)
            failed.append(account_id)
            continue
        if change is None:
            untouched.append(account_id)
        elif change.account.id != account_id:
            log.error("step returned account %s for %s", change.account.id, account_id)
            failed.append(account_id)
        else:
            items.append((got, change))
    return items, untouched, failed


def _delivered(at: datetime) -> dict[str, Any]:
    """The columns of an outbox row delivered at `at` (its claim is released beside them)."""
    return {
        "status": "delivered",
        "delivered_at": at,
        "attempts": outbox.c.attempts + 1,
        "next_attempt_at": None,
    }


class SqlUnit:
    """One transaction on one account; `load` locks the row on PostgreSQL."""

    def __init__(self, store: SqlStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        self._loaded: dict[str, Loaded] = {}

    @property
    def connection(self) -> Connection:
        """The transaction's connection (for the runtime's own reads inside the unit)."""
        return self._conn

    def load(self, account_id: str) -> Account | None:
        """The account's snapshot, locked until the unit ends."""
        got = self._store._load(self._conn, [account_id], lock=True).get(account_id)
        if got is None:
            self._loaded.pop(account_id, None)
            return None
        self._loaded[account_id] = got
        return got.account

    def seen_event(self, account_id: str, event_id: str) -> bool:
        """True if this event id was already applied to the account."""
        row = self._conn.execute(
            select(events.c.event_id).where(
                events.c.account_id == account_id, events.c.event_id == event_id
            )
        ).first()
        return row is not None

    def write(self, change: Change) -> list[OutboxItem]:
        """Write the change; returns the outbox rows it created (not those that existed)."""
        account_id = change.account.id
        loaded = self._loaded.get(account_id)
        if change.created:
            loaded = None
        elif loaded is None:
            loaded = self._store._load(self._conn, [account_id], lock=True).get(account_id)
            if loaded is None:
                raise StaleWrite(f"account {account_id!r} does not exist (any more)")
        try:
            created = self._store._write(self._conn, [(loaded, change)])
            if change.receipt is not None:
                datarun.write_receipt(self._conn, change.receipt)
        except (DBAPIError, StatementError) as exc:
            raise _convert(exc) from exc
        except self._store._d.driver_error as exc:
            raise _driver_error(exc) from exc
        version = loaded.version + 1 if loaded is not None else 1
        self._loaded[account_id] = Loaded(change.account, version)
        return created

    def erase(self, account_id: str) -> dict[str, int]:
        """Erase event ids, in-app notifications and notice recipients of the account."""
        try:
            return datarun.erase(self._conn, account_id)
        except (DBAPIError, StatementError) as exc:
            raise _convert(exc) from exc

    def delivered(self, item_id: int, at: datetime, *, worker: str) -> bool:
        """Mark the pending row delivered in this transaction, if `worker` holds its claim
        or nobody does (see UnitOfWork.delivered)."""
        result = self._conn.execute(
            update(outbox)
            .where(
                outbox.c.id == item_id,
                outbox.c.status == "pending",
                or_(outbox.c.claimed_by == worker, outbox.c.claimed_by.is_(None)),
            )
            .values(**_delivered(at), claimed_by=None, claim_expires_at=None)
        )
        return bool(result.rowcount)


# --- row conversions ----------------------------------------------------------------------------


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row: RowMapping) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        name=row["name"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def _tombstone(row: RowMapping) -> Tombstone:
    return Tombstone(
        account_id=row["account_id"],
        deleted_at=row["deleted_at"],
        flow=row["flow"],
        case_id=row["case_id"],
        address_hash=row["address_hash"],
        address_mode=row["address_mode"],
        retired_until=row["retired_until"],
        receipt=codec.decode_value(row["receipt"]),
    )


def _outbox_item(row: RowMapping) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        account_id=row["account_id"],
        case_id=row["case_id"],
        effect=codec.decode_effect(row["payload"]),
        channel=row["channel"],
        recipient=row["recipient"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
    )


def _audit_record(row: RowMapping) -> AuditRecord:
    return AuditRecord(
        seq=row["seq"],
        entry=AuditEntry(
            account_id=row["account_id"],
            at=row["at"],
            kind=row["kind"],
            case_id=row["case_id"],
            flow=row["flow"],
            detail=codec.decode_detail(row["detail"]),
        ),
        recorded_at=row["recorded_at"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
