"""Values the core works on: the account snapshot, its cases, and what a step returns.

Everything here is immutable. A step never mutates its input; it returns a new snapshot (or the
very same object when nothing changed, which is how callers know there is nothing to write).
The snapshot and what a step returns are `@value`s: frozen to the type checker (mypy strict in
`./dev lint` refuses any assignment to a field), plain slotted dataclasses at run time, where a
scheduler step builds a dozen of them (see `value`). The answers (`check`, `status`, `timeline`)
are frozen at run time too: callers keep them, and one `Decision` object is shared by every
call that gives the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias, TypeVar, dataclass_transform

from lapse.policy.model import AddressRule, Channel, FactValue, Recipients

_EMPTY: Mapping[str, object] = {}

_V = TypeVar("_V")
_C = TypeVar("_C", bound=type)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def value(cls: _C) -> _C:
    """A value class: `@dataclass(frozen=True, slots=True, kw_only=True)` to the type checker,
    which refuses every assignment to a field, and at run time the same dataclass unfrozen
    (its hash kept). A frozen dataclass's `__init__` sets each field through
    `object.__setattr__` to get past its own guard; on the scheduler's path (a dozen values
    per account step) that was 9% of a transition's time."""
    return dataclass(slots=True, kw_only=True, unsafe_hash=True)(cls)  # type: ignore[return-value]


_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def evolve(item: _V, **changes: Any) -> _V:
    """`dataclasses.replace` for the values of this module (slotted, every field an init
    argument, no `__post_init__`), without its introspection at every call: the lifecycle
    replaces a case or an account at nearly every step."""
    kind = type(item)
    known = _FIELDS.get(kind)
    if known is None:
        names = tuple(f.name for f in fields(kind))  # type: ignore[arg-type]
        known = _FIELDS[kind] = (names, frozenset(names))
    names, allowed = known
    if not allowed.issuperset(changes):
        unknown = ", ".join(sorted(set(changes) - allowed))
        raise TypeError(f"{kind.__name__} has no field {unknown}")
    new = object.__new__(kind)
    put = object.__setattr__
    for name in names:
        put(new, name, changes[name] if name in changes else getattr(item, name))
    return new


@value
class Member:
    """A person on the account; members with role `admin` receive notices sent `to: admins`."""

    email: str
    role: str = "member"


@value
class FactEntry:
    """A fact's value and when it last changed (a repeat of the same value changes nothing)."""

    value: FactValue
    changed_at: datetime


@value
class LegalHold:
    """A legal hold: blocks every delete and purge on the account until lifted."""

    since: datetime
    by: str
    reason: str


@value
class NoticeRecord:
    """A notice created for a case: exactly one per (case, key)."""

    key: str  # the rule key "<phase>/<template>", suffixed "#rN" for re-notices after a hold
    phase: str
    template: str
    to: Recipients
    recipients: tuple[str, ...]
    via: tuple[Channel, ...]
    due_at: datetime  # when the policy wanted it
    created_at: datetime  # when the core created it (later than due_at after downtime)
    dispatched_at: datetime | None = None  # when the transport accepted it


AdjustmentKind = Literal["notice-late", "extended", "hold", "migrated"]


@value
class Adjustment:
    """Why a case's deadlines moved: a late notice pushed them, an admin extended them, a legal
    hold paused them, or a policy migration kept them where they were."""

    kind: AdjustmentKind
    at: datetime
    delta: timedelta
    phase: str
    detail: str


DestructState = Literal["none", "held", "renotice", "requested", "done"]


@value
class Case:
    """A running instance of a flow on one account."""

    id: str  # "<flow>#<n>", unique within the account
    flow: str
    started_at: datetime  # the anchor every phase end is computed from
    phase_index: int  # index into flow.phases; == len(phases) once past the last phase
    phase_started_at: datetime
    reason: str
    opened_by: str  # "condition", "event:<name>", "admin:<who>"
    policy_version: str
    shift: timedelta = timedelta(0)  # sum of adjustments, added to every later phase end
    adjustments: tuple[Adjustment, ...] = ()
    notices: tuple[NoticeRecord, ...] = ()
    # the delete/purge due at the current position: waiting for a hold, re-noticing, or requested
    destruct: DestructState = "none"
    destruct_since: datetime | None = None
    renotice_round: int = 0
    # an administrator ordered the deletion now ("delete now"): no stop rule, stop event or
    # reactivation closes the case any more; only a legal hold still holds it
    ordered: bool = False

    def notice(self, key: str) -> NoticeRecord | None:
        """The notice record with this key, if created."""
        for record in self.notices:
            if record.key == key:
                return record
        return None


