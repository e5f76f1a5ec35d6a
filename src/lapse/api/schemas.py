"""Request and response bodies of the HTTP API (pydantic v2), and their conversion from core values.

Inputs forbid unknown keys, so a misspelt field is an error rather than silently ignored.
Timestamps are ISO 8601 with a time zone (`AwareDatetime`); responses give them in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue
from pydantic_core import to_jsonable_python

from lapse.core.migrate import CaseMigration, ModeImpact, PhaseImpact, PolicyPreview, PolicyRef
from lapse.core.model import (
    Account,
    Adjustment,
    CaseStatus,
    Decision,
    Denial,
    Explanation,
    FlowOutlook,
    LegalHold,
    NoticeRecord,
    Status,
    Timeline,
    TimelineEvent,
)
from lapse.notify.templates import RenderedNotice
from lapse.policy.model import Policy
from lapse.store.base import (
    AccountSummary,
    AuditRecord,
    AuditVerification,
    Notification,
    OutboxItem,
    StoredPolicy,
    TokenInfo,
    Tombstone,
)
from lapse.store.codec import effect_kind, effect_name

AccountId = Field(min_length=1, max_length=200, description="The host product's account id.")


class In(BaseModel):
    """Base of request bodies: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Base of response bodies."""


# --- accounts -------------------------------------------------------------------------------


class MemberIn(In):
    """A member to add with the account."""

    email: str = Field(description="Email address; members with role `admin` receive notices.")
    role: str = Field(default="member", description="admin, member, owner, billing or viewer.")


class AccountCreate(In):
    """A new account."""

    id: str = AccountId
    kind: str = Field(description="One of the policy's kinds (standard, test, trial...).")
    created_at: AwareDatetime | None = Field(
        default=None, description="When the host created it (default: now)."
    )
    address: str | None = Field(default=None, description="The account's primary email address.")
    members: list[MemberIn] = Field(default_factory=list)


class AccountPatch(In):
    """Change an account's kind."""

    kind: str


class MemberRole(In):
    """A member's role (PUT adds the member or changes the role)."""

    role: str = "member"


class MemberOut(Out):
    """A member of an account."""

    email: str
    role: str


class FactOut(Out):
    """A fact's value and when it last changed."""

    value: JsonValue
    changed_at: datetime


class LegalHoldOut(Out):
    """A legal hold on an account."""

    since: datetime
    by: str
    reason: str


class AccountOut(Out):
    """An account as lapse stores it."""

    id: str
    kind: str
    state: str
    created_at: datetime
    address: str | None
    members: list[MemberOut]
    signals: dict[str, datetime]
    facts: dict[str, FactOut]
    legal_hold: LegalHoldOut | None
    open_cases: list[str] = Field(description="Ids of the open cases (`<flow>#<n>`).")

    @classmethod
    def of(cls, account: Account, state: str) -> AccountOut:
        """From the core snapshot."""
        return cls(
            id=account.id,
            kind=account.kind,
            state=state,
            created_at=account.created_at,
            address=account.address,
            members=[MemberOut(email=m.email, role=m.role) for m in account.members],
            signals=dict(account.signals),
            facts={
                name: FactOut(value=to_jsonable_python(f.value), changed_at=f.changed_at)
                for name, f in account.facts.items()
            },
            legal_hold=hold(account.legal_hold),
            open_cases=[c.id for c in account.cases],
        )


def hold(value: LegalHold | None) -> LegalHoldOut | None:
    """A core LegalHold (or None) as a response."""
    if value is None:
        return None
    return LegalHoldOut(since=value.since, by=value.by, reason=value.reason)


class AccountSummaryOut(Out):
    """One row of an account listing."""

    id: str
    kind: str
    state: str
    created_at: datetime
    next_due_at: datetime | None
    open_flows: list[str]
    legal_hold: bool
    deleted_at: datetime | None

    @classmethod
    def of(cls, s: AccountSummary) -> AccountSummaryOut:
        """From the store's summary."""
        return cls(
            id=s.id,
            kind=s.kind,
            state=s.state,
            created_at=s.created_at,
            next_due_at=s.next_due_at,
            open_flows=list(s.open_flows),
            legal_hold=s.legal_hold,
            deleted_at=s.deleted_at,
        )


