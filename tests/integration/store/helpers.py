"""Builders for store tests: accounts with every kind of state, changes, effects, audit entries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from lapse.core.model import (
    Account,
    Adjustment,
    AuditEntry,
    Case,
    DeleteEffect,
    Effect,
    FactEntry,
    HostEffect,
    Member,
    NoticeEffect,
    NoticeRecord,
    PurgeEffect,
)
from lapse.policy.durations import Duration
from lapse.policy.model import AddressRule
from lapse.store.base import Change, OutboxDraft

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
ADMIN = "admin@example.com"


def case(account_id: str = "a1", flow: str = "inactivity", n: int = 1, **extra: Any) -> Case:
    """An open case with a notice record and an adjustment."""
    values: dict[str, Any] = {
        "id": f"{flow}#{n}",
        "flow": flow,
        "started_at": T0,
        "phase_index": 0,
        "phase_started_at": T0,
        "reason": "no activity for 12 months",
        "opened_by": "condition",
        "policy_version": "1",
        "shift": timedelta(days=2, seconds=5),
        "adjustments": (
            Adjustment(
                kind="notice-late", at=T0 + DAY, delta=2 * DAY, phase="grace", detail="late"
            ),
        ),
        "notices": (
            NoticeRecord(
                key="grace/started",
                phase="grace",
                template="started",
                to="admins",
                recipients=(ADMIN,),
                via=("email", "in_app"),
                due_at=T0,
                created_at=T0 + timedelta(hours=1),
                dispatched_at=None,
            ),
        ),
    }
    values.update(extra)
    return Case(**values)


def account(account_id: str = "a1", **extra: Any) -> Account:
    """An account with members, signals, typed facts, a case, a hold and re-arming times."""
    values: dict[str, Any] = {
        "id": account_id,
        "kind": "standard",
        "created_at": T0 - 400 * DAY,
        "address": f"{account_id}@example.com",
        "members": (Member(email=ADMIN, role="admin"), Member(email="b@example.com")),
        "signals": {"login": T0 - 10 * DAY, "sent": T0 - 20 * DAY},
        "facts": {
            "active": FactEntry(value=False, changed_at=T0 - DAY),
            "contacts": FactEntry(value=1200, changed_at=T0 - DAY),
            "rate": FactEntry(value=0.25, changed_at=T0 - DAY),
            "plan": FactEntry(value="pro", changed_at=T0 - DAY),
            "expires": FactEntry(value=T0 + 30 * DAY, changed_at=T0 - DAY),
        },
        "last_events": {"payment_failed": T0 - 3 * DAY},
        "legal_hold": None,
        "cases": (case(account_id),),
        "armed_from": {"inactivity": T0 - 100 * DAY},
        "case_seq": 1,
    }
    values.update(extra)
    return Account(**values)


def plain(account_id: str, **extra: Any) -> Account:
    """A minimal account: no members, signals, facts or cases."""
    values: dict[str, Any] = {"kind": "standard", "created_at": T0 - 400 * DAY}
    values.update(extra)
    return Account(id=account_id, **values)


def notice(
    account_id: str = "a1",
    case_id: str = "inactivity#1",
    key: str = "grace/started",
    at: datetime = T0,
) -> NoticeEffect:
    """A notice effect."""
    return NoticeEffect(
        account_id=account_id,
        case_id=case_id,
        flow="inactivity",
        phase="grace",
        key=key,
        template=key.split("/")[-1],
        to="admins",
        recipients=(ADMIN,),
        via=("email",),
        due_at=at,
        at=at,
        deadline=at + 30 * DAY,
        reason="inactive",
    )


def effects(account_id: str = "a1") -> list[Effect]:
    """One effect of every kind."""
    return [
        notice(account_id),
        HostEffect(
            account_id=account_id,
            case_id="inactivity#1",
            flow="inactivity",
            phase="grace",
            name="stop_campaigns",
            trigger="enter",
            at=T0,
        ),
        PurgeEffect(
            account_id=account_id,
            case_id="inactivity#1",
            flow="inactivity",
            phase=None,
            categories=("reports", "contacts"),
            at=T0,
        ),
        DeleteEffect(
            account_id=account_id,
            case_id="inactivity#1",
            flow="inactivity",
            address=AddressRule(mode="retire", duration=Duration(years=1)),
            at=T0,
        ),
    ]


def entry(
    account_id: str = "a1", kind: str = "case.opened", at: datetime = T0, **detail: object
) -> AuditEntry:
    """An audit entry."""
    return AuditEntry(
        account_id=account_id,
        at=at,
        kind=kind,
        case_id="inactivity#1",
        flow="inactivity",
        detail=detail,
    )


def create(
    acc: Account,
    *,
    due: datetime | None = T0,
    state: str = "active",
    audit: Sequence[AuditEntry] = (),
    outbox: Sequence[OutboxDraft] = (),
    **extra: Any,
) -> Change:
    """A Change creating `acc`."""
    return Change(
        account=acc, next_due_at=due, state=state, created=True, audit=audit, outbox=outbox, **extra
    )


def draft(effect: Effect, recipient: str | None = ADMIN) -> OutboxDraft:
    """An outbox draft for the effect."""
    # as lapse.runtime.outbox routes them: deletions and purges run on channel "data"
    if isinstance(effect, NoticeEffect):
        channel = "email"
    elif isinstance(effect, PurgeEffect | DeleteEffect):
        channel = "data"
    else:
        channel = "host"
    return OutboxDraft(
        account_id=effect.account_id,
        case_id=effect.case_id,
        effect=effect,
        channel=channel,
        recipient=recipient if channel == "email" else None,
    )
