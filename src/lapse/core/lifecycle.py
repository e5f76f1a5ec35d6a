"""Moving an account's cases forward in time: the one place lifecycle rules live.

`advance(account, policy, now)` is the whole scheduler from the core's point of view: it opens
cases whose start holds, moves cases through their phases, creates notices when they are due,
stops cases, requests outcomes, and says when it next needs to run. Everything happens at its
*lifecycle* time (a phase ends at its deadline even when processed later), which is why catch-up
after downtime gives the same history as on-time processing.

Rules, in the order a reader meets them:
- A phase ends at its planned end (counted from `started_at`: months anchored there, see
  `cumulative`) plus `shift`, but never before each of its notices was dispatched, and never
  less than N after a dispatched "N before end" notice. A push is kept in `shift`, so later
  phases keep their lengths.
- The delete/purge at a position runs when the case arrives there, unless a legal hold is on:
  then the case waits ("held"). When the hold lifts and the last notice is older than the lead of
  the phase before, that phase's "before end" notices go out again first ("renotice").
- A case closes on its stop rule (or, without one, when its start no longer holds), at the
  moment that happened, or later if its record already holds something later (a stop reported
  late); closing re-arms the flow from the close. A reactivation that the flow's start would
  undo at once is refused.
- "Delete now" (an administrator's order) moves a case of a deleting flow straight to its
  outcome and marks it `ordered`: from then on nothing but a legal hold stops the deletion.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Literal

from lapse.core.conditions import Context, holding_parts, holds_at, next_change, since
from lapse.core.model import (
    Account,
    Adjustment,
    AuditEntry,
    Case,
    DeleteEffect,
    Effect,
    HostEffect,
    LegalHold,
    NoticeEffect,
    NoticeRecord,
    PurgeEffect,
    Step,
    evolve,
)
from lapse.errors import (
    AccountDeleted,
    CaseNotFound,
    Conflict,
    InvalidInput,
    IrreversibleCase,
)
from lapse.policy.durations import Duration, add, subtract
from lapse.policy.model import (
    AllOf,
    AnyOf,
    Condition,
    Flow,
    NoActivity,
    Not,
    NoticeRule,
    Phase,
    Policy,
    Recipients,
)

_CUMULATIVE: dict[int, tuple[Flow, tuple[tuple[int, Duration], ...]]] = {}


def cumulative(flow: Flow) -> tuple[tuple[int, Duration], ...]:
    """For each timed phase, what its end counts from and how far: `(anchor, duration)`.

    The anchor is -1 (the case start) or the index of the earlier phase whose end it counts
    from. Months and years are counted from the anchor, so a run of whole-month phases never
    drifts (31 Jan, 1 month, 1 month: 29 Feb, 31 Mar); a phase whose length has weeks, days,
    hours or minutes becomes the anchor of the phases after it, so a month that follows a day
    is a whole month from where it starts (28 Feb 2023, 1 day, 1 month: 1 Mar, 1 Apr). Memoised
    per flow.
    """
    hit = _CUMULATIVE.get(id(flow))
    if hit is not None and hit[0] is flow:
        return hit[1]
    anchor, total = -1, Duration()
    out = []
    for index, phase in enumerate(flow.phases[: flow.timed_phase_count]):
        lasts = phase.lasts
        assert lasts is not None
        total = total + lasts
        out.append((anchor, total))
        if lasts.weeks or lasts.days or lasts.hours or lasts.minutes:
            anchor, total = index, Duration()
    result = tuple(out)
    _CUMULATIVE[id(flow)] = (flow, result)
    return result


def position_phase(case: Case, flow: Flow) -> Phase | None:
    """The phase whose restrictions apply: the current one, or the last once past the end."""
    if case.phase_index < len(flow.phases):
        return flow.phases[case.phase_index]
    return flow.phases[-1] if flow.phases else None


def planned_end(case: Case, flow: Flow, index: int, policy: Policy) -> datetime:
    """The end of timed phase `index`: counted from the case start (see `cumulative`), plus
    the case's shift."""
    plan = cumulative(flow)
    anchor, duration = plan[index]
    if anchor < 0:  # the usual case: counted from the start itself
        return add(case.started_at, duration, policy.timezone) + case.shift
    return _unshifted_end(case.started_at, plan, index, policy.timezone) + case.shift


def _unshifted_end(
    start: datetime, plan: tuple[tuple[int, Duration], ...], index: int, tz: tzinfo
) -> datetime:
    anchor, duration = plan[index]
    base = start if anchor < 0 else _unshifted_end(start, plan, anchor, tz)
    return add(base, duration, tz)


def phase_end(
    case: Case, flow: Flow, phase: Phase, policy: Policy, now: datetime | None = None
) -> datetime | None:
    """The end of a timed phase given its notices, or None while one is outstanding.

    Never before a notice was dispatched; never less than N after a dispatched "N before end".
    With `now` (the status's view) the answer is the earliest the phase can end: a notice not
    created yet is left out (it goes out before the planned end) and one created but not
    dispatched counts as going out `now`.
    """
    end = planned_end(case, flow, phase.index, policy)
    for rule in phase.notices:
        # on every evaluation of every open case: `_sent` and `_notice_floor`, inline
        record = case.notice(rule.key)
        if record is None:
            if now is None:
                return None
            continue
        sent = record.dispatched_at
        if sent is None:
            if now is None:
                return None
            sent = now
        floor = add(sent, rule.offset, policy.timezone) if rule.at == "before_end" else sent
        if floor > end:
            end = floor
    return end


