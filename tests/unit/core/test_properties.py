"""Hypothesis properties of the core's guarantees, over generated policies, accounts and timings.

- a delete or purge never comes before the notices' lead time;
- the notice guarantee holds under random dispatch delays and legal holds;
- catch-up after a long gap makes the same decisions as on-time processing, at the same times
  (case starts, and phase ends no late notice pushed), with one flow or two;
- advancing again at the same moment changes nothing;
- closing a case (reactivation, stop event, stop rule, default stop) restores exactly the
  decisions from before it opened;
- month arithmetic is anchored to the case start and never drifts;
- with mixed units, each phase lasts its own length but for a month end the anchor clamped.
"""

from __future__ import annotations

import functools
import random
from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapse.core.decisions import check, restrictions
from lapse.core.inputs import record_signal, set_fact
from lapse.core.lifecycle import (
    advance,
    apply_event,
    notice_dispatched,
    outcome_done,
    planned_end,
    reactivate,
    set_legal_hold,
)
from lapse.core.model import (
    Account,
    AuditEntry,
    DeleteEffect,
    Effect,
    HostEffect,
    NoticeEffect,
    PurgeEffect,
    Step,
)
from lapse.core.timeline import settle
from lapse.policy import load_policy
from lapse.policy.durations import Duration, add
from lapse.policy.model import Flow, Policy

from .conftest import T0, account

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
ACTIONS = ["login", "view", "export", "send", "edit"]
CATEGORIES = ["reports", "contacts", "campaigns"]
TIMEZONES = ["UTC", "Europe/Brussels", "America/New_York"]


# --- generated policies -------------------------------------------------------------------------


@st.composite
def time_atoms(draw: st.DrawFn) -> dict[str, Any]:
    days = draw(st.integers(1, 60))
    kind = draw(st.sampled_from(["no_activity", "age", "since"]))
    if kind == "no_activity":
        return {
            "no_activity": draw(st.sampled_from([["sent"], ["sent", "api"]])),
            "for": f"{days} days",
        }
    if kind == "age":
        return {"age": f"{days} days"}
    return {"since": "expires", "for": f"{days} days"}


@st.composite
def start_conditions(draw: st.DrawFn) -> dict[str, Any]:
    """Monotone conditions with at least one time atom of positive duration."""
    atom = draw(time_atoms())
    shape = draw(st.sampled_from(["atom", "all", "any"]))
    if shape == "atom":
        return atom
    if shape == "all":
        return {"all": [atom, {"fact": "active", "is": False}]}
    return {"any": [atom, draw(time_atoms())]}


@st.composite
def phases(draw: st.DrawFn, *, open_ended_last: bool) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 3))
    out: list[dict[str, Any]] = []
    for index in range(count):
        last = index == count - 1
        timed = not (last and open_ended_last)
        phase: dict[str, Any] = {"name": f"p{index}", "on_exit": [f"exit{index}"]}
        shortest = 0
        if timed:
            if draw(st.booleans()):
                months = draw(st.integers(1, 2))
                phase["lasts"] = f"{months} month{'s' if months > 1 else ''}"
                shortest = 28 * months
            else:
                shortest = draw(st.integers(1, 40))
                phase["lasts"] = f"{shortest} days"
        restriction = draw(st.sampled_from(["none", "deny", "allow_only"]))
        if restriction != "none":
            phase[restriction] = draw(st.lists(st.sampled_from(ACTIONS), unique=True))
        notices = []
        for template in ("a", "b", "c"):
            at = draw(st.sampled_from(["none", "start", "before", "after"]))
            if at == "none" or (at != "start" and shortest < 2) or (at == "before" and not timed):
                continue
            if at == "start":
                when = "start"
            else:
                lead = draw(st.integers(1, max(1, shortest - 1) if timed else 30))
                when = f"{lead} days {'before end' if at == 'before' else 'after start'}"
            to = draw(st.sampled_from(["admins", "members", "owner"]))
            notices.append({"at": when, "to": to, "template": template})
        if notices:
            phase["notices"] = notices
        if index > 0 and draw(st.booleans()):
            phase["purge"] = draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True))
        out.append(phase)
    return out


