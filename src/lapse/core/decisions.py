"""Answers from an account's recorded state: check(action), its restriction set, and status.

These read the snapshot as the scheduler last decided it; they never move a case. The
restriction set is what makes `check` cheap on the hot path: every open case's phase is combined
once (denied if any case denies, `allow_only` sets intersect) into a frozen set and a ready-made
Decision per denied action, valid until the account's next due time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lapse.core.lifecycle import (
    notice_push,
    phase_end,
    planned_end,
    position_phase,
    renotice_end,
)
from lapse.core.model import Account, Case, CaseStatus, Decision, Denial, Status, evolve
from lapse.errors import UnknownAction
from lapse.policy.model import STATE_STRENGTH, Flow, Phase, Policy


def deadline(case: Case, flow: Flow, policy: Policy, now: datetime) -> datetime | None:
    """The current phase's end with every push known so far; None if open-ended or held.

    A notice that is created but not dispatched yet counts as going out `now`: the deadline
    shown is the earliest the phase can end, never a moment already gone. A case re-noticed
    after a legal hold waits for the re-sent warnings' lead: at its outcome that is the
    deadline; in a timed phase, the phase counts from then on. A held case has none: it waits
    for the hold, which nobody can foresee.
    """
    if case.destruct == "held":
        return None
    if case.destruct == "renotice":
        resume = renotice_end(case, flow, policy, now)
        assert resume is not None
        if case.phase_index >= flow.timed_phase_count:
            return resume
        if resume > case.phase_started_at:
            # a timed phase counts from when the purge it waits for runs (as `_Run.resume` does)
            pause = resume - case.phase_started_at
            case = evolve(case, phase_started_at=resume, shift=case.shift + pause)
    if case.phase_index >= flow.timed_phase_count:
        return None
    return phase_end(case, flow, flow.phases[case.phase_index], policy, now)


def time_left(now: datetime, until: datetime | None) -> str | None:
    """'23 days', '1 day 4 hours', '5 hours', '12 minutes', 'less than a minute'."""
    if until is None:
        return None
    left = until - now
    if left <= timedelta(0):
        return "no time"
    days, rest = divmod(int(left.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days >= 2:
        return f"{days} days"
    if days == 1:
        return "1 day" + (f" {hours} hour{'s' if hours != 1 else ''}" if hours else "")
    if hours:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if minutes:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return "less than a minute"


def render(
    template: str,
    *,
    case: Case,
    flow: Flow,
    phase: Phase | None,
    policy: Policy,
    now: datetime,
    action: str = "",
) -> str:
    """Fill a banner or message template (placeholders were checked when the policy loaded).

    While the case's delete or purge waits on a legal hold, a text that names the deadline or
    the time left would name a moment that no longer holds: the hold is said instead.
    """
    if case.destruct == "held" and ("{deadline" in template or "{time_left" in template):
        return (
            f"{flow.title}: {case.reason}. The {_outcome_word(case, flow)} waits on a legal "
            "hold: it will not happen while the hold lasts."
        )
    end = deadline(case, flow, policy, now)
    if end is None and case.phase_index >= len(flow.phases):
        # past the last (timed) phase, waiting for its outcome (legal hold, deletion queue):
        # the phase the banner belongs to ended when the case left it
        end = case.phase_started_at
    return template.format(
        deadline=end.astimezone(policy.timezone) if end is not None else "",
        time_left=time_left(now, end) or "",
        reason=case.reason,
        flow=flow.title,
        phase=phase.name if phase is not None else "",
        action=action,
    )


def denied_until(
    case: Case, flow: Flow, policy: Policy, action: str, now: datetime
) -> datetime | None:
    """When this case stops denying `action` if nothing changes; None if it never will."""
    index = case.phase_index
    arrival = case.phase_started_at
    count = len(flow.phases)
    if (
        case.destruct == "held"
        and index < count
        and action in flow.phases[index].denies(policy.actions)
    ):
        return None  # the case waits for a legal hold to lift: nobody can foresee when
    while True:
        if index >= count:
            deleting = flow.outcome is not None and flow.outcome.kind == "delete"
            # a case already past its last phase is waiting for its outcome (held): not foreseeable
            return None if deleting or index == case.phase_index else arrival
        phase = flow.phases[index]
        if action not in phase.denies(policy.actions):
            return arrival
        if index >= flow.timed_phase_count:
            return None
        end = deadline(case, flow, policy, now) if index == case.phase_index else None
        arrival = end or planned_end(case, flow, index, policy)
        index += 1


def _message(
    case: Case, flow: Flow, phase: Phase | None, policy: Policy, now: datetime, action: str
) -> str:
    if phase is not None and phase.message is not None:
        return render(
            phase.message, case=case, flow=flow, phase=phase, policy=policy, now=now, action=action
        )
    where = f" ({phase.name})" if phase is not None else ""
    return f"{action} is not available: {flow.title}{where}: {case.reason}."


@dataclass(frozen=True, slots=True)
class Restrictions:
    """An account's combined restrictions: the fast path of check()."""

    account_id: str
    state: str
    denied: frozenset[str]
    decisions: Mapping[str, Decision]

    def check(self, action: str) -> Decision:
        """The decision for `action` (the caller has checked the action is known)."""
        decision = self.decisions.get(action)
        if decision is None:
            return _allowed(action)
        return decision


