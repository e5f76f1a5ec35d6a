"""lifecycle.py: outcomes (delete, purge), legal holds and re-notices, extensions, recurrence."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lapse.core.inputs import record_signal, set_fact
from lapse.core.lifecycle import (
    advance,
    apply_event,
    extend,
    notice_dispatched,
    open_case,
    outcome_done,
    reactivate,
    set_legal_hold,
    wake_signals,
)
from lapse.core.model import (
    Account,
    Adjustment,
    Case,
    DeleteEffect,
    LegalHold,
    NoticeEffect,
    PurgeEffect,
    Step,
)
from lapse.core.timeline import settle
from lapse.errors import AccountDeleted, CaseNotFound, Conflict, InvalidInput, PolicyError
from lapse.policy.durations import Duration
from lapse.policy.model import AddressRule

from .conftest import T0, account, audit_kinds, days, dispatch_all, kinds_of, policy, utc

HOUR = timedelta(hours=1)

CLEANUP = policy(
    """
    cleanup:
      reason: idle
      starts_on: [note]
      stops_on: [contacted]
      phases:
        - name: grace
          lasts: 10 days
          notices:
            - {at: start, to: admins, template: started}
            - {at: 7 days before end, to: admins, template: final}
      outcome: delete
      address: {retire_for: 2 years}
    """
)
CASE = "cleanup#1"
END = T0 + days(10)


def the_case(acct: Account) -> Case:
    assert len(acct.cases) == 1
    return acct.cases[0]


def started(now: datetime = T0) -> Account:
    """A cleanup case opened at T0, every notice due by `now` created and dispatched on time."""
    acct = apply_event(account(CLEANUP), CLEANUP, "note", T0, T0).account
    acct = dispatch_all(acct, CLEANUP, T0).account
    if now >= T0 + days(3):
        acct = advance(acct, CLEANUP, T0 + days(3)).account
        acct = dispatch_all(acct, CLEANUP, T0 + days(3)).account
    return acct


def hold(acct: Account, now: datetime, on: bool = True) -> Step:
    return set_legal_hold(acct, CLEANUP, now, on=on, by="legal", reason="litigation")


# --- delete -------------------------------------------------------------------------------------


def test_delete_is_requested_when_the_last_timed_phase_ends_and_done_later() -> None:
    step = advance(started(T0 + days(3)), CLEANUP, END + HOUR)
    assert step.effects == (
        DeleteEffect(
            account_id="acct-1",
            case_id=CASE,
            flow="cleanup",
            address=AddressRule(mode="retire", duration=Duration(years=2)),
            at=END,
        ),
    )
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        ("delete.requested", END, {"address": "retire"})
    ]
    # waiting for the host: repeating the evaluation sends nothing again
    again = advance(step.account, CLEANUP, END + days(1))
    assert again.account is step.account
    assert again.changed is False
    done = outcome_done(step.account, CLEANUP, END + days(1), case_id=CASE)
    assert done.account.deleted_at == END + days(1)
    assert done.account.cases == ()
    assert [(e.kind, e.case_id, dict(e.detail)) for e in done.audit] == [
        ("case.closed", CASE, {"reason": "account deleted"}),
        ("account.deleted", CASE, {"address": "retire"}),
    ]
    assert done.next_due_at is None


def test_deletion_closes_every_other_case_and_freezes_the_account() -> None:
    pol = policy(
        """
        cleanup:
          reason: idle
          starts_on: [note]
          outcome: delete
          waive: [deletion-without-notice]
        lock:
          reason: locked
          starts_on: [lock]
          phases: [{name: locked, allow_only: [login]}]
        """
    )
    acct = apply_event(account(pol), pol, "lock", T0, T0).account
    acct = apply_event(acct, pol, "note", T0 + days(1), T0 + days(1)).account
    assert [(c.id, c.destruct) for c in acct.cases] == [
        ("lock#1", "none"),
        ("cleanup#2", "requested"),
    ]
    done = outcome_done(acct, pol, T0 + days(2), case_id="cleanup#2")
    assert [(e.kind, e.case_id) for e in done.audit] == [
        ("case.closed", "lock#1"),
        ("case.closed", "cleanup#2"),
        ("account.deleted", "cleanup#2"),
    ]
    gone = done.account
    assert advance(gone, pol, T0 + days(400)) == Step(account=gone)
    message = r"^account 'acct-1' was deleted$"
    with pytest.raises(AccountDeleted, match=message):
        apply_event(gone, pol, "lock", T0, T0 + days(3))
    with pytest.raises(AccountDeleted, match=message):
        open_case(gone, pol, T0 + days(3), flow="lock", by="x")
    with pytest.raises(AccountDeleted, match=message):
        reactivate(gone, pol, T0 + days(3), by="x", reason="y")
    with pytest.raises(AccountDeleted, match=message):
        extend(
            gone, pol, T0 + days(3), case_id="lock#1", by="x", reason="y", duration=Duration(days=1)
        )
    with pytest.raises(AccountDeleted, match=message):
        set_legal_hold(gone, pol, T0 + days(3), on=True, by="x", reason="y")
    with pytest.raises(AccountDeleted, match=message):
        outcome_done(gone, pol, T0 + days(3), case_id="cleanup#2")


def test_outcome_done_errors() -> None:
    acct = started()
    message = r"^case 'cleanup#1' of account 'acct-1' has no outcome in progress$"
    with pytest.raises(Conflict, match=message):
        outcome_done(acct, CLEANUP, T0, case_id=CASE)
    with pytest.raises(Conflict, match=r"^case 'x#1' of account 'acct-1' has no outcome"):
        outcome_done(acct, CLEANUP, T0, case_id="x#1")
    removed = policy(
        """
        other:
          reason: r
          starts_on: [note]
        """
    )
    requested = advance(started(T0 + days(3)), CLEANUP, END).account
    with pytest.raises(CaseNotFound, match=r"^the policy has no flow 'cleanup'; flows: other$"):
        outcome_done(requested, removed, END, case_id=CASE)


# --- purge ------------------------------------------------------------------------------------

PURGES = policy(
    """
    lock:
      reason: locked
      starts_on: [lock]
      stops_on: [unlock]
      phases:
        - {name: locked, lasts: 30 days, allow_only: [login]}
        - {name: trimmed, lasts: 30 days, allow_only: [login], purge: [campaigns]}
        - {name: retention-expired, allow_only: [login], purge: [reports, campaigns]}
      outcome: {purge: [reports, contacts]}
      waive: [deletion-without-notice]
    sweep:
      reason: sweep
      starts_on: [sweep]
      phases: [{name: only, lasts: 1 day, purge: [reports]}]
      outcome: {purge: [contacts]}
      waive: [deletion-without-notice]
    """
)


def test_phase_purges_and_the_outcome_purge_run_on_entering_their_phase() -> None:
    acct = apply_event(account(PURGES), PURGES, "lock", T0, T0).account
    step = advance(acct, PURGES, T0 + days(30))
    assert step.effects == (
        PurgeEffect(
            account_id="acct-1",
            case_id="lock#1",
            flow="lock",
            phase="trimmed",
            categories=("campaigns",),
            at=T0 + days(30),
        ),
    )
    assert the_case(step.account).destruct == "requested"
    assert step.next_due_at == T0 + days(60)
    done = outcome_done(step.account, PURGES, T0 + days(31), case_id="lock#1")
    assert audit_kinds(done) == ["purge.done"]
    assert the_case(done.account).destruct == "done"
    step = advance(done.account, PURGES, T0 + days(60))
    # the open-ended phase's own purge and the outcome's, once each, in that order
    assert kinds_of(step) == ["purge:reports,campaigns,contacts"]
    assert step.audit[-1].detail == {
        "categories": ["reports", "campaigns", "contacts"],
        "phase": "retention-expired",
    }
    case = the_case(step.account)
    assert (case.phase_index, case.destruct) == (2, "requested")
    done = outcome_done(step.account, PURGES, T0 + days(61), case_id="lock#1")
    # the case stays in its open-ended phase until it is stopped
    assert (the_case(done.account).phase_index, the_case(done.account).destruct) == (2, "done")
    assert advance(done.account, PURGES, T0 + days(900)).account is done.account
    closed = apply_event(done.account, PURGES, "unlock", T0 + days(901), T0 + days(901))
    assert closed.account.cases == ()


def test_a_purge_not_carried_out_before_the_phase_ends_is_forgotten() -> None:
    acct = apply_event(account(PURGES), PURGES, "lock", T0, T0).account
    acct = advance(acct, PURGES, T0 + days(60)).account
    case = the_case(acct)
    assert (case.phase_index, case.destruct) == (2, "requested")
    assert [e.at for e in case.adjustments] == []


def test_a_purge_outcome_without_a_following_phase_completes_the_case() -> None:
    step = apply_event(account(PURGES), PURGES, "sweep", T0, T0 + days(3))
    assert step.account.cases == ()
    assert kinds_of(step) == ["purge:reports", "purge:contacts"]
    assert [e.phase for e in step.effects if isinstance(e, PurgeEffect)] == ["only", None]
    assert [(e.kind, e.at) for e in step.audit] == [
        ("event.received", T0),
        ("case.opened", T0),
        ("phase.entered", T0),
        ("purge.requested", T0),
        ("purge.requested", T0 + days(1)),
        ("case.closed", T0 + days(1)),
    ]
    assert dict(step.audit[-1].detail) == {"reason": "completed"}


def test_a_flow_whose_case_completes_at_once_is_scheduled_again() -> None:
    pol = policy(
        """
        sweep:
          reason: sweep
          starts_when: {age: 10 days}
          outcome: {purge: [reports]}
          waive: [deletion-without-notice]
        """
    )
    on_time = advance(account(pol), pol, T0 + days(10))
    assert kinds_of(on_time) == ["purge:reports"]
    assert on_time.account.armed_from == {"sweep": T0 + days(10)}
    assert on_time.next_due_at == T0 + days(20)
    late = advance(account(pol), pol, T0 + days(35))
    assert [(e.kind, e.at) for e in late.audit if e.kind != "purge.requested"] == [
        ("case.opened", T0 + days(10)),
        ("case.closed", T0 + days(10)),
        ("case.opened", T0 + days(20)),
        ("case.closed", T0 + days(20)),
        ("case.opened", T0 + days(30)),
        ("case.closed", T0 + days(30)),
    ]
    assert late.next_due_at == T0 + days(40)
    assert late.account.case_seq == 3
    assert advance(late.account, pol, T0 + days(35)).account is late.account


def test_a_flow_that_would_restart_at_the_same_moment_is_refused() -> None:
    # it would end at once and, its start still holding, open again at every evaluation
    with pytest.raises(PolicyError, match=r"flow 'free-sweep' would end the moment it starts"):
        policy(
            """
            free-sweep:
              reason: free accounts keep no reports
              starts_when: {fact: plan, is: free}
              outcome: {purge: [reports]}
              waive: [deletion-without-notice]
            """
        )


def test_a_recurring_flow_without_notices_catches_up_every_round() -> None:
    pol = policy(
        """
        nag:
          reason: no login for 20 days
          starts_when: {no_activity: [login], for: 20 days}
          phases: [{name: restricted, lasts: 5 days, deny: [send]}]
        """
    )
    late = advance(account(pol), pol, T0 + days(60))
    assert [(e.kind, e.at) for e in late.audit if e.kind.startswith("case.")] == [
        ("case.opened", T0 + days(20)),
        ("case.closed", T0 + days(25)),
        ("case.opened", T0 + days(45)),
        ("case.closed", T0 + days(50)),
    ]
    assert late.account.cases == ()
    assert late.next_due_at == T0 + days(70)


# --- legal hold ---------------------------------------------------------------------------------


def test_a_legal_hold_stops_the_deletion_where_it_is() -> None:
    acct = hold(started(T0 + days(3)), T0 + days(5)).account
    assert acct.legal_hold == LegalHold(since=T0 + days(5), by="legal", reason="litigation")
    step = advance(acct, CLEANUP, END + HOUR)
    assert step.effects == ()
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        ("outcome.held", END, {"by": "legal"})
    ]
    case = the_case(step.account)
    assert (case.phase_index, case.destruct, case.destruct_since) == (1, "held", END)
    assert step.next_due_at is None
    assert advance(step.account, CLEANUP, END + days(300)).account is step.account


def test_lifting_the_hold_at_once_deletes_without_new_warnings() -> None:
    acct = advance(hold(started(T0 + days(3)), T0 + days(5)).account, CLEANUP, END).account
    # the final warning went out 7 days ago: exactly its lead, no need to warn again
    step = hold(acct, END, on=False)
    assert kinds_of(step) == ["delete"]
    assert audit_kinds(step) == ["hold.lifted", "delete.requested"]


def test_lifting_a_hold_later_than_the_lead_sends_the_warnings_again() -> None:
    acct = advance(hold(started(T0 + days(3)), T0 + days(5)).account, CLEANUP, END).account
    lifted = END + days(20)
    step = hold(acct, lifted, on=False)
    assert step.account.legal_hold is None
    assert kinds_of(step) == ["notice:grace/final#r1"]
    notice = step.effects[0]
    assert isinstance(notice, NoticeEffect)
    assert (notice.due_at, notice.deadline, notice.template) == (
        lifted,
        lifted + days(7),
        "final",
    )
    assert [(e.kind, dict(e.detail)) for e in step.audit] == [
        ("hold.lifted", {"by": "legal", "reason": "litigation"}),
        (
            "notice.created",
            {
                "key": "grace/final#r1",
                "phase": "grace",
                "template": "final",
                "to": "admins",
                "recipients": 1,
                "late": False,
            },
        ),
        ("outcome.renotice", {"lead": "7 days", "round": 1}),
    ]
    case = the_case(step.account)
    assert (case.destruct, case.renotice_round, case.destruct_since) == ("renotice", 1, lifted)
    assert step.next_due_at is None  # waiting for the dispatch
    step = notice_dispatched(
        step.account,
        CLEANUP,
        lifted + days(1),
        case_id=CASE,
        key="grace/final#r1",
        at=lifted + days(1),
    )
    assert step.next_due_at == lifted + days(8)
    assert advance(step.account, CLEANUP, lifted + days(8) - HOUR).effects == ()
    step = advance(step.account, CLEANUP, lifted + days(8))
    assert kinds_of(step) == ["delete"]
    assert step.effects[0].at == lifted + days(8)


def test_a_hold_withdraws_a_requested_deletion_not_yet_carried_out() -> None:
    acct = advance(started(T0 + days(3)), CLEANUP, END).account
    assert the_case(acct).destruct == "requested"
    step = hold(acct, END + days(1))
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        ("hold.placed", END + days(1), {"by": "legal", "reason": "litigation"}),
        ("outcome.held", END + days(1), {"by": "legal", "withdrawn": True}),
    ]
    case = the_case(step.account)
    assert (case.destruct, case.destruct_since) == ("held", END + days(1))
    with pytest.raises(Conflict, match="has no outcome in progress"):
        outcome_done(step.account, CLEANUP, END + days(1), case_id=CASE)


def test_a_hold_during_a_renotice_holds_again() -> None:
    acct = advance(hold(started(T0 + days(3)), T0 + days(5)).account, CLEANUP, END).account
    acct = hold(acct, END + days(20), on=False).account
    step = hold(acct, END + days(21))
    assert [(e.kind, dict(e.detail)) for e in step.audit] == [
        ("hold.placed", {"by": "legal", "reason": "litigation"}),
        ("outcome.held", {"by": "legal"}),
    ]
    case = the_case(step.account)
    assert (case.destruct, case.destruct_since) == ("held", END + days(21))


def test_a_renotice_interrupted_by_a_new_hold_still_keeps_its_lead() -> None:
    acct = advance(hold(started(T0 + days(3)), T0 + days(5)).account, CLEANUP, END).account
    lifted = END + days(20)
    acct = hold(acct, lifted, on=False).account
    acct = notice_dispatched(
        acct, CLEANUP, lifted, case_id=CASE, key="grace/final#r1", at=lifted
    ).account
    acct = hold(acct, lifted + days(1)).account
    # lifted again two days after the new warning, which announced 7 days
    step = hold(acct, lifted + days(2), on=False)
    assert [e for e in step.effects if isinstance(e, DeleteEffect)] == []
    assert step.next_due_at == lifted + days(7)
    step = advance(step.account, CLEANUP, lifted + days(7))
    assert kinds_of(step) == ["delete"]
    assert step.effects[0].at == lifted + days(7)


def test_a_renotice_not_dispatched_before_a_new_hold_is_sent_again() -> None:
    acct = advance(hold(started(T0 + days(3)), T0 + days(5)).account, CLEANUP, END).account
    acct = hold(acct, END + days(20), on=False).account
    acct = hold(acct, END + days(21)).account
    step = hold(acct, END + days(22), on=False)
    assert kinds_of(step) == ["notice:grace/final#r2"]
    assert the_case(step.account).renotice_round == 2


def test_a_held_case_can_still_be_stopped() -> None:
    acct = advance(hold(started(T0 + days(3)), T0 + days(5)).account, CLEANUP, END).account
    step = apply_event(acct, CLEANUP, "contacted", END + days(2), END + days(3))
    assert step.account.cases == ()
    assert step.effects == ()


def test_a_held_case_stopped_before_the_hold_was_lifted_is_closed_not_deleted() -> None:
    pol = policy(
        """
        expiry:
          reason: expired
          starts_when: {since: expires, for: 0 days}
          phases: [{name: grace, lasts: 5 days, notices: [{at: start, to: owner, template: t}]}]
          outcome: delete
        """
    )
    acct = set_fact(account(pol), pol, "expires", T0, at=T0)
    acct = settle(acct, pol, T0).account
    acct = set_legal_hold(acct, pol, T0 + days(1), on=True, by="l", reason="r").account
    acct = advance(acct, pol, T0 + days(5)).account
    assert the_case(acct).destruct == "held"
    # renewed at day 6, but nobody evaluated the account until the hold was lifted at day 9
    renewed = set_fact(acct, pol, "expires", T0 + days(365), at=T0 + days(6))
    step = set_legal_hold(renewed, pol, T0 + days(9), on=False, by="l", reason="r")
    assert step.account.cases == ()
    assert step.effects == ()
    assert [(e.kind, e.at) for e in step.audit] == [
        ("hold.lifted", T0 + days(9)),
        ("case.closed", T0 + days(6)),
    ]


def test_a_hold_blocks_phase_purges_where_they_are() -> None:
    acct = apply_event(account(PURGES), PURGES, "lock", T0, T0).account
    acct = set_legal_hold(acct, PURGES, T0 + days(1), on=True, by="l", reason="r").account
    step = advance(acct, PURGES, T0 + days(100))
    case = the_case(step.account)
    assert (case.phase_index, case.destruct, case.destruct_since) == (1, "held", T0 + days(30))
    assert step.effects == ()
    lifted = set_legal_hold(step.account, PURGES, T0 + days(101), on=False, by="l", reason="r")
    # no "before end" notice in the phase before: nothing to send again. The hold paused the
    # case: "trimmed" counts its 30 days from the release, so the next purge is not rushed
    assert kinds_of(lifted) == ["purge:campaigns"]
    assert [e.at for e in lifted.effects] == [T0 + days(101)]
    case = the_case(lifted.account)
    assert (case.phase_index, case.phase_started_at, case.adjustments) == (
        1,
        T0 + days(101),
        (
            Adjustment(
                kind="hold",
                at=T0 + days(101),
                delta=days(71),
                phase="trimmed",
                detail="the case waited for a legal hold; its phases resumed when the hold lifted",
            ),
        ),
    )
    assert lifted.next_due_at == T0 + days(131)
    later = advance(
        outcome_done(lifted.account, PURGES, T0 + days(101), case_id=case.id).account,
        PURGES,
        T0 + days(131),
    )
    assert kinds_of(later) == ["purge:reports,campaigns,contacts"]


def test_a_hold_on_a_purge_at_the_first_phase_lifts_without_renotice() -> None:
    pol = policy(
        """
        f:
          reason: r
          starts_on: [note]
          phases: [{name: first, lasts: 5 days, purge: [reports]}]
          waive: [deletion-without-notice]
        """
    )
    acct = set_legal_hold(account(pol), pol, T0, on=True, by="l", reason="r").account
    acct = apply_event(acct, pol, "note", T0, T0).account
    assert the_case(acct).destruct == "held"
    step = set_legal_hold(acct, pol, T0 + days(1), on=False, by="l", reason="r")
    assert kinds_of(step) == ["purge:reports"]


def test_legal_hold_errors() -> None:
    acct = hold(started(), T0).account
    with pytest.raises(Conflict, match=r"^account 'acct-1' is already under a legal hold$"):
        hold(acct, T0)
    with pytest.raises(Conflict, match=r"^account 'acct-1' has no legal hold to lift$"):
        hold(started(), T0, on=False)


# --- extending a deadline ---------------------------------------------------------------------


def test_extend_by_a_duration_moves_this_and_every_later_deadline() -> None:
    pol = policy(
        """
        f:
          reason: r
          starts_on: [note]
          phases:
            - {name: one, lasts: 10 days}
            - {name: two, lasts: 1 month}
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    step = extend(
        acct, pol, T0 + days(2), case_id="f#1", by="ops", reason="asked", duration=Duration(days=5)
    )
    case = the_case(step.account)
    assert case.shift == days(5)
    assert case.adjustments == (
        Adjustment(
            kind="extended", at=T0 + days(2), delta=days(5), phase="one", detail="ops: asked"
        ),
    )
    assert [(e.kind, e.at, dict(e.detail)) for e in step.audit] == [
        (
            "case.extended",
            T0 + days(2),
            {
                "by": "ops",
                "reason": "asked",
                "deadline": "2024-01-16T00:00:00+00:00",
                "previous": "2024-01-11T00:00:00+00:00",
            },
        )
    ]
    assert step.next_due_at == T0 + days(15)
    # the second phase keeps its own length from the anchor, plus the shift
    step = advance(step.account, pol, T0 + days(15))
    assert step.next_due_at == utc(2024, 2, 11) + days(5)


