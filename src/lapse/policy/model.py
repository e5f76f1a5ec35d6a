"""The compiled policy: immutable values the core evaluates. Built by `lapse.policy.loader`.

Every object keeps `path`, its place in the source document (`flows.inactivity.phases[0]`), so
explanations, lints and errors can point back at the line that defined it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal, TypeAlias

from lapse.errors import Problem
from lapse.policy.durations import Duration

FactValue: TypeAlias = bool | int | float | str | datetime
FactType = Literal["bool", "number", "string", "timestamp"]
Recipients = Literal["admins", "members", "owner"]
Channel = Literal["email", "webhook", "in_app"]
State = Literal["active", "restricted", "locked", "suspended", "deleted"]

#: strongest first: the strongest state among open cases names the account's state
STATE_STRENGTH: Mapping[str, int] = {
    "active": 0,
    "restricted": 1,
    "locked": 2,
    "suspended": 3,
    "deleted": 4,
}

#: names of the safety lints a policy may waive (per flow or for the whole policy)
LINTS = (
    "unknown-action",
    "unreachable-phase",
    "deletion-without-notice",
    "notice-lead-exceeds-phase",
    "irreversible-with-stop",
    "banner-without-login",
)


# --- conditions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NoActivity:
    """No activity in any of `signals` for `duration` (counting from account creation or re-arm)."""

    signals: tuple[str, ...]
    duration: Duration
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountAge:
    """The account is at least `duration` old."""

    duration: Duration
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SinceFact:
    """At least `duration` has passed since the timestamp fact `fact`."""

    fact: str
    duration: Duration
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FactRef:
    """The right-hand side of a comparison that names another fact."""

    fact: str


CompareOp = Literal["is", "is_not", "gt", "gte", "lt", "lte", "in", "not_in"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Compare:
    """A fact compared with a literal, a list of literals (`in`) or another fact."""

    fact: str
    op: CompareOp
    value: FactValue | FactRef | tuple[FactValue, ...]
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AllOf:
    """Every item holds."""

    items: tuple[Condition, ...]
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnyOf:
    """At least one item holds."""

    items: tuple[Condition, ...]
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Not:
    """The item does not hold."""

    item: Condition
    path: str = ""


Condition: TypeAlias = NoActivity | AccountAge | SinceFact | Compare | AllOf | AnyOf | Not


# --- phases and flows -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeRule:
    """A notice a phase sends: when (`at`, `offset`), to whom, with which template."""

    key: str  # unique within the flow: "<phase>/<template>"
    at: Literal["start", "after_start", "before_end"]
    offset: Duration  # zero for "start"
    to: Recipients
    template: str
    via: tuple[Channel, ...] = ("email",)
    path: str = ""

    def describe(self) -> str:
        """'at start', '3 days after start', '7 days before end'."""
        if self.at == "start":
            return "at start"
        return f"{self.offset} {'after start' if self.at == 'after_start' else 'before end'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """One stretch of a flow: how long, what it denies, what it says, what it sends and triggers."""

    name: str
    index: int
    lasts: Duration | None  # None: open-ended, lasts until the case is stopped
    deny: frozenset[str] = frozenset()
    allow_only: frozenset[str] | None = None
    banner: str | None = None
    message: str | None = None
    notices: tuple[NoticeRule, ...] = ()
    on_enter: tuple[str, ...] = ()
    on_exit: tuple[str, ...] = ()
    purge: tuple[str, ...] = ()  # data categories purged on entering the phase
    state: State | None = None  # explicit state name, else derived from the restrictions
    path: str = ""

    def denies(self, actions: frozenset[str]) -> frozenset[str]:
        """The subset of `actions` this phase denies."""
        denied = actions & self.deny
        if self.allow_only is not None:
            denied |= actions - self.allow_only
        return denied


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happens when the last timed phase ends: delete the account or purge categories."""

    kind: Literal["delete", "purge"]
    categories: tuple[str, ...] = ()
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressRule:
    """What happens to the account's address after deletion."""

    mode: Literal["release", "retire"]
    duration: Duration | None = None  # retire for this long, then release; None: forever