class AccountPage(Out):
    """A page of accounts; pass `next_cursor` as `cursor` for the next one."""

    items: list[AccountSummaryOut]
    next_cursor: str | None


class TombstoneOut(Out):
    """What remains of a deleted account: no personal data, and the deletion receipt."""

    account: str
    deleted_at: datetime
    flow: str
    case: str
    address_hash: str | None
    address_mode: str
    retired_until: datetime | None
    receipt: dict[str, JsonValue]

    @classmethod
    def of(cls, t: Tombstone) -> TombstoneOut:
        """From the store's tombstone."""
        return cls(
            account=t.account_id,
            deleted_at=t.deleted_at,
            flow=t.flow,
            case=t.case_id,
            address_hash=t.address_hash,
            address_mode=t.address_mode,
            retired_until=t.retired_until,
            receipt=to_jsonable_python(t.receipt),
        )


# --- reports --------------------------------------------------------------------------------


class SignalIn(In):
    """Activity of one account: the signal's name and when it happened (default: now)."""

    account: str = AccountId
    name: str
    at: AwareDatetime | None = None


class SignalBatch(In):
    """A batch of signals, recorded all or nothing."""

    signals: list[SignalIn]


class SignalBatchOut(Out):
    """What a batch of signals did."""

    received: int
    written: int = Field(description="Rows written after coalescing and the policy's resolution.")
    woken: int = Field(description="Accounts re-evaluated at once (a signal can stop a case).")


class FactBatchItem(In):
    """The facts of one account (null unsets a fact)."""

    account: str = AccountId
    facts: dict[str, JsonValue]
    at: AwareDatetime | None = Field(default=None, description="When they changed (default: now).")


class FactBatch(In):
    """Facts of many accounts, recorded all or nothing."""

    facts: list[FactBatchItem]


class FactsOut(Out):
    """What a facts report did."""

    received: int
    changed: int = Field(description="Accounts whose facts changed.")


class EventIn(In):
    """An event of one account, with the host's id for idempotency."""

    id: str = Field(min_length=1, max_length=200, description="Unique per account; replays skip.")
    account: str = AccountId
    name: str
    at: AwareDatetime | None = Field(default=None, description="When it happened (default: now).")
    reason: str | None = None


class EventBatch(In):
    """A batch of events, applied in order, all or nothing."""

    events: list[EventIn]


class EventResult(Out):
    """What happened to one event."""

    id: str
    account: str
    status: Literal["applied", "duplicate"]


class EventBatchOut(Out):
    """Per-event results, in the order sent."""

    applied: int
    duplicates: int
    results: list[EventResult]


# --- decisions --------------------------------------------------------------------------------


class DenialOut(Out):
    """One open case that denies the action."""

    case: str
    flow: str
    phase: str
    reason: str
    message: str
    until: datetime | None

    @classmethod
    def of(cls, d: Denial) -> DenialOut:
        """From the core value."""
        return cls(
            case=d.case_id,
            flow=d.flow,
            phase=d.phase,
            reason=d.reason,
            message=d.message,
            until=d.until,
        )


class DecisionOut(Out):
    """May the account do the action now?"""

    account: str
    action: str
    allowed: bool
    message: str
    until: datetime | None = Field(description="When it becomes allowed again, if foreseeable.")
    denials: list[DenialOut]

    @classmethod
    def of(cls, account_id: str, d: Decision) -> DecisionOut:
        """From the core value."""
        return cls(
            account=account_id,
            action=d.action,
            allowed=d.allowed,
            message=d.message,
            until=d.until,
            denials=[DenialOut.of(x) for x in d.denials],
        )