@st.composite
def flows(
    draw: st.DrawFn, name: str, *, stops: bool = True, deletes: bool = True
) -> dict[str, Any]:
    flow: dict[str, Any] = {
        "reason": f"{name} reason",
        "on_close": [f"{name}-closed"],  # distinct: shared on_close effects wait for the last case
        "waive": ["deletion-without-notice"],
    }
    if draw(st.booleans()):
        flow["starts_when"] = draw(start_conditions())
    else:
        flow["starts_on"] = [f"{name}-go"]
    stop = draw(st.sampled_from(["none", "event", "fact", "irreversible"] if stops else ["none"]))
    if stop == "event":
        flow["stops_on"] = [f"{name}-halt"]
    elif stop == "fact":
        flow["stops_when"] = {"fact": "active", "is": True}
    elif stop == "irreversible":
        flow["irreversible"] = True
    flow["phases"] = draw(phases(open_ended_last=draw(st.booleans())))
    outcome = draw(st.sampled_from(["none", "delete", "purge"] if deletes else ["none", "purge"]))
    if outcome == "delete":
        flow["outcome"] = "delete"
    elif outcome == "purge":
        flow["outcome"] = {
            "purge": draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True))
        }
    return flow


@functools.lru_cache(maxsize=512)
def load(text: str) -> Policy:
    return load_policy(text, "generated.yaml")


def document(flow_docs: dict[str, dict[str, Any]], timezone: str) -> Policy:
    doc = {
        "version": 1,
        "name": "generated",
        "timezone": timezone,
        "actions": ACTIONS,
        "kinds": ["standard"],
        "signals": ["sent", "api"],
        "facts": {"active": {"type": "bool", "default": False}, "expires": {"type": "timestamp"}},
        "categories": CATEGORIES,
        "flows": flow_docs,
    }
    return load(yaml.safe_dump(doc, sort_keys=False))


@st.composite
def policies(
    draw: st.DrawFn, *, flow_count: int | None = None, stops: bool = True, deletes: bool = True
) -> Policy:
    count = flow_count if flow_count is not None else draw(st.integers(1, 2))
    names = ["alpha", "beta"][:count]
    return document(
        {n: draw(flows(n, stops=stops, deletes=deletes)) for n in names},
        draw(st.sampled_from(TIMEZONES)),
    )


@st.composite
def accounts(draw: st.DrawFn, pol: Policy) -> Account:
    created = T0 + timedelta(hours=draw(st.integers(0, 24 * 60)))
    acct = account(pol, created=created)
    if draw(st.booleans()):
        acct = record_signal(acct, pol, "sent", created + timedelta(days=draw(st.integers(0, 40))))
    if draw(st.booleans()):
        expires = created + timedelta(days=draw(st.integers(-10, 40)))
        acct = set_fact(acct, pol, "expires", expires, at=created)
    return acct


# --- a simulated runtime ------------------------------------------------------------------------


@dataclass
class Trace:
    """Everything a simulated run produced, step by step."""

    policy: Policy
    steps: list[Step] = field(default_factory=list)
    moments: list[datetime] = field(default_factory=list)  # the `now` of each step
    created: dict[tuple[str, str], int] = field(default_factory=dict)  # -> index of its step
    dispatched: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def add(self, step: Step, now: datetime) -> Step:
        self.steps.append(step)
        self.moments.append(now)
        for entry in step.audit:
            key = (entry.case_id or "", str(entry.detail.get("key")))
            if entry.kind == "notice.created":
                assert key not in self.created, f"notice {key} created twice"
                self.created[key] = len(self.steps) - 1
            elif entry.kind == "notice.dispatched":
                self.dispatched[key] = entry.at
        return step

    @property
    def effects(self) -> Iterator[tuple[int, Effect]]:
        for index, step in enumerate(self.steps):
            for effect in step.effects:
                yield index, effect

    @property
    def audit(self) -> Iterator[AuditEntry]:
        for step in self.steps:
            yield from step.audit


