"""Accounts: create, list, read, change kind, members, status, timeline, cases, single check,
in-app notifications and the tombstone of a deleted account."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response, status
from pydantic import AwareDatetime, JsonValue

from lapse.api.deps import (
    EngineDep,
    ReadToken,
    StoreDep,
    WriteToken,
    decode_cursor,
    encode_cursor,
)
from lapse.api.problems import error_response
from lapse.api.schemas import (
    AccountCreate,
    AccountOut,
    AccountPage,
    AccountPatch,
    AccountSummaryOut,
    CaseOut,
    CasesOut,
    DecisionOut,
    MemberRole,
    NotificationOut,
    NotificationsOut,
    ProblemOut,
    StatusOut,
    TimelineOut,
    TombstoneOut,
)
from lapse.core.model import Member
from lapse.errors import AccountDeleted, InvalidInput, NotFound, UnknownAccount
from lapse.policy.model import FactValue
from lapse.runtime import metrics
from lapse.runtime.engine import account_state

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
State = Literal["active", "restricted", "locked", "suspended", "deleted"]


def _out(engine: EngineDep, account_id: str) -> AccountOut:
    account = engine.account(account_id)
    return AccountOut.of(account, account_state(account, engine.policy))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountOut,
    summary="Register an account",
)
def create_account(body: AccountCreate, engine: EngineDep, _: WriteToken) -> AccountOut:
    """Register an account; 409 if the id exists or its address is retired."""
    engine.add_account(
        body.id,
        kind=body.kind,
        created_at=body.created_at,
        address=body.address,
        members=[Member(email=m.email, role=m.role) for m in body.members],
    )
    return _out(engine, body.id)


@router.get("", response_model=AccountPage, summary="List accounts")
def list_accounts(
    engine: EngineDep,
    store: StoreDep,
    _: ReadToken,
    state: State | None = None,
    kind: str | None = None,
    flow: Annotated[str | None, Query(description="Accounts with an open case of it.")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Limit = 100,
) -> AccountPage:
    """Accounts ordered by id, filtered by state, kind or open flow."""
    if kind is not None and kind not in engine.policy.kinds:
        known = ", ".join(sorted(engine.policy.kinds))
        raise InvalidInput(f"kind: unknown kind {kind!r}; the policy knows: {known}")
    if flow is not None and flow not in engine.policy.flows:
        raise InvalidInput(
            f"flow: unknown flow {flow!r}; the policy has: {', '.join(engine.policy.flows)}"
        )
    rows = store.list_accounts(
        state=state, kind=kind, flow=flow, after=decode_cursor(cursor), limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return AccountPage(
        items=[AccountSummaryOut.of(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


@router.get(
    "/{account_id}",
    response_model=AccountOut,
    summary="Read an account",
    responses={410: {"model": ProblemOut, "description": "Deleted: the problem has `tombstone`."}},
)
def get_account(
    account_id: str, engine: EngineDep, store: StoreDep, _: ReadToken
) -> AccountOut | Response:
    """The stored account; a deleted account answers 410 with its tombstone."""
    try:
        account = engine.account(account_id)
    except UnknownAccount:
        account = None
        if store.tombstone(account_id) is None:
            raise
    if account is None or account.deleted_at is not None:
        stone = store.tombstone(account_id)
        when = f" on {stone.deleted_at:%Y-%m-%d}" if stone is not None else ""
        extra = {"tombstone": TombstoneOut.of(stone).model_dump(mode="json")} if stone else {}
        return error_response(AccountDeleted(f"account {account_id!r} was deleted{when}"), **extra)
    return AccountOut.of(account, account_state(account, engine.policy))


@router.patch("/{account_id}", response_model=AccountOut, summary="Change an account's kind")
def patch_account(
    account_id: str, body: AccountPatch, engine: EngineDep, _: WriteToken
) -> AccountOut:
    """Change the kind (a trial that became a paid account); the account is re-evaluated."""
    engine.set_kind(account_id, body.kind)
    return _out(engine, account_id)


@router.put(
    "/{account_id}/members/{email}",
    response_model=AccountOut,
    tags=["members"],
    summary="Add a member or change a member's role",
)
def put_member(
    account_id: str, email: str, body: MemberRole, engine: EngineDep, _: WriteToken
) -> AccountOut:
    """Add the member, or change the role of an existing one (`admin` members get notices)."""
    engine.add_member(account_id, email, body.role)
    return _out(engine, account_id)


@router.delete(
    "/{account_id}/members/{email}",
    response_model=AccountOut,
    tags=["members"],
    summary="Remove a member",
)
def delete_member(account_id: str, email: str, engine: EngineDep, _: WriteToken) -> AccountOut:
    """Remove the member; 422 if the account has no such member."""
    engine.remove_member(account_id, email)
    return _out(engine, account_id)


@router.patch(
    "/{account_id}/facts",
    response_model=AccountOut,
    tags=["reports"],
    summary="Report facts of one account",
)
def patch_facts(
    account_id: str,
    facts: Annotated[
        dict[str, JsonValue],
        Body(
            description="`{name: value}`; null unsets a fact; timestamps as ISO 8601 strings.",
            examples=[{"subscription_active": False, "contacts": 1200}],
        ),
    ],
    engine: EngineDep,
    _: WriteToken,
    at: Annotated[AwareDatetime | None, Query(description="When they changed.")] = None,
) -> AccountOut:
    """Set several facts at once; the account is re-evaluated in the same unit of work."""
    engine.set_facts(account_id, _facts(facts), at=at)
    return _out(engine, account_id)


def _facts(facts: dict[str, JsonValue]) -> dict[str, FactValue | None]:
    # the engine checks each value against the type the policy declares for the fact
    return facts  # type: ignore[return-value]


@router.get(
    "/{account_id}/status",
    response_model=StatusOut,
    tags=["status"],
    summary="State, cases, deadlines and banner",
)
def get_status(account_id: str, engine: EngineDep, _: ReadToken) -> StatusOut:
    """The account's state, open cases, deadlines, time left and the rendered banner."""
    return StatusOut.of(engine.status(account_id))