def test_extend_until_a_moment() -> None:
    acct = started()
    step = extend(acct, CLEANUP, T0, case_id=CASE, by="ops", reason="r", until=END + days(3))
    assert the_case(step.account).shift == days(3)
    # the final warning is now due 7 days before the new end
    assert step.next_due_at == END + days(3) - days(7)


def test_extend_a_deadline_already_pushed_by_a_late_notice() -> None:
    acct = apply_event(account(CLEANUP), CLEANUP, "note", T0, T0).account
    acct = dispatch_all(acct, CLEANUP, T0).account
    # the final warning (due day 3) goes out at day 5: the deadline moves to day 12
    acct = advance(acct, CLEANUP, T0 + days(5)).account
    acct = dispatch_all(acct, CLEANUP, T0 + days(5)).account
    step = extend(
        acct, CLEANUP, T0 + days(6), case_id=CASE, by="ops", reason="r", duration=Duration(days=1)
    )
    assert step.audit[0].detail["previous"] == "2024-01-13T00:00:00+00:00"
    assert step.audit[0].detail["deadline"] == "2024-01-14T00:00:00+00:00"
    assert step.next_due_at == T0 + days(13)
    case = the_case(step.account)
    assert sum((a.delta for a in case.adjustments), timedelta()) == case.shift == days(3)
    assert [a.kind for a in case.adjustments] == ["notice-late", "extended"]
    with pytest.raises(InvalidInput, match="is not after the current one 2024-01-13"):
        extend(acct, CLEANUP, T0 + days(6), case_id=CASE, by="o", reason="r", until=END + days(2))


