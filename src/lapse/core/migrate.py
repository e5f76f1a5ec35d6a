"""Moving open cases to a new policy version, by an explicit choice: keep or re-plan deadlines.

A case records the policy version it was opened under; nothing moves it to another version
implicitly. `migrate_account` does it for one account, in one of two modes:

- `keep`: the current phase ends exactly when it would have ended under the old version (the
  case's `shift` absorbs the difference, recorded as a `migrated` adjustment); the phases after
  it follow the new durations.
- `replan`: every deadline is computed again from the case start under the new version. Pushes
  made by late notices, extensions and legal holds stay in the shift; deadlines kept by an
  earlier `keep` migration are dropped. The notice guarantee still holds at the next advance: a
  shortened phase never ends before its notices went out, and never less than their lead after.

Phases are matched by name. A case whose flow the new version no longer has, or whose current
phase it no longer has, cannot be migrated: it is reported as blocked and left as it was, unless
`close_removed` is given, which closes it (exit and close effects of its old flow, audited as a
policy migration).

`Preview` runs the migration on copies of many accounts and then evaluates each copy once under
the new policy at `now`: which deadlines move and by how much, which cases close, which
accounts would newly open a case, which notices and outcomes would follow at once. Nothing of it
is written: it is what `lapse simulate` prints before `lapse policy apply` changes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from lapse.core.decisions import deadline
from lapse.core.lifecycle import advance, planned_end, position_phase
from lapse.core.model import (
    Account,
    Adjustment,
    AuditEntry,
    Case,
    DeleteEffect,
    Effect,
    HostEffect,
    NoticeEffect,
    PurgeEffect,
    evolve,
)
from lapse.errors import InvalidInput
from lapse.policy.model import Flow, Policy

MigrationMode = Literal["keep", "replan"]
MODES: tuple[MigrationMode, ...] = ("keep", "replan")

CaseOutcome = Literal["migrated", "closed", "blocked"]

_S = TypeVar("_S")


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseMigration:
    """What moving one open case to the new version does (or would do)."""

    account_id: str
    case_id: str
    flow: str
    phase: str | None  # the current phase under the old version; None past the last phase
    new_phase: str | None  # the phase it is in under the new version (None if not migrated)
    from_version: str
    to_version: str
    mode: MigrationMode
    deadline_before: datetime | None  # the current deadline under the old version
    deadline_after: datetime | None  # ... and under the new one (same as before if not migrated)
    outcome: CaseOutcome = "migrated"
    why: str = ""  # for a closed or blocked case: what the new version lacks

    @property
    def moved(self) -> timedelta | None:
        """How far the current deadline moves (negative: earlier); None if it has none."""
        if self.deadline_before is None or self.deadline_after is None:
            return None
        return self.deadline_after - self.deadline_before


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One account moved to a new policy version: the new snapshot, its effects and audit."""

    account: Account  # the very same object when nothing needed migrating
    cases: tuple[CaseMigration, ...] = ()
    effects: tuple[Effect, ...] = ()  # exit and close effects of cases closed as removed
    audit: tuple[AuditEntry, ...] = ()

    @property
    def blocked(self) -> tuple[CaseMigration, ...]:
        """The cases left as they were: their flow or phase is gone (no `close_removed`)."""
        return tuple(c for c in self.cases if c.outcome == "blocked")

    @property
    def changed(self) -> bool:
        """True if there is anything to write."""
        return bool(self.audit)


def needs_migration(account: Account, policy: Policy) -> bool:
    """True if an open case of the account was opened under another version than `policy`'s."""
    version = policy.version
    # a plain loop: called for every account the scheduler steps, where any() costs more
    for case in account.cases:  # noqa: SIM110
        if case.policy_version != version:
            return True
    return False


def migrate_account(
    account: Account,
    old: Policy | Mapping[str, Policy],
    new: Policy,
    now: datetime,
    *,
    mode: MigrationMode,
    close_removed: bool = False,
    by: str = "policy-migration",
) -> Migration:
    """Move every open case opened under another version to `new` (see the module docstring).

    `old` is the policy the cases were opened under, or the known policies by version (cases
    may come from several). A case opened under a version `old` does not know is blocked.
    """
    if now.tzinfo is None:
        raise InvalidInput("`now` must be an aware datetime (UTC)")
    if mode not in MODES:
        raise InvalidInput(f"unknown migration mode {mode!r}; expected keep or replan")
    if account.deleted_at is not None or not needs_migration(account, new):
        return Migration(account=account)
    known = {old.version: old} if isinstance(old, Policy) else dict(old)
    run = _Migrator(account, known, new, now, mode, close_removed, by)
    for case in account.cases:
        if case.policy_version != new.version:
            run.case(case)
    return run.result()


