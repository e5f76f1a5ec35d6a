"""What a notice template may use: one flat mapping built from the effect, the account and now.

The deadline a notice states is the one the holder will really have, by the core's rule for
phase ends: never before each notice of the phase went out, never less than N after a "N before
end" notice. Notices still outstanding are assumed to go out now, or when due if that is later.
So after downtime the start notice and the final warning, leaving together, both state the
pushed date; an administrator's extension made after the notice was created is included; and the
holder never has less time than the notice says.

Keys (every key is always present, so StrictUndefined only fires on a typo):

- product, recipient, sent_at (aware, policy time zone), timezone
- account_id, account_address, account_kind
- case_id, flow, flow_title, phase, phase_lasts ("6 months" or None), reason
- deadline (aware, policy time zone, or None), deadline_date ("14 March 2026"),
  deadline_datetime ("14 March 2026 at 09:30 UTC"), deadline_iso, time_left ("23 days")
- outcome ("delete", "purge" or None), outcome_categories (["campaign timelines", ...]),
  outcome_from (earliest moment the outcome may run, or None), outcome_from_date,
  address_rule ("release", "retire" or None), data_categories (every category the policy names)
- notice_key, template, due_at, late (went out more than `late_after` after its due time),
  renotice (a repeat of a warning after a legal hold was lifted)
- policy_name, policy_version
"""

from __future__ import annotations

from datetime import datetime, timedelta

from lapse.core.decisions import time_left
from lapse.core.lifecycle import planned_end
from lapse.core.model import Account, Case, NoticeEffect
from lapse.policy.durations import add, subtract
from lapse.policy.model import Flow, NoticeRule, Phase, Policy

#: English month names, independent of the process locale (strftime's %B is not)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_ACRONYMS = {"api": "API", "imap": "IMAP", "smtp": "SMTP", "url": "URL", "urls": "URLs"}

#: a scheduler tick or a short retry is not "late"; an outage is
DEFAULT_LATE_AFTER = timedelta(hours=1)