class CheckItem(In):
    """One question of a batch check."""

    account: str
    action: str


class CheckBatch(In):
    """A batch of checks (validated cheaply, answered from the decision cache)."""

    checks: list[CheckItem]


class CheckBatchOut(Out):
    """The decisions, in the order asked."""

    results: list[DecisionOut]


# --- status and timeline ----------------------------------------------------------------------


class NoticeOut(Out):
    """A notice of a case: when it was due, created and dispatched."""

    key: str
    phase: str
    template: str
    to: str
    recipients: list[str]
    via: list[str]
    due_at: datetime
    created_at: datetime
    dispatched_at: datetime | None

    @classmethod
    def of(cls, n: NoticeRecord) -> NoticeOut:
        """From the core value."""
        return cls(
            key=n.key,
            phase=n.phase,
            template=n.template,
            to=n.to,
            recipients=list(n.recipients),
            via=list(n.via),
            due_at=n.due_at,
            created_at=n.created_at,
            dispatched_at=n.dispatched_at,
        )


class AdjustmentOut(Out):
    """Why a deadline moved."""

    kind: str
    at: datetime
    seconds: float = Field(description="How far the deadline moved.")
    phase: str
    detail: str

    @classmethod
    def of(cls, a: Adjustment) -> AdjustmentOut:
        """From the core value."""
        return cls(
            kind=a.kind,
            at=a.at,
            seconds=a.delta.total_seconds(),
            phase=a.phase,
            detail=a.detail,
        )


class CaseOut(Out):
    """An open case as support staff and the account holder see it."""

    id: str
    flow: str
    title: str
    phase: str | None
    phase_number: int
    phase_count: int
    state: str
    reason: str
    opened_by: str
    started_at: datetime
    phase_started_at: datetime
    deadline: datetime | None
    planned_deadline: datetime | None
    time_left: str | None
    adjustments: list[AdjustmentOut]
    denied: list[str]
    banner: str | None
    waiting: list[str] = Field(description="Why the case is not moving, if it is waiting.")
    notices: list[NoticeOut]
    outcome: str | None
    destruct: str
    irreversible: bool
    policy_version: str

    @classmethod
    def of(cls, c: CaseStatus) -> CaseOut:
        """From the core value."""
        return cls(
            id=c.id,
            flow=c.flow,
            title=c.title,
            phase=c.phase,
            phase_number=c.phase_number,
            phase_count=c.phase_count,
            state=c.state,
            reason=c.reason,
            opened_by=c.opened_by,
            started_at=c.started_at,
            phase_started_at=c.phase_started_at,
            deadline=c.deadline,
            planned_deadline=c.planned_deadline,
            time_left=c.time_left,
            adjustments=[AdjustmentOut.of(a) for a in c.adjustments],
            denied=list(c.denied),
            banner=c.banner,
            waiting=list(c.waiting),
            notices=[NoticeOut.of(n) for n in c.notices],
            outcome=c.outcome,
            destruct=c.destruct,
            irreversible=c.irreversible,
            policy_version=c.policy_version,
        )


class StatusOut(Out):
    """The account's state, open cases, deadlines and the banner to show its holder."""

    account: str
    as_of: datetime
    state: str
    kind: str
    banner: str | None
    denied: list[str]
    cases: list[CaseOut]
    legal_hold: LegalHoldOut | None
    next_due_at: datetime | None
    deleted_at: datetime | None

    @classmethod
    def of(cls, s: Status) -> StatusOut:
        """From the core value."""
        return cls(
            account=s.account_id,
            as_of=s.as_of,
            state=s.state,
            kind=s.kind,
            banner=s.banner,
            denied=list(s.denied),
            cases=[CaseOut.of(c) for c in s.cases],
            legal_hold=hold(s.legal_hold),
            next_due_at=s.next_due_at,
            deleted_at=s.deleted_at,
        )


class CasesOut(Out):
    """The account's open cases."""

    account: str
    cases: list[CaseOut]


