"""lifecycle.py: starting and stopping cases, phases and notices, events, re-arming."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lapse.core.inputs import record_signal, set_fact, set_kind
from lapse.core.lifecycle import (
    advance,
    apply_event,
    cumulative,
    notice_dispatched,
    open_case,
    outcome_done,
    planned_end,
    position_phase,
    reactivate,
    recipients,
)
from lapse.core.model import (
    Account,
    AuditEntry,
    Case,
    HostEffect,
    Member,
    NoticeEffect,
    NoticeRecord,
)
from lapse.errors import CaseNotFound, Conflict, InvalidInput, IrreversibleCase
from lapse.policy.durations import Duration

from .conftest import (
    ADMIN,
    MEMBER,
    OWNER,
    T0,
    account,
    audit_kinds,
    days,
    dispatch_all,
    kinds_of,
    policy,
    utc,
)

INACTIVITY = policy(
    """
    inactivity:
      title: Inactivity clean-up
      reason: no campaign for 30 days
      starts_when: {no_activity: [sent, api], for: 30 days}
      stops_when: {fact: active, is: true}
      stops_on: [contacted]
      on_close: [closed]
      phases:
        - name: grace
          lasts: 10 days
          deny: [send]
          notices:
            - {at: start, to: admins, template: started, via: [email, in_app]}
            - {at: 3 days before end, to: admins, template: final}
          on_enter: [pause]
          on_exit: [resume]
      outcome: delete
    """
)
OPENED = T0 + days(30)  # when an untouched account's inactivity case starts
CASE = "inactivity#1"


def opened(now: datetime = OPENED) -> Account:
    """An account whose inactivity case opened at OPENED, advanced (not dispatched) at `now`."""
    return advance(account(INACTIVITY), INACTIVITY, now).account


def the_case(acct: Account) -> Case:
    assert len(acct.cases) == 1
    return acct.cases[0]


# --- opening a case by condition ----------------------------------------------------------------


def test_a_condition_starts_a_case_at_the_moment_it_began_to_hold() -> None:
    step = advance(account(INACTIVITY), INACTIVITY, OPENED + days(2))
    case = the_case(step.account)
    assert case == Case(
        id=CASE,
        flow="inactivity",
        started_at=OPENED,
        phase_index=0,
        phase_started_at=OPENED,
        reason="no campaign for 30 days",
        opened_by="condition",
        policy_version="7",
        notices=(
            NoticeRecord(
                key="grace/started",
                phase="grace",
                template="started",
                to="admins",
                recipients=(ADMIN,),
                via=("email", "in_app"),
                due_at=OPENED,
                created_at=OPENED + days(2),
            ),
        ),
    )
    assert step.account.case_seq == 1
    assert kinds_of(step) == ["enter:pause", "notice:grace/started"]
    assert step.audit == (
        AuditEntry(
            account_id="acct-1",
            at=OPENED,
            kind="case.opened",
            case_id=CASE,
            flow="inactivity",
            detail={"opened_by": "condition", "reason": "no campaign for 30 days", "late": True},
        ),
        AuditEntry(
            account_id="acct-1",
            at=OPENED,
            kind="phase.entered",
            case_id=CASE,
            flow="inactivity",
            detail={"phase": "grace", "index": 0},
        ),
        AuditEntry(
            account_id="acct-1",
            at=OPENED,
            kind="notice.created",
            case_id=CASE,
            flow="inactivity",
            detail={
                "key": "grace/started",
                "phase": "grace",
                "template": "started",
                "to": "admins",
                "recipients": 1,
                "late": True,
            },
        ),
    )
    # the final warning is due 3 days before the end: 7 days in
    assert step.next_due_at == OPENED + days(7)


def test_before_the_start_the_account_is_due_when_the_condition_will_hold() -> None:
    acct = account(INACTIVITY)
    step = advance(acct, INACTIVITY, T0 + days(3))
    assert step.account is acct
    assert step.changed is False
    assert step.next_due_at == OPENED
    later = record_signal(acct, INACTIVITY, "api", T0 + days(12))
    assert advance(later, INACTIVITY, T0 + days(13)).next_due_at == T0 + days(42)


def test_on_time_processing_creates_each_notice_when_due() -> None:
    step = advance(account(INACTIVITY), INACTIVITY, OPENED)
    assert step.audit[-1].detail["late"] is False
    assert step.audit[0].detail["late"] is False
    notice = step.effects[1]
    assert notice == NoticeEffect(
        account_id="acct-1",
        case_id=CASE,
        flow="inactivity",
        phase="grace",
        key="grace/started",
        template="started",
        to="admins",
        recipients=(ADMIN,),
        via=("email", "in_app"),
        due_at=OPENED,
        at=OPENED,
        deadline=OPENED + days(10),
        reason="no campaign for 30 days",
    )
    acct = dispatch_all(step.account, INACTIVITY, OPENED).account
    step = advance(acct, INACTIVITY, OPENED + days(7))
    assert kinds_of(step) == ["notice:grace/final"]
    final = step.effects[0]
    assert isinstance(final, NoticeEffect)
    assert (final.due_at, final.deadline) == (OPENED + days(7), OPENED + days(10))
    # the phase cannot end before the final warning is dispatched
    assert step.next_due_at is None
    step = notice_dispatched(
        step.account,
        INACTIVITY,
        OPENED + days(7),
        case_id=CASE,
        key="grace/final",
        at=OPENED + days(7),
    )
    assert step.next_due_at == OPENED + days(10)
    assert audit_kinds(step) == ["notice.dispatched"]
    step = advance(step.account, INACTIVITY, OPENED + days(10))
    assert kinds_of(step) == ["exit:resume", "delete"]
    assert audit_kinds(step) == ["delete.requested"]
    assert the_case(step.account).phase_index == 1
    assert the_case(step.account).destruct == "requested"
    assert step.next_due_at is None


def test_a_phase_waits_for_every_notice_to_be_dispatched() -> None:
    acct = opened()
    step = advance(acct, INACTIVITY, OPENED + days(30))
    # the final warning is created (late) but nothing was dispatched: still in grace
    assert kinds_of(step) == ["notice:grace/final"]
    final = step.effects[0]
    assert isinstance(final, NoticeEffect)
    # the holder still gets the full lead: the notice names the pushed deadline
    assert final.deadline == OPENED + days(33)
    case = the_case(step.account)
    assert case.phase_index == 0
    # the start notice dispatched late does not push the end by itself...
    step = notice_dispatched(
        step.account,
        INACTIVITY,
        OPENED + days(30),
        case_id=CASE,
        key="grace/started",
        at=OPENED + days(30),
    )
    assert the_case(step.account).phase_index == 0
    # ...but the final warning keeps its 3 days of lead
    step = notice_dispatched(
        step.account,
        INACTIVITY,
        OPENED + days(31),
        case_id=CASE,
        key="grace/final",
        at=OPENED + days(31),
    )
    assert step.next_due_at == OPENED + days(34)
    step = advance(step.account, INACTIVITY, OPENED + days(34))
    assert kinds_of(step) == ["exit:resume", "delete"]
    case = the_case(step.account)
    assert case.shift == days(24)
    assert [(a.kind, a.at, a.delta, a.phase) for a in case.adjustments] == [
        ("notice-late", OPENED + days(34), days(24), "grace")
    ]


# --- stopping ---------------------------------------------------------------------------------


def test_a_stop_rule_closes_the_case_at_the_moment_it_began_to_hold() -> None:
    acct = set_fact(opened(), INACTIVITY, "active", True, at=OPENED + days(2))
    step = advance(acct, INACTIVITY, OPENED + days(4))
    assert step.account.cases == ()
    assert kinds_of(step) == ["exit:resume", "close:closed"]
    assert [e.at for e in step.effects] == [OPENED + days(2)] * 2
    assert step.audit == (
        AuditEntry(
            account_id="acct-1",
            at=OPENED + days(2),
            kind="case.closed",
            case_id=CASE,
            flow="inactivity",
            detail={"reason": "stop rule"},
        ),
    )
    # the flow re-arms from the close
    assert step.account.armed_from == {"inactivity": OPENED + days(2)}


def test_a_case_does_not_open_while_its_stop_rule_holds() -> None:
    acct = set_fact(account(INACTIVITY), INACTIVITY, "active", True, at=T0)
    step = advance(acct, INACTIVITY, OPENED + days(1))
    assert step.account is acct
    assert step.next_due_at is None  # only a report can change `active`


def test_a_time_based_stop_rule_makes_the_account_due_when_it_will_hold() -> None:
    pol = policy(
        """
        f:
          reason: r
          starts_when: {age: 10 days}
          stops_when: {not: {no_activity: [login], for: 20 days}}
          phases: [{name: p, deny: [send]}]
        """
    )
    acct = record_signal(account(pol), pol, "login", T0 + days(12))
    # the start holds since day 10, but the login makes the stop rule hold until day 32
    pending = advance(acct, pol, T0 + days(12))
    assert pending.account is acct
    assert pending.next_due_at == T0 + days(32)
    step = advance(acct, pol, T0 + days(32))
    # the case starts when its stop rule stopped holding, not when its start began to hold
    assert the_case(step.account).started_at == T0 + days(32)
    assert step.next_due_at is None


def test_a_stop_event_closes_the_case_at_the_event_time() -> None:
    acct = opened()
    step = apply_event(
        acct, INACTIVITY, "contacted", OPENED + days(1), OPENED + days(2), event_id="e-1"
    )
    assert step.account.cases == ()
    assert step.account.last_events == {"contacted": OPENED + days(1)}
    assert step.account.armed_from == {"inactivity": OPENED + days(1)}
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        ("event.received", OPENED + days(1), {"name": "contacted", "event_id": "e-1"}),
        ("case.closed", OPENED + days(1), {"reason": "event contacted"}),
    ]


RETAIN = policy(
    """
    payment-lock:
      reason: payment failed
      starts_on: [payment_failed]
      stops_on: [payment_succeeded]
      phases:
        - name: locked
          lasts: 30 days
          allow_only: [login]
          notices: [{at: 5 days before end, to: admins, template: warning}]
        - {name: retention-expired, allow_only: [login]}
      outcome: {purge: [reports]}
    """
)


def test_a_late_stop_event_closes_after_what_was_already_carried_out() -> None:
    acct = apply_event(account(RETAIN), RETAIN, "payment_failed", T0, T0).account
    acct = advance(acct, RETAIN, T0 + days(25)).account
    acct = dispatch_all(acct, RETAIN, T0 + days(25)).account
    step = advance(acct, RETAIN, T0 + days(30))
    assert kinds_of(step) == ["purge:reports"]
    acct = outcome_done(step.account, RETAIN, T0 + days(31), case_id="payment-lock#1").account
    # the payment went through on day 20, but is reported on day 45: after the warning went
    # out and the purge was carried out. The case closes after them, not back on day 20, and
    # the flow re-arms from that close; the audit keeps the event's own time.
    step = apply_event(acct, RETAIN, "payment_succeeded", T0 + days(20), T0 + days(45))
    assert step.account.cases == ()
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        (
            "event.received",
            T0 + days(20),
            {"name": "payment_succeeded", "event_id": None},
        ),
        (
            "case.closed",
            T0 + days(30),
            {"reason": "event payment_succeeded", "stopped_at": "2024-01-21T00:00:00+00:00"},
        ),
    ]
    assert step.account.armed_from == {"payment-lock": T0 + days(30)}
    # a payment failure dated between the stop and the close is older than the close
    again = apply_event(step.account, RETAIN, "payment_failed", T0 + days(25), T0 + days(46))
    assert again.account.cases == ()
    assert again.audit[-1].detail["why"] == "older than the flow's last close"


def test_a_stop_rule_reported_late_closes_after_the_last_notice() -> None:
    acct = dispatch_all(opened(OPENED + days(7)), INACTIVITY, OPENED + days(7)).account
    # a subscription that started on day 2 is reported on day 8, after the final warning
    acct = set_fact(acct, INACTIVITY, "active", True, at=OPENED + days(2))
    step = advance(acct, INACTIVITY, OPENED + days(8))
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        (
            "case.closed",
            OPENED + days(7),
            {"reason": "stop rule", "stopped_at": "2024-02-02T00:00:00+00:00"},
        )
    ]
    assert [e.at for e in step.effects] == [OPENED + days(7)] * 2  # exit and close effects


def test_a_stop_event_first_brings_the_case_up_to_the_event_time() -> None:
    acct = dispatch_all(opened(), INACTIVITY, OPENED).account
    # the final warning was due at day 7: created before the close at day 8
    step = apply_event(acct, INACTIVITY, "contacted", OPENED + days(8), OPENED + days(9))
    assert kinds_of(step) == ["notice:grace/final", "exit:resume", "close:closed"]
    assert step.account.cases == ()


def test_default_stop_closes_when_the_start_no_longer_holds() -> None:
    pol = policy(
        """
        limit-lock:
          reason: over the contact limit
          starts_when: {fact: contacts, gt: {fact: limit}}
          phases: [{name: locked, allow_only: [login, view]}]
        """
    )
    acct = set_fact(account(pol), pol, "limit", 100, at=T0)
    acct = set_fact(acct, pol, "contacts", 150, at=T0 + days(1))
    step = advance(acct, pol, T0 + days(2))
    assert the_case(step.account).started_at == T0 + days(1)
    acct = set_fact(step.account, pol, "contacts", 90, at=T0 + days(3))
    step = advance(acct, pol, T0 + days(5))
    assert step.account.cases == ()
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        ("case.closed", T0 + days(3), {"reason": "start condition no longer holds"})
    ]


def test_default_stop_of_a_time_based_start_is_scheduled() -> None:
    pol = policy(
        """
        window:
          reason: r
          starts_when: {all: [{age: 5 days}, {not: {age: 8 days}}]}
          phases: [{name: p, deny: [send]}]
        """
    )
    step = advance(account(pol), pol, T0 + days(6))
    assert the_case(step.account).started_at == T0 + days(5)
    assert step.next_due_at == T0 + days(8)
    step = advance(step.account, pol, T0 + days(8))
    assert step.account.cases == ()
    assert step.audit[0].at == T0 + days(8)


def test_an_explicit_stop_rule_replaces_the_default_stop() -> None:
    # activity ends the start condition, but only `active` (or `contacted`) stops the case
    acct = record_signal(opened(), INACTIVITY, "sent", OPENED + days(1))
    step = advance(acct, INACTIVITY, OPENED + days(2))
    assert the_case(step.account).id == CASE
    assert step.audit == ()


def test_a_case_of_a_flow_that_no_longer_applies_to_the_kind_closes() -> None:
    pol = policy(
        """
        f:
          reason: r
          applies_to: {kind: standard}
          starts_on: [note]
          on_close: [bye]
          phases: [{name: p, deny: [send], on_exit: [leave]}]
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    acct = set_kind(acct, pol, "trial")
    step = advance(acct, pol, T0 + days(1))
    assert step.account.cases == ()
    assert kinds_of(step) == ["exit:leave", "close:bye"]
    assert dict(step.audit[0].detail) == {"reason": "the flow no longer applies to trial"}
    assert step.audit[0].at == T0 + days(1)