def notice_push(
    case: Case, flow: Flow, phase: Phase, policy: Policy, now: datetime
) -> Adjustment | None:
    """Why the timed phase ends after its planned end: the notice that pushes it, or None.

    The same reading as `phase_end(..., now)`; the adjustment is dated at the moved end.
    """
    planned = planned_end(case, flow, phase.index, policy)
    end, by, sent_at = planned, None, now
    for rule in phase.notices:
        sent = _sent(case.notice(rule.key), now)
        if sent is not None and (floor := _notice_floor(rule, sent, policy)) > end:
            end, by, sent_at = floor, rule, sent
    if by is None:
        return None
    record = case.notice(by.key)
    assert record is not None
    what = f"notice {by.key} ({by.describe()})"
    if record.dispatched_at is None:
        went, goes = f"{what} has not gone out yet", "goes"
    else:
        went = f"{what} went out late, on {sent_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        goes = "went"
    if by.at == "before_end":
        why = f"{went}: the phase ends {by.offset} after it {goes} out, to keep the full lead"
    else:
        why = f"{went}: the phase does not end before it {goes} out"
    return Adjustment(kind="notice-late", at=end, delta=end - planned, phase=phase.name, detail=why)


def _sent(record: NoticeRecord | None, now: datetime | None) -> datetime | None:
    """When a notice went out; with `now`, one created but not dispatched yet counts as going
    out `now`. None for a notice not created (or, without `now`, not dispatched) yet."""
    if record is None or record.dispatched_at is not None or now is None:
        return record.dispatched_at if record is not None else None
    return now


def _notice_floor(rule: NoticeRule, sent: datetime, policy: Policy) -> datetime:
    """The earliest its phase can end given a notice sent at `sent`."""
    return add(sent, rule.offset, policy.timezone) if rule.at == "before_end" else sent


def last_recorded(case: Case) -> datetime:
    """The latest moment the case's record holds: a phase change, a notice created or
    dispatched, a delete/purge step, an adjustment. The case cannot have closed before it."""
    latest = case.phase_started_at
    moments = [case.destruct_since, *(a.at for a in case.adjustments)]
    for record in case.notices:
        moments += (record.due_at, record.dispatched_at)
    for moment in moments:
        if moment is not None and moment > latest:
            latest = moment
    return latest


def lead_before(flow: Flow, index: int) -> Duration | None:
    """The longest 'before end' lead of the phase before position `index`: what a delete or
    purge due at `index` is re-noticed with after a legal hold."""
    if index == 0:
        return None
    leads = [r.offset for r in flow.phases[index - 1].notices if r.at == "before_end"]
    return max(leads, key=lambda d: d.max_seconds()) if leads else None


def renotice_end(
    case: Case, flow: Flow, policy: Policy, now: datetime | None = None
) -> datetime | None:
    """When the delete/purge of a re-noticed case (`destruct == "renotice"`) may run: the lead
    after its re-sent warnings went out, never before the re-notice began. None while one of
    them is not dispatched; with `now`, such a one counts as going out `now` (the earliest)."""
    lead = lead_before(flow, case.phase_index)
    resume = case.destruct_since
    assert lead is not None
    assert resume is not None
    suffix = f"#r{case.renotice_round}"
    for record in case.notices:
        if record.key.endswith(suffix):
            sent = _sent(record, now)
            if sent is None:
                return None
            resume = max(resume, add(sent, lead, policy.timezone))
    return resume


def _floor(account: Account, armed_from: Mapping[str, datetime], flow: Flow) -> datetime:
    armed = armed_from.get(flow.name)
    return armed if armed is not None and armed > account.created_at else account.created_at


def flow_context(account: Account, policy: Policy, flow: Flow) -> Context:
    """The context a flow's start is evaluated in: time counts from creation or re-arm."""
    return Context(account, policy, _floor(account, account.armed_from, flow))


def recipients(account: Account, to: Recipients) -> tuple[str, ...]:
    """Who receives a notice sent `to` admins, members or the owner (primary address)."""
    if to == "owner":
        found: tuple[str, ...] = ()
    elif to == "admins":
        found = tuple(m.email for m in account.members if m.role == "admin")
    else:
        found = tuple(m.email for m in account.members)
    if not found and account.address:
        found = (account.address,)
    return found


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