def test_extend_errors() -> None:
    acct = started()
    with pytest.raises(CaseNotFound, match=r"^account 'acct-1' has no open case 'x#1'$"):
        extend(acct, CLEANUP, T0, case_id="x#1", by="o", reason="r", duration=Duration(days=1))
    with pytest.raises(InvalidInput, match=r"^give exactly one of `duration` and `until`$"):
        extend(acct, CLEANUP, T0, case_id=CASE, by="o", reason="r")
    with pytest.raises(InvalidInput, match=r"^give exactly one of `duration` and `until`$"):
        extend(
            acct,
            CLEANUP,
            T0,
            case_id=CASE,
            by="o",
            reason="r",
            duration=Duration(days=1),
            until=END,
        )
    with pytest.raises(InvalidInput, match=r"^`until` must include a time zone$"):
        extend(acct, CLEANUP, T0, case_id=CASE, by="o", reason="r", until=datetime(2030, 1, 1))
    with pytest.raises(
        InvalidInput,
        match=r"^the new deadline 2024-01-11T00:00:00\+00:00 is not after the current one "
        r"2024-01-11T00:00:00\+00:00$",
    ):
        extend(acct, CLEANUP, T0, case_id=CASE, by="o", reason="r", until=END)
    requested = advance(started(T0 + days(3)), CLEANUP, END).account
    with pytest.raises(
        Conflict, match=r"^case 'cleanup#1' is not in a timed phase; there is no deadline to move$"
    ):
        extend(requested, CLEANUP, END, case_id=CASE, by="o", reason="r", duration=Duration(days=1))