def test_a_case_of_a_flow_removed_from_the_policy_is_left_untouched() -> None:
    acct = opened()
    other = policy(
        """
        other:
          reason: r
          starts_on: [note]
        """
    )
    step = advance(acct, other, OPENED + days(50))
    assert step.account is acct
    assert step.changed is False
    assert step.next_due_at is None


def test_advance_needs_an_aware_now() -> None:
    with pytest.raises(InvalidInput, match=r"^`now` must be an aware datetime \(UTC\)$"):
        advance(account(INACTIVITY), INACTIVITY, datetime(2024, 3, 1))


# --- events -----------------------------------------------------------------------------------

LOCK = policy(
    """
    payment-lock:
      reason: payment failed
      starts_on: [payment_failed, renewal_failed]
      stops_on: [payment_succeeded]
      phases:
        - {name: locked, lasts: 30 days, allow_only: [login, renew]}
        - {name: expired, allow_only: [login]}
    """
)


def test_an_event_starts_a_case_at_its_own_time() -> None:
    step = apply_event(
        account(LOCK), LOCK, "payment_failed", T0 + days(2), T0 + days(3), reason="card declined"
    )
    case = the_case(step.account)
    assert (case.id, case.started_at, case.opened_by, case.reason) == (
        "payment-lock#1",
        T0 + days(2),
        "event:payment_failed",
        "card declined",
    )
    assert audit_kinds(step) == ["event.received", "case.opened", "phase.entered"]
    assert step.next_due_at == T0 + days(32)
    step = advance(step.account, LOCK, T0 + days(40))
    assert the_case(step.account).phase_index == 1
    assert the_case(step.account).phase_started_at == T0 + days(32)
    assert step.next_due_at is None  # open-ended: until stopped