class _Migrator:
    """One account's migration; collects the new cases, effects and audit."""

    def __init__(
        self,
        account: Account,
        known: Mapping[str, Policy],
        new: Policy,
        now: datetime,
        mode: MigrationMode,
        close_removed: bool,
        by: str,
    ) -> None:
        self.account = account
        self.known = known
        self.new = new
        self.now = now
        self.mode = mode
        self.close_removed = close_removed
        self.by = by
        self.cases: dict[str, Case] = {c.id: c for c in account.cases}
        self.armed = dict(account.armed_from)
        self.report: list[CaseMigration] = []
        self.effects: list[Effect] = []
        self.audit: list[AuditEntry] = []

    def case(self, case: Case) -> None:
        source = self.known.get(case.policy_version)
        old_flow = source.flows.get(case.flow) if source is not None else None
        if source is None or old_flow is None:
            why = (
                f"it was opened under version {case.policy_version}, which is not known"
                if source is None
                else f"version {case.policy_version} has no flow {case.flow!r}"
            )
            # without the policy it was opened under, its phase and deadlines are unknown
            self.note(case, None, None, None, None, "blocked", why)
            return
        in_phase = case.phase_index < len(old_flow.phases)
        phase = old_flow.phases[case.phase_index].name if in_phase else None
        before = deadline(case, old_flow, source, self.now)
        new_flow = self.new.flows.get(case.flow)
        index: int | None = None
        why = ""
        if new_flow is None:
            why = f"version {self.new.version} has no flow {case.flow!r}"
        elif phase is not None:
            index = next((p.index for p in new_flow.phases if p.name == phase), None)
            why = f"version {self.new.version} of its flow has no phase {phase!r}"
        elif new_flow.timed_phase_count < len(new_flow.phases):
            why = (
                f"its flow ends in an open-ended phase in version {self.new.version}: a case "
                "past its last phase has no place in it"
            )
        else:
            index = len(new_flow.phases)  # past the last phase: waiting for the outcome there too
        if new_flow is None or index is None:
            if not self.close_removed:
                self.note(case, phase, None, before, before, "blocked", why)
                return
            self.close(case, old_flow, new_flow, why)
            self.note(case, phase, None, before, None, "closed", why)
            return
        moved = self.move(case, old_flow, source, new_flow, index)
        after = deadline(moved, new_flow, self.new, self.now)
        new_phase = new_flow.phases[index].name if index < len(new_flow.phases) else None
        self.cases[case.id] = moved
        self.note(case, phase, new_phase, before, after, "migrated", "")
        self.audit.append(
            AuditEntry(
                account_id=self.account.id,
                at=self.now,
                kind="case.migrated",
                case_id=case.id,
                flow=case.flow,
                detail={
                    "from": case.policy_version,
                    "to": self.new.version,
                    "mode": self.mode,
                    "by": self.by,
                    "phase": new_phase,
                    "deadline_before": before.isoformat() if before is not None else None,
                    "deadline_after": after.isoformat() if after is not None else None,
                },
            )
        )

    def move(self, case: Case, old_flow: Flow, source: Policy, new_flow: Flow, index: int) -> Case:
        """The case under the new version at phase `index`, its shift set by the mode."""
        adjustments = case.adjustments
        delta = timedelta(0)
        detail = ""
        if self.mode == "replan":
            # pushes of late notices, extensions and holds stay; deadlines kept by an earlier
            # `keep` migration are what a re-plan drops
            delta = -sum((a.delta for a in adjustments if a.kind == "migrated"), timedelta(0))
            detail = f"policy version {self.new.version}: re-planned, earlier kept deadline dropped"
        elif index < new_flow.timed_phase_count and case.phase_index < old_flow.timed_phase_count:
            kept = planned_end(case, old_flow, case.phase_index, source)
            fresh = planned_end(evolve(case, shift=timedelta(0)), new_flow, index, self.new)
            delta = kept - fresh - case.shift
            detail = (
                f"policy version {case.policy_version} -> {self.new.version}: the deadline was kept"
            )
        # else keep with no deadline to keep (open-ended before or after): the new plan applies
        if delta:
            phase = new_flow.phases[index].name if index < len(new_flow.phases) else ""
            adjustments = (
                *adjustments,
                Adjustment(kind="migrated", at=self.now, delta=delta, phase=phase, detail=detail),
            )
        return evolve(
            case,
            phase_index=index,
            policy_version=self.new.version,
            shift=case.shift + delta,
            adjustments=adjustments,
        )

    def close(self, case: Case, old_flow: Flow, new_flow: Flow | None, why: str) -> None:
        """Close a case the new version has no place for, as the lifecycle closes one: the exit
        effects of its phase and the close effects of its (old) flow."""
        phase = position_phase(case, old_flow)
        del self.cases[case.id]
        if phase is not None:
            if case.phase_index < len(old_flow.phases):
                self.host(case, phase.name, phase.on_exit, "exit")
            # as in the lifecycle: a close effect another open case also lists waits for it
            shared: set[str] = set()
            for other in self.cases.values():
                flow = self.new.flows.get(other.flow)
                if flow is not None:
                    shared.update(flow.on_close)
            self.host(case, phase.name, [n for n in old_flow.on_close if n not in shared], "close")
        if new_flow is not None:
            self.armed[case.flow] = self.now  # the flow remains: it re-arms, as on any close
        self.audit.append(
            AuditEntry(
                account_id=self.account.id,
                at=self.now,
                kind="case.closed",
                case_id=case.id,
                flow=case.flow,
                detail={
                    "reason": f"policy migration to version {self.new.version}: {why}",
                    "by": self.by,
                },
            )
        )

    def host(
        self,
        case: Case,
        phase: str,
        names: Iterable[str],
        trigger: Literal["exit", "close"],
    ) -> None:
        for name in names:
            self.effects.append(
                HostEffect(
                    account_id=self.account.id,
                    case_id=case.id,
                    flow=case.flow,
                    phase=phase,
                    name=name,
                    trigger=trigger,
                    at=self.now,
                )
            )

    def note(
        self,
        case: Case,
        phase: str | None,
        new_phase: str | None,
        before: datetime | None,
        after: datetime | None,
        outcome: CaseOutcome,
        why: str,
    ) -> None:
        self.report.append(
            CaseMigration(
                account_id=self.account.id,
                case_id=case.id,
                flow=case.flow,
                phase=phase,
                new_phase=new_phase,
                from_version=case.policy_version,
                to_version=self.new.version,
                mode=self.mode,
                deadline_before=before,
                deadline_after=after,
                outcome=outcome,
                why=why,
            )
        )

    def result(self) -> Migration:
        account = self.account
        if self.audit:
            account = evolve(account, cases=tuple(self.cases.values()), armed_from=self.armed)
        return Migration(
            account=account,
            cases=tuple(self.report),
            effects=tuple(self.effects),
            audit=tuple(self.audit),
        )