def format_date(moment: datetime) -> str:
    """'14 March 2026' (in the moment's own time zone)."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def format_datetime(moment: datetime) -> str:
    """'14 March 2026 at 09:30 UTC' (in the moment's own time zone)."""
    zone = moment.tzname() or ""
    return f"{format_date(moment)} at {moment:%H:%M}{' ' + zone if zone else ''}"


def humanize(name: str) -> str:
    """'campaign_timelines' -> 'campaign timelines', 'api_keys' -> 'API keys'."""
    words = name.replace("_", " ").replace("-", " ").split()
    return " ".join(_ACRONYMS.get(word, word) for word in words)


def notice_context(
    effect: NoticeEffect,
    *,
    account: Account,
    policy: Policy,
    now: datetime,
    recipient: str,
    product: str = "lapse",
    late_after: timedelta = DEFAULT_LATE_AFTER,
) -> dict[str, object]:
    """Everything a notice template may use, for one recipient, as of `now` (the send time)."""
    if now.tzinfo is None:
        raise ValueError("notice_context() needs an aware `now`")
    tz = policy.timezone
    flow = policy.flows.get(effect.flow)
    phase = _phase(flow, effect.phase)
    rule = _rule(phase, effect.key)
    end = _deadline(effect, account, policy, flow, rule, now)
    local_end = end.astimezone(tz) if end is not None else None
    outcome_from = _outcome_from(effect, account, policy, flow, end)
    local_outcome = outcome_from.astimezone(tz) if outcome_from is not None else None
    outcome = flow.outcome if flow is not None else None
    return {
        "product": product,
        "recipient": recipient,
        "sent_at": now.astimezone(tz),
        "timezone": policy.timezone_name,
        "account_id": effect.account_id,
        "account_address": account.address,
        "account_kind": account.kind,
        "case_id": effect.case_id,
        "flow": effect.flow,
        "flow_title": flow.title if flow is not None else humanize(effect.flow),
        "phase": effect.phase,
        "phase_lasts": str(phase.lasts) if phase is not None and phase.lasts else None,
        "reason": effect.reason,
        "deadline": local_end,
        "deadline_date": format_date(local_end) if local_end is not None else None,
        "deadline_datetime": format_datetime(local_end) if local_end is not None else None,
        "deadline_iso": local_end.isoformat() if local_end is not None else None,
        "time_left": time_left(now, end),
        "outcome": outcome.kind if outcome is not None else None,
        "outcome_categories": [humanize(c) for c in outcome.categories] if outcome else [],
        "outcome_from": local_outcome,
        "outcome_from_date": format_date(local_outcome) if local_outcome is not None else None,
        "address_rule": (
            flow.address.mode
            if flow is not None and outcome is not None and outcome.kind == "delete"
            else None
        ),
        "data_categories": [humanize(c) for c in sorted(policy.categories)],
        "notice_key": effect.key,
        "template": effect.template,
        "due_at": effect.due_at.astimezone(tz),
        "late": now - effect.due_at > late_after,
        "renotice": "#r" in effect.key,
        "policy_name": policy.name,
        "policy_version": policy.version,
    }


def _phase(flow: Flow | None, name: str) -> Phase | None:
    if flow is None:
        return None
    return next((p for p in flow.phases if p.name == name), None)


def _rule(phase: Phase | None, key: str) -> NoticeRule | None:
    if phase is None:
        return None
    base = key.split("#", 1)[0]  # re-notices after a hold carry a "#rN" suffix
    return next((r for r in phase.notices if r.key == base), None)


def _deadline(
    effect: NoticeEffect,
    account: Account,
    policy: Policy,
    flow: Flow | None,
    rule: NoticeRule | None,
    now: datetime,
) -> datetime | None:
    end = effect.deadline
    if end is None:
        return None
    if rule is not None and rule.at == "before_end":
        # dispatched now, the phase cannot end before now + lead: promise that date, not less
        end = max(end, add(now, rule.offset, policy.timezone))
    case = account.case(effect.case_id)
    if case is not None and flow is not None and _in_phase(case.phase_index, flow, effect.phase):
        # the case's own view: administrator extensions, and the other notices of the phase
        end = max(end, _earliest_end(case, flow, flow.phases[case.phase_index], policy, now))
    return end


def _earliest_end(case: Case, flow: Flow, phase: Phase, policy: Policy, now: datetime) -> datetime:
    """The phase end if every outstanding notice of the phase went out now or when due.

    The same rule as the core's phase end: never before a notice was dispatched, never less than
    N after a "N before end" one. After downtime the start notice and the final warning leave
    together, and both must state the date the final warning's lead produces.
    """
    tz = policy.timezone
    planned = planned_end(case, flow, phase.index, policy)
    end = planned
    for rule in phase.notices:
        record = case.notice(rule.key)
        if record is not None and record.dispatched_at is not None:
            sent = record.dispatched_at
        else:
            if record is not None:
                due = record.due_at
            elif rule.at == "start":
                due = case.phase_started_at
            elif rule.at == "after_start":
                due = add(case.phase_started_at, rule.offset, tz)
            else:
                due = subtract(planned, rule.offset, tz)
            sent = max(now, due)
        end = max(end, add(sent, rule.offset, tz) if rule.at == "before_end" else sent)
    return end


def _in_phase(index: int, flow: Flow, name: str) -> bool:
    return index < flow.timed_phase_count and flow.phases[index].name == name


def _outcome_from(
    effect: NoticeEffect,
    account: Account,
    policy: Policy,
    flow: Flow | None,
    end: datetime | None,
) -> datetime | None:
    """The earliest moment the flow's outcome may run: the end of its last timed phase."""
    if flow is None or flow.outcome is None or end is None:
        return None
    last = flow.timed_phase_count - 1
    case = account.case(effect.case_id)
    if case is None or not _in_phase(case.phase_index, flow, effect.phase):
        # the case moved on or closed; only the notice's own phase end is known for sure
        return end if _is_last_timed(flow, effect.phase) else None
    index = case.phase_index
    # later phases keep their lengths: a push of this phase's end moves them by as much
    push = max(end - planned_end(case, flow, index, policy), timedelta(0))
    return planned_end(case, flow, last, policy) + push


def _is_last_timed(flow: Flow, name: str) -> bool:
    last = flow.timed_phase_count - 1
    return last >= 0 and flow.phases[last].name == name