def simulate(
    pol: Policy, acct: Account, rng: random.Random, *, holds: bool | list[datetime]
) -> Trace:
    """Run the account like the runtime would, with random dispatch and outcome delays.

    Start events, activity and a subscription fact are reported at random times; each notice is
    dispatched after a random delay; each delete or purge is carried out after a random delay;
    legal holds come and go.
    """
    trace = Trace(pol)
    start = acct.created_at
    actions: list[tuple[datetime, int, str, tuple[str, ...]]] = []
    seq = 0

    def later(at: datetime, what: str, *args: str) -> None:
        nonlocal seq
        seq += 1
        actions.append((at, seq, what, args))

    for flow in pol.flows.values():
        for name in sorted(flow.starts_on):
            later(start + timedelta(hours=rng.randint(0, 24 * 90)), "event", name)
    for _ in range(rng.randint(0, 3)):  # activity, and a subscription that comes and goes
        later(start + timedelta(hours=rng.randint(0, 24 * 200)), "signal", "sent")
    for _ in range(rng.randint(0, 2)):
        later(start + timedelta(hours=rng.randint(0, 24 * 200)), "active")
    for case in acct.cases:  # notices created before the simulation began
        for record in case.notices:
            trace.created[(case.id, record.key)] = -1
            later(record.created_at, "dispatch", case.id, record.key)
    if holds is True:  # placed and lifted in turns, from a random moment on
        moment = start + timedelta(days=rng.randint(0, 120))
        for _ in range(rng.randint(1, 8)):
            later(moment, "hold")
            moment += timedelta(hours=rng.choice([1, 24, 24 * 2, 24 * 5, 24 * 10, 24 * 30]))
    elif holds:
        for moment in holds:
            later(moment, "hold")
    now = start
    due: datetime | None = start
    horizon = start + timedelta(days=400)
    for _ in range(300):
        pending = [a[0] for a in actions]
        candidates = [t for t in [due, *pending] if t is not None]
        if not candidates or acct.deleted_at is not None:
            break
        now = max(now, min(candidates))
        if now > horizon:
            break
        first = len(trace.steps)
        step = trace.add(advance(acct, pol, now), now)
        acct, due = step.account, step.next_due_at
        ready = sorted(a for a in actions if a[0] <= now)
        actions = [a for a in actions if a[0] > now]
        for _, _, what, args in ready:
            if acct.deleted_at is not None:
                break
            if what == "event":
                step = trace.add(apply_event(acct, pol, args[0], now, now), now)
            elif what == "signal":
                acct = record_signal(acct, pol, args[0], now)
                step = trace.add(advance(acct, pol, now), now)
            elif what == "active":
                current = acct.facts.get("active")
                active = current is not None and current.value is True
                acct = set_fact(acct, pol, "active", not active, at=now)
                step = trace.add(advance(acct, pol, now), now)
            elif what == "hold":
                step = trace.add(
                    set_legal_hold(
                        acct, pol, now, on=acct.legal_hold is None, by="legal", reason="r"
                    ),
                    now,
                )
            elif what == "dispatch":
                holder = acct.case(args[0])
                sent = holder.notice(args[1]) if holder is not None else None
                if sent is None or sent.dispatched_at is not None:
                    continue
                step = trace.add(
                    notice_dispatched(acct, pol, now, case_id=args[0], key=args[1], at=now), now
                )
            else:  # "done"
                requested = acct.case(args[0])
                if requested is None or requested.destruct != "requested":
                    continue
                step = trace.add(outcome_done(acct, pol, now, case_id=args[0]), now)
            acct, due = step.account, step.next_due_at
        for step in trace.steps[first:]:
            for effect in step.effects:
                if isinstance(effect, NoticeEffect) and effect.recipients:
                    delay = timedelta(hours=rng.choice([0, 0, 1, 20, 24 * 4, 24 * 15]))
                    later(now + delay, "dispatch", effect.case_id, effect.key)
                elif isinstance(effect, DeleteEffect | PurgeEffect):
                    later(now + timedelta(hours=rng.choice([0, 2, 30])), "done", effect.case_id)
    return trace