class _Run:
    """One evaluation of one account; collects the new state, effects and audit."""

    def __init__(self, account: Account, policy: Policy, now: datetime) -> None:
        if now.tzinfo is None:
            raise InvalidInput("`now` must be an aware datetime (UTC)")
        self.account = account
        self.policy = policy
        self.now = now
        self.tz = policy.timezone
        self.cases: dict[str, Case] = {c.id: c for c in account.cases}
        self.armed = account.armed_from
        self.last_events = account.last_events
        self.legal_hold = account.legal_hold
        self.seq = account.case_seq
        self.deleted_at = account.deleted_at
        self.effects: list[Effect] = []
        self.audit: list[AuditEntry] = []
        self.due: datetime | None = None
        self.dirty = False  # anything to write besides effects and audit?
        self._contexts: dict[tuple[str, datetime], Context] = {}

    def put(self, case: Case) -> None:
        """Store a new version of a case."""
        if self.cases.get(case.id) is not case:
            self.cases[case.id] = case
            self.dirty = True

    def dispatched(self, case: Case, record: NoticeRecord, at: datetime, **detail: object) -> None:
        """Record that the transport accepted a notice at `at` (never before the notice existed,
        since the lead counts from then; never in the future)."""
        at = min(max(at, record.created_at), self.now)
        updated = evolve(record, dispatched_at=at)
        self.put(evolve(case, notices=tuple(updated if r is record else r for r in case.notices)))
        self.record("notice.dispatched", at, case, key=record.key, **detail)

    def drop(self, case_id: str) -> None:
        """Remove a closed case."""
        del self.cases[case_id]
        self.dirty = True

    def update(self, **fields: object) -> None:
        """Change account-level fields (armed, last_events, legal_hold, deleted_at)."""
        for name, value in fields.items():
            setattr(self, name, value)
        self.dirty = True

    # --- bookkeeping ------------------------------------------------------------------------

    def want(self, at: datetime | None) -> None:
        self.due = _earlier(self.due, at)

    def record(self, kind: str, at: datetime, case: Case | None = None, **detail: object) -> None:
        self.audit.append(
            AuditEntry(
                account_id=self.account.id,
                at=at,
                kind=kind,
                case_id=case.id if case else None,
                flow=case.flow if case else None,
                detail=detail,
            )
        )

    def result(self) -> Step:
        account = self.account
        if self.dirty:
            account = evolve(
                account,
                cases=tuple(self.cases.values()),
                armed_from=self.armed,
                last_events=self.last_events,
                legal_hold=self.legal_hold,
                case_seq=self.seq,
                deleted_at=self.deleted_at,
            )
        if account.deleted_at is not None:
            self.due = None
        return Step(
            account=account,
            effects=tuple(self.effects),
            audit=tuple(self.audit),
            next_due_at=self.due,
        )

    def flow_context(self, flow: Flow) -> Context:
        # inputs are constant during one evaluation; only the floor moves (on re-arming), so a
        # context (and the thresholds and comparisons it caches) is reused per flow and floor
        floor = _floor(self.account, self.armed, flow)
        ctx = self._contexts.get((flow.name, floor))
        if ctx is None:
            ctx = self._contexts[(flow.name, floor)] = Context(self.account, self.policy, floor)
        return ctx

    # --- the evaluation ---------------------------------------------------------------------

    def run(self) -> None:
        """Bring every open case to `now`, then start the flows whose start holds."""
        for case in list(self.cases.values()):
            self.run_case(case)
        open_flows = {c.flow for c in self.cases.values()}
        for flow in self.policy.flows_for(self.account.kind):
            if flow.name not in open_flows and flow.starts_when is not None:
                self.try_start(flow)

    def run_case(self, case: Case) -> None:
        flow = self.policy.flows.get(case.flow)
        if flow is None:
            return  # the flow left the policy: the case keeps its state until migrated
        if case.ordered:
            # an administrator ordered its deletion: neither its stop rule nor a change of
            # kind closes it (a legal hold still holds it, in `progress`)
            _, due = self.progress(case, flow, self.now)  # a deletion: never completes here
            self.want(due)
            return
        if not flow.applies(self.account.kind) and not flow.irreversible:
            self.close(case, flow, self.now, f"the flow no longer applies to {self.account.kind}")
            return
        stop_at, stop_reason = self.stop_time(case, flow)
        progressed, due = self.progress(case, flow, self.now if stop_at is None else stop_at)
        if progressed is None:
            return
        if stop_at is not None:
            self.close(progressed, flow, stop_at, stop_reason)
            return
        self.want(due)
        self.want(self.stop_change(progressed, flow))

    def try_start(self, flow: Flow) -> None:
        previous: datetime | None = None
        # a flow that ended (in the past) may start again once re-armed, but never twice at the
        # same moment (the loader refuses flows that would: the instant-cycle check)
        while (start := self.start_time(flow)) is not None and (
            previous is None or start > previous
        ):
            case = self.open(flow, start, "condition")
            self.run_case(case)
            if case.id in self.cases:
                return
            previous = start

    def start_time(self, flow: Flow) -> datetime | None:
        """When the flow's start began to hold, if a case should open now."""
        assert flow.starts_when is not None
        armed = self.armed.get(flow.name)
        if armed is not None and armed > self.now:
            self.want(armed)  # snoozed by a reactivation
            return None
        ctx = self.flow_context(flow)
        if not holds_at(flow.starts_when, ctx, self.now):
            self.want(next_change(flow.starts_when, ctx, self.now))
            return None
        start = since(flow.starts_when, ctx, self.now, True)
        if flow.stops_when is not None:
            # the same context: the same account and floor give the same thresholds
            if holds_at(flow.stops_when, ctx, self.now):
                # a case would stop at once: wait until the stop rule no longer holds
                self.want(next_change(flow.stops_when, ctx, self.now))
                return None
            # it starts when the stop rule stopped holding, not earlier: a subscription that
            # lapsed yesterday does not open a grace period that began a month ago
            start = max(start, since(flow.stops_when, ctx, self.now, False))
        return start

    def stop_time(self, case: Case, flow: Flow) -> tuple[datetime | None, str]:
        """When the case's stop rule began to hold, if it holds now."""
        if flow.irreversible:
            return None, ""
        if flow.stops_when is not None:
            ctx = self.flow_context(flow)  # the same floor as the start: creation or re-arm
            if holds_at(flow.stops_when, ctx, self.now):
                return max(
                    case.started_at, since(flow.stops_when, ctx, self.now, True)
                ), "stop rule"
        elif flow.default_stop:
            assert flow.starts_when is not None
            ctx = self.flow_context(flow)
            if not holds_at(flow.starts_when, ctx, self.now):
                at = max(case.started_at, since(flow.starts_when, ctx, self.now, False))
                return at, "start condition no longer holds"
        return None, ""

    def stop_change(self, case: Case, flow: Flow) -> datetime | None:
        """When the stop rule could begin to hold through the passing of time alone."""
        if flow.stops_when is not None and not flow.irreversible:
            return next_change(flow.stops_when, self.flow_context(flow), self.now)
        if flow.default_stop:
            assert flow.starts_when is not None
            return next_change(flow.starts_when, self.flow_context(flow), self.now)
        return None

    # --- a case through its phases ----------------------------------------------------------

    def progress(
        self, case: Case, flow: Flow, limit: datetime
    ) -> tuple[Case | None, datetime | None]:
        """Move the case forward up to `limit`; None if it completed and closed."""
        phases = flow.phases
        count = len(phases)
        timed = flow.timed_phase_count
        due: datetime | None = None
        while True:
            if case.destruct in ("held", "renotice", "requested"):
                case, wait, proceed = self.resolve_destruct(case, flow, limit)
                self.put(case)
                due = _earlier(due, wait)
                if not proceed:
                    return case, due
            index = case.phase_index
            if index >= count:
                if flow.outcome is not None and flow.outcome.kind == "delete":
                    return case, due  # waits for the deletion to be carried out
                self.close(case, flow, case.destruct_since or case.phase_started_at, "completed")
                return None, None
            phase = phases[index]
            case, wait = self.create_notices(case, flow, phase, limit)
            due = _earlier(due, wait)
            if index >= timed:
                return case, due  # open-ended: lasts until the case is stopped
            end = phase_end(case, flow, phase, self.policy)
            if end is None:
                return case, due  # a notice is not created or not dispatched yet
            if end > limit:
                return case, _earlier(due, end)
            case = self.move(case, flow, index + 1, end)

    def create_notices(
        self, case: Case, flow: Flow, phase: Phase, limit: datetime
    ) -> tuple[Case, datetime | None]:
        """Create the phase's notices that are due by `limit`; return when the next one is."""
        due: datetime | None = None
        added: list[NoticeRecord] = []
        planned = (
            planned_end(case, flow, phase.index, self.policy) if phase.lasts is not None else None
        )
        for rule in phase.notices:
            if case.notice(rule.key) is not None:
                continue
            if rule.at == "start":
                at = case.phase_started_at
            elif rule.at == "after_start":
                at = add(case.phase_started_at, rule.offset, self.tz)
            else:
                assert planned is not None
                at = max(subtract(planned, rule.offset, self.tz), case.phase_started_at)
            if at <= limit:
                added.append(self.notice(case, flow, phase, rule, rule.key, at, planned))
            else:
                due = _earlier(due, at)
        if added:
            case = evolve(case, notices=case.notices + tuple(added))
            self.put(case)
        return case, due

    def notice(
        self,
        case: Case,
        flow: Flow,
        phase: Phase,
        rule: NoticeRule,
        key: str,
        at: datetime,
        planned: datetime | None,
    ) -> NoticeRecord:
        to = recipients(self.account, rule.to)
        deadline = planned
        if deadline is not None and rule.at == "before_end":
            # told late, the holder still gets the full lead: say the deadline it will be
            deadline = max(deadline, add(self.now, rule.offset, self.tz))
        record = NoticeRecord(
            key=key,
            phase=phase.name,
            template=rule.template,
            to=rule.to,
            recipients=to,
            via=rule.via,
            due_at=at,
            created_at=self.now,
        )
        self.effects.append(
            NoticeEffect(
                account_id=self.account.id,
                case_id=case.id,
                flow=flow.name,
                phase=phase.name,
                key=key,
                template=rule.template,
                to=rule.to,
                recipients=to,
                via=rule.via,
                due_at=at,
                at=at,
                deadline=deadline,
                reason=case.reason,
            )
        )
        self.record(
            "notice.created",
            at,
            case,
            key=key,
            phase=phase.name,
            template=rule.template,
            to=rule.to,
            recipients=len(to),
            late=self.now > at,
        )
        return record

    def move(self, case: Case, flow: Flow, index: int, at: datetime) -> Case:
        """Leave the current phase at `at` and arrive at position `index`."""
        old = flow.phases[case.phase_index]
        self.host_effects(case, flow, old, old.on_exit, "exit", at)
        shift, adjustments = case.shift, case.adjustments
        # `at` is the phase end its notices allow: past the plan if one of them went out late
        push = notice_push(case, flow, old, self.policy, self.now)
        if push is not None:
            shift, adjustments = shift + push.delta, (*adjustments, push)
        case = evolve(
            case,
            phase_index=index,
            phase_started_at=at,
            destruct="none",
            destruct_since=None,
            shift=shift,
            adjustments=adjustments,
        )
        return self.arrive(case, flow, at)

    def arrive(self, case: Case, flow: Flow, at: datetime) -> Case:
        """Enter position `case.phase_index`: effects, then the delete/purge due here, if any."""
        index = case.phase_index
        categories: tuple[str, ...] = ()
        if index < len(flow.phases):
            phase = flow.phases[index]
            self.record("phase.entered", at, case, phase=phase.name, index=index)
            self.host_effects(case, flow, phase, phase.on_enter, "enter", at)
            categories = phase.purge
        if categories or (index == flow.timed_phase_count and flow.outcome is not None):
            if self.legal_hold is not None:
                case = evolve(case, destruct="held", destruct_since=at)
                self.record("outcome.held", at, case, by=self.legal_hold.by)
            else:
                case = self.request(case, flow, at)
        self.put(case)
        return case

    def request(self, case: Case, flow: Flow, at: datetime) -> Case:
        """Emit the delete/purge due at the case's position."""
        index = case.phase_index
        phase = flow.phases[index] if index < len(flow.phases) else None
        categories = phase.purge if phase is not None else ()
        outcome = flow.outcome if index == flow.timed_phase_count else None
        if outcome is not None and outcome.kind == "purge":
            categories = tuple(dict.fromkeys((*categories, *outcome.categories)))
        name = phase.name if phase is not None else None
        if categories:
            self.effects.append(
                PurgeEffect(
                    account_id=self.account.id,
                    case_id=case.id,
                    flow=flow.name,
                    phase=name,
                    categories=categories,
                    at=at,
                )
            )
            self.record("purge.requested", at, case, categories=list(categories), phase=name)
        if outcome is not None and outcome.kind == "delete":
            self.effects.append(
                DeleteEffect(
                    account_id=self.account.id,
                    case_id=case.id,
                    flow=flow.name,
                    address=flow.address,
                    at=at,
                )
            )
            self.record("delete.requested", at, case, address=flow.address.mode)
        return evolve(case, destruct="requested", destruct_since=at)

    def resolve_destruct(
        self, case: Case, flow: Flow, limit: datetime
    ) -> tuple[Case, datetime | None, bool]:
        """Hold, re-notice or proceed with the delete/purge due at the case's position."""
        if case.destruct == "requested":
            if self.legal_hold is None:
                return case, None, True
            # the request was not carried out yet: withdraw it until the hold lifts
            self.record("outcome.held", self.now, case, by=self.legal_hold.by, withdrawn=True)
            return evolve(case, destruct="held", destruct_since=self.now), None, False
        if self.legal_hold is not None:
            if case.destruct == "renotice":
                self.record("outcome.held", self.now, case, by=self.legal_hold.by)
                case = evolve(case, destruct="held", destruct_since=self.now)
            return case, None, False
        if limit < self.now:
            return case, None, False  # the case is being stopped before the hold lifted
        lead = lead_before(flow, case.phase_index)
        if case.destruct == "held":
            if lead is not None and self.needs_renotice(case, lead):
                case = self.renotice(case, flow, lead)
            elif lead is not None and case.renotice_round:
                # held again while the re-sent warnings' lead ran: the outcome still waits for it
                case = evolve(case, destruct="renotice", destruct_since=self.now)
            else:
                return self.request(self.resume(case, flow, self.now), flow, self.now), None, True
        resume = renotice_end(case, flow, self.policy)
        if resume is None:
            return case, None, False  # a re-sent warning is not dispatched yet
        if resume > self.now:
            return case, resume, False
        return self.request(self.resume(case, flow, resume), flow, resume), None, True

    def resume(self, case: Case, flow: Flow, at: datetime) -> Case:
        """A held case resumes at `at`: a timed phase it waited in starts counting from there.

        The hold paused the case at this point, so the phases after a held purge keep their
        full lengths instead of ending (and purging again) at once.
        """
        if case.phase_index >= flow.timed_phase_count or at <= case.phase_started_at:
            return case
        pause = Adjustment(
            kind="hold",
            at=at,
            delta=at - case.phase_started_at,
            phase=flow.phases[case.phase_index].name,
            detail="the case waited for a legal hold; its phases resumed when the hold lifted",
        )
        return evolve(
            case,
            phase_started_at=at,
            shift=case.shift + pause.delta,
            adjustments=(*case.adjustments, pause),
        )

    def needs_renotice(self, case: Case, lead: Duration) -> bool:
        sent = [r.dispatched_at for r in case.notices if r.dispatched_at is not None]
        return not sent or add(max(sent), lead, self.tz) < self.now

    def renotice(self, case: Case, flow: Flow, lead: Duration) -> Case:
        """Send the 'before end' notices of the phase before the outcome again."""
        phase = flow.phases[case.phase_index - 1]
        round_no = case.renotice_round + 1
        case = evolve(case, renotice_round=round_no, destruct="renotice", destruct_since=self.now)
        records = [
            self.notice(case, flow, phase, rule, f"{rule.key}#r{round_no}", self.now, self.now)
            for rule in phase.notices
            if rule.at == "before_end"
        ]
        self.record("outcome.renotice", self.now, case, lead=str(lead), round=round_no)
        return evolve(case, notices=case.notices + tuple(records))

    def host_effects(
        self,
        case: Case,
        flow: Flow,
        phase: Phase,
        names: tuple[str, ...],
        trigger: Literal["enter", "exit", "close"],
        at: datetime,
    ) -> None:
        for name in names:
            self.effects.append(
                HostEffect(
                    account_id=self.account.id,
                    case_id=case.id,
                    flow=flow.name,
                    phase=phase.name,
                    name=name,
                    trigger=trigger,
                    at=at,
                )
            )

    # --- opening and closing ----------------------------------------------------------------

    def open(self, flow: Flow, at: datetime, opened_by: str, reason: str | None = None) -> Case:
        self.seq += 1
        self.dirty = True
        case = Case(
            id=f"{flow.name}#{self.seq}",
            flow=flow.name,
            started_at=at,
            phase_index=0,
            phase_started_at=at,
            reason=reason or flow.reason,
            opened_by=opened_by,
            policy_version=self.policy.version,
        )
        self.record(
            "case.opened", at, case, opened_by=opened_by, reason=case.reason, late=self.now > at
        )
        return self.arrive(case, flow, at)

    def close(
        self, case: Case, flow: Flow, at: datetime, reason: str, by: str | None = None
    ) -> None:
        """Close the case at `at`, the moment its stop happened, or at the last moment its record
        holds if that is later: a stop reported late (an event dated before a purge that was
        already carried out) closes after what lapse already did, never before it."""
        stopped = at
        at = max(at, last_recorded(case))
        phase = position_phase(case, flow)
        if phase is not None:
            if case.phase_index < len(flow.phases):
                self.host_effects(case, flow, phase, phase.on_exit, "exit", at)
            # an on_close effect that another open case also lists is sent when the last of
            # them closes: automations resume only once no lock pauses them any more
            shared = {
                name
                for other in self.cases.values()
                if other.id != case.id and other.flow in self.policy.flows
                for name in self.policy.flows[other.flow].on_close
            }
            closing = tuple(name for name in flow.on_close if name not in shared)
            self.host_effects(case, flow, phase, closing, "close", at)
        self.drop(case.id)
        self.update(armed={**self.armed, flow.name: at})
        detail: dict[str, object] = {"reason": reason}
        if by is not None:
            detail["by"] = by
        if at > stopped:
            # when the stop happened: the event's own time, or when the stop rule began to hold
            detail["stopped_at"] = stopped.isoformat()
        self.record("case.closed", at, case, **detail)