@router.get(
    "/{account_id}/timeline",
    response_model=TimelineOut,
    tags=["status"],
    summary="Past and projected events",
)
def get_timeline(account_id: str, engine: EngineDep, _: ReadToken) -> TimelineOut:
    """Past events (audit), projected events if nothing changes, and why each flow will start."""
    return TimelineOut.of(engine.timeline(account_id))


@router.get("/{account_id}/cases", response_model=CasesOut, tags=["status"], summary="Open cases")
def get_cases(account_id: str, engine: EngineDep, _: ReadToken) -> CasesOut:
    """The account's open cases with phases, deadlines, notices and waiting reasons."""
    current = engine.status(account_id)
    return CasesOut(account=account_id, cases=[CaseOut.of(c) for c in current.cases])


@router.get(
    "/{account_id}/check",
    response_model=DecisionOut,
    tags=["check"],
    summary="May the account do this action now?",
)
def check_one(
    account_id: str,
    action: Annotated[str, Query(description="One of the policy's actions.")],
    engine: EngineDep,
    _: ReadToken,
) -> DecisionOut:
    """Allowed or denied, with the denying cases, the message and until when."""
    decision = engine.check_exact(account_id, action)
    metrics.CHECKS.inc()
    return DecisionOut.of(account_id, decision)


@router.get(
    "/{account_id}/notifications",
    response_model=NotificationsOut,
    tags=["notifications"],
    summary="In-app notifications",
)
def get_notifications(
    account_id: str,
    engine: EngineDep,
    store: StoreDep,
    _: ReadToken,
    unread: bool = False,
) -> NotificationsOut:
    """The account's in-app notifications, newest first."""
    engine.account(account_id)  # 404 for an unknown account rather than an empty list
    items = store.notifications(account_id, unread_only=unread)
    return NotificationsOut(account=account_id, items=[NotificationOut.of(n) for n in items])


@router.get(
    "/{account_id}/tombstone",
    response_model=TombstoneOut,
    tags=["accounts"],
    summary="Tombstone and deletion receipt",
)
def get_tombstone(account_id: str, store: StoreDep, _: ReadToken) -> TombstoneOut:
    """What remains of a deleted account: when, by which flow, the receipt; 404 otherwise."""
    stone = store.tombstone(account_id)
    if stone is None:
        raise NotFound(f"account {account_id!r} has no tombstone: it was not deleted")
    return TombstoneOut.of(stone)
