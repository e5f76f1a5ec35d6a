"""SQL for data runs (resumable deletions and purges), receipts, and erasing an account's
personal rows: the parts of `SqlStore` that `lapse.data` relies on.

A run is claimed like due work: one worker at a time, with a lease on the wall clock that each
progress write extends, so a dead worker's run is taken over once its lease expires and a live
worker that lost its claim stops at its next write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update

from lapse.errors import Conflict
from lapse.store.base import RATE_WINDOW, DataProgress, DataRun, StaleWrite, StoredReceipt
from lapse.store.tables import (
    data_progress,
    data_runs,
    deletion_starts,
    events,
    notifications,
    outbox,
    receipts,
)


def claim(
    conn: Connection, run: DataRun, *, worker: str, wall: datetime, lease: timedelta
) -> DataRun:
    """Create the run if new, or take it over; returns it with its stored progress."""
    row = (
        conn.execute(select(data_runs).where(data_runs.c.id == run.id).with_for_update())
        .mappings()
        .first()
    )
    if row is None:
        conn.execute(
            insert(data_runs).values(
                id=run.id,
                account_id=run.account_id,
                case_id=run.case_id,
                flow=run.flow,
                kind=run.kind,
                categories=list(run.categories),
                started_at=run.started_at,
                owner=worker,
                lease_until=wall + lease,
            )
        )
        return DataRun(
            id=run.id,
            account_id=run.account_id,
            case_id=run.case_id,
            flow=run.flow,
            kind=run.kind,
            categories=run.categories,
            started_at=run.started_at,
        )
    owner, until = row["owner"], row["lease_until"]
    if owner not in (None, worker) and until is not None and until > wall:
        raise Conflict(
            f"the {row['kind']} of account {row['account_id']!r} (run {run.id}) is under way "
            f"in worker {owner} until {until:%Y-%m-%d %H:%M:%S} UTC at least"
        )
    conn.execute(
        update(data_runs)
        .where(data_runs.c.id == run.id)
        .values(owner=worker, lease_until=wall + lease)
    )
    progress = tuple(
        _progress(p)
        for p in conn.execute(
            select(data_progress)
            .where(data_progress.c.run_id == run.id)
            .order_by(data_progress.c.connector, data_progress.c.location)
        ).mappings()
    )
    return DataRun(
        id=row["id"],
        account_id=row["account_id"],
        case_id=row["case_id"],
        flow=row["flow"],
        kind=row["kind"],
        categories=tuple(row["categories"]),
        started_at=row["started_at"],
        progress=progress,
    )


def save(
    conn: Connection,
    run_id: str,
    progress: DataProgress,
    *,
    worker: str,
    wall: datetime,
    lease: timedelta,
) -> None:
    """Extend the claim (refused if lost) and store one location's progress."""
    extended = conn.execute(
        update(data_runs)
        .where(data_runs.c.id == run_id, data_runs.c.owner == worker)
        .values(lease_until=wall + lease)
        .returning(data_runs.c.account_id)
    ).all()
    if len(extended) != 1:
        raise StaleWrite(f"run {run_id} is no longer claimed by worker {worker}")
    # the outbox row that asked for the run is held as long as the run: another worker takes
    # it over only once both claims lapsed (the worker died), never while the run goes on
    conn.execute(
        update(outbox)
        .where(
            outbox.c.account_id == extended[0][0],
            outbox.c.channel == "data",
            outbox.c.status == "pending",
            outbox.c.claimed_by == worker,
        )
        .values(claim_expires_at=wall + lease)
    )
    values: dict[str, Any] = {
        "category": progress.category,
        "removed": progress.removed,
        "in_flight": progress.in_flight,
        "passes": progress.passes,
        "started_at": progress.started_at,
        "finished_at": progress.finished_at,
    }
    key = (
        (data_progress.c.run_id == run_id)
        & (data_progress.c.connector == progress.connector)
        & (data_progress.c.location == progress.location)
    )
    if conn.execute(update(data_progress).where(key).values(**values)).rowcount == 0:
        conn.execute(
            insert(data_progress).values(
                run_id=run_id, connector=progress.connector, location=progress.location, **values
            )
        )