def flow_of(trace: Trace, case_id: str) -> Flow:
    return trace.policy.flows[case_id.split("#")[0]]


def phase_ends(trace: Trace) -> Iterator[tuple[str, int, datetime]]:
    """(case, phase index, when) for every phase a case left by moving on (not by closing)."""
    for step in trace.steps:
        effects = step.effects
        for i, effect in enumerate(effects):
            if not isinstance(effect, HostEffect) or effect.trigger != "exit":
                continue
            after = effects[i + 1] if i + 1 < len(effects) else None
            closing = (
                isinstance(after, HostEffect)
                and after.trigger == "close"
                and after.case_id == effect.case_id
            )
            if not closing:
                yield effect.case_id, int(effect.name.removeprefix("exit")), effect.at


def destruct_position(flow: Flow, effect: DeleteEffect | PurgeEffect) -> int:
    """The position (phase index, or len(phases) past the last one) a delete/purge belongs to."""
    if isinstance(effect, DeleteEffect) or effect.phase is None:
        return flow.timed_phase_count
    return next(p.index for p in flow.phases if p.name == effect.phase)


# --- the properties -----------------------------------------------------------------------------


def assert_no_destruction_before_the_lead(trace: Trace) -> None:
    """For every delete and purge: every notice of every phase it went through was created, and
    every "N before end" notice of the phase before it (and of its latest re-notice round) was
    dispatched at least N earlier."""
    tz = trace.policy.timezone
    for index, effect in trace.effects:
        if not isinstance(effect, DeleteEffect | PurgeEffect):
            continue
        flow = flow_of(trace, effect.case_id)
        position = destruct_position(flow, effect)
        for phase in flow.phases[:position]:
            for rule in phase.notices:
                assert (effect.case_id, rule.key) in trace.created, (rule.key, effect)
        if position == 0:
            continue
        for rule in flow.phases[position - 1].notices:
            if rule.at != "before_end":
                continue
            rounds = [  # the rule's notice and its re-notices, as created by then
                k
                for (c, k), step in trace.created.items()
                if c == effect.case_id and k.startswith(rule.key) and step <= index
            ]
            latest = max(rounds, key=lambda k: int(k.partition("#r")[2] or 0))
            for key in {rule.key, latest}:
                sent = trace.dispatched.get((effect.case_id, key))
                assert sent is not None, (key, effect)
                assert add(sent, rule.offset, tz) <= effect.at, (key, sent, effect)


@PROPERTY
@given(data=st.data(), rng=st.randoms(use_true_random=False), holds=st.booleans())
def test_never_deletes_or_purges_before_the_notices_lead(
    data: st.DataObject, rng: random.Random, holds: bool
) -> None:
    pol = data.draw(policies())
    trace = simulate(pol, data.draw(accounts(pol)), rng, holds=holds)
    assert_no_destruction_before_the_lead(trace)


