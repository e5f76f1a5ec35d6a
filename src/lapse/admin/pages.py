"""The admin UI's pages: sign-in, dashboard, accounts, one account, upcoming, outbox, receipts,
audit. Each reads the engine or one store listing; nothing here changes an account (see
lapse.admin.actions)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import HTMLResponse, Response

from lapse.admin import queries
from lapse.admin.format import effect_summary, history_text
from lapse.admin.session import SESSION_COOKIE
from lapse.admin.web import (
    NOTICE_CSP,
    Staff,
    StaffDep,
    admin_of,
    base_path,
    clock_of,
    maybe_staff,
    redirect,
    render,
    require_csrf,
    secure_headers,
    set_cookie,
)
from lapse.api.deps import has_scope
from lapse.api.routes.outbox import render_row
from lapse.core.model import Account, AuditEntry, Decision
from lapse.data.receipts import verify_store
from lapse.errors import InvalidInput, NotFound, UnknownAccount
from lapse.policy.model import Policy
from lapse.store.base import AuditVerification

router = APIRouter()

STATES = ("active", "restricted", "locked", "suspended", "deleted")
OUTBOX_STATUSES = ("pending", "delivered", "failed", "skipped")
PAGE = 50
#: the fields of the account page's action forms (kept after a refusal, to try again)
FORM_FIELDS = ("action", "reason", "case", "duration", "until", "flow")

Text = Annotated[str | None, Query()]


# --- signing in and out -------------------------------------------------------------------


def _next(value: str | None) -> str:
    """Where to go after signing in: an admin path only (never another site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


@router.get("/login", response_class=HTMLResponse, name="login")
def login_page(request: Request, next: Text = None) -> Response:
    """The sign-in form; signed-in staff go straight on."""
    if maybe_staff(request) is not None:
        return redirect(request, _next(next))
    return render(request, "login.html", staff=None, next=_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the pasted API token; on success, a session cookie and on to `next`."""
    admin = admin_of(request)
    services = admin.services
    secret = token.strip()
    found = services.store.verify_token(secret, services.clock.now()) if secret else None
    if found is None:
        return render(
            request,
            "login.html",
            staff=None,
            status_code=401,
            next=_next(next),
            error="That token is unknown or revoked. Paste a token created with "
            "`lapse token create` (or the admin token lapse serve printed on its first start).",
        )
    if not has_scope(found, "read"):
        return render(
            request,
            "login.html",
            staff=None,
            status_code=403,
            next=_next(next),
            error=f"Token {found.name!r} has the scopes {', '.join(found.scopes) or 'none'}: "
            "the admin UI needs read (to look) or admin (to act as well).",
        )
    _, cookie = admin.sessions.issue(found.id)
    response = redirect(request, _next(next))
    set_cookie(request, response, SESSION_COOKIE, cookie, admin.sessions.seconds)
    return response


@router.post("/logout")
def logout(request: Request, staff: StaffDep, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session (the cookie is dropped; the token itself stays valid)."""
    require_csrf(request, staff, {"csrf": csrf})
    response = redirect(request, "/login", flash=("ok", "You are signed out."))
    response.delete_cookie(SESSION_COOKIE, path=base_path(request) or "/")
    return response


# --- dashboard ----------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, name="dashboard")
def dashboard(request: Request, staff: StaffDep) -> Response:
    """Accounts by state and by flow and phase, the outbox's backlog, the next few days."""
    services = admin_of(request).services
    engine, store = services.engine, services.store
    clock = clock_of(request)
    counts = store.count_by_state()
    soon, capped = queries.upcoming(
        store,
        engine.policy,
        clock.now,
        clock.now + timedelta(days=7),
        queries.UPCOMING_KINDS["warnings-and-deletions"],
        accounts=200,
    )
    return render(
        request,
        "dashboard.html",
        staff=staff,
        states=[(state, counts.get(state, 0)) for state in STATES],
        total=sum(counts.values()),
        phases=queries.phase_counts(store, engine.policy),
        outbox=engine.outbox_counts(),
        soon=soon[:12],
        soon_count=len(soon),
        soon_capped=capped,
    )


# --- accounts -----------------------------------------------------------------------------


@router.get("/accounts", response_class=HTMLResponse, name="accounts")
def accounts(
    request: Request,
    staff: StaffDep,
    state: Text = None,
    flow: Text = None,
    phase: Text = None,
    kind: Text = None,
    q: Text = None,
    after: Text = None,
) -> Response:
    """Accounts ordered by id, filtered, 50 a page, each with its cases and next deadline."""
    services = admin_of(request).services
    policy = services.engine.policy
    filters = {"state": state, "flow": flow, "phase": phase, "kind": kind, "q": q}
    error = None
    items: list[queries.AccountRow] = []
    next_after = None
    try:
        if state and state not in STATES:
            raise InvalidInput(f"state: unknown state {state!r}; one of {', '.join(STATES)}")
        if kind and kind not in policy.kinds:
            raise InvalidInput(f"kind: the policy has no account kind {kind!r}")
        if flow and flow not in policy.flows:
            raise InvalidInput(f"flow: the policy has no flow {flow!r}")
        rows = services.store.list_accounts(
            state=state or None,
            kind=kind or None,
            flow=flow or None,
            positions=queries.positions(policy, flow or None, phase or None),
            search=q or None,
            after=after or None,
            limit=PAGE + 1,
        )
        if len(rows) > PAGE:
            rows = rows[:PAGE]
            next_after = rows[-1].id
        items = queries.account_rows(services.store, policy, rows, services.clock.now())
    except InvalidInput as exc:
        error = str(exc)
    phases = list(dict.fromkeys(p.name for f in policy.flows.values() for p in f.phases))
    if flow and flow in policy.flows:
        phases = [p.name for p in policy.flows[flow].phases]
    return render(
        request,
        "accounts.html",
        staff=staff,
        status_code=422 if error else 200,
        error=error,
        filters=filters,
        filtered=any(filters.values()),
        items=items,
        next_after=next_after,
        after=after,
        states=STATES,
        kinds=sorted(policy.kinds),
        flows=list(policy.flows.values()),
        phases=phases,
    )


@router.get("/accounts/{account_id}", response_class=HTMLResponse, name="account")
def account(request: Request, account_id: str, staff: StaffDep) -> Response:
    """Everything about one account: status, timeline, inputs, checks, outbox, actions."""
    return account_view(request, staff, account_id)


def account_view(
    request: Request,
    staff: Staff,
    account_id: str,
    *,
    error: tuple[str, str] | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    """The account page, with an action's refusal above its forms if `error` is given."""
    services = admin_of(request).services
    engine, store = services.engine, services.store
    policy = engine.policy
    clock = clock_of(request)
    stored = store.get(account_id)
    stone = store.tombstone(account_id)
    if stored is None and stone is None:
        raise UnknownAccount(f"there is no account {account_id!r}")
    past = store.recent_audit(account_id=account_id, limit=500)
    if stored is None or stored.deleted_at is not None:
        return render(
            request,
            "account_deleted.html",
            staff=staff,
            status_code=status_code,
            error=error,
            account_id=account_id,
            account=stored,
            stone=stone,
            past=past,
            describe=_describe(policy),
            receipts=store.receipts(account_id=account_id),
            outbox=store.outbox(account_id=account_id, newest_first=True, limit=100),
        )
    status = engine.status(account_id)
    timeline = engine.timeline(account_id)
    decisions = engine.check_many([(account_id, action) for action in policy.action_order])
    flows = policy.flows_for(stored.kind)
    open_flows = {case.flow for case in stored.cases}
    return render(
        request,
        "account.html",
        staff=staff,
        status_code=status_code,
        error=error,
        form=dict.fromkeys(FORM_FIELDS, "") | (form or {}),
        account=stored,
        status=status,
        timeline=timeline,
        headline=queries.headline(status, timeline, clock),
        past=past,
        describe=_describe(policy),
        decisions=list(zip(policy.action_order, decisions, strict=True)),
        denials=_denials(policy.action_order, decisions),
        outbox=store.outbox(account_id=account_id, newest_first=True, limit=100),
        notifications=store.notifications(account_id),
        lockable=[
            f
            for f in flows
            if not f.irreversible and not f.default_stop and f.name not in open_flows
        ],
        suspendable=[f for f in flows if f.irreversible and f.name not in open_flows],
        deleting=[f for f in flows if f.outcome is not None and f.outcome.kind == "delete"],
        after_deadline=lambda case: queries.after_deadline(case, policy),
        reversible=[c for c in status.cases if not c.irreversible and not _ordered(stored, c.id)],
    )


@dataclass(frozen=True, slots=True)
class Denials:
    """Actions denied with the same message (a locked account denies most with one)."""

    actions: list[str]
    message: str
    until: datetime | None


def _denials(actions: Sequence[str], decisions: Sequence[Decision]) -> list[Denials]:
    groups: dict[tuple[str, datetime | None], list[str]] = {}
    for action, decision in zip(actions, decisions, strict=True):
        if not decision.allowed:
            groups.setdefault((decision.message, decision.until), []).append(action)
    return [Denials(actions=names, message=key[0], until=key[1]) for key, names in groups.items()]


def _ordered(account: Account, case_id: str) -> bool:
    case = account.case(case_id)
    return bool(case is not None and case.ordered)


def _describe(policy: Policy) -> Callable[[AuditEntry], str]:
    return lambda entry: history_text(entry, policy)


# --- upcoming -----------------------------------------------------------------------------


@router.get("/upcoming", response_class=HTMLResponse, name="upcoming")
def upcoming(
    request: Request,
    staff: StaffDep,
    days: Annotated[int, Query(ge=1, le=366)] = 7,
    what: Annotated[str, Query()] = "warnings-and-deletions",
) -> Response:
    """Warnings and deletions (or every projected event) of the next `days` days, by time."""
    services = admin_of(request).services
    clock = clock_of(request)
    kinds = queries.UPCOMING_KINDS.get(what)
    if kinds is None:
        raise InvalidInput(f"what: one of {', '.join(queries.UPCOMING_KINDS)}")
    items, capped = queries.upcoming(
        services.store, services.engine.policy, clock.now, clock.now + timedelta(days=days), kinds
    )
    return render(
        request,
        "upcoming.html",
        staff=staff,
        items=items[:1000],
        shown_all=len(items) <= 1000,
        count=len(items),
        capped=capped,
        days=days,
        until=clock.now + timedelta(days=days),
        what=what,
        choices=list(queries.UPCOMING_KINDS),
    )


# --- outbox -------------------------------------------------------------------------------


@router.get("/outbox", response_class=HTMLResponse, name="outbox")
def outbox(
    request: Request,
    staff: StaffDep,
    status: Text = None,
    account: Text = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Outbox rows, newest first, filtered by status and account."""
    if status and status not in OUTBOX_STATUSES:
        raise InvalidInput(f"status: one of {', '.join(OUTBOX_STATUSES)}")
    store = admin_of(request).services.store
    rows = store.outbox(
        status=status or None,
        account_id=account or None,
        before=before,
        newest_first=True,
        limit=PAGE + 1,
    )
    older = rows[PAGE - 1].id if len(rows) > PAGE else None
    return render(
        request,
        "outbox.html",
        staff=staff,
        rows=rows[:PAGE],
        older=older,
        status=status or "",
        account=account or "",
        before=before,
        statuses=OUTBOX_STATUSES,
    )


@router.get("/outbox/{row_id}", response_class=HTMLResponse, name="outbox_row")
def outbox_row(request: Request, row_id: int, staff: StaffDep) -> Response:
    """One row: what it carries, how delivery went, and a notice as rendered now."""
    return outbox_row_view(request, staff, row_id)


def outbox_row_view(
    request: Request, staff: Staff, row_id: int, *, error: str | None = None, status_code: int = 200
) -> Response:
    """The outbox row page, with a retry's refusal if `error` is given."""
    services = admin_of(request).services
    item = services.engine.outbox_row(row_id)
    rendered = render_row(services, item)
    return render(
        request,
        "outbox_row.html",
        staff=staff,
        status_code=status_code,
        error=error,
        item=item,
        rendered=None if isinstance(rendered, str) else rendered,
        note=rendered if isinstance(rendered, str) else None,
        summary=effect_summary(item),
    )


@router.get("/outbox/{row_id}/html", name="outbox_html")
def outbox_html(request: Request, row_id: int, staff: StaffDep) -> Response:
    """A notice's HTML alone, for the sandboxed frame of its page (scripts, remote images,
    forms and navigation all blocked by its Content-Security-Policy)."""
    services = admin_of(request).services
    rendered = render_row(services, services.engine.outbox_row(row_id))
    if isinstance(rendered, str):
        raise NotFound(f"outbox row {row_id} has no HTML: {rendered}")
    response = HTMLResponse(rendered.html)
    return secure_headers(response, NOTICE_CSP)


# --- receipts -----------------------------------------------------------------------------


@router.get("/receipts", response_class=HTMLResponse, name="receipts")
def receipts(
    request: Request,
    staff: StaffDep,
    kind: Text = None,
    account: Text = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """Deletion and purge receipts in the order they were written, each with its hash check."""
    if kind and kind not in ("delete", "purge"):
        raise InvalidInput("kind: delete or purge")
    store = admin_of(request).services.store
    rows = store.receipts(
        kind=kind or None, account_id=account or None, after=after, limit=PAGE + 1
    )
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render(
        request,
        "receipts.html",
        staff=staff,
        rows=[(r, queries.hash_ok(r)) for r in rows],
        next_after=rows[-1].seq if more else None,
        kind=kind or "",
        account=account or "",
    )


@router.get("/receipts/{receipt_id}", response_class=HTMLResponse, name="receipt")
def receipt(request: Request, receipt_id: str, staff: StaffDep) -> Response:
    """One receipt: what was removed where, when, under which policy, and its verification."""
    store = admin_of(request).services.store
    found = store.receipt(receipt_id)
    if found is None:
        raise NotFound(f"there is no receipt {receipt_id!r}")
    body = found.body
    locations = body.get("locations")
    policy = body.get("policy")
    address = body.get("address")
    return render(
        request,
        "receipt.html",
        staff=staff,
        receipt=found,
        categories=body.get("categories") or [],
        started=_parse_time(body.get("started_at")),
        policy_ref=policy if isinstance(policy, dict) else {},
        rows=body.get("rows", 0),
        verified=bool(body.get("verified")),
        address=address if isinstance(address, dict) else None,
        lapse_rows=body.get("lapse") or {},
        locations=[loc for loc in locations if isinstance(loc, dict)]
        if isinstance(locations, list)
        else [],
        problems=queries.receipt_problems(store, found),
        parse=_parse_time,
    )


def _parse_time(value: object) -> datetime | None:
    """A receipt's ISO time as a datetime (None if it is not one)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- audit --------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse, name="audit")
def audit(
    request: Request,
    staff: StaffDep,
    account: Text = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The audit log, newest first, optionally of one account."""
    return audit_view(request, staff, account=account, before=before)


def audit_view(
    request: Request,
    staff: Staff,
    *,
    account: str | None = None,
    before: int | None = None,
    verification: Verification | None = None,
) -> Response:
    """The audit page, with a verification's result if one was run."""
    services = admin_of(request).services
    rows = services.store.recent_audit(account_id=account or None, before=before, limit=PAGE + 1)
    older = rows[PAGE - 1].seq if len(rows) > PAGE else None
    return render(
        request,
        "audit.html",
        staff=staff,
        rows=rows[:PAGE],
        older=older,
        account=account or "",
        before=before,
        describe=_describe(services.engine.policy),
        verification=verification,
    )


@dataclass(frozen=True, slots=True)
class Verification:
    """What "verify the chain" found: the audit chain, and the receipts against it."""

    chain: AuditVerification
    receipts: int
    receipt_problems: list[str]


@router.post("/audit/verify", response_class=HTMLResponse, name="audit_verify")
def audit_verify(request: Request, staff: StaffDep, csrf: Annotated[str, Form()] = "") -> Response:
    """Walk the whole audit chain and check every receipt against it (as `lapse audit
    verify` does); a read token may run it, it changes nothing."""
    require_csrf(request, staff, {"csrf": csrf})
    store = admin_of(request).services.store
    chain = store.verify_audit()
    checked, problems = verify_store(store)
    return audit_view(
        request,
        staff,
        verification=Verification(chain=chain, receipts=checked, receipt_problems=problems),
    )