def _progress(row: RowMapping) -> DataProgress:
    return DataProgress(
        connector=row["connector"],
        location=row["location"],
        category=row["category"],
        removed=int(row["removed"]),
        in_flight=row["in_flight"],
        passes=int(row["passes"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def write_receipt(conn: Connection, receipt: StoredReceipt) -> None:
    """Insert a receipt (once: a second insert of the same id fails the transaction)."""
    conn.execute(
        insert(receipts).values(
            id=receipt.id,
            account_id=receipt.account_id,
            case_id=receipt.case_id,
            flow=receipt.flow,
            kind=receipt.kind,
            finished_at=receipt.finished_at,
            body=dict(receipt.body),
            hash=receipt.hash,
        )
    )


def list_receipts(
    conn: Connection,
    *,
    account_id: str | None,
    kind: str | None,
    after: int | None,
    limit: int,
) -> list[StoredReceipt]:
    """Receipts in seq order, filtered."""
    stmt = select(receipts).order_by(receipts.c.seq).limit(limit)
    if account_id is not None:
        stmt = stmt.where(receipts.c.account_id == account_id)
    if kind is not None:
        stmt = stmt.where(receipts.c.kind == kind)
    if after is not None:
        stmt = stmt.where(receipts.c.seq > after)
    return [_receipt(row) for row in conn.execute(stmt).mappings()]


def get_receipt(conn: Connection, receipt_id: str) -> StoredReceipt | None:
    """One receipt by id."""
    row = conn.execute(select(receipts).where(receipts.c.id == receipt_id)).mappings().first()
    return _receipt(row) if row is not None else None


def _receipt(row: RowMapping) -> StoredReceipt:
    return StoredReceipt(
        id=row["id"],
        account_id=row["account_id"],
        case_id=row["case_id"],
        flow=row["flow"],
        kind=row["kind"],
        finished_at=row["finished_at"],
        body=row["body"],
        hash=row["hash"],
        seq=int(row["seq"]),
    )


def erase(conn: Connection, account_id: str) -> dict[str, int]:
    """Delete the account's event ids and notifications; blank its notices' recipients and
    its outbox rows' last errors."""
    counts = {
        "events": conn.execute(delete(events).where(events.c.account_id == account_id)).rowcount,
        "notifications": conn.execute(
            delete(notifications).where(notifications.c.account_id == account_id)
        ).rowcount,
    }
    rows = conn.execute(
        select(outbox.c.id, outbox.c.payload).where(
            outbox.c.account_id == account_id, outbox.c.kind == "notice"
        )
    ).all()
    for row_id, payload in rows:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row_id)
            .values(recipient=None, payload=scrub_notice(payload))
        )
    counts["outbox_notices"] = len(rows)
    # a failed delivery's error can name the recipient ("recipient refused: a@b.example: 550")
    conn.execute(
        update(outbox)
        .where(outbox.c.account_id == account_id, outbox.c.last_error.is_not(None))
        .values(last_error=None)
    )
    return counts


def start_deletion(
    conn: Connection, item_id: int, account_id: str, now: datetime, per_minute: int
) -> datetime | None:
    """Record that the delete row `item_id` starts now, if fewer than `per_minute` deletions
    started in the minute before `now`; else return when the oldest of them leaves the window.
    A row that started already (a resumed deletion) goes on without taking a new start."""
    started = conn.execute(
        select(deletion_starts.c.started_at).where(deletion_starts.c.outbox_id == item_id)
    ).first()
    if started is not None:
        return None
    since = now - RATE_WINDOW
    recent = (
        select(deletion_starts.c.started_at)
        .where(deletion_starts.c.started_at > since, deletion_starts.c.started_at <= now)
        .subquery()
    )
    count, oldest = conn.execute(select(func.count(), func.min(recent.c.started_at))).one()
    if count >= per_minute:
        free: datetime = max(oldest + RATE_WINDOW, now + timedelta(seconds=1))
        return free
    conn.execute(
        insert(deletion_starts).values(outbox_id=item_id, account_id=account_id, started_at=now)
    )
    return None


def scrub_notice(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A notice's outbox payload without who it went to and the free-text reason."""
    return {**payload, "recipients": [], "reason": ""}