# --- the preview --------------------------------------------------------------------------------

#: how many example cases or accounts a preview keeps per line (the counts are always complete)
SAMPLES = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseImpact:
    """The open cases of one flow and phase under the old version, and how their deadlines move."""

    flow: str
    phase: str | None  # None: past the last phase (waiting for the outcome)
    cases: int
    moved: int  # cases whose current deadline moves
    earliest: timedelta | None  # the largest move earlier (negative) among them
    latest: timedelta | None  # the largest move later
    samples: tuple[CaseMigration, ...]  # moved cases first


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseClosing:
    """An open case that closes: removed by the migration, or at the first evaluation."""

    account_id: str
    case_id: str
    flow: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeImpact:
    """What applying the new version in one mode would do, as of `now`."""

    mode: MigrationMode
    migrated: int  # cases moved to the new version
    phases: tuple[PhaseImpact, ...]
    blocked: int
    blocked_samples: tuple[CaseMigration, ...]
    closing: int
    closing_samples: tuple[CaseClosing, ...]
    opening: Mapping[str, int]  # flow -> accounts that would open a case at once
    opening_samples: Mapping[str, tuple[str, ...]]  # flow -> some of those accounts
    notices: Mapping[str, int]  # "<flow>/<template>" -> notices that would be created at once
    outcomes: Mapping[str, int]  # "<flow>: delete" / "<flow>: purge" -> requested at once


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRef:
    """A policy by name, version and digest."""

    name: str
    version: str
    digest: str

    @classmethod
    def of(cls, policy: Policy) -> PolicyRef:
        """The reference of a loaded policy."""
        return cls(name=policy.name, version=policy.version, digest=policy.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyPreview:
    """The impact of a new policy over a set of accounts, per migration mode."""

    current: PolicyRef
    proposed: PolicyRef
    as_of: datetime
    accounts: int  # accounts looked at (deleted ones excluded)
    open_cases: int
    affected: int  # open cases opened under another version than the proposed one
    modes: tuple[ModeImpact, ...]

    def mode(self, mode: MigrationMode) -> ModeImpact:
        """The impact in one mode (KeyError if it was not previewed)."""
        for impact in self.modes:
            if impact.mode == mode:
                return impact
        raise KeyError(mode)


@dataclass
class _Tally:
    cases: int = 0
    moved: int = 0
    earliest: timedelta | None = None
    latest: timedelta | None = None
    moving: list[CaseMigration] = field(default_factory=list)  # samples whose deadline moves
    staying: list[CaseMigration] = field(default_factory=list)  # ... and the others


@dataclass
class _ModeTally:
    migrated: int = 0
    phases: dict[tuple[str, str | None], _Tally] = field(default_factory=dict)
    blocked: int = 0
    blocked_samples: list[CaseMigration] = field(default_factory=list)
    closing: int = 0
    closing_samples: list[CaseClosing] = field(default_factory=list)
    opening: dict[str, int] = field(default_factory=dict)
    opening_samples: dict[str, list[str]] = field(default_factory=dict)
    notices: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)