class TimelineEventOut(Out):
    """A past (audit) or projected event."""

    at: datetime
    kind: str
    flow: str
    case: str | None
    phase: str | None
    text: str

    @classmethod
    def of(cls, e: TimelineEvent) -> TimelineEventOut:
        """From the core value."""
        return cls(at=e.at, kind=e.kind, flow=e.flow, case=e.case_id, phase=e.phase, text=e.text)


class ExplanationOut(Out):
    """Why a condition holds or not, part by part."""

    text: str
    holds: bool
    since: datetime | None
    holds_at: datetime | None
    parts: list[ExplanationOut]

    @classmethod
    def of(cls, e: Explanation) -> ExplanationOut:
        """From the core value."""
        return cls(
            text=e.text,
            holds=e.holds,
            since=e.since,
            holds_at=e.holds_at,
            parts=[cls.of(p) for p in e.parts],
        )


class FlowOutlookOut(Out):
    """For one flow: does it apply, is a case open, and why it will or won't start."""

    flow: str
    title: str
    applies: bool
    open_case: str | None
    starts_on: list[str]
    start: ExplanationOut | None
    armed_from: datetime | None

    @classmethod
    def of(cls, f: FlowOutlook) -> FlowOutlookOut:
        """From the core value."""
        return cls(
            flow=f.flow,
            title=f.title,
            applies=f.applies,
            open_case=f.open_case,
            starts_on=list(f.starts_on),
            start=ExplanationOut.of(f.start) if f.start is not None else None,
            armed_from=f.armed_from,
        )


class TimelineOut(Out):
    """Past events, projected events if nothing changes, and each flow's start explanation."""

    account: str
    as_of: datetime
    past: list[TimelineEventOut]
    projected: list[TimelineEventOut]
    flows: list[FlowOutlookOut]
    truncated: bool

    @classmethod
    def of(cls, t: Timeline) -> TimelineOut:
        """From the core value."""
        return cls(
            account=t.account_id,
            as_of=t.as_of,
            past=[TimelineEventOut.of(e) for e in t.past],
            projected=[TimelineEventOut.of(e) for e in t.events],
            flows=[FlowOutlookOut.of(f) for f in t.flows],
            truncated=t.truncated,
        )


# --- admin actions ----------------------------------------------------------------------------

Reason = Field(min_length=1, max_length=2000, description="Why: recorded in the audit log.")


class LockIn(In):
    """Lock the account: open a reversible flow by hand."""

    reason: str = Reason
    flow: str | None = Field(
        default=None, description="Default: the one event-started lock flow for the account kind."
    )


class SuspendIn(In):
    """Suspend the account: open an irreversible flow by hand."""

    reason: str = Reason
    flow: str | None = Field(
        default=None, description="Default: the one irreversible flow for the account kind."
    )


class ReactivateIn(In):
    """Close one open case, or every reversible one."""

    reason: str = Reason
    case: str | None = Field(default=None, description="Default: every reversible open case.")
    snooze_until: AwareDatetime | None = Field(
        default=None, description="Keep the closed flows from starting again before this time."
    )


class UnlockIn(In):
    """Close a lock: one case, or every reversible one."""

    reason: str = Reason
    case: str | None = Field(default=None, description="Default: every reversible open case.")


class ExtendIn(In):
    """Move a case's deadline later: by a duration or to a time."""

    reason: str = Reason
    case: str
    duration: str | None = Field(default=None, description="e.g. '14 days', '1 month'.")
    until: AwareDatetime | None = None


class HoldIn(In):
    """Place or lift a legal hold."""

    reason: str = Reason


class DeleteIn(In):
    """Delete the account now, through a deleting flow's outcome."""

    reason: str = Reason
    flow: str | None = Field(
        default=None,
        description=(
            "The flow whose deletion (address rule, receipt) is used. Default: the flow of the "
            "account's one open case that deletes, else the one deleting flow for its kind."
        ),
    )