@PROPERTY
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_legal_holds_around_the_outcome_never_shorten_the_lead(
    data: st.DataObject, rng: random.Random
) -> None:
    lead = data.draw(st.integers(1, 20))
    lasts = lead + data.draw(st.integers(1, 20))
    grace = {
        "name": "grace",
        "lasts": f"{lasts} days",
        "on_exit": ["exit0"],
        "notices": [
            {"at": "start", "to": "admins", "template": "started"},
            {"at": f"{lead} days before end", "to": "admins", "template": "final"},
        ],
    }
    flow = {
        "reason": "r",
        "starts_on": ["go"],
        "on_close": ["cleanup-closed"],
        "phases": [grace],
        "outcome": data.draw(st.sampled_from(["delete", {"purge": ["reports"]}])),
    }
    pol = document({"cleanup": flow}, data.draw(st.sampled_from(TIMEZONES)))
    # holds placed (shortly before the end) and lifted in turns, at intervals close to the lead
    moment = T0 + timedelta(days=lasts, hours=-data.draw(st.integers(0, 24 * lead)))
    toggles = []
    for _ in range(data.draw(st.integers(1, 6))):
        toggles.append(moment)
        moment += timedelta(
            hours=max(1, int(24 * lead * data.draw(st.sampled_from([0.1, 0.5, 0.9, 1.5]))))
        )
    opened = apply_event(account(pol), pol, "go", T0, T0).account
    trace = simulate(pol, opened, rng, holds=toggles)
    assert_no_destruction_before_the_lead(trace)


@PROPERTY
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_the_notice_guarantee_under_random_dispatch_delays(
    data: st.DataObject, rng: random.Random
) -> None:
    pol = data.draw(policies())
    trace = simulate(pol, data.draw(accounts(pol)), rng, holds=data.draw(st.booleans()))
    tz = pol.timezone
    for case_id, index, ended in phase_ends(trace):
        phase = flow_of(trace, case_id).phases[index]
        for rule in phase.notices:
            sent = trace.dispatched.get((case_id, rule.key))
            # a phase never ends before each of its notices was dispatched...
            assert sent is not None, (rule.key, ended)
            assert sent <= ended, (rule.key, ended)
            # ...and never less than N after a dispatched "N before end"
            if rule.at == "before_end":
                assert add(sent, rule.offset, tz) <= ended, (rule.key, sent, ended)
    # and each "N before end" notice told a deadline at least N after it was created
    for index, effect in trace.effects:
        if not isinstance(effect, NoticeEffect) or effect.deadline is None:
            continue
        rule = next(
            r
            for p in flow_of(trace, effect.case_id).phases
            for r in p.notices
            if r.key in effect.key
        )
        if rule.at == "before_end":
            assert effect.deadline >= add(trace.moments[index], rule.offset, tz), effect


def run_settled(
    pol: Policy,
    acct: Account,
    first: datetime,
    cases: int,
    events: list[tuple[datetime, str]] = (),  # type: ignore[assignment]
) -> tuple[list[AuditEntry], bool]:
    """settle() at `first`, then at every due time until `cases` cases opened: the audit, and
    whether the account reached its end (deleted, or nothing more to do). Each of `events`
    (at, name) is reported at its time, or at `first` if that is later: late, with its own
    timestamp."""
    audit: list[AuditEntry] = []
    pending = sorted(events)
    moment: datetime | None = first
    while moment is not None and acct.deleted_at is None:
        while pending and pending[0][0] <= moment and acct.deleted_at is None:
            at, name = pending.pop(0)
            step = apply_event(acct, pol, name, at, moment)
            audit.extend(step.audit)
            acct = step.account
        step = settle(acct, pol, moment)
        audit.extend(step.audit)
        acct = step.account
        moment = step.next_due_at
        if pending and acct.deleted_at is None and (moment is None or pending[0][0] < moment):
            moment = pending[0][0]
        if sum(e.kind == "case.opened" for e in audit) >= cases:
            return audit, False
    return audit, True


@dataclass
class History:
    """One case as the audit tells it: when it started, what it went through, when it moved."""

    started_at: datetime
    # each phase entered ("start" before the first): its name, the notices it created (their
    # order depends on when they were created), and the outcomes requested there
    phases: list[tuple[str, set[object], list[str]]]
    closed: bool = False
    # (what, when, exact): every phase entered, and the close; `exact` while no notice of the
    # case was created late (after its due time), which may push what follows
    moves: list[tuple[str, datetime, bool]] = field(default_factory=list)
    exact: bool = True