_ALLOWED: dict[str, Decision] = {}
_NEVER = datetime.max.replace(tzinfo=UTC)


def _allowed(action: str) -> Decision:
    decision = _ALLOWED.get(action)
    if decision is None:
        decision = _ALLOWED.setdefault(action, Decision(action=action, allowed=True))
    return decision


def restrictions(account: Account, policy: Policy, now: datetime) -> Restrictions:
    """Combine every open case's restrictions into one set with ready decisions."""
    if account.deleted_at is not None:
        message = f"account {account.id} was deleted"
        return Restrictions(
            account_id=account.id,
            state="deleted",
            denied=policy.actions,
            decisions={
                a: Decision(action=a, allowed=False, message=message) for a in policy.actions
            },
        )
    state = "active"
    by_action: dict[str, list[Denial]] = {}
    for case in account.cases:
        flow = policy.flows.get(case.flow)
        if flow is None:
            continue
        phase = position_phase(case, flow)
        case_st = flow.state_in(phase)
        if STATE_STRENGTH[case_st] > STATE_STRENGTH[state]:
            state = case_st
        if phase is None:
            continue
        for action in phase.denies(policy.actions):
            by_action.setdefault(action, []).append(
                Denial(
                    case_id=case.id,
                    flow=flow.name,
                    phase=phase.name,
                    reason=case.reason,
                    message=_message(case, flow, phase, policy, now, action),
                    until=denied_until(case, flow, policy, action, now),
                )
            )
    decisions: dict[str, Decision] = {}
    for action, denials in by_action.items():
        untils = [d.until for d in denials]
        decisions[action] = Decision(
            action=action,
            allowed=False,
            denials=tuple(denials),
            message=" ".join(dict.fromkeys(d.message for d in denials)),
            until=None if any(u is None for u in untils) else max(u for u in untils if u),
        )
    return Restrictions(
        account_id=account.id, state=state, denied=frozenset(decisions), decisions=decisions
    )


def check(account: Account, policy: Policy, action: str, now: datetime) -> Decision:
    """May the account do `action` now? Allowed, or denied with the cases, message and until."""
    if action not in policy.actions:
        known = ", ".join(policy.action_order)
        raise UnknownAction(f"unknown action {action!r}; the policy gates: {known}")
    return restrictions(account, policy, now).check(action)