# --- outbox, notifications, audit -------------------------------------------------------------


class OutboxRowOut(Out):
    """One outbox row: one notice to one recipient, one host effect, or one deletion/purge."""

    id: int
    account: str
    case: str
    kind: str = Field(description="notice, host, purge or delete.")
    name: str = Field(description="The notice key or the effect name.")
    template: str | None
    channel: str
    recipient: str | None
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    idempotency_key: str

    @classmethod
    def of(cls, item: OutboxItem) -> OutboxRowOut:
        """From the store's row."""
        return cls(
            id=item.id,
            account=item.account_id,
            case=item.case_id,
            kind=effect_kind(item.effect),
            name=effect_name(item.effect),
            template=getattr(item.effect, "template", None),
            channel=item.channel,
            recipient=item.recipient,
            status=item.status,
            attempts=item.attempts,
            created_at=item.created_at,
            next_attempt_at=item.next_attempt_at,
            delivered_at=item.delivered_at,
            last_error=item.last_error,
            idempotency_key=item.idempotency_key,
        )


class OutboxPage(Out):
    """A page of outbox rows, oldest first."""

    items: list[OutboxRowOut]
    next_cursor: str | None


class RenderedOut(Out):
    """A notice as its recipient sees it."""

    subject: str
    text: str
    html: str

    @classmethod
    def of(cls, r: RenderedNotice) -> RenderedOut:
        """From the renderer's result."""
        return cls(subject=r.subject, text=r.text, html=r.html)


class OutboxContentOut(Out):
    """One outbox row with its content rendered as of now (notices only)."""

    row: OutboxRowOut
    rendered: RenderedOut | None
    note: str | None = Field(default=None, description="Why there is no rendered content.")


class NotificationOut(Out):
    """An in-app notification."""

    id: int
    case: str
    template: str
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, n: Notification) -> NotificationOut:
        """From the store's value."""
        return cls(
            id=n.id,
            case=n.case_id,
            template=n.template,
            subject=n.subject,
            body=n.body,
            created_at=n.created_at,
            read_at=n.read_at,
        )


class NotificationsOut(Out):
    """An account's in-app notifications, newest first."""

    account: str
    items: list[NotificationOut]


class AuditRecordOut(Out):
    """One entry of the hash-chained audit log."""

    seq: int
    at: datetime
    recorded_at: datetime
    kind: str
    account: str
    case: str | None
    flow: str | None
    text: str
    detail: dict[str, JsonValue]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, r: AuditRecord, text: str) -> AuditRecordOut:
        """From the store's record and its plain-English line."""
        e = r.entry
        return cls(
            seq=r.seq,
            at=e.at,
            recorded_at=r.recorded_at,
            kind=e.kind,
            account=e.account_id,
            case=e.case_id,
            flow=e.flow,
            text=text,
            detail=to_jsonable_python(dict(e.detail)),
            prev_hash=r.prev_hash,
            hash=r.hash,
        )


class AuditPage(Out):
    """A page of audit entries in chain order."""

    items: list[AuditRecordOut]
    next_cursor: str | None


class AuditProblemOut(Out):
    """One break in the chain."""

    seq: int
    problem: str
    detail: str


class AuditVerifyOut(Out):
    """The result of walking the whole chain."""

    ok: bool
    checked: int
    problems: list[AuditProblemOut]

    @classmethod
    def of(cls, v: AuditVerification) -> AuditVerifyOut:
        """From the store's verification."""
        return cls(
            ok=v.ok,
            checked=v.checked,
            problems=[
                AuditProblemOut(seq=p.seq, problem=p.problem, detail=p.detail) for p in v.problems
            ],
        )


# --- tokens, health, clock --------------------------------------------------------------------

Scope = Literal["read", "write", "admin"]


class TokenCreate(In):
    """A new API token."""

    name: str = Field(
        min_length=1,
        max_length=100,
        description="Who uses it; admin actions by this token are recorded under this name.",
    )
    scopes: list[Scope] = Field(min_length=1)