@value
class Account:
    """Everything the core knows about one account at one moment."""

    id: str
    kind: str
    created_at: datetime
    address: str | None = None
    members: tuple[Member, ...] = ()
    signals: Mapping[str, datetime] = field(default_factory=dict)
    facts: Mapping[str, FactEntry] = field(default_factory=dict)
    last_events: Mapping[str, datetime] = field(default_factory=dict)
    legal_hold: LegalHold | None = None
    cases: tuple[Case, ...] = ()
    armed_from: Mapping[str, datetime] = field(default_factory=dict)  # per flow, see re-arming
    case_seq: int = 0
    deleted_at: datetime | None = None

    def case(self, case_id: str) -> Case | None:
        """The open case with this id."""
        for case in self.cases:
            if case.id == case_id:
                return case
        return None

    def case_for(self, flow: str) -> Case | None:
        """The open case of this flow, if any (a flow has at most one open case)."""
        for case in self.cases:
            if case.flow == flow:
                return case
        return None


# --- what a step returns ----------------------------------------------------------------------


@value
class NoticeEffect:
    """Send a notice (email, webhook, in-app) for a case."""

    account_id: str
    case_id: str
    flow: str
    phase: str
    key: str
    template: str
    to: Recipients
    recipients: tuple[str, ...]
    via: tuple[Channel, ...]
    due_at: datetime
    at: datetime  # the moment in the account's lifecycle this belongs to
    deadline: datetime | None  # the phase end when the notice was created
    reason: str


@value
class HostEffect:
    """Call a named hook of the host product (stop campaigns, disable forms...)."""

    account_id: str
    case_id: str
    flow: str
    phase: str
    name: str
    trigger: Literal["enter", "exit", "close"]
    at: datetime


@value
class PurgeEffect:
    """Purge named data categories of the account."""

    account_id: str
    case_id: str
    flow: str
    phase: str | None
    categories: tuple[str, ...]
    at: datetime


@value
class DeleteEffect:
    """Delete the account and all its registered data; then handle its address."""

    account_id: str
    case_id: str
    flow: str
    address: AddressRule
    at: datetime


Effect: TypeAlias = NoticeEffect | HostEffect | PurgeEffect | DeleteEffect


@value
class AuditEntry:
    """One line of the account's history, as the core decided it."""

    account_id: str
    at: datetime  # lifecycle time (e.g. the moment a phase ended, even if processed later)
    kind: str  # case.opened, phase.entered, notice.created, case.closed, outcome.requested, ...
    case_id: str | None = None
    flow: str | None = None
    detail: Mapping[str, object] = field(default_factory=lambda: _EMPTY)


@value
class Step:
    """The result of evaluating an account: new snapshot, effects, audit, next due time."""

    account: Account
    effects: tuple[Effect, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    next_due_at: datetime | None = None

    @property
    def changed(self) -> bool:
        """True if there is anything to write."""
        return bool(self.effects or self.audit)


# --- answers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Denial:
    """One open case that denies an action."""

    case_id: str
    flow: str
    phase: str
    reason: str
    message: str
    until: datetime | None  # when this case stops denying the action, if nothing changes


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The answer to check(account, action)."""

    action: str
    allowed: bool
    denials: tuple[Denial, ...] = ()
    message: str = ""
    until: datetime | None = None  # when the action becomes allowed again; None: not foreseeable


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseStatus:
    """One open case as support staff and the account holder see it."""

    id: str
    flow: str
    title: str
    phase: str | None  # None once past the last phase (waiting for the outcome)
    phase_number: int  # 1-based
    phase_count: int
    state: str
    reason: str
    opened_by: str
    started_at: datetime
    phase_started_at: datetime
    deadline: datetime | None  # current phase end (with every push), None if open-ended
    planned_deadline: datetime | None  # the deadline before pushes and extensions
    time_left: str | None
    adjustments: tuple[Adjustment, ...]
    denied: tuple[str, ...]
    banner: str | None
    waiting: tuple[str, ...]  # why the case is not moving: undelivered notice, legal hold...
    notices: tuple[NoticeRecord, ...]
    outcome: str | None  # "delete", "purge: a, b", None
    destruct: DestructState
    irreversible: bool
    policy_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """The account's state, open cases, deadlines and banner at a moment."""

    account_id: str
    as_of: datetime
    state: str
    kind: str
    cases: tuple[CaseStatus, ...]
    denied: tuple[str, ...]
    banner: str | None
    legal_hold: LegalHold | None
    next_due_at: datetime | None
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEvent:
    """A projected future event: what happens, when, if nothing changes."""

    at: datetime
    kind: str  # case.opens, notice, phase.enters, outcome, case.closes, host-effect, purge, delete
    flow: str
    case_id: str | None
    phase: str | None
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why a condition holds or not: each part, whether it holds, and when it would."""

    text: str
    holds: bool
    since: datetime | None = None  # when it began to hold (if it holds)
    holds_at: datetime | None = None  # when it will hold if nothing changes (if it does not)
    parts: tuple[Explanation, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowOutlook:
    """For one flow: does it apply, is a case open, and the explanation of its start."""

    flow: str
    title: str
    applies: bool
    open_case: str | None
    starts_on: tuple[str, ...]
    start: Explanation | None
    armed_from: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Projected future of an account if nothing changes, and why each flow will or won't start."""

    account_id: str
    as_of: datetime
    events: tuple[TimelineEvent, ...]
    flows: tuple[FlowOutlook, ...]
    truncated: bool = False
    past: tuple[TimelineEvent, ...] = ()  # from the audit log, filled in by the runtime