def test_a_start_event_while_a_case_is_open_does_nothing_more() -> None:
    acct = apply_event(account(LOCK), LOCK, "payment_failed", T0, T0).account
    step = apply_event(acct, LOCK, "renewal_failed", T0 + days(1), T0 + days(1))
    assert audit_kinds(step) == ["event.received"]
    assert the_case(step.account) == the_case(acct)
    assert step.account.last_events == {
        "payment_failed": T0,
        "renewal_failed": T0 + days(1),
    }


def test_a_start_event_older_than_a_later_stop_event_is_ignored() -> None:
    acct = apply_event(account(LOCK), LOCK, "payment_succeeded", T0 + days(5), T0 + days(5)).account
    step = apply_event(acct, LOCK, "payment_failed", T0 + days(4), T0 + days(6))
    assert step.account.cases == ()
    assert [(e.kind, dict(e.detail)) for e in step.audit] == [
        ("event.received", {"name": "payment_failed", "event_id": None}),
        (
            "event.ignored",
            {
                "name": "payment_failed",
                "flow": "payment-lock",
                "why": "a later payment_succeeded event already arrived",
            },
        ),
    ]
    # a start at the very moment of the stop is stale too; a later one starts
    assert apply_event(acct, LOCK, "payment_failed", T0 + days(5), T0 + days(6)).account.cases == ()
    fresh = apply_event(acct, LOCK, "payment_failed", T0 + days(6), T0 + days(6))
    assert [c.started_at for c in fresh.account.cases] == [T0 + days(6)]