@dataclass(frozen=True, slots=True, kw_only=True)
class Flow:
    """One lifecycle process, e.g. 'inactivity' or 'payment-lock'."""

    name: str
    title: str
    reason: str
    applies_to: frozenset[str] | None  # account kinds; None: every kind
    starts_when: Condition | None
    starts_on: frozenset[str]
    stops_when: Condition | None
    stops_on: frozenset[str]
    irreversible: bool
    phases: tuple[Phase, ...]
    outcome: Outcome | None
    address: AddressRule
    waive: frozenset[str]
    on_close: tuple[str, ...] = ()  # effects sent when a case closes, whatever its phase
    path: str = ""

    @property
    def default_stop(self) -> bool:
        """A condition-started flow without its own stop rule stops when its start stops holding."""
        return (
            not self.irreversible
            and self.starts_when is not None
            and self.stops_when is None
            and not self.stops_on
        )

    def state_in(self, phase: Phase | None) -> State:
        """The account state while a case of this flow is in `phase` (explicit, else derived)."""
        if phase is not None and phase.state is not None:
            return phase.state
        if self.irreversible:
            return "suspended"
        if phase is None:
            return "active"
        if phase.allow_only is not None:
            return "locked"
        return "restricted" if phase.deny else "active"

    def applies(self, kind: str) -> bool:
        """True if accounts of `kind` run this flow."""
        return self.applies_to is None or kind in self.applies_to

    @property
    def timed_phase_count(self) -> int:
        """How many leading phases have a duration; the outcome runs when they have all ended."""
        count = 0
        for phase in self.phases:
            if phase.lasts is None:
                break
            count += 1
        return count

    @property
    def notice_lead(self) -> Duration | None:
        """The longest 'before end' lead of the last timed phase (re-noticed after a hold)."""
        count = self.timed_phase_count
        if count == 0:
            return None
        leads = [n.offset for n in self.phases[count - 1].notices if n.at == "before_end"]
        if not leads:
            return None
        return max(leads, key=lambda d: d.max_seconds())


@dataclass(frozen=True, slots=True, kw_only=True)
class FactSpec:
    """A fact the policy knows: its type and the value assumed while the host has not set it."""

    name: str
    type: FactType
    default: FactValue | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeTemplate:
    """A notice template the policy carries: Jinja2 sources of its three parts."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A loaded, validated policy document."""

    name: str
    version: str
    description: str
    timezone: tzinfo
    timezone_name: str
    resolution: Duration  # signals closer than this to the stored time are not written again
    actions: frozenset[str]
    action_order: tuple[str, ...]
    kinds: frozenset[str]
    signals: frozenset[str]
    facts: Mapping[str, FactSpec]
    events: frozenset[str]
    categories: frozenset[str]
    flows: Mapping[str, Flow]
    waive: frozenset[str] = frozenset()
    # notice templates carried by the document: they win over a deployment's and the shipped ones
    templates: Mapping[str, NoticeTemplate] = field(default_factory=dict)
    source: str = "<policy>"
    digest: str = ""  # sha256 of the document text: identifies exactly what was loaded
    # the document itself: the store keeps it with the active policy, so every process can load
    # the very policy that was applied (and the versions open cases were opened under)
    text: str = field(default="", compare=False, repr=False)
    problems: tuple[Problem, ...] = field(default=(), compare=False)  # waived lints, for display
    _by_kind: dict[str, tuple[Flow, ...]] = field(
        default_factory=dict, compare=False, repr=False, init=False
    )

    def flows_for(self, kind: str) -> tuple[Flow, ...]:
        """The flows that apply to accounts of `kind`, in document order (memoised)."""
        flows = self._by_kind.get(kind)
        if flows is None:
            flows = tuple(f for f in self.flows.values() if f.applies(kind))
            self._by_kind[kind] = flows
        return flows

    def flows_for_event(self, event: str) -> tuple[Flow, ...]:
        """Flows started or stopped by `event`."""
        return tuple(f for f in self.flows.values() if event in f.starts_on or event in f.stops_on)