# --- which signals wake an account --------------------------------------------------------------


def test_wake_signals_are_the_signals_of_open_cases_stop_rules() -> None:
    pol = policy(
        """
        stops-on-activity:
          reason: r
          starts_on: [a]
          phases: [{name: p, deny: [send]}]
          stops_when:
            any: [{fact: plan, is: gone}, {not: {not: {no_activity: [login], for: 90 days}}}]
        default-stop:
          reason: r
          starts_when: {all: [{no_activity: [sent, api], for: 30 days}, {age: 1 day}]}
          phases: [{name: p, deny: [send]}]
        irreversible:
          reason: r
          starts_on: [b]
          irreversible: true
          phases: [{name: p, deny: [send]}]
        event-stop:
          reason: r
          starts_on: [c]
          stops_on: [d]
          phases: [{name: p, deny: [send]}]
        """
    )
    acct = account(pol)
    assert wake_signals(acct, pol) == frozenset()
    acct = apply_event(acct, pol, "a", T0, T0).account
    acct = apply_event(acct, pol, "b", T0, T0).account
    acct = apply_event(acct, pol, "c", T0, T0).account
    assert wake_signals(acct, pol) == {"login"}
    acct = advance(acct, pol, T0 + days(31)).account
    assert {c.flow for c in acct.cases} == {
        "stops-on-activity",
        "default-stop",
        "irreversible",
        "event-stop",
    }
    assert wake_signals(acct, pol) == {"login", "sent", "api"}
    removed = policy(
        """
        other:
          reason: r
          starts_on: [x]
        """
    )
    assert wake_signals(acct, removed) == frozenset()
    acct = record_signal(acct, pol, "sent", T0 + days(32))
    assert {c.flow for c in advance(acct, pol, T0 + days(32)).account.cases} == {
        "stops-on-activity",
        "irreversible",
        "event-stop",
    }