class Preview:
    """Accumulates the impact of `new` over accounts added one by one (pure; writes nothing)."""

    def __init__(
        self,
        current: Policy,
        new: Policy,
        now: datetime,
        *,
        known: Mapping[str, Policy] | None = None,
        modes: Iterable[MigrationMode] = MODES,
        close_removed: bool = False,
    ) -> None:
        if now.tzinfo is None:
            raise InvalidInput("`now` must be an aware datetime (UTC)")
        self.current = current
        self.new = new
        self.now = now
        self.known: dict[str, Policy] = {**(known or {}), current.version: current}
        self.close_removed = close_removed
        self.tallies = {mode: _ModeTally() for mode in modes}
        if not self.tallies or any(mode not in MODES for mode in self.tallies):
            raise InvalidInput("preview modes: expected keep, replan or both")
        self.accounts = 0
        self.open_cases = 0
        self.affected = 0

    def add(self, account: Account) -> None:
        """Look at one more account."""
        if account.deleted_at is not None:
            return
        self.accounts += 1
        self.open_cases += len(account.cases)
        self.affected += sum(1 for c in account.cases if c.policy_version != self.new.version)
        for mode, tally in self.tallies.items():
            migration = migrate_account(
                account,
                self.known,
                self.new,
                self.now,
                mode=mode,
                close_removed=self.close_removed,
            )
            step = advance(migration.account, self.new, self.now)
            self._count(tally, _settled(migration, step.account, self.new, self.now))
            self._effects(tally, account, step.audit, step.effects)

    def _count(self, tally: _ModeTally, migration: Migration) -> None:
        for item in migration.cases:
            if item.outcome == "blocked":
                tally.blocked += 1
                _sample(tally.blocked_samples, item)
                continue
            if item.outcome == "closed":
                tally.closing += 1
                reason = f"policy migration: {item.why}"
                _sample(
                    tally.closing_samples,
                    CaseClosing(
                        account_id=item.account_id,
                        case_id=item.case_id,
                        flow=item.flow,
                        reason=reason,
                    ),
                )
            else:
                tally.migrated += 1
            line = tally.phases.setdefault((item.flow, item.phase), _Tally())
            line.cases += 1
            if item.outcome == "closed" or item.deadline_before == item.deadline_after:
                _sample(line.staying, item)
                continue
            line.moved += 1
            _sample(line.moving, item)
            moved = item.moved
            if moved is not None:
                line.earliest = moved if line.earliest is None else min(line.earliest, moved)
                line.latest = moved if line.latest is None else max(line.latest, moved)

    def _effects(
        self,
        tally: _ModeTally,
        account: Account,
        audit: Iterable[AuditEntry],
        effects: Iterable[Effect],
    ) -> None:
        for entry in audit:
            flow = entry.flow or ""
            if entry.kind == "case.opened":
                tally.opening[flow] = tally.opening.get(flow, 0) + 1
                _sample(tally.opening_samples.setdefault(flow, []), account.id)
            elif entry.kind == "case.closed":
                tally.closing += 1
                _sample(
                    tally.closing_samples,
                    CaseClosing(
                        account_id=account.id,
                        case_id=entry.case_id or "",
                        flow=flow,
                        reason=str(entry.detail.get("reason", "")),
                    ),
                )
        for effect in effects:
            if isinstance(effect, NoticeEffect):
                key = f"{effect.flow}/{effect.template}"
                tally.notices[key] = tally.notices.get(key, 0) + 1
            elif isinstance(effect, DeleteEffect | PurgeEffect):
                word = "delete" if isinstance(effect, DeleteEffect) else "purge"
                key = f"{effect.flow}: {word}"
                tally.outcomes[key] = tally.outcomes.get(key, 0) + 1

    def result(self) -> PolicyPreview:
        """The preview of every account added so far."""
        return PolicyPreview(
            current=PolicyRef.of(self.current),
            proposed=PolicyRef.of(self.new),
            as_of=self.now,
            accounts=self.accounts,
            open_cases=self.open_cases,
            affected=self.affected,
            modes=tuple(_impact(mode, tally) for mode, tally in self.tallies.items()),
        )