def per_flow(audit: list[AuditEntry]) -> dict[str, list[History]]:
    """For each flow, its cases in order of opening (case ids are numbered in processing order,
    so they are not compared)."""
    cases: dict[str, History] = {}
    flows: dict[str, list[History]] = {}
    for entry in audit:
        if entry.case_id is None or entry.flow is None:
            continue
        if entry.kind == "case.opened":
            cases[entry.case_id] = History(started_at=entry.at, phases=[("start", set(), [])])
            flows.setdefault(entry.flow, []).append(cases[entry.case_id])
        history = cases[entry.case_id]
        if entry.kind == "phase.entered":
            history.phases.append((str(entry.detail["phase"]), set(), []))
            history.moves.append((str(entry.detail["phase"]), entry.at, history.exact))
        elif entry.kind == "notice.created":
            notices = history.phases[-1][1]
            assert entry.detail["key"] not in notices, "a notice was created twice"
            notices.add(entry.detail["key"])
            history.exact = history.exact and not entry.detail["late"]
        elif entry.kind in ("delete.requested", "purge.requested"):
            history.phases[-1][2].append(entry.kind)
        elif entry.kind == "case.closed":
            history.closed = True
            # a deletion is carried out when processed (settle: at once), not when due
            carried_out = entry.detail["reason"] == "account deleted"
            history.moves.append(("closed", entry.at, history.exact and not carried_out))
    return flows


def assert_same_history(on_time: History, late: History) -> None:
    """The same case, processed on time and late: the same phases, notices and outcomes, and
    the same times (given the same start) except where a notice created late pushed them
    (later, never earlier)."""
    if on_time.closed and late.closed:
        assert on_time.phases == late.phases
    # a case still running when a run stopped is compared as far as both got: in the phase it
    # was in then, the notices and outcomes so far
    common = min(len(on_time.phases), len(late.phases))
    assert on_time.phases[: common - 1] == late.phases[: common - 1]
    (name, notices, outcomes), (late_name, late_notices, late_outcomes) = (
        on_time.phases[common - 1],
        late.phases[common - 1],
    )
    assert name == late_name
    assert notices <= late_notices or late_notices <= notices
    assert outcomes[: len(late_outcomes)] == late_outcomes[: len(outcomes)]
    same_start = on_time.started_at == late.started_at
    for (what, at, _), (late_what, late_at, exact) in zip(on_time.moves, late.moves, strict=False):
        assert what == late_what
        assert late_at == at if exact and same_start else late_at >= at, (what, at, late_at)


@pytest.mark.parametrize("flow_count", [1, 2])
@PROPERTY
@given(data=st.data(), gap=st.integers(1, 400))
def test_catch_up_after_a_gap_decides_as_on_time_processing(
    flow_count: int, data: st.DataObject, gap: int
) -> None:
    # with two flows, no deletion: one flow's deletion, carried out when processed, would cut
    # the other flow's history short on time and not in the late run
    pol = data.draw(policies(flow_count=flow_count, stops=False, deletes=flow_count == 1))
    acct = data.draw(accounts(pol))
    events = [
        (acct.created_at + timedelta(hours=data.draw(st.integers(0, 24 * 120))), name)
        for flow in pol.flows.values()
        for name in sorted(flow.starts_on)
    ]
    late_start = acct.created_at + timedelta(days=gap)
    on_time_audit, on_time_ended = run_settled(pol, acct, acct.created_at, 6, events)
    late_audit, late_ended = run_settled(pol, acct, late_start, 6, events)
    on_time, late = per_flow(on_time_audit), per_flow(late_audit)
    for name in pol.flows:
        a, b = on_time.get(name, []), late.get(name, [])
        previous_closed_together = True
        for x, y in zip(a, b, strict=False):
            # a case starts when its condition began to hold or at its event's own time, not
            # when it was processed: the same moment, unless the flow's previous case closed
            # later (pushed) and the flow re-armed from then
            if previous_closed_together:
                assert x.started_at == y.started_at, (name, x.started_at, y.started_at)
            assert_same_history(x, y)
            closes = [m[1] for m in x.moves[-1:] + y.moves[-1:] if m[0] == "closed"]
            previous_closed_together = len(closes) == 2 and closes[0] == closes[1]
        if on_time_ended and late_ended:
            assert len(a) == len(b), name