# --- the public functions ---------------------------------------------------------------------


def advance(
    account: Account,
    policy: Policy,
    now: datetime,
    *,
    dispatched: Mapping[tuple[str, str], datetime] | None = None,
) -> Step:
    """Evaluate the account at `now`: the new snapshot, the effects, and when to run next.

    `dispatched` gives, by (case id, notice key), when notices the account still records as
    not dispatched were in fact delivered (the store knows it from the outbox): they are
    recorded first, so a dispatch whose recording was lost (a crash between the two) heals on
    the account's next step instead of holding its phase for ever.
    """
    if account.deleted_at is not None:
        return Step(account=account)
    run = _Run(account, policy, now)
    for (case_id, key), at in sorted((dispatched or {}).items()):
        case = run.cases.get(case_id)
        record = case.notice(key) if case is not None else None
        if case is not None and record is not None and record.dispatched_at is None:
            run.dispatched(case, record, at, recovered=True)
    run.run()
    return run.result()


def apply_event(
    account: Account,
    policy: Policy,
    name: str,
    at: datetime,
    now: datetime,
    *,
    event_id: str | None = None,
    reason: str | None = None,
) -> Step:
    """Apply an event that happened at `at` (clamped to `now`), then advance to `now`."""
    _alive(account)
    if name not in policy.events:
        known = ", ".join(sorted(policy.events)) or "none"
        raise InvalidInput(f"unknown event {name!r}; the policy knows: {known}")
    if at.tzinfo is None:
        raise InvalidInput(f"event {name!r}: timestamp must include a time zone")
    at = min(at, now)
    run = _Run(account, policy, now)
    last = run.last_events.get(name)
    if last is None or at > last:
        run.update(last_events={**run.last_events, name: at})
    run.record("event.received", at, None, name=name, event_id=event_id)
    for flow in policy.flows_for(account.kind):
        case = next((c for c in run.cases.values() if c.flow == flow.name), None)
        if case is not None and name in flow.stops_on:
            if case.ordered:
                why = "an administrator ordered the deletion"
                run.record("event.ignored", at, case, name=name, why=why)
            elif at < case.started_at:
                run.record("event.ignored", at, case, name=name, why="older than the case")
            else:
                progressed, _ = run.progress(case, flow, at)
                if progressed is not None:
                    run.close(progressed, flow, at, f"event {name}")
        elif case is None and name in flow.starts_on:
            stale = _stale_start(account, run, flow, at)
            if stale:
                run.record("event.ignored", at, None, name=name, flow=flow.name, why=stale)
            else:
                run.open(flow, at, f"event:{name}", reason)
    run.run()
    return run.result()