def status(
    account: Account, policy: Policy, now: datetime, next_due_at: datetime | None = None
) -> Status:
    """State, open cases, deadlines, time left, waiting reasons and the banner."""
    cases = []
    for case in account.cases:
        flow = policy.flows.get(case.flow)
        if flow is not None:
            cases.append(_case_status(case, flow, policy, now))
    state = "deleted" if account.deleted_at is not None else "active"
    for case_status in cases:
        if STATE_STRENGTH[case_status.state] > STATE_STRENGTH[state]:
            state = case_status.state
    banner = None
    ranked = sorted(
        (c for c in cases if c.banner),
        key=lambda c: (-STATE_STRENGTH[c.state], c.deadline or _NEVER),
    )
    if ranked:
        banner = ranked[0].banner
    denied = set().union(*(c.denied for c in cases)) if cases else set()
    if account.deleted_at is not None:
        denied = set(policy.actions)  # as check() answers: a deleted account may do nothing
    return Status(
        account_id=account.id,
        as_of=now,
        state=state,
        kind=account.kind,
        cases=tuple(cases),
        denied=tuple(a for a in policy.action_order if a in denied),
        banner=banner,
        legal_hold=account.legal_hold,
        next_due_at=next_due_at,
        deleted_at=account.deleted_at,
    )


def _case_status(case: Case, flow: Flow, policy: Policy, now: datetime) -> CaseStatus:
    phase = position_phase(case, flow)
    in_phase = case.phase_index < len(flow.phases)
    end = deadline(case, flow, policy, now)
    planned = None
    adjustments = case.adjustments
    if end is not None:
        # before pushes, extensions and holds; at the outcome, the end of the last timed phase
        index = min(case.phase_index, flow.timed_phase_count - 1)
        planned = planned_end(case, flow, index, policy) - case.shift
        if index == case.phase_index and case.destruct != "renotice":
            # a late notice pushes the deadline now, not only once the phase ends: say why
            push = notice_push(case, flow, flow.phases[index], policy, now)
            if push is not None:
                adjustments += (push,)
    waiting = []
    for record in case.notices:
        if record.dispatched_at is None:
            if record.recipients:
                waiting.append(f"notice {record.key} is not dispatched yet")
            else:
                who = {"admins": "admin member and no ", "members": "member and no "}
                waiting.append(
                    f"notice {record.key} has no recipient: the account has no "
                    f"{who.get(record.to, '')}address"
                )
    word = _outcome_word(case, flow)
    if case.destruct == "held":
        hold = f" (since {case.destruct_since:%Y-%m-%d})" if case.destruct_since else ""
        waiting.append(f"legal hold: the {word} waits{hold}")
    elif case.destruct == "renotice":
        waiting.append(f"hold lifted: warnings sent again before the {word}")
    elif case.destruct == "requested" and not in_phase:
        waiting.append(f"{word} requested, waiting to be carried out")
    outcome: str | None = None
    if flow.outcome is not None:
        outcome = flow.outcome.kind + (
            ": " + ", ".join(flow.outcome.categories) if flow.outcome.categories else ""
        )
    banner = None
    if phase is not None and phase.banner is not None:
        banner = render(phase.banner, case=case, flow=flow, phase=phase, policy=policy, now=now)
    return CaseStatus(
        id=case.id,
        flow=flow.name,
        title=flow.title,
        phase=phase.name if in_phase and phase is not None else None,
        phase_number=min(case.phase_index + 1, len(flow.phases)),
        phase_count=len(flow.phases),
        state=flow.state_in(phase),
        reason=case.reason,
        opened_by=case.opened_by,
        started_at=case.started_at,
        phase_started_at=case.phase_started_at,
        deadline=end,
        planned_deadline=planned,
        time_left=time_left(now, end),
        adjustments=adjustments,
        denied=tuple(
            a
            for a in policy.action_order
            if phase is not None and a in phase.denies(policy.actions)
        ),
        banner=banner,
        waiting=tuple(waiting),
        notices=case.notices,
        outcome=outcome,
        destruct=case.destruct,
        irreversible=flow.irreversible,
        policy_version=case.policy_version,
    )


def _outcome_word(case: Case, flow: Flow) -> str:
    """What the case's delete/purge step is: the deletion at a delete outcome, else a purge."""
    at_outcome = case.phase_index == flow.timed_phase_count
    if at_outcome and flow.outcome is not None and flow.outcome.kind == "delete":
        return "deletion"
    return "purge"