@PROPERTY
@given(data=st.data(), offsets=st.lists(st.integers(0, 24 * 200), min_size=1, max_size=6))
def test_advancing_again_at_the_same_moment_changes_nothing(
    data: st.DataObject, offsets: list[int]
) -> None:
    pol = data.draw(policies())
    acct = data.draw(accounts(pol))
    for flow in pol.flows.values():
        for name in sorted(flow.starts_on):
            if data.draw(st.booleans()):
                acct = apply_event(acct, pol, name, acct.created_at, acct.created_at).account
    for hours in sorted(offsets):
        now = acct.created_at + timedelta(hours=hours)
        step = advance(acct, pol, now)
        again = advance(step.account, pol, now)
        assert again.account is step.account
        assert (again.effects, again.audit) == ((), ())
        assert again.next_due_at == step.next_due_at
        settled = settle(step.account, pol, now)
        repeat = advance(settled.account, pol, now)
        assert repeat.account is settled.account
        assert (repeat.effects, repeat.audit) == ((), ())
        acct = settled.account


@PROPERTY
@given(
    data=st.data(),
    how=st.sampled_from(["reactivation", "stop event", "stop rule", "default stop"]),
)
def test_closing_a_case_restores_the_previous_decisions(data: st.DataObject, how: str) -> None:
    background = {
        f"bg{i}": {
            "reason": f"background {i}",
            "starts_on": [f"bg{i}-go"],
            "stops_on": [f"bg{i}-halt"],
            "phases": [
                {
                    "name": "only",
                    data.draw(st.sampled_from(["deny", "allow_only"])): data.draw(
                        st.lists(st.sampled_from(ACTIONS), unique=True)
                    ),
                }
            ],
        }
        for i in range(data.draw(st.integers(0, 2)))
    }
    subject = data.draw(flows("subject"))
    for key in ("starts_when", "starts_on", "stops_when", "stops_on", "irreversible"):
        subject.pop(key, None)
    if how == "default stop":
        # opened while `active` is true, closed when it no longer is
        subject["starts_when"] = {"fact": "active", "is": True}
        subject["phases"] = subject["phases"] or [{"name": "open"}]  # else it would restart
    else:
        subject["starts_on"] = ["subject-go"]
    if how == "stop event":
        subject["stops_on"] = ["subject-halt"]
    elif how == "stop rule":
        subject["stops_when"] = {"fact": "active", "is": True}
    pol = document({**background, "subject": subject}, "UTC")
    acct = account(pol)
    for name in background:
        acct = apply_event(acct, pol, f"{name}-go", T0, T0).account
    moment = T0 + timedelta(hours=data.draw(st.integers(0, 24 * 100)))
    before = {a: check(acct, pol, a, moment) for a in ACTIONS}
    state = restrictions(acct, pol, moment).state
    if how == "default stop":
        opened = set_fact(acct, pol, "active", True, at=T0)
    else:
        opened = apply_event(acct, pol, "subject-go", T0, T0).account
    opened = settle(opened, pol, moment).account
    case = opened.case_for("subject")
    if case is None:
        return  # it completed (or deleted the account) before `moment`
    if how == "reactivation":
        closed = reactivate(opened, pol, moment, by="s", reason="r", case_id=case.id).account
    elif how == "stop event":
        closed = apply_event(opened, pol, "subject-halt", moment, moment).account
    else:
        flipped = set_fact(opened, pol, "active", how == "stop rule", at=moment)
        closed = advance(flipped, pol, moment).account
    assert closed.case_for("subject") is None
    assert {a: check(closed, pol, a, moment) for a in ACTIONS} == before
    assert restrictions(closed, pol, moment).state == state


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    start=st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31)),
    months=st.lists(st.integers(1, 14), min_size=1, max_size=6),
    timezone=st.sampled_from(TIMEZONES),
)
def test_month_arithmetic_never_drifts(start: datetime, months: list[int], timezone: str) -> None:
    start = start.replace(second=0, microsecond=0)
    phases_doc = [{"name": f"p{i}", "lasts": f"{m} months"} for i, m in enumerate(months)]
    pol = document({"f": {"reason": "r", "starts_on": ["go"], "phases": phases_doc}}, timezone)
    at = start.replace(tzinfo=pol.timezone).astimezone(UTC)
    acct = apply_event(account(pol, created=at), pol, "go", at, at).account
    case = acct.cases[0]
    flow = pol.flows["f"]
    local = at.astimezone(pol.timezone)
    total = 0
    for index, length in enumerate(months):
        total += length
        end = planned_end(case, flow, index, pol)
        assert end == add(at, Duration(months=total), pol.timezone)
        # the same wall-clock time, N calendar months on, clamped to the end of the month
        year, month0 = divmod(local.month - 1 + total, 12)
        year += local.year
        day = min(local.day, monthrange(year, month0 + 1)[1])
        wall = datetime(year, month0 + 1, day, local.hour, local.minute, tzinfo=pol.timezone)
        assert end == wall.astimezone(UTC)
    # and the case really moves at those moments
    last = planned_end(case, flow, len(months) - 1, pol)
    step = advance(acct, pol, last)
    entered = [e.at for e in step.audit if e.kind == "phase.entered"]
    assert entered == [planned_end(case, flow, i, pol) for i in range(len(months) - 1)]
    assert step.account.cases == ()


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    day=st.dates(min_value=date(2023, 1, 1), max_value=date(2027, 12, 31)),
    lengths=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 20)).filter(any),
        min_size=1,
        max_size=6,
    ),
    timezone=st.sampled_from(TIMEZONES),
)
def test_with_mixed_units_each_phase_lasts_its_own_length(
    day: date, lengths: list[tuple[int, int, int]], timezone: str
) -> None:
    durations = [Duration(months=m, weeks=w, days=d) for m, w, d in lengths]
    phases_doc = [{"name": f"p{i}", "lasts": str(d)} for i, d in enumerate(durations)]
    pol = document({"f": {"reason": "r", "starts_on": ["go"], "phases": phases_doc}}, timezone)
    tz = pol.timezone
    # at noon, local time: calendar units keep the wall clock, and no DST gap is near
    at = datetime(day.year, day.month, day.day, 12, tzinfo=tz).astimezone(UTC)
    acct = apply_event(account(pol, created=at), pol, "go", at, at).account
    case, flow = acct.cases[0], pol.flows["f"]
    ends = [planned_end(case, flow, i, pol) for i in range(len(durations))]
    months_so_far = 0
    for index, (lasts, end) in enumerate(zip(durations, ends, strict=True)):
        start = ends[index - 1] if index else at
        own = add(start, lasts, tz)
        # a phase lasts its own length from its own start...
        assert end >= own, (index, start, lasts, end)
        if end != own:
            # ...unless its months count from an anchor whose day of month its start lost to
            # a shorter month: 31 Jan + 1 month is 29 Feb, and the next month ends on 31 Mar
            local = start.astimezone(tz)
            assert lasts.months, (index, start, lasts, end)
            assert local.day == monthrange(local.year, local.month)[1], (index, start)
            assert end - own <= timedelta(days=3), (index, start, lasts, end)
        assert end.astimezone(tz).hour == 12
        # a run of whole-month phases from the start stays anchored to the start
        if months_so_far is not None and not (lasts.weeks or lasts.days):
            months_so_far += lasts.months
            assert end == add(at, Duration(months=months_so_far), tz)
        else:
            months_so_far = None
    # and the case really moves at those moments
    step = advance(acct, pol, ends[-1])
    assert [e.at for e in step.audit if e.kind == "phase.entered"] == ends[:-1]
    assert step.account.cases == ()