class TokenOut(Out):
    """An API token (never its secret)."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: TokenInfo) -> TokenOut:
        """From the store's value."""
        return cls(
            id=t.id,
            name=t.name,
            scopes=list(t.scopes),
            created_at=t.created_at,
            last_used_at=t.last_used_at,
            revoked_at=t.revoked_at,
        )


class TokenCreated(TokenOut):
    """A token just created: the secret is shown this once."""

    secret: str


class TokensOut(Out):
    """Every API token."""

    items: list[TokenOut]


class HealthOut(Out):
    """Is the process able to work?"""

    status: Literal["ok", "unavailable"]
    database: str
    now: datetime
    scheduler_lag_seconds: float | None = Field(
        description="now minus the earliest due time: how far the scheduler is behind."
    )
    policy: str


class ClockOut(Out):
    """The controlled clock."""

    now: datetime


class ClockMove(In):
    """Move the controlled clock forward: by a duration or to a time (exactly one)."""

    advance: str | None = Field(default=None, description="e.g. '3 days', '1 month'.")
    to: AwareDatetime | None = None
    catch_up: bool = Field(
        default=False,
        description=(
            "false: stop at every due time on the way (a scheduler that never falls behind); "
            "true: jump, then process what is due (a scheduler that was down)."
        ),
    )


class ClockReset(In):
    """Start a simulation over: erase every account and put the clock at `to`."""

    to: AwareDatetime = Field(description="Where the clock starts again (it may go back).")


class ClockMoved(Out):
    """Where the clock is now and what the move processed."""

    now: datetime
    processed: int
    delivered: int
    failed: int


class ProblemError(Out):
    """One invalid value of a request."""

    path: str = Field(description="JSON path, e.g. body.signals[3].at")
    message: str
    type: str
    line: int | None = Field(default=None, description="In a policy document: its line.")
    column: int | None = Field(default=None, description="In a policy document: its column.")


class ProblemOut(Out):
    """An RFC 9457 problem (media type application/problem+json)."""

    type: str = Field(description="https://lapse.dev/problems/<code>")
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None


# --- policy versions ----------------------------------------------------------------------------


class PolicyRefOut(Out):
    """A policy by name, version and digest (sha256 of its document)."""

    name: str
    version: str
    digest: str

    @classmethod
    def of(cls, ref: PolicyRef) -> PolicyRefOut:
        """From the core value."""
        return cls(name=ref.name, version=ref.version, digest=ref.digest)


class PolicyOut(Out):
    """The policy this process runs, and how it became the store's active policy."""

    name: str
    version: str
    digest: str = Field(description="sha256 of the document.")
    applied_at: datetime | None = Field(description="When it was applied (None: not recorded).")
    applied_by: str | None
    mode: str | None = Field(
        description="initial, automatic (no open case was affected), keep or replan."
    )
    flows: list[str]
    open_cases: dict[str, int] = Field(description="Open cases per policy version.")

    @classmethod
    def of(
        cls, policy: Policy, stored: StoredPolicy | None, open_cases: dict[str, int]
    ) -> PolicyOut:
        """From the engine's policy and the store's record of it."""
        same = stored is not None and stored.digest == policy.digest
        return cls(
            name=policy.name,
            version=policy.version,
            digest=policy.digest,
            applied_at=stored.applied_at if same and stored else None,
            applied_by=stored.applied_by if same and stored else None,
            mode=stored.mode if same and stored else None,
            flows=list(policy.flows),
            open_cases=dict(sorted(open_cases.items())),
        )