def test_a_start_event_older_than_the_last_close_is_ignored() -> None:
    acct = apply_event(account(LOCK), LOCK, "payment_failed", T0, T0).account
    acct = reactivate(acct, LOCK, T0 + days(3), by="support", reason="paid by wire").account
    step = apply_event(acct, LOCK, "renewal_failed", T0 + days(2), T0 + days(4))
    assert step.account.cases == ()
    assert step.audit[-1].kind == "event.ignored"
    assert step.audit[-1].detail["why"] == "older than the flow's last close"


def test_a_start_event_during_a_snooze_is_ignored() -> None:
    acct = apply_event(account(LOCK), LOCK, "payment_failed", T0, T0).account
    acct = reactivate(
        acct, LOCK, T0 + days(1), by="support", reason="r", snooze_until=T0 + days(9)
    ).account
    step = apply_event(acct, LOCK, "renewal_failed", T0 + days(3), T0 + days(3))
    assert step.account.cases == ()
    assert step.audit[-1].detail == {
        "name": "renewal_failed",
        "flow": "payment-lock",
        "why": "the flow is snoozed until 2024-01-10T00:00:00+00:00",
    }
    after = apply_event(acct, LOCK, "renewal_failed", T0 + days(9), T0 + days(9))
    assert [c.id for c in after.account.cases] == ["payment-lock#2"]


def test_a_stop_event_older_than_the_case_is_ignored() -> None:
    acct = apply_event(account(LOCK), LOCK, "payment_failed", T0 + days(5), T0 + days(5)).account
    step = apply_event(acct, LOCK, "payment_succeeded", T0 + days(4), T0 + days(6))
    assert the_case(step.account).id == "payment-lock#1"
    assert [(e.kind, e.at, e.case_id, dict(e.detail)) for e in step.audit] == [
        ("event.received", T0 + days(4), None, {"name": "payment_succeeded", "event_id": None}),
        (
            "event.ignored",
            T0 + days(4),
            "payment-lock#1",
            {"name": "payment_succeeded", "why": "older than the case"},
        ),
    ]
    # the stop is remembered, so a start event older than it is stale
    assert step.account.last_events["payment_succeeded"] == T0 + days(4)


def test_events_from_the_future_are_clamped_to_now() -> None:
    step = apply_event(account(LOCK), LOCK, "payment_failed", T0 + days(9), T0 + days(1))
    assert the_case(step.account).started_at == T0 + days(1)
    assert step.account.last_events == {"payment_failed": T0 + days(1)}


def test_an_older_repeat_of_an_event_keeps_the_latest_time() -> None:
    acct = apply_event(account(LOCK), LOCK, "payment_succeeded", T0 + days(5), T0 + days(5)).account
    step = apply_event(acct, LOCK, "payment_succeeded", T0 + days(1), T0 + days(6))
    assert step.account.last_events == {"payment_succeeded": T0 + days(5)}


def test_unknown_and_naive_events_are_refused() -> None:
    with pytest.raises(
        InvalidInput,
        match=r"^unknown event 'paid'; the policy knows: note, payment_failed, "
        r"payment_succeeded, renewal_failed$",
    ):
        apply_event(account(LOCK), LOCK, "paid", T0, T0)
    with pytest.raises(
        InvalidInput, match=r"^event 'payment_failed': timestamp must include a time zone$"
    ):
        apply_event(account(LOCK), LOCK, "payment_failed", datetime(2024, 1, 1), T0)


def test_an_event_no_flow_uses_is_recorded() -> None:
    step = apply_event(account(LOCK), LOCK, "note", T0, T0)
    assert step.account.last_events == {"note": T0}
    assert audit_kinds(step) == ["event.received"]


# --- re-arming, reactivation and snoozing -------------------------------------------------------


def test_reactivation_closes_the_case_and_rearms_the_flow_from_now() -> None:
    acct = opened()
    step = reactivate(acct, INACTIVITY, OPENED + days(4), by="support", reason="customer called")
    assert step.account.cases == ()
    assert kinds_of(step) == ["exit:resume", "close:closed"]
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        (
            "case.closed",
            OPENED + days(4),
            {"reason": "reactivated: customer called", "by": "support"},
        )
    ]
    # a fresh 30 days, not a reopening on the next tick
    assert step.next_due_at == OPENED + days(34)
    assert advance(step.account, INACTIVITY, OPENED + days(5)).account is step.account
    again = advance(step.account, INACTIVITY, OPENED + days(34))
    assert the_case(again.account).id == "inactivity#2"
    assert the_case(again.account).started_at == OPENED + days(34)