def _stale_start(account: Account, run: _Run, flow: Flow, at: datetime) -> str:
    armed = run.armed.get(flow.name)
    if armed is not None and armed > run.now:
        return f"the flow is snoozed until {armed.isoformat()}"
    if armed is not None and at < armed:
        return "older than the flow's last close"
    for stop in flow.stops_on:
        seen = account.last_events.get(stop)
        if seen is not None and seen >= at:
            return f"a later {stop} event already arrived"
    if flow.stops_when is not None and holds_at(flow.stops_when, run.flow_context(flow), run.now):
        # the case would close the moment it opened: no "locked" email for a lock that never
        # was (condition starts wait in the same situation)
        return "the flow's stop rule holds"
    return ""


def open_case(
    account: Account,
    policy: Policy,
    now: datetime,
    *,
    flow: str,
    by: str,
    reason: str | None = None,
) -> Step:
    """An administrator starts a flow by hand (lock, suspend)."""
    _alive(account)
    found = _flow(policy, flow)
    if not found.applies(account.kind):
        raise Conflict(f"flow {flow!r} does not apply to accounts of kind {account.kind!r}")
    if account.case_for(flow) is not None:
        raise Conflict(f"flow {flow!r} already has an open case on account {account.id!r}")
    if found.default_stop:
        raise Conflict(
            f"flow {flow!r} closes as soon as its start condition no longer holds; "
            "it cannot be opened by hand"
        )
    run = _Run(account, policy, now)
    run.open(found, now, f"admin:{by}", reason)
    run.run()
    return run.result()


