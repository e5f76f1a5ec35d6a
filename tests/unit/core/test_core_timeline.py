"""timeline.py: settle (instant delivery), the projected timeline, flow outlooks, describe()."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lapse.core.conditions import Context, explain
from lapse.core.inputs import record_signal
from lapse.core.lifecycle import advance, apply_event, reactivate, set_legal_hold
from lapse.core.model import AuditEntry, Explanation, FlowOutlook, TimelineEvent
from lapse.core.timeline import MAX_EVENTS, describe, settle, timeline

from .conftest import T0, account, audit_kinds, days, kinds_of, policy, utc

POL = policy(
    """
    inactivity:
      title: Inactivity clean-up
      reason: idle
      applies_to: {kind: standard}
      starts_when: {no_activity: [sent], for: 30 days}
      phases:
        - name: grace
          lasts: 10 days
          notices: [{at: 3 days before end, to: admins, template: final}]
          on_enter: [pause]
      outcome: delete
    lock:
      reason: locked
      starts_on: [lock]
      stops_on: [unlock]
      phases: [{name: locked, deny: [send]}]
    trial-end:
      reason: trial over
      applies_to: {kind: trial}
      starts_on: [lock]
    """
)
OPENS = T0 + days(30)


def test_settle_dispatches_notices_and_carries_out_outcomes_at_once() -> None:
    step = settle(account(POL), POL, OPENS + days(20))
    assert kinds_of(step) == ["enter:pause", "notice:grace/final"]
    assert audit_kinds(step) == [
        "case.opened",
        "phase.entered",
        "notice.created",
        "notice.dispatched",
    ]
    # the warning went out late (day 20 of the case): the deletion waits for its 3 days
    assert step.next_due_at == OPENS + days(23)
    step = settle(step.account, POL, OPENS + days(23))
    assert kinds_of(step) == ["delete"]
    assert audit_kinds(step) == ["delete.requested", "case.closed", "account.deleted"]
    assert step.effects[-1].at == OPENS + days(23)
    assert step.account.deleted_at == OPENS + days(23)
    assert step.next_due_at is None


def test_settle_stops_at_a_notice_without_a_recipient() -> None:
    acct = account(POL, members=(), address=None)
    step = settle(acct, POL, OPENS + days(20))
    assert audit_kinds(step) == ["case.opened", "phase.entered", "notice.created"]
    assert step.next_due_at is None
    assert step.account.cases[0].notices[0].dispatched_at is None


def test_settle_returns_the_next_due_time() -> None:
    step = settle(account(POL), POL, OPENS)
    assert step.next_due_at == OPENS + days(7)
    assert settle(step.account, POL, OPENS).account is step.account


def test_the_timeline_projects_every_event_until_the_deletion() -> None:
    acct = account(POL)
    projected = timeline(acct, POL, T0)
    case = "inactivity#1"
    flow = "inactivity"
    assert projected.events == (
        TimelineEvent(
            at=OPENS,
            kind="case.opens",
            flow=flow,
            case_id=case,
            phase=None,
            text="Inactivity clean-up starts: idle",
        ),
        TimelineEvent(
            at=OPENS,
            kind="phase.enters",
            flow=flow,
            case_id=case,
            phase="grace",
            text="Inactivity clean-up: phase grace begins",
        ),
        TimelineEvent(
            at=OPENS,
            kind="host-effect",
            flow=flow,
            case_id=case,
            phase="grace",
            text="effect pause (enter grace)",
        ),
        TimelineEvent(
            at=OPENS + days(7),
            kind="notice",
            flow=flow,
            case_id=case,
            phase="grace",
            text="Inactivity clean-up: notice final to admins",
        ),
        TimelineEvent(
            at=OPENS + days(10),
            kind="delete",
            flow=flow,
            case_id=case,
            phase=None,
            text="Inactivity clean-up: account deletion (address: release)",
        ),
        TimelineEvent(
            at=OPENS + days(10),
            kind="case.closes",
            flow=flow,
            case_id=case,
            phase=None,
            text="Inactivity clean-up ends: account deleted",
        ),
    )
    assert projected.truncated is False
    assert (projected.account_id, projected.as_of, projected.past) == ("acct-1", T0, ())
    assert projected.flows == (
        FlowOutlook(
            flow="inactivity",
            title="Inactivity clean-up",
            applies=True,
            open_case=None,
            starts_on=(),
            start=Explanation(text="no sent for 30 days", holds=False, since=None, holds_at=OPENS),
            armed_from=None,
        ),
        FlowOutlook(
            flow="lock",
            title="lock",
            applies=True,
            open_case=None,
            starts_on=("lock",),
            start=None,
            armed_from=None,
        ),
        FlowOutlook(
            flow="trial-end",
            title="trial-end",
            applies=False,
            open_case=None,
            starts_on=("lock",),
            start=None,
            armed_from=None,
        ),
    )


def test_the_timeline_does_not_change_the_account() -> None:
    acct = record_signal(account(POL), POL, "sent", T0 + days(5))
    projected = timeline(acct, POL, T0 + days(6))
    assert projected.events[0].at == T0 + days(35)
    assert acct.cases == ()


def test_the_outlook_of_open_and_rearmed_flows() -> None:
    acct = apply_event(account(POL), POL, "lock", T0, T0).account
    outlook = {o.flow: o for o in timeline(acct, POL, T0).flows}
    assert (outlook["lock"].open_case, outlook["lock"].armed_from) == ("lock#1", None)
    acct = reactivate(
        acct, POL, T0 + days(2), by="s", reason="r", snooze_until=T0 + days(9)
    ).account
    outlook = {o.flow: o for o in timeline(acct, POL, T0 + days(3)).flows}
    assert (outlook["lock"].open_case, outlook["lock"].armed_from) == (None, T0 + days(9))
    assert outlook["inactivity"].armed_from is None
    assert outlook["inactivity"].start == explain(
        POL.flows["inactivity"].starts_when,  # type: ignore[arg-type]
        Context(acct, POL, acct.created_at),
        T0 + days(3),
    )


def test_an_open_ended_case_projects_nothing_more() -> None:
    acct = apply_event(account(POL), POL, "lock", T0, T0).account
    acct = record_signal(acct, POL, "sent", T0 + days(1))
    projected = timeline(acct, POL, T0 + days(1))
    # only the inactivity flow, 30 days after the last campaign
    assert [(e.kind, e.flow) for e in projected.events][:2] == [
        ("case.opens", "inactivity"),
        ("phase.enters", "inactivity"),
    ]
    assert projected.events[0].at == T0 + days(31)


def test_a_start_beyond_the_horizon_truncates_the_timeline() -> None:
    pol = policy(
        """
        ancient:
          reason: r
          starts_when: {age: 26 years}
          phases: [{name: p, deny: [send]}]
        """
    )
    projected = timeline(account(pol), pol, T0)
    assert (projected.events, projected.truncated) == ((), True)
    assert timeline(account(pol), pol, utc(2026, 1, 2)).events[0].at == utc(2050, 1, 1)


def test_a_timeline_keeps_at_most_max_events() -> None:
    pol = policy(
        """
        pulse:
          reason: r
          starts_when: {age: 1 day}
          phases: [{name: p, lasts: 1 day, deny: [send]}]
        """
    )
    projected = timeline(account(pol), pol, T0)
    assert projected.truncated is True
    assert len(projected.events) == MAX_EVENTS
    assert [e.kind for e in projected.events[:4]] == [
        "case.opens",
        "phase.enters",
        "case.closes",
        "case.opens",
    ]
    assert [e.at for e in projected.events[:4]] == [
        T0 + days(1),
        T0 + days(1),
        T0 + days(2),
        T0 + days(3),
    ]


def test_a_timeline_of_a_deleted_account_is_empty() -> None:
    gone = settle(account(POL), POL, OPENS).account
    gone = settle(gone, POL, OPENS + days(7)).account
    gone = settle(gone, POL, OPENS + days(10)).account
    assert gone.deleted_at == OPENS + days(10)
    projected = timeline(gone, POL, OPENS + days(30))
    assert (projected.events, projected.truncated) == ((), False)


def test_the_timeline_shows_holds_and_renotices() -> None:
    pol = policy(
        """
        cleanup:
          reason: idle
          starts_on: [note]
          phases:
            - name: grace
              lasts: 10 days
              notices: [{at: 2 days before end, to: admins, template: final}]
          outcome: {purge: [reports]}
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    acct = set_legal_hold(acct, pol, T0 + days(1), on=True, by="l", reason="r").account
    projected = timeline(acct, pol, T0 + days(1))
    assert [(e.kind, e.at) for e in projected.events] == [
        ("notice", T0 + days(8)),
        ("held", T0 + days(10)),
    ]
    assert [e.text for e in projected.events] == [
        "cleanup: notice final to admins",
        "cleanup: held by the legal hold",
    ]
    held = settle(acct, pol, T0 + days(8)).account  # the warning goes out on time
    held = advance(held, pol, T0 + days(12)).account
    assert held.cases[0].destruct == "held"
    lifted = set_legal_hold(held, pol, T0 + days(12), on=False, by="l", reason="r").account
    # the warning sent again when the hold was lifted holds the purge for its 2 days
    assert [r.key for r in lifted.cases[0].notices] == ["grace/final", "grace/final#r1"]
    projected = timeline(lifted, pol, T0 + days(12))
    assert [(e.kind, e.at) for e in projected.events] == [
        ("purge", T0 + days(14)),
        ("case.closes", T0 + days(14)),
    ]