def preview(
    accounts: Iterable[Account],
    current: Policy,
    new: Policy,
    now: datetime,
    *,
    known: Mapping[str, Policy] | None = None,
    modes: Iterable[MigrationMode] = MODES,
    close_removed: bool = False,
) -> PolicyPreview:
    """The impact of `new` over `accounts` (see `Preview`)."""
    builder = Preview(current, new, now, known=known, modes=modes, close_removed=close_removed)
    for account in accounts:
        builder.add(account)
    return builder.result()


def _settled(migration: Migration, account: Account, policy: Policy, now: datetime) -> Migration:
    """The migration with each case's deadline as it is after the first evaluation under the
    new version: a notice that is due at once (a shortened phase) gives its full lead."""
    cases = []
    for item in migration.cases:
        case = account.case(item.case_id) if item.outcome == "migrated" else None
        if case is not None:
            phases = policy.flows[case.flow].phases
            still = case.phase_index < len(phases) and phases[case.phase_index].name
            if still and still == item.new_phase:  # not moved on (nor closed) at once
                flow = policy.flows[case.flow]
                item = evolve(item, deadline_after=deadline(case, flow, policy, now))
        cases.append(item)
    return evolve(migration, cases=tuple(cases))


def _sample(items: list[_S], item: _S) -> None:
    if len(items) < SAMPLES:
        items.append(item)


def _impact(mode: MigrationMode, tally: _ModeTally) -> ModeImpact:
    lines = [
        PhaseImpact(
            flow=flow,
            phase=phase,
            cases=line.cases,
            moved=line.moved,
            earliest=line.earliest,
            latest=line.latest,
            # the cases whose deadline moves are the interesting examples: first
            samples=tuple((line.moving + line.staying)[:SAMPLES]),
        )
        for (flow, phase), line in sorted(
            tally.phases.items(), key=lambda item: (item[0][0], item[0][1] or "")
        )
    ]
    return ModeImpact(
        mode=mode,
        migrated=tally.migrated,
        phases=tuple(lines),
        blocked=tally.blocked,
        blocked_samples=tuple(tally.blocked_samples),
        closing=tally.closing,
        closing_samples=tuple(tally.closing_samples),
        opening=dict(sorted(tally.opening.items())),
        opening_samples={k: tuple(v) for k, v in sorted(tally.opening_samples.items())},
        notices=dict(sorted(tally.notices.items())),
        outcomes=dict(sorted(tally.outcomes.items())),
    )