def reactivate(
    account: Account,
    policy: Policy,
    now: datetime,
    *,
    by: str,
    reason: str,
    case_id: str | None = None,
    snooze_until: datetime | None = None,
) -> Step:
    """Close one open case (or every reversible one) at once; the flows re-arm from now."""
    _alive(account)
    if case_id is not None:
        case = account.case(case_id)
        if case is None:
            raise CaseNotFound(f"account {account.id!r} has no open case {case_id!r}")
        targets = [case]
    else:
        targets = list(account.cases)
        if not targets:
            raise CaseNotFound(f"account {account.id!r} has no open case to reactivate")
    irreversible = [
        c
        for c in targets
        if c.ordered or (c.flow in policy.flows and policy.flows[c.flow].irreversible)
    ]
    if irreversible and (case_id is not None or len(irreversible) == len(targets)):
        first = irreversible[0]
        why = (
            "an administrator ordered its deletion"
            if first.ordered
            else "belongs to an irreversible flow"
        )
        raise IrreversibleCase(f"case {first.id!r} {why} and cannot be reactivated")
    if snooze_until is not None and snooze_until.tzinfo is None:
        raise InvalidInput("snooze_until must include a time zone")
    run = _Run(account, policy, now)
    closed = {}
    for case in targets:
        if case in irreversible:
            continue
        run.close(case, _flow(policy, case.flow), now, f"reactivated: {reason}", by)
        closed[case.flow] = case
        if snooze_until is not None and snooze_until > now:
            run.update(armed={**run.armed, case.flow: snooze_until})
    run.run()
    # re-arming restarts time conditions, not facts: an account still over its limit would be
    # locked again this very moment, with a new case, a new email and a new clock
    opened = {entry.flow for entry in run.audit if entry.kind == "case.opened"}
    reopened = []
    for name, case in closed.items():
        if name in opened:
            flow = policy.flows[name]
            assert flow.starts_when is not None
            parts = " and ".join(holding_parts(flow.starts_when, run.flow_context(flow), now))
            reopened.append(
                f"reactivating case {case.id!r} would reopen it at once: the start of flow "
                f"{name!r} still holds ({parts})"
            )
    if reopened:
        raise Conflict(
            "; ".join(reopened)
            + "; resolve the cause first, or give snooze_until to keep the flow closed until then"
        )
    return run.result()