# --- describe ---------------------------------------------------------------------------------


def entry(kind: str, flow: str | None = "inactivity", **detail: object) -> AuditEntry:
    return AuditEntry(
        account_id="a", at=T0, kind=kind, case_id="inactivity#1", flow=flow, detail=detail
    )


@pytest.mark.parametrize(
    ("audit", "text"),
    [
        (entry("case.opened", reason="idle"), "Inactivity clean-up starts: idle"),
        (entry("phase.entered", phase="grace"), "Inactivity clean-up: phase grace begins"),
        (
            entry("notice.created", template="final", to="admins"),
            "Inactivity clean-up: notice final to admins",
        ),
        (
            entry("notice.dispatched", key="grace/final"),
            "Inactivity clean-up: notice grace/final dispatched",
        ),
        (
            entry("delete.requested", address="retire"),
            "Inactivity clean-up: account deletion (address: retire)",
        ),
        (
            entry("purge.requested", categories=["reports", "contacts"]),
            "Inactivity clean-up: purge of reports, contacts",
        ),
        (entry("purge.requested", categories="reports"), "Inactivity clean-up: purge of reports"),
        (entry("purge.done"), "Inactivity clean-up: purge carried out"),
        (entry("case.closed", reason="stop rule"), "Inactivity clean-up ends: stop rule"),
        (
            entry("case.closed", reason="reactivated: paid", by="support"),
            "Inactivity clean-up ends by support: reactivated: paid",
        ),
        (
            entry("case.extended", deadline="2024-02-01", by="ops", reason="asked"),
            "Inactivity clean-up: deadline moved to 2024-02-01 by ops: asked",
        ),
        (entry("outcome.held", by="legal"), "Inactivity clean-up: held by the legal hold"),
        (entry("outcome.renotice"), "Inactivity clean-up: hold lifted, warnings sent again"),
        (
            entry("hold.placed", None, by="legal", reason="case 7"),
            "legal hold placed by legal: case 7",
        ),
        (
            entry("hold.lifted", None, by="legal", reason="done"),
            "legal hold lifted by legal: done",
        ),
        (entry("event.received", None, name="lock"), "event lock received"),
        (
            entry("event.ignored", None, name="lock", why="older than the case"),
            "event lock ignored: older than the case",
        ),
        (entry("account.deleted"), "account deleted"),
        (entry("something.else"), "something.else"),
        (entry("case.opened", "gone-flow", reason="r"), "gone-flow starts: r"),
        (entry("case.opened", None, reason="r"), " starts: r"),
    ],
)
def test_describe(audit: AuditEntry, text: str) -> None:
    assert describe(audit, POL) == text


def test_every_projected_event_kind_has_a_description() -> None:
    acct = advance(account(POL), POL, OPENS).account
    assert all(
        describe(e, POL) != e.kind for e in advance(acct, POL, OPENS + timedelta(days=8)).audit
    )
