"""The future of an account if nothing changes, projected by running the core itself forward.

The projection assumes every notice is dispatched the moment it is created and every requested
delete or purge is carried out at once; the real runtime may be later, and the notice guarantee
then pushes deadlines (the status shows it). Using the same `advance` as the scheduler means the
timeline cannot disagree with what lapse will actually do.
"""

from __future__ import annotations

from datetime import datetime

from lapse.core.conditions import explain
from lapse.core.lifecycle import advance, flow_context, notice_dispatched, outcome_done
from lapse.core.model import (
    Account,
    AuditEntry,
    Effect,
    FlowOutlook,
    HostEffect,
    Step,
    Timeline,
    TimelineEvent,
)
from lapse.policy.durations import Duration, add
from lapse.policy.model import Policy

HORIZON = Duration(years=25)
MAX_EVENTS = 200
_SETTLE_ROUNDS = 64


def settle(account: Account, policy: Policy, now: datetime) -> Step:
    """Advance to `now` assuming instant delivery: notices dispatched, outcomes carried out."""
    effects: list[Effect] = []
    audit: list[AuditEntry] = []
    step = advance(account, policy, now)
    for _ in range(_SETTLE_ROUNDS):
        effects.extend(step.effects)
        audit.extend(step.audit)
        current = step.account
        pending = [
            (case.id, record.key)
            for case in current.cases
            for record in case.notices
            if record.dispatched_at is None and record.recipients
        ]
        if pending:
            case_id, key = pending[0]
            step = notice_dispatched(current, policy, now, case_id=case_id, key=key, at=now)
            continue
        requested = [case.id for case in current.cases if case.destruct == "requested"]
        if requested:
            step = outcome_done(current, policy, now, case_id=requested[0])
            continue
        return Step(
            account=current,
            effects=tuple(effects),
            audit=tuple(audit),
            next_due_at=step.next_due_at,
        )
    raise AssertionError("settle() did not converge")  # every round consumes a pending item


def timeline(account: Account, policy: Policy, now: datetime) -> Timeline:
    """Projected events from `now` on, and for each flow why it will (or won't) start."""
    horizon = add(now, HORIZON, policy.timezone)
    events: list[TimelineEvent] = []
    current = account
    moment = now
    truncated = False
    while current.deleted_at is None:
        step = settle(current, policy, moment)
        events.extend(_events(step, policy))
        current = step.account
        if len(events) >= MAX_EVENTS:
            truncated = True
            break
        if step.next_due_at is None:
            break
        if step.next_due_at > horizon:
            truncated = True
            break
        if step.next_due_at <= moment:
            raise AssertionError("the core asked to run again at a time it already processed")
        moment = step.next_due_at
    return Timeline(
        account_id=account.id,
        as_of=now,
        events=tuple(events[:MAX_EVENTS]),
        flows=outlook(account, policy, now),
        truncated=truncated,
    )


def outlook(account: Account, policy: Policy, now: datetime) -> tuple[FlowOutlook, ...]:
    """For each flow of the policy: does it apply, is it open, and why its start holds or not."""
    out = []
    for flow in policy.flows.values():
        case = account.case_for(flow.name)
        start = None
        if flow.starts_when is not None:
            start = explain(flow.starts_when, flow_context(account, policy, flow), now)
        out.append(
            FlowOutlook(
                flow=flow.name,
                title=flow.title,
                applies=flow.applies(account.kind),
                open_case=case.id if case is not None else None,
                starts_on=tuple(sorted(flow.starts_on)),
                start=start,
                armed_from=account.armed_from.get(flow.name),
            )
        )
    return tuple(out)


_PROJECTED = {
    "case.opened": "case.opens",
    "phase.entered": "phase.enters",
    "notice.created": "notice",
    "delete.requested": "delete",
    "purge.requested": "purge",
    "case.closed": "case.closes",
    "outcome.held": "held",
    "outcome.renotice": "renotice",
}


def _events(step: Step, policy: Policy) -> list[TimelineEvent]:
    out = []
    for entry in step.audit:
        kind = _PROJECTED.get(entry.kind)
        if kind is None or entry.flow is None:
            continue
        phase = entry.detail.get("phase")
        out.append(
            TimelineEvent(
                at=entry.at,
                kind=kind,
                flow=entry.flow,
                case_id=entry.case_id,
                phase=str(phase) if phase is not None else None,
                text=describe(entry, policy),
            )
        )
    for effect in step.effects:
        if isinstance(effect, HostEffect):
            out.append(
                TimelineEvent(
                    at=effect.at,
                    kind="host-effect",
                    flow=effect.flow,
                    case_id=effect.case_id,
                    phase=effect.phase,
                    text=f"effect {effect.name} ({effect.trigger} {effect.phase})",
                )
            )
    out.sort(key=lambda e: e.at)
    return out


def _words(value: object) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def describe(entry: AuditEntry, policy: Policy) -> str:
    """One line of plain English for an audit entry (past or projected)."""
    d = entry.detail
    flow = policy.flows.get(entry.flow or "")
    title = flow.title if flow is not None else (entry.flow or "")
    kind = entry.kind
    if kind == "case.opened":
        return f"{title} starts: {d.get('reason')}"
    if kind == "phase.entered":
        return f"{title}: phase {d.get('phase')} begins"
    if kind == "notice.created":
        return f"{title}: notice {d.get('template')} to {d.get('to')}"
    if kind == "notice.dispatched":
        return f"{title}: notice {d.get('key')} dispatched"
    if kind == "delete.requested":
        return f"{title}: account deletion (address: {d.get('address')})"
    if kind == "delete.ordered":
        return f"{title}: deletion ordered now by {d.get('by')}: {d.get('reason')}"
    if kind == "purge.requested":
        return f"{title}: purge of {_words(d.get('categories'))}"
    if kind == "purge.done":
        return f"{title}: purge carried out"
    if kind == "case.closed":
        by = f" by {d['by']}" if "by" in d else ""
        return f"{title} ends{by}: {d.get('reason')}"
    if kind == "case.extended":
        return f"{title}: deadline moved to {d.get('deadline')} by {d.get('by')}: {d.get('reason')}"
    if kind == "outcome.held":
        return f"{title}: held by the legal hold"
    if kind == "outcome.renotice":
        return f"{title}: hold lifted, warnings sent again"
    if kind == "hold.placed":
        return f"legal hold placed by {d.get('by')}: {d.get('reason')}"
    if kind == "hold.lifted":
        return f"legal hold lifted by {d.get('by')}: {d.get('reason')}"
    if kind == "event.received":
        return f"event {d.get('name')} received"
    if kind == "event.ignored":
        return f"event {d.get('name')} ignored: {d.get('why')}"
    if kind == "account.deleted":
        return "account deleted"
    if kind == "case.migrated":
        kept = "deadline kept" if d.get("mode") == "keep" else "re-planned"
        after = d.get("deadline_after") or "none"
        return (
            f"{title}: moved from policy version {d.get('from')} to {d.get('to')} "
            f"({kept}; deadline {after})"
        )
    if kind == "policy.applied":
        how = f", {d['mode']}" if d.get("mode") else ""
        return f"policy {d.get('name')} v{d.get('version')} applied by {d.get('by')}{how}"
    return kind