def test_a_snoozed_flow_waits_then_counts_from_the_snooze() -> None:
    acct = opened()
    until = OPENED + days(50)
    step = reactivate(acct, INACTIVITY, OPENED + days(4), by="s", reason="r", snooze_until=until)
    assert step.account.armed_from == {"inactivity": until}
    assert step.next_due_at == until
    assert advance(step.account, INACTIVITY, until - timedelta(minutes=1)).account.cases == ()
    at_snooze = advance(step.account, INACTIVITY, until)
    assert at_snooze.account.cases == ()
    assert at_snooze.next_due_at == until + days(30)


def test_a_snooze_in_the_past_rearms_from_now() -> None:
    step = reactivate(
        opened(), INACTIVITY, OPENED + days(4), by="s", reason="r", snooze_until=OPENED
    )
    assert step.account.armed_from == {"inactivity": OPENED + days(4)}


def test_reactivation_errors() -> None:
    acct = opened()
    with pytest.raises(CaseNotFound, match=r"^account 'acct-1' has no open case 'x#1'$"):
        reactivate(acct, INACTIVITY, OPENED, by="s", reason="r", case_id="x#1")
    with pytest.raises(CaseNotFound, match=r"^account 'acct-1' has no open case to reactivate$"):
        reactivate(account(INACTIVITY), INACTIVITY, T0, by="s", reason="r")
    with pytest.raises(InvalidInput, match=r"^snooze_until must include a time zone$"):
        reactivate(acct, INACTIVITY, OPENED, by="s", reason="r", snooze_until=datetime(2030, 1, 1))


LIMIT = policy(
    """
    limit-lock:
      reason: over the contact limit
      starts_when: {fact: contacts, gt: {fact: limit}}
      on_close: [resume]
      phases:
        - name: locked
          lasts: 180 days
          allow_only: [login, view]
          notices: [{at: start, to: admins, template: lock-started}]
        - {name: retention-expired, allow_only: [login, view]}
    expiry:
      reason: expired
      starts_when: {all: [{since: expires, for: 0 days}, {fact: active, is: false}]}
      phases: [{name: grace, lasts: 30 days, deny: [send]}]
    """
)


def over_the_limit() -> Account:
    acct = set_fact(account(LIMIT), LIMIT, "limit", 1000, at=T0)
    acct = set_fact(acct, LIMIT, "contacts", 1200, at=T0 + days(1))
    acct = set_fact(acct, LIMIT, "expires", T0 + days(2), at=T0)
    return advance(acct, LIMIT, T0 + days(3)).account


def test_reactivation_is_refused_while_the_start_condition_still_holds() -> None:
    acct = over_the_limit()
    assert sorted(c.id for c in acct.cases) == ["expiry#2", "limit-lock#1"]
    # closing the lock would open limit-lock#3 at once: a new lock email, a new 180 days
    with pytest.raises(
        Conflict,
        match=r"^reactivating case 'limit-lock#1' would reopen it at once: the start of flow "
        r"'limit-lock' still holds \(contacts 1200 > limit 1000\); resolve the cause first, "
        r"or give snooze_until to keep the flow closed until then$",
    ):
        reactivate(acct, LIMIT, T0 + days(4), by="s", reason="r", case_id="limit-lock#1")
    with pytest.raises(Conflict) as refused:
        reactivate(acct, LIMIT, T0 + days(4), by="s", reason="r")
    assert str(refused.value) == (
        "reactivating case 'limit-lock#1' would reopen it at once: the start of flow "
        "'limit-lock' still holds (contacts 1200 > limit 1000); reactivating case 'expiry#2' "
        "would reopen it at once: the start of flow 'expiry' still holds (at least 0 days "
        "since expires (expires is 2024-01-03T00:00:00+00:00) and active is false); resolve "
        "the cause first, or give snooze_until to keep the flow closed until then"
    )
    # with a snooze the flow stays closed until then, and only then counts again
    until = T0 + days(10)
    step = reactivate(acct, LIMIT, T0 + days(4), by="s", reason="r", snooze_until=until)
    assert step.account.cases == ()
    assert step.account.armed_from == {"limit-lock": until, "expiry": until}
    assert [c.id for c in advance(step.account, LIMIT, until).account.cases] == [
        "limit-lock#3",
        "expiry#4",
    ]
    # once the cause is gone nothing reopens: not refused (and the lock closes by itself)
    fixed = set_fact(acct, LIMIT, "limit", 5000, at=T0 + days(4))
    fixed = set_fact(fixed, LIMIT, "active", True, at=T0 + days(4))
    step = reactivate(fixed, LIMIT, T0 + days(4), by="s", reason="r", case_id="expiry#2")
    assert step.account.cases == ()


def test_reactivating_one_case_by_id() -> None:
    acct = apply_event(opened(), INACTIVITY, "contacted", OPENED, OPENED).account
    assert acct.cases == ()
    acct = advance(acct, INACTIVITY, OPENED + days(30)).account
    assert the_case(acct).id == "inactivity#2"
    step = reactivate(
        acct, INACTIVITY, OPENED + days(31), by="s", reason="r", case_id="inactivity#2"
    )
    assert step.account.cases == ()


# --- irreversible flows -------------------------------------------------------------------------

TOS = policy(
    """
    tos:
      reason: abuse
      starts_on: [note]
      irreversible: true
      waive: [deletion-without-notice]
      phases:
        - name: suspended
          allow_only: []
          on_enter: [revoke]
      outcome: delete
      address: retire
    lock:
      reason: locked by support
      starts_on: [lock]
      stops_on: [unlock]
      phases: [{name: locked, allow_only: [login]}]
    """
)