def deletion_flow(account: Account, policy: Policy, flow: str | None = None) -> Flow:
    """The flow whose `delete` outcome "delete now" uses: `flow` if given; else the flow of the
    account's one open case that deletes; else the one deleting flow for its kind."""
    if flow is not None:
        found = _flow(policy, flow)
        if found.outcome is None or found.outcome.kind != "delete":
            raise InvalidInput(f"flow {flow!r} does not delete accounts: its outcome is not delete")
        if not found.applies(account.kind):
            raise Conflict(f"flow {flow!r} does not apply to accounts of kind {account.kind!r}")
        return found
    deleting = [f for f in policy.flows_for(account.kind) if _deletes(f)]
    open_ = [f for f in deleting if account.case_for(f.name) is not None]
    candidates = open_ or deleting
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise Conflict(
            f"no flow of policy {policy.name!r} deletes accounts of kind {account.kind!r}: "
            "there is no deletion to order"
        )
    names = ", ".join(f.name for f in candidates)
    where = "open cases" if open_ else "flows for its kind"
    raise InvalidInput(f"several {where} delete account {account.id!r} ({names}); name the flow")


def delete_now(
    account: Account,
    policy: Policy,
    now: datetime,
    *,
    by: str,
    reason: str,
    flow: str | None = None,
) -> Step:
    """An administrator orders the account deleted now: the `delete` outcome of its deleting
    flow (`deletion_flow`) is requested at once, through the same path as when the flow gets
    there by itself (the outbox, the data connectors, the tombstone and receipt, the flow's
    address rule). Refused under a legal hold. The case skips its remaining phases and their
    notices, and is `ordered`: only a legal hold placed later can still hold it."""
    _alive(account)
    hold = account.legal_hold
    if hold is not None:
        raise Conflict(
            f"account {account.id!r} is under a legal hold (placed {hold.since:%Y-%m-%d} by "
            f"{hold.by}: {hold.reason}); it cannot be deleted until the hold is lifted"
        )
    chosen = deletion_flow(account, policy, flow)
    run = _Run(account, policy, now)
    case = account.case_for(chosen.name)
    if case is None:
        case = run.open(chosen, now, f"admin:{by}", reason)
    if case.ordered:
        raise Conflict(
            f"the deletion of account {account.id!r} was already ordered (case {case.id!r}) and "
            "waits for a worker to carry it out"
        )
    run.record("delete.ordered", now, case, by=by, reason=reason)
    if case.phase_index < chosen.timed_phase_count:
        case = run.move(case, chosen, chosen.timed_phase_count, now)  # arrives: requested
    elif case.destruct != "requested":
        case = run.request(case, chosen, now)
    run.put(evolve(case, ordered=True))
    run.run()
    return run.result()


def _deletes(flow: Flow) -> bool:
    return flow.outcome is not None and flow.outcome.kind == "delete"