class CaseMigrationOut(Out):
    """One open case moved (or not) to the proposed version."""

    account: str
    case: str
    flow: str
    phase: str | None = Field(description="Its phase under its own version (None: past the last).")
    new_phase: str | None
    from_version: str
    outcome: Literal["migrated", "closed", "blocked"]
    deadline_before: datetime | None
    deadline_after: datetime | None
    moved_seconds: float | None = Field(description="Negative: the deadline moves earlier.")
    why: str = Field(description="For a closed or blocked case: what the new version lacks.")

    @classmethod
    def of(cls, c: CaseMigration) -> CaseMigrationOut:
        """From the core value."""
        moved = c.moved
        return cls(
            account=c.account_id,
            case=c.case_id,
            flow=c.flow,
            phase=c.phase,
            new_phase=c.new_phase,
            from_version=c.from_version,
            outcome=c.outcome,
            deadline_before=c.deadline_before,
            deadline_after=c.deadline_after,
            moved_seconds=moved.total_seconds() if moved is not None else None,
            why=c.why,
        )


class PhaseImpactOut(Out):
    """The open cases of one flow and phase, and how far their deadlines move."""

    flow: str
    phase: str | None
    cases: int
    moved: int = Field(description="Cases whose current deadline moves.")
    earliest_seconds: float | None = Field(description="The largest move earlier (negative).")
    latest_seconds: float | None = Field(description="The largest move later.")
    samples: list[CaseMigrationOut]

    @classmethod
    def of(cls, p: PhaseImpact) -> PhaseImpactOut:
        """From the core value."""
        return cls(
            flow=p.flow,
            phase=p.phase,
            cases=p.cases,
            moved=p.moved,
            earliest_seconds=p.earliest.total_seconds() if p.earliest is not None else None,
            latest_seconds=p.latest.total_seconds() if p.latest is not None else None,
            samples=[CaseMigrationOut.of(c) for c in p.samples],
        )


class CaseClosingOut(Out):
    """An open case that would close."""

    account: str
    case: str
    flow: str
    reason: str


class ModeImpactOut(Out):
    """What applying the policy in one mode would do, as of now."""

    mode: Literal["keep", "replan"]
    migrated: int
    phases: list[PhaseImpactOut]
    blocked: int = Field(description="Cases whose flow or phase the new version lacks.")
    blocked_samples: list[CaseMigrationOut]
    closing: int
    closing_samples: list[CaseClosingOut]
    opening: dict[str, int] = Field(description="Per flow: accounts that would open a case.")
    opening_samples: dict[str, list[str]]
    notices: dict[str, int] = Field(description="Per `flow/template`: notices created at once.")
    outcomes: dict[str, int] = Field(description="Per `flow: delete|purge`: requested at once.")

    @classmethod
    def of(cls, m: ModeImpact) -> ModeImpactOut:
        """From the core value."""
        return cls(
            mode=m.mode,
            migrated=m.migrated,
            phases=[PhaseImpactOut.of(p) for p in m.phases],
            blocked=m.blocked,
            blocked_samples=[CaseMigrationOut.of(c) for c in m.blocked_samples],
            closing=m.closing,
            closing_samples=[
                CaseClosingOut(account=c.account_id, case=c.case_id, flow=c.flow, reason=c.reason)
                for c in m.closing_samples
            ],
            opening=dict(m.opening),
            opening_samples={k: list(v) for k, v in m.opening_samples.items()},
            notices=dict(m.notices),
            outcomes=dict(m.outcomes),
        )


class PolicyPreviewOut(Out):
    """The impact of a proposed policy over the stored accounts, per migration mode."""

    current: PolicyRefOut
    proposed: PolicyRefOut
    as_of: datetime
    accounts: int
    open_cases: int
    affected: int = Field(description="Open cases opened under another version than proposed.")
    modes: list[ModeImpactOut]

    @classmethod
    def of(cls, p: PolicyPreview) -> PolicyPreviewOut:
        """From the core value."""
        return cls(
            current=PolicyRefOut.of(p.current),
            proposed=PolicyRefOut.of(p.proposed),
            as_of=p.as_of,
            accounts=p.accounts,
            open_cases=p.open_cases,
            affected=p.affected,
            modes=[ModeImpactOut.of(m) for m in p.modes],
        )
