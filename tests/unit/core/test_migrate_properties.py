"""Hypothesis properties of policy migrations, over generated phase durations, notices and times:

- keep: every migrated case's current deadline is exactly the one it had;
- replan: the deadline is the fresh plan under the new version (late-notice pushes kept), and the
  phase never ends before its notices went out nor less than their lead after.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapse.core.decisions import deadline
from lapse.core.lifecycle import apply_event, planned_end
from lapse.core.migrate import migrate_account
from lapse.core.model import Account, AuditEntry
from lapse.core.timeline import settle
from lapse.policy import load_policy
from lapse.policy.durations import add
from lapse.policy.model import Policy

from .conftest import T0, account

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


@st.composite
def flows(draw: st.DrawFn) -> tuple[list[int], list[int | None]]:
    """Phase durations of two versions (same phases) and the "N days before end" lead of each
    phase (None: none), shorter than the phase in both versions."""
    count = draw(st.integers(1, 3))
    leads: list[int | None] = [draw(st.one_of(st.none(), st.integers(1, 6))) for _ in range(count)]
    durations = [draw(st.integers((lead or 0) + 1, 40)) for lead in leads]
    return durations, leads


def document(version: int, durations: list[int], leads: list[int | None]) -> Policy:
    phases: list[dict[str, Any]] = []
    for index, (days, lead) in enumerate(zip(durations, leads, strict=True)):
        notices: list[dict[str, Any]] = [{"at": "start", "to": "admins", "template": f"s{index}"}]
        if lead is not None:
            notices.append(
                {"at": f"{lead} days before end", "to": "admins", "template": f"e{index}"}
            )
        phases.append(
            {"name": f"p{index}", "lasts": f"{days} days", "deny": ["send"], "notices": notices}
        )
    doc = {
        "version": version,
        "name": "prop",
        "timezone": "UTC",
        "actions": ["login", "send"],
        "kinds": ["standard"],
        "signals": ["login"],
        "events": ["note"],
        "flows": {"f": {"reason": "r", "starts_on": ["note"], "phases": phases}},
    }
    return load_policy(yaml.safe_dump(doc, sort_keys=False), f"v{version}.yaml")


def on_time(acct: Account, pol: Policy, since: datetime, until: datetime) -> Account:
    """Every due time from `since` to `until` processed when due, notices delivered at once."""
    step = settle(acct, pol, since)
    while step.next_due_at is not None and step.next_due_at <= until:
        step = settle(step.account, pol, step.next_due_at)
    return settle(step.account, pol, until).account


def lived(pol: Policy, now: datetime, outage: int) -> Account:
    """A case opened at T0 and processed on time until `now`, but for an outage of `outage`
    days ending 10 days before `now`: notices due in it went out late and pushed their phase
    ends (kept in the case's shift once a pushed phase ended)."""
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    back = max(now - timedelta(days=10), T0)
    down = max(back - timedelta(days=outage), T0)
    acct = on_time(acct, pol, T0, down)
    acct = settle(acct, pol, back).account
    return on_time(acct, pol, back, now)


@PROPERTY
@given(old=flows(), data=st.data(), late=st.integers(0, 15))
def test_keep_leaves_every_current_deadline_unchanged(
    old: tuple[list[int], list[int | None]],
    data: st.DataObject,
    late: int,
) -> None:
    durations, leads = old
    fresh = [data.draw(st.integers((lead or 0) + 1, 40)) for lead in leads]
    offset = data.draw(st.integers(0, sum(durations) + 2))  # mostly while the case is open
    v1, v2 = document(1, durations, leads), document(2, fresh, leads)
    now = T0 + timedelta(days=offset)
    acct = lived(v1, now, late)
    if not acct.cases:
        return  # the case completed before the new version came
    case = acct.cases[0]
    before = deadline(case, v1.flows["f"], v1, now)
    planned = planned_end(case, v1.flows["f"], case.phase_index, v1)
    moved = migrate_account(acct, v1, v2, now, mode="keep").account.cases[0]
    assert moved.policy_version == "2"
    assert moved.phase_index == case.phase_index
    assert planned_end(moved, v2.flows["f"], moved.phase_index, v2) == planned
    assert deadline(moved, v2.flows["f"], v2, now) == before


@PROPERTY
@given(old=flows(), data=st.data(), late=st.integers(0, 15))
def test_replan_follows_the_new_plan_and_keeps_the_notice_lead(
    old: tuple[list[int], list[int | None]],
    data: st.DataObject,
    late: int,
) -> None:
    durations, leads = old
    fresh = [data.draw(st.integers((lead or 0) + 1, 40)) for lead in leads]
    offset = data.draw(st.integers(0, sum(durations) + 2))  # mostly while the case is open
    v1, v2 = document(1, durations, leads), document(2, fresh, leads)
    now = T0 + timedelta(days=offset)
    acct = lived(v1, now, late)
    if not acct.cases:
        return
    case = acct.cases[0]
    migration = migrate_account(acct, v1, v2, now, mode="replan")
    moved = migration.account.cases[0]
    flow = v2.flows["f"]
    index = moved.phase_index
    # the fresh plan from the case start; late-notice pushes are the only shift
    assert moved.shift == case.shift
    assert planned_end(moved, flow, index, v2) == (
        case.started_at + timedelta(days=sum(fresh[: index + 1])) + case.shift
    )
    # from here on, under v2 with every notice delivered at once, the phase ends no earlier
    # than its plan, and never less than each "before end" notice's lead after it went out
    audit: list[AuditEntry] = []
    current, moment = migration.account, now
    while True:
        step = settle(current, v2, moment)
        audit.extend(step.audit)
        current = step.account
        if step.next_due_at is None:
            break
        moment = step.next_due_at
    assert current.cases == ()  # the case went through all its phases
    end = next(
        e.at
        for e in audit
        if e.kind == "case.closed" or (e.kind == "phase.entered" and e.detail["index"] != index)
    )
    assert end >= planned_end(moved, flow, index, v2)
    sent = {r.key: r.dispatched_at for r in moved.notices if r.dispatched_at is not None}
    for e in audit:
        if e.kind == "notice.dispatched":
            sent.setdefault(str(e.detail["key"]), e.at)
    for rule in flow.phases[index].notices:
        if rule.at == "before_end":
            assert end >= add(sent[rule.key], rule.offset, v2.timezone)