def test_an_irreversible_flow_deletes_at_once_and_cannot_be_reactivated() -> None:
    step = apply_event(account(TOS), TOS, "note", T0, T0)
    assert kinds_of(step) == ["enter:revoke", "delete"]
    case = the_case(step.account)
    assert (case.phase_index, case.destruct) == (0, "requested")
    with pytest.raises(
        IrreversibleCase,
        match=r"^case 'tos#1' belongs to an irreversible flow and cannot be reactivated$",
    ):
        reactivate(step.account, TOS, T0, by="s", reason="r")
    with pytest.raises(IrreversibleCase):
        reactivate(step.account, TOS, T0, by="s", reason="r", case_id="tos#1")


def test_reactivating_everything_skips_irreversible_cases() -> None:
    acct = apply_event(account(TOS), TOS, "note", T0, T0).account
    acct = apply_event(acct, TOS, "lock", T0, T0).account
    step = reactivate(acct, TOS, T0 + days(1), by="s", reason="r")
    assert [c.id for c in step.account.cases] == ["tos#1"]
    assert [e.case_id for e in step.audit] == ["lock#2"]


def test_nothing_stops_an_irreversible_case() -> None:
    acct = apply_event(account(TOS), TOS, "note", T0, T0).account
    acct = set_kind(acct, TOS, "trial")  # applies to every kind anyway
    step = advance(acct, TOS, T0 + days(400))
    assert step.account is acct
    pol = policy(
        """
        tos:
          reason: abuse
          applies_to: {kind: standard}
          starts_on: [note]
          irreversible: true
          phases: [{name: suspended, allow_only: []}]
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    acct = set_kind(acct, pol, "trial")
    assert advance(acct, pol, T0 + days(1)).account is acct


# --- opening by hand ------------------------------------------------------------------------------


def test_an_administrator_opens_a_case_by_hand() -> None:
    step = open_case(account(TOS), TOS, T0 + days(1), flow="lock", by="ops", reason="fraud check")
    case = the_case(step.account)
    assert (case.id, case.started_at, case.opened_by, case.reason) == (
        "lock#1",
        T0 + days(1),
        "admin:ops",
        "fraud check",
    )
    defaulted = open_case(account(TOS), TOS, T0, flow="lock", by="ops")
    assert the_case(defaulted.account).reason == "locked by support"


def test_opening_by_hand_errors() -> None:
    acct = open_case(account(TOS), TOS, T0, flow="lock", by="ops").account
    with pytest.raises(
        Conflict, match=r"^flow 'lock' already has an open case on account 'acct-1'$"
    ):
        open_case(acct, TOS, T0, flow="lock", by="ops")
    with pytest.raises(CaseNotFound, match=r"^the policy has no flow 'nope'; flows: tos, lock$"):
        open_case(acct, TOS, T0, flow="nope", by="ops")
    pol = policy(
        """
        std:
          reason: r
          applies_to: {kind: standard}
          starts_on: [note]
        auto:
          reason: r
          starts_when: {age: 1 day}
        """
    )
    with pytest.raises(Conflict, match=r"^flow 'std' does not apply to accounts of kind 'trial'$"):
        open_case(account(pol, kind="trial"), pol, T0, flow="std", by="ops")
    with pytest.raises(
        Conflict,
        match=r"^flow 'auto' closes as soon as its start condition no longer holds; "
        r"it cannot be opened by hand$",
    ):
        open_case(account(pol), pol, T0, flow="auto", by="ops")


# --- notices and recipients ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "address", "to", "expected"),
    [
        ((Member(email=ADMIN, role="admin"), Member(email=MEMBER)), OWNER, "admins", (ADMIN,)),
        (
            (Member(email=ADMIN, role="admin"), Member(email=MEMBER)),
            OWNER,
            "members",
            (ADMIN, MEMBER),
        ),
        ((Member(email=ADMIN, role="admin"), Member(email=MEMBER)), OWNER, "owner", (OWNER,)),
        ((Member(email=MEMBER),), OWNER, "admins", (OWNER,)),
        ((), OWNER, "members", (OWNER,)),
        ((Member(email=MEMBER),), None, "admins", ()),
        ((), None, "members", ()),
        ((Member(email=ADMIN, role="admin"),), None, "owner", ()),
    ],
)
def test_recipients(
    members: tuple[Member, ...], address: str | None, to: str, expected: tuple[str, ...]
) -> None:
    acct = account(INACTIVITY, members=members, address=address)
    assert recipients(acct, to) == expected  # type: ignore[arg-type]


def test_notices_after_start_are_created_when_due_even_in_an_open_ended_phase() -> None:
    pol = policy(
        """
        f:
          reason: r
          starts_on: [note]
          phases:
            - name: first
              lasts: 10 days
              notices: [{at: 2 days after start, to: members, template: reminder}]
            - name: second
              notices: [{at: 5 days after start, to: owner, template: still-here}]
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    step = advance(acct, pol, T0 + days(1))
    assert step.account is acct
    assert step.next_due_at == T0 + days(2)
    step = advance(acct, pol, T0 + days(2))
    assert kinds_of(step) == ["notice:first/reminder"]
    record = the_case(step.account).notices[0]
    assert (record.recipients, record.due_at) == ((ADMIN, MEMBER), T0 + days(2))
    # dispatched late: an "after start" notice only holds the phase until it is dispatched
    step = notice_dispatched(
        step.account, pol, T0 + days(12), case_id="f#1", key="first/reminder", at=T0 + days(12)
    )
    case = the_case(step.account)
    assert (case.phase_index, case.phase_started_at) == (1, T0 + days(12))
    assert step.next_due_at == T0 + days(17)
    step = advance(step.account, pol, T0 + days(17))
    assert kinds_of(step) == ["notice:second/still-here"]
    assert step.next_due_at is None


def test_notice_dispatched_twice_is_harmless() -> None:
    acct = opened()
    once = notice_dispatched(acct, INACTIVITY, OPENED, case_id=CASE, key="grace/started", at=OPENED)
    twice = notice_dispatched(
        once.account,
        INACTIVITY,
        OPENED + days(1),
        case_id=CASE,
        key="grace/started",
        at=OPENED + days(1),
    )
    assert twice.account is once.account
    assert twice.changed is False
    assert the_case(twice.account).notices[0].dispatched_at == OPENED
    assert twice.next_due_at == OPENED + days(7)


def test_notice_dispatched_for_an_unknown_notice() -> None:
    acct = opened()
    with pytest.raises(
        CaseNotFound, match=r"^account 'acct-1' has no notice 'grace/final' on case 'inactivity#1'$"
    ):
        notice_dispatched(acct, INACTIVITY, OPENED, case_id=CASE, key="grace/final", at=OPENED)
    with pytest.raises(CaseNotFound, match=r"has no notice 'grace/started' on case 'x#9'$"):
        notice_dispatched(acct, INACTIVITY, OPENED, case_id="x#9", key="grace/started", at=OPENED)


def test_advance_records_deliveries_whose_dispatch_was_never_recorded() -> None:
    # the rows of both notices went out but only the store knows it (a crash between the
    # delivery and the dispatch): the phase waits, and nothing makes the account due
    acct = advance(opened(), INACTIVITY, OPENED + days(7)).account
    assert advance(acct, INACTIVITY, OPENED + days(20)).next_due_at is None
    delivered = {
        (CASE, "grace/started"): OPENED + timedelta(minutes=2),
        (CASE, "grace/final"): OPENED + days(8),  # a day late: the phase keeps its 3 days
        (CASE, "grace/unknown"): OPENED,  # no such notice: ignored
        ("other#1", "grace/started"): OPENED,  # no such case: ignored
    }
    step = advance(acct, INACTIVITY, OPENED + days(9), dispatched=delivered)
    case = the_case(step.account)
    assert [(r.key, r.dispatched_at) for r in case.notices] == [
        ("grace/started", OPENED + timedelta(minutes=2)),
        ("grace/final", OPENED + days(8)),
    ]
    assert [(e.kind, e.at, e.detail) for e in step.audit] == [
        ("notice.dispatched", OPENED + days(8), {"key": "grace/final", "recovered": True}),
        (
            "notice.dispatched",
            OPENED + timedelta(minutes=2),
            {"key": "grace/started", "recovered": True},
        ),
    ]
    assert step.next_due_at == OPENED + days(11)
    # a notice already recorded keeps its own time: the store's is not applied twice
    again = advance(
        step.account, INACTIVITY, OPENED + days(9), dispatched={(CASE, "grace/final"): OPENED}
    )
    assert again.changed is False
    assert the_case(again.account).notices[1].dispatched_at == OPENED + days(8)


def test_a_notice_with_no_recipient_is_still_created_and_holds_the_phase() -> None:
    acct = account(INACTIVITY, members=(), address=None)
    step = advance(acct, INACTIVITY, OPENED + days(20))
    assert [n.recipients for n in the_case(step.account).notices] == [(), ()]
    assert [e.recipients for e in step.effects if isinstance(e, NoticeEffect)] == [(), ()]
    assert [dict(e.detail)["recipients"] for e in step.audit if e.kind == "notice.created"] == [
        0,
        0,
    ]
    assert the_case(advance(step.account, INACTIVITY, OPENED + days(90)).account).phase_index == 0


# --- month and calendar arithmetic ----------------------------------------------------------------


MONTHS = policy(
    """
    expiry:
      reason: r
      starts_on: [note]
      phases:
        - {name: first, lasts: 1 month}
        - {name: second, lasts: 1 month}
        - {name: third, lasts: 1 month 1 day}
      outcome: delete
      waive: [deletion-without-notice]
    """
)


def test_months_are_anchored_to_the_case_start() -> None:
    start = utc(2024, 1, 31, 10)
    acct = apply_event(account(MONTHS, created=start), MONTHS, "note", start, start).account
    case = the_case(acct)
    flow = MONTHS.flows["expiry"]
    # every end counts from the case start (-1): the months are anchored there
    assert cumulative(flow) == (
        (-1, Duration(months=1)),
        (-1, Duration(months=2)),
        (-1, Duration(months=3, days=1)),
    )
    assert [planned_end(case, flow, i, MONTHS) for i in range(3)] == [
        utc(2024, 2, 29, 10),
        utc(2024, 3, 31, 10),
        utc(2024, 5, 1, 10),
    ]
    step = advance(acct, MONTHS, utc(2024, 3, 31, 10))
    case = the_case(step.account)
    assert (case.phase_index, case.phase_started_at) == (2, utc(2024, 3, 31, 10))
    assert [e.at for e in step.audit if e.kind == "phase.entered"] == [
        utc(2024, 2, 29, 10),
        utc(2024, 3, 31, 10),
    ]
    step = advance(step.account, MONTHS, utc(2024, 6, 1))
    assert audit_kinds(step) == ["delete.requested"]
    assert step.audit[0].at == utc(2024, 5, 1, 10)


MIXED = policy(
    """
    mixed:
      reason: r
      starts_on: [note]
      phases:
        - {name: day, lasts: 1 day}
        - {name: month, lasts: 1 month}
        - {name: next-month, lasts: 1 month}
        - {name: month-and-days, lasts: 1 month 15 days}
        - {name: last, lasts: 1 month}
    """
)


def test_a_month_after_a_day_lasts_a_whole_month() -> None:
    start = utc(2023, 2, 28, 10)
    acct = apply_event(account(MIXED, created=start), MIXED, "note", start, start).account
    case = the_case(acct)
    flow = MIXED.flows["mixed"]
    # the day ends on 1 March; the month after it counts from there: 1 April, not 29 March
    # (months applied before days: 28 Feb + 1 month + 1 day); the next month stays anchored
    # to that 1 March, as does the months part of "1 month 15 days"; then 15 days
    assert cumulative(flow) == (
        (-1, Duration(days=1)),
        (0, Duration(months=1)),
        (0, Duration(months=2)),
        (0, Duration(months=3, days=15)),
        (3, Duration(months=1)),
    )
    assert [planned_end(case, flow, i, MIXED) for i in range(5)] == [
        utc(2023, 3, 1, 10),
        utc(2023, 4, 1, 10),
        utc(2023, 5, 1, 10),
        utc(2023, 6, 16, 10),
        utc(2023, 7, 16, 10),
    ]
    step = advance(acct, MIXED, utc(2023, 8, 1))
    assert [e.at for e in step.audit if e.kind == "phase.entered"] == [
        utc(2023, 3, 1, 10),
        utc(2023, 4, 1, 10),
        utc(2023, 5, 1, 10),
        utc(2023, 6, 16, 10),
    ]
    assert [e.at for e in step.audit if e.kind == "case.closed"] == [utc(2023, 7, 16, 10)]


def test_days_are_calendar_days_in_the_policy_time_zone() -> None:
    pol = policy(
        """
        f:
          reason: r
          starts_on: [note]
          phases:
            - name: grace
              lasts: 2 days
              notices: [{at: 1 day before end, to: owner, template: warn}]
            - {name: after, lasts: 1 day}
        """,
        timezone="Europe/Brussels",
    )
    start = utc(2024, 3, 30, 11)  # 12:00 in Brussels, the day before summer time starts
    acct = apply_event(account(pol, created=start), pol, "note", start, start).account
    case = the_case(acct)
    flow = pol.flows["f"]
    # noon to noon in Brussels: 47 hours across the change, then 24 hours
    assert planned_end(case, flow, 0, pol) == utc(2024, 4, 1, 10)
    assert planned_end(case, flow, 1, pol) == utc(2024, 4, 2, 10)
    step = advance(acct, pol, utc(2024, 3, 31, 9, 59))
    assert step.account is acct
    assert step.next_due_at == utc(2024, 3, 31, 10)  # noon on the 31st, summer time
    step = advance(acct, pol, utc(2024, 3, 31, 10))
    assert kinds_of(step) == ["notice:grace/warn"]


def test_position_phase_is_the_last_phase_once_past_the_end() -> None:
    flow = MONTHS.flows["expiry"]
    case = Case(
        id="expiry#1",
        flow="expiry",
        started_at=T0,
        phase_index=3,
        phase_started_at=T0,
        reason="r",
        opened_by="condition",
        policy_version="7",
    )
    assert position_phase(case, flow) == flow.phases[2]
    bare = TOS.flows["tos"]
    assert position_phase(case, bare) == bare.phases[0]
    no_phases = policy(
        """
        f:
          reason: r
          starts_on: [note]
        """
    ).flows["f"]
    assert position_phase(case, no_phases) is None


def test_host_effects_carry_their_lifecycle_time() -> None:
    step = advance(account(INACTIVITY), INACTIVITY, OPENED + days(3))
    effect = step.effects[0]
    assert effect == HostEffect(
        account_id="acct-1",
        case_id=CASE,
        flow="inactivity",
        phase="grace",
        name="pause",
        trigger="enter",
        at=OPENED,
    )


def test_an_on_close_effect_shared_by_open_cases_is_sent_when_the_last_one_closes() -> None:
    pol = policy(
        """
        payment:
          reason: r
          starts_on: [p-on]
          stops_on: [p-off]
          on_close: [resume, payment-cleared]
          phases: [{name: locked, allow_only: [login], on_exit: [leave-payment]}]
        limit:
          reason: r
          starts_on: [l-on]
          stops_on: [l-off]
          on_close: [resume]
          phases: [{name: locked, allow_only: [login]}]
        """
    )
    acct = apply_event(account(pol), pol, "p-on", T0, T0).account
    acct = apply_event(acct, pol, "l-on", T0, T0).account
    first = apply_event(acct, pol, "p-off", T0 + days(1), T0 + days(1))
    assert kinds_of(first) == ["exit:leave-payment", "close:payment-cleared"]
    last = apply_event(first.account, pol, "l-off", T0 + days(2), T0 + days(2))
    assert kinds_of(last) == ["close:resume"]


def test_notice_dispatched_needs_an_aware_time() -> None:
    with pytest.raises(InvalidInput, match=r"^`at` must include a time zone$"):
        notice_dispatched(
            opened(), INACTIVITY, OPENED, case_id=CASE, key="grace/started", at=datetime(2024, 2, 1)
        )


def test_a_dispatch_reported_before_the_notice_existed_counts_from_its_creation() -> None:
    acct = dispatch_all(opened(), INACTIVITY, OPENED).account
    acct = advance(acct, INACTIVITY, OPENED + days(8)).account  # the final warning, a day late
    step = notice_dispatched(
        acct, INACTIVITY, OPENED + days(8), case_id=CASE, key="grace/final", at=OPENED
    )
    record = the_case(step.account).notices[1]
    assert record.dispatched_at == OPENED + days(8)
    assert step.next_due_at == OPENED + days(11)


def test_a_start_event_is_ignored_while_the_stop_rule_holds() -> None:
    pol = policy(
        """
        lock:
          reason: payment failed
          starts_on: [payment_failed]
          stops_when: {fact: active, is: true}
          phases:
            - name: locked
              lasts: 30 days
              deny: [send]
              notices: [{at: start, to: admins, template: locked}]
        """
    )
    acct = set_fact(account(pol), pol, "active", True, T0)
    step = apply_event(acct, pol, "payment_failed", T0 + days(1), T0 + days(1))
    # no case that would close at once, and no "your account is locked" email for it
    assert step.account.cases == ()
    assert step.effects == ()
    assert [(e.kind, dict(e.detail).get("why")) for e in step.audit] == [
        ("event.received", None),
        ("event.ignored", "the flow's stop rule holds"),
    ]