def extend(
    account: Account,
    policy: Policy,
    now: datetime,
    *,
    case_id: str,
    by: str,
    reason: str,
    duration: Duration | None = None,
    until: datetime | None = None,
) -> Step:
    """Move a case's current deadline (and every later one) by `duration` or to `until`."""
    _alive(account)
    case = account.case(case_id)
    if case is None:
        raise CaseNotFound(f"account {account.id!r} has no open case {case_id!r}")
    flow = _flow(policy, case.flow)
    if case.phase_index >= flow.timed_phase_count:
        raise Conflict(f"case {case_id!r} is not in a timed phase; there is no deadline to move")
    phase = flow.phases[case.phase_index]
    planned = planned_end(case, flow, case.phase_index, policy)
    deadline = phase_end(case, flow, phase, policy) or planned  # with a late notice's push
    if (duration is None) == (until is None):
        raise InvalidInput("give exactly one of `duration` and `until`")
    target = add(deadline, duration, policy.timezone) if duration is not None else until
    assert target is not None
    if target.tzinfo is None:
        raise InvalidInput("`until` must include a time zone")
    if target <= deadline:
        raise InvalidInput(
            f"the new deadline {target.isoformat()} is not after the current one "
            f"{deadline.isoformat()}"
        )
    adjustments = case.adjustments
    if deadline > planned:
        # keep the push a late notice already made, and extend from the deadline it made
        push = notice_push(case, flow, phase, policy, now)
        assert push is not None
        adjustments += (push,)
    adjustment = Adjustment(
        kind="extended", at=now, delta=target - deadline, phase=phase.name, detail=f"{by}: {reason}"
    )
    case = evolve(
        case, shift=case.shift + (target - planned), adjustments=(*adjustments, adjustment)
    )
    run = _Run(account, policy, now)
    run.put(case)
    run.record(
        "case.extended",
        now,
        case,
        by=by,
        reason=reason,
        deadline=target.isoformat(),
        previous=deadline.isoformat(),
    )
    run.run()
    return run.result()


def set_legal_hold(
    account: Account, policy: Policy, now: datetime, *, on: bool, by: str, reason: str
) -> Step:
    """Put a legal hold on the account or lift it."""
    _alive(account)
    run = _Run(account, policy, now)
    if on:
        if account.legal_hold is not None:
            raise Conflict(f"account {account.id!r} is already under a legal hold")
        run.update(legal_hold=LegalHold(since=now, by=by, reason=reason))
        run.record("hold.placed", now, None, by=by, reason=reason)
    else:
        if account.legal_hold is None:
            raise Conflict(f"account {account.id!r} has no legal hold to lift")
        run.update(legal_hold=None)
        run.record("hold.lifted", now, None, by=by, reason=reason)
    run.run()
    return run.result()


def notice_dispatched(
    account: Account, policy: Policy, now: datetime, *, case_id: str, key: str, at: datetime
) -> Step:
    """The transport accepted a notice: record it, then advance (the phase may end now)."""
    case = account.case(case_id)
    record = case.notice(key) if case is not None else None
    if case is None or record is None:
        raise CaseNotFound(f"account {account.id!r} has no notice {key!r} on case {case_id!r}")
    if record.dispatched_at is not None:
        return advance(account, policy, now)  # at-least-once delivery reports twice
    if at.tzinfo is None:
        raise InvalidInput("`at` must include a time zone")
    run = _Run(account, policy, now)
    run.dispatched(case, record, at)
    run.run()
    return run.result()


def outcome_done(account: Account, policy: Policy, now: datetime, *, case_id: str) -> Step:
    """The requested delete or purge was carried out."""
    _alive(account)
    case = account.case(case_id)
    if case is None or case.destruct != "requested":
        raise Conflict(f"case {case_id!r} of account {account.id!r} has no outcome in progress")
    flow = _flow(policy, case.flow)
    run = _Run(account, policy, now)
    deleting = (
        case.phase_index == flow.timed_phase_count
        and flow.outcome is not None
        and flow.outcome.kind == "delete"
    )
    if deleting:
        for other in list(run.cases.values()):
            run.drop(other.id)
            run.record("case.closed", now, other, reason="account deleted")
        run.update(deleted_at=now)
        run.record("account.deleted", now, case, address=flow.address.mode)
        return run.result()
    run.put(evolve(case, destruct="done"))
    run.record("purge.done", now, case)
    run.run()
    return run.result()


def wake_signals(account: Account, policy: Policy) -> frozenset[str]:
    """Signals whose report could stop one of the account's open cases.

    Signal ingestion wakes an account at once only for these; any other signal merely moves
    a future start later, which the account discovers at its next due time.
    """
    names: set[str] = set()
    for case in account.cases:
        flow = policy.flows.get(case.flow)
        if flow is None or flow.irreversible:
            continue
        rule = flow.stops_when
        if rule is None and flow.default_stop:
            rule = flow.starts_when
        if rule is not None:
            names.update(_signals_in(rule))
    return frozenset(names)


def _signals_in(cond: Condition) -> set[str]:
    if isinstance(cond, NoActivity):
        return set(cond.signals)
    if isinstance(cond, AllOf | AnyOf):
        return set().union(*(_signals_in(item) for item in cond.items))
    if isinstance(cond, Not):
        return _signals_in(cond.item)
    return set()


def _alive(account: Account) -> None:
    if account.deleted_at is not None:
        raise AccountDeleted(f"account {account.id!r} was deleted")


def _flow(policy: Policy, name: str) -> Flow:
    flow = policy.flows.get(name)
    if flow is None:
        known = ", ".join(policy.flows) or "none"
        raise CaseNotFound(f"the policy has no flow {name!r}; flows: {known}")
    return flow
