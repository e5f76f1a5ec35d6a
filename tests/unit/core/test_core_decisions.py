"""decisions.py: check() and its restriction set, states across cases, and status()."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lapse.core.decisions import check, deadline, restrictions, status, time_left
from lapse.core.lifecycle import advance, apply_event, outcome_done, set_legal_hold
from lapse.core.model import (
    Account,
    Adjustment,
    CaseStatus,
    Decision,
    Denial,
    LegalHold,
    Member,
    NoticeRecord,
    Status,
)
from lapse.errors import UnknownAction

from .conftest import ADMIN, T0, account, days, dispatch_all, policy, utc

HOUR = timedelta(hours=1)

POL = policy(
    """
    lock:
      title: Payment lock
      reason: your payment failed
      starts_on: [lock]
      stops_on: [unlock]
      phases:
        - name: locked
          lasts: 30 days
          allow_only: [login, view, renew]
          banner: "Locked: {reason}. Data kept until {deadline:%d %B %Y} ({time_left} left)."
          message: "{action} is disabled while {flow} is on ({phase}, {time_left} left): {reason}."
        - name: expired
          allow_only: [login, view, renew]
          banner: "Still locked: {reason}."
    limit:
      reason: you are over your plan's limit
      starts_on: [over]
      stops_on: [under]
      phases:
        - {name: over, deny: [send, export], banner: "You are over your limit."}
    abuse:
      reason: abuse report
      starts_on: [abuse]
      stops_on: [cleared]
      phases: [{name: review, allow_only: [login], state: suspended, banner: "Suspended."}]
    heads-up:
      reason: heads-up
      starts_on: [warn]
      stops_on: [unwarn]
      phases: [{name: warned, lasts: 5 days, banner: "Heads up: {phase} ends in {time_left}."}]
    """
)
ACTIONS = ("login", "view", "export", "send", "edit", "renew")


def with_events(*names: str, at: datetime = T0) -> Account:
    acct = account(POL)
    for name in names:
        acct = apply_event(acct, POL, name, at, at).account
    return acct


# --- check and restrictions ---------------------------------------------------------------------


def test_an_account_without_cases_may_do_everything() -> None:
    acct = account(POL)
    decision = check(acct, POL, "send", T0)
    assert decision == Decision(action="send", allowed=True)
    assert check(acct, POL, "send", T0) is decision
    found = restrictions(acct, POL, T0)
    assert (found.account_id, found.state, found.denied, dict(found.decisions)) == (
        "acct-1",
        "active",
        frozenset(),
        {},
    )


def test_unknown_actions_are_refused() -> None:
    with pytest.raises(
        UnknownAction,
        match=r"^unknown action 'fly'; the policy gates: login, view, export, send, edit, renew$",
    ):
        check(account(POL), POL, "fly", T0)


def test_a_deny_phase_restricts_with_the_default_message() -> None:
    acct = with_events("over")
    assert restrictions(acct, POL, T0).denied == {"send", "export"}
    assert restrictions(acct, POL, T0).state == "restricted"
    assert check(acct, POL, "send", T0) == Decision(
        action="send",
        allowed=False,
        denials=(
            Denial(
                case_id="limit#1",
                flow="limit",
                phase="over",
                reason="you are over your plan's limit",
                message="send is not available: limit (over): you are over your plan's limit.",
                until=None,  # an open-ended phase denies until the case is stopped
            ),
        ),
        message="send is not available: limit (over): you are over your plan's limit.",
        until=None,
    )


def test_an_allow_only_phase_locks_with_its_own_message() -> None:
    acct = with_events("lock")
    found = restrictions(acct, POL, T0 + days(3))
    assert (found.state, found.denied) == ("locked", frozenset({"export", "send", "edit"}))
    decision = found.check("edit")
    assert decision.message == (
        "edit is disabled while Payment lock is on (locked, 27 days left): your payment failed."
    )
    # the later phase denies it too, and it is open-ended: not foreseeable
    assert decision.until is None
    assert found.check("login") == Decision(action="login", allowed=True)


def test_restrictions_of_several_cases_combine() -> None:
    acct = with_events("lock", "over", "warn")
    found = restrictions(acct, POL, T0)
    assert found.state == "locked"
    assert found.denied == {"export", "send", "edit"}
    send = found.check("send")
    assert [d.case_id for d in send.denials] == ["lock#1", "limit#2"]
    assert send.message == (
        "send is disabled while Payment lock is on (locked, 30 days left): your payment failed. "
        "send is not available: limit (over): you are over your plan's limit."
    )
    assert [d.case_id for d in found.check("edit").denials] == ["lock#1"]


def test_the_strongest_state_names_the_account_and_unlocks_only_when_all_are_closed() -> None:
    acct = with_events("warn")
    assert restrictions(acct, POL, T0).state == "active"  # a phase with no restriction
    acct = apply_event(acct, POL, "over", T0, T0).account
    assert restrictions(acct, POL, T0).state == "restricted"
    acct = apply_event(acct, POL, "lock", T0, T0).account
    assert restrictions(acct, POL, T0).state == "locked"
    acct = apply_event(acct, POL, "abuse", T0, T0).account
    assert restrictions(acct, POL, T0).state == "suspended"
    assert restrictions(acct, POL, T0).denied == {"view", "export", "send", "edit", "renew"}
    acct = apply_event(acct, POL, "cleared", T0 + HOUR, T0 + HOUR).account
    assert restrictions(acct, POL, T0).state == "locked"
    acct = apply_event(acct, POL, "unlock", T0 + HOUR, T0 + HOUR).account
    assert restrictions(acct, POL, T0).state == "restricted"
    assert restrictions(acct, POL, T0).denied == {"send", "export"}
    acct = apply_event(acct, POL, "under", T0 + HOUR, T0 + HOUR).account
    assert restrictions(acct, POL, T0).state == "active"
    assert restrictions(acct, POL, T0).denied == frozenset()


def test_an_irreversible_flow_suspends_by_default() -> None:
    pol = policy(
        """
        tos:
          reason: abuse
          starts_on: [note]
          irreversible: true
          phases: [{name: halted, deny: [send]}]
        bare:
          reason: r
          starts_on: [bare]
          irreversible: true
          waive: [deletion-without-notice]
          outcome: delete
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    assert restrictions(acct, pol, T0).state == "suspended"
    # no phase at all: suspended, nothing denied until the deletion
    bare = apply_event(account(pol), pol, "bare", T0, T0).account
    found = restrictions(bare, pol, T0)
    assert (found.state, found.denied) == ("suspended", frozenset())
    assert status(bare, pol, T0).cases[0].denied == ()


def test_a_deleted_account_may_do_nothing() -> None:
    pol = policy(
        """
        tos:
          reason: abuse
          starts_on: [note]
          irreversible: true
          waive: [deletion-without-notice]
          outcome: delete
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    gone = outcome_done(acct, pol, T0 + HOUR, case_id="tos#1").account
    assert check(gone, pol, "login", T0 + HOUR) == Decision(
        action="login", allowed=False, message="account acct-1 was deleted"
    )
    assert restrictions(gone, pol, T0).state == "deleted"
    assert restrictions(gone, pol, T0).denied == pol.actions
    shown = status(gone, pol, T0 + days(1))
    assert (shown.state, shown.denied, shown.deleted_at, shown.cases) == (
        "deleted",
        ACTIONS,
        T0 + HOUR,
        (),
    )


def test_cases_of_flows_no_longer_in_the_policy_are_ignored() -> None:
    acct = with_events("over")
    other = policy(
        """
        other:
          reason: r
          starts_on: [x]
        """
    )
    assert restrictions(acct, other, T0).state == "active"
    assert status(acct, other, T0).cases == ()


# --- until ------------------------------------------------------------------------------------

UNTIL = policy(
    """
    staged:
      reason: expired
      starts_on: [note]
      stops_on: [renewed]
      phases:
        - {name: grace, lasts: 10 days, deny: [send, export]}
        - {name: locked, lasts: 20 days, deny: [send]}
        - {name: cooling, lasts: 5 days, deny: [edit]}
    deleting:
      reason: idle
      starts_on: [idle]
      phases:
        - name: grace
          lasts: 7 days
          deny: [send]
          notices: [{at: 3 days before end, to: admins, template: final}]
      outcome: delete
    """
)


def test_until_is_the_boundary_of_the_first_phase_that_allows_the_action() -> None:
    acct = apply_event(account(UNTIL), UNTIL, "note", T0, T0).account
    assert check(acct, UNTIL, "export", T0).until == T0 + days(10)
    assert check(acct, UNTIL, "send", T0).until == T0 + days(30)
    # once the phases end without an outcome, everything is allowed again
    later = advance(acct, UNTIL, T0 + days(30)).account
    assert check(later, UNTIL, "edit", T0 + days(30)).until == T0 + days(35)


def test_until_is_none_when_the_case_ends_in_deletion() -> None:
    acct = apply_event(account(UNTIL), UNTIL, "idle", T0, T0).account
    assert check(acct, UNTIL, "send", T0).until is None


def test_until_of_several_denials_is_the_latest() -> None:
    acct = apply_event(account(UNTIL), UNTIL, "note", T0, T0).account
    two = policy(
        """
        staged:
          reason: expired
          starts_on: [note]
          phases:
            - {name: grace, lasts: 10 days, deny: [send, export]}
            - {name: locked, lasts: 20 days, deny: [send]}
            - {name: cooling, lasts: 5 days, deny: [edit]}
        short:
          reason: short
          starts_on: [short]
          phases: [{name: only, lasts: 12 days, deny: [export]}]
        """
    )
    acct = apply_event(acct, two, "short", T0 + days(1), T0 + days(1)).account
    assert check(acct, two, "export", T0 + days(1)).until == T0 + days(13)


def test_until_follows_a_deadline_pushed_by_a_late_notice() -> None:
    acct = apply_event(account(UNTIL), UNTIL, "idle", T0, T0).account
    acct = apply_event(acct, UNTIL, "note", T0, T0).account
    acct = advance(acct, UNTIL, T0 + days(6)).account  # final warning due day 4, created day 6
    acct = dispatch_all(acct, UNTIL, T0 + days(6)).account
    # "staged" is not pushed; "deleting" is, but never allows sending again
    assert check(acct, UNTIL, "export", T0 + days(6)).until == T0 + days(10)
    grace = policy(
        """
        deleting:
          reason: idle
          starts_on: [idle]
          phases:
            - name: grace
              lasts: 7 days
              deny: [send]
              notices: [{at: 3 days before end, to: admins, template: final}]
            - {name: after, lasts: 1 day}
        """
    )
    acct = apply_event(account(grace), grace, "idle", T0, T0).account
    acct = advance(acct, grace, T0 + days(6)).account
    acct = dispatch_all(acct, grace, T0 + days(6)).account
    assert check(acct, grace, "send", T0 + days(6)).until == T0 + days(9)


def test_until_of_a_purge_held_past_the_last_phase_is_not_foreseeable() -> None:
    pol = policy(
        """
        trim:
          reason: r
          starts_on: [note]
          phases: [{name: only, lasts: 5 days, deny: [send]}]
          outcome: {purge: [reports]}
          waive: [deletion-without-notice]
        """
    )
    acct = set_legal_hold(account(pol), pol, T0, on=True, by="l", reason="r").account
    acct = apply_event(acct, pol, "note", T0, T0 + days(9)).account
    case = acct.cases[0]
    assert (case.phase_index, case.destruct) == (1, "held")
    # still denied while held; when it ends depends on the hold
    decision = check(acct, pol, "send", T0 + days(9))
    assert (decision.allowed, decision.until) == (False, None)


# --- time left ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(days=23, hours=5), "23 days"),
        (timedelta(days=2), "2 days"),
        (timedelta(days=1, hours=4, minutes=30), "1 day 4 hours"),
        (timedelta(days=1, hours=1), "1 day 1 hour"),
        (timedelta(days=1, minutes=59), "1 day"),
        (timedelta(hours=5, minutes=59), "5 hours"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(minutes=12, seconds=30), "12 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(seconds=59), "less than a minute"),
        (timedelta(0), "no time"),
        (timedelta(days=-3), "no time"),
    ],
)
def test_time_left(left: timedelta, text: str) -> None:
    assert time_left(T0, T0 + left) == text


def test_time_left_without_a_deadline() -> None:
    assert time_left(T0, None) is None


# --- status -------------------------------------------------------------------------------------


LOCKED_BANNER = "Locked: your payment failed. Data kept until 31 January 2024 (27 days left)."


def test_status_of_a_case_in_a_timed_phase() -> None:
    acct = with_events("lock")
    shown = status(acct, POL, T0 + days(3), next_due_at=T0 + days(30))
    assert shown == Status(
        account_id="acct-1",
        as_of=T0 + days(3),
        state="locked",
        kind="standard",
        cases=(
            CaseStatus(
                id="lock#1",
                flow="lock",
                title="Payment lock",
                phase="locked",
                phase_number=1,
                phase_count=2,
                state="locked",
                reason="your payment failed",
                opened_by="event:lock",
                started_at=T0,
                phase_started_at=T0,
                deadline=T0 + days(30),
                planned_deadline=T0 + days(30),
                time_left="27 days",
                adjustments=(),
                denied=("export", "send", "edit"),
                banner=LOCKED_BANNER,
                waiting=(),
                notices=(),
                outcome=None,
                destruct="none",
                irreversible=False,
                policy_version="7",
            ),
        ),
        denied=("export", "send", "edit"),
        banner=LOCKED_BANNER,
        legal_hold=None,
        next_due_at=T0 + days(30),
    )


def test_status_of_a_case_in_an_open_ended_phase() -> None:
    acct = advance(with_events("lock"), POL, T0 + days(31)).account
    case = status(acct, POL, T0 + days(31)).cases[0]
    assert (
        case.phase,
        case.phase_number,
        case.deadline,
        case.planned_deadline,
        case.time_left,
    ) == (
        "expired",
        2,
        None,
        None,
        None,
    )
    assert case.banner == "Still locked: your payment failed."


def test_the_banner_of_the_strongest_state_wins_then_the_earliest_deadline() -> None:
    acct = with_events("warn", "over")
    # restricted beats active (a banner with a deadline)
    assert status(acct, POL, T0).banner == "You are over your limit."
    acct = apply_event(acct, POL, "lock", T0, T0).account
    assert status(acct, POL, T0).banner == (
        "Locked: your payment failed. Data kept until 31 January 2024 (30 days left)."
    )
    acct = apply_event(acct, POL, "abuse", T0, T0).account
    assert status(acct, POL, T0).banner == "Suspended."
    two = policy(
        """
        late:
          reason: r
          starts_on: [late]
          phases: [{name: a, lasts: 9 days, banner: "late {time_left}"}]
        soon:
          reason: r
          starts_on: [soon]
          phases: [{name: b, lasts: 2 days, banner: "soon {time_left}"}]
        """
    )
    both = apply_event(account(two), two, "late", T0, T0).account
    both = apply_event(both, two, "soon", T0, T0).account
    assert status(both, two, T0).banner == "soon 2 days"
    assert status(account(two), two, T0).banner is None


def test_status_shows_a_pushed_deadline_and_why() -> None:
    acct = apply_event(account(UNTIL), UNTIL, "idle", T0, T0).account
    acct = advance(acct, UNTIL, T0 + days(6)).account
    waiting = status(acct, UNTIL, T0 + days(6)).cases[0]
    assert waiting.waiting == ("notice grace/final is not dispatched yet",)
    # the warning has not gone out: the earliest the phase can end is its lead from now, and
    # the status says why while the phase runs, not only once it has ended
    assert (waiting.deadline, waiting.planned_deadline) == (T0 + days(9), T0 + days(7))
    assert waiting.adjustments == (
        Adjustment(
            kind="notice-late",
            at=T0 + days(9),
            delta=days(2),
            phase="grace",
            detail="notice grace/final (3 days before end) has not gone out yet: the phase "
            "ends 3 days after it goes out, to keep the full lead",
        ),
    )
    acct = dispatch_all(acct, UNTIL, T0 + days(6)).account
    case = status(acct, UNTIL, T0 + days(6)).cases[0]
    assert (case.deadline, case.planned_deadline, case.time_left, case.waiting) == (
        T0 + days(9),
        T0 + days(7),
        "3 days",
        (),
    )
    pushed = Adjustment(
        kind="notice-late",
        at=T0 + days(9),
        delta=days(2),
        phase="grace",
        detail="notice grace/final (3 days before end) went out late, on 2024-01-07 00:00 UTC: "
        "the phase ends 3 days after it went out, to keep the full lead",
    )
    assert case.adjustments == (pushed,)
    assert acct.cases[0].adjustments == ()  # shown, not recorded: the phase has not ended
    assert case.outcome == "delete"
    after = advance(acct, UNTIL, T0 + days(9)).account
    case = status(after, UNTIL, T0 + days(9)).cases[0]
    # recorded when the phase ends, in the same words
    assert after.cases[0].adjustments == case.adjustments == (pushed,)
    assert (case.phase, case.phase_number, case.phase_count, case.destruct) == (
        None,
        1,  # past its only phase: still "phase 1 of 1", waiting for the outcome
        1,
        "requested",
    )
    assert case.waiting == ("deletion requested, waiting to be carried out",)
    assert case.denied == ("send",)


def test_status_names_notices_without_a_recipient() -> None:
    pol = policy(
        """
        f:
          reason: r
          starts_on: [note]
          phases:
            - name: p
              lasts: 5 days
              notices:
                - {at: start, to: admins, template: a}
                - {at: start, to: members, template: m}
                - {at: start, to: owner, template: o}
        """
    )
    acct = account(pol, members=(), address=None)
    acct = apply_event(acct, pol, "note", T0, T0).account
    assert status(acct, pol, T0).cases[0].waiting == (
        "notice p/a has no recipient: the account has no admin member and no address",
        "notice p/m has no recipient: the account has no member and no address",
        "notice p/o has no recipient: the account has no address",
    )
    member_only = account(pol, members=(Member(email=ADMIN),), address=None)
    member_only = apply_event(member_only, pol, "note", T0, T0).account
    assert [r.recipients for r in member_only.cases[0].notices] == [(), (ADMIN,), ()]


def test_status_during_a_legal_hold_and_a_renotice() -> None:
    pol = policy(
        """
        cleanup:
          reason: idle
          starts_on: [note]
          phases:
            - name: grace
              lasts: 10 days
              banner: "Deletion on {deadline:%d %B %Y} ({time_left} left)."
              notices: [{at: 2 days before end, to: admins, template: final}]
          outcome: {purge: [reports, contacts]}
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    acct = set_legal_hold(acct, pol, T0 + days(1), on=True, by="legal", reason="case 7").account
    acct = advance(acct, pol, T0 + days(8)).account
    acct = dispatch_all(acct, pol, T0 + days(8)).account
    acct = advance(acct, pol, T0 + days(10)).account
    shown = status(acct, pol, T0 + days(12))
    assert shown.legal_hold == LegalHold(since=T0 + days(1), by="legal", reason="case 7")
    case = shown.cases[0]
    assert case.waiting == ("legal hold: the purge waits (since 2024-01-11)",)
    assert case.outcome == "purge: reports, contacts"
    # held: no deadline anybody can foresee, and the banner says the purge waits on the hold
    # instead of naming a date already gone ("11 January 2024 (no time left)")
    assert (case.deadline, case.planned_deadline, case.time_left) == (None, None, None)
    held = "cleanup: idle. The purge waits on a legal hold: it will not happen while the hold "
    assert case.banner == shown.banner == held + "lasts."
    acct = set_legal_hold(acct, pol, T0 + days(20), on=False, by="legal", reason="done").account
    shown = status(acct, pol, T0 + days(20))
    case = shown.cases[0]
    assert case.waiting == (
        "notice grace/final#r1 is not dispatched yet",
        "hold lifted: warnings sent again before the purge",
    )
    # re-noticed: the purge waits for the warning's lead, from when it goes out (not yet: now)
    assert (case.deadline, case.planned_deadline, case.time_left) == (
        T0 + days(22),
        T0 + days(10),
        "2 days",
    )
    assert shown.banner == "Deletion on 23 January 2024 (2 days left)."
    assert case.notices[-1] == NoticeRecord(
        key="grace/final#r1",
        phase="grace",
        template="final",
        to="admins",
        recipients=(ADMIN,),
        via=("email",),
        due_at=T0 + days(20),
        created_at=T0 + days(20),
    )
    # dispatched a day later: two days from then
    acct = dispatch_all(acct, pol, T0 + days(21)).account
    case = status(acct, pol, T0 + days(21)).cases[0]
    assert (case.deadline, case.time_left, case.banner) == (
        T0 + days(23),
        "2 days",
        "Deletion on 24 January 2024 (2 days left).",
    )
    assert [(e.kind, e.at) for e in advance(acct, pol, T0 + days(23)).audit] == [
        ("purge.requested", T0 + days(23)),
        ("case.closed", T0 + days(23)),
    ]


def test_a_purge_held_in_a_timed_phase_and_its_renotice() -> None:
    pol = policy(
        """
        retention:
          reason: locked
          starts_on: [note]
          phases:
            - name: locked
              lasts: 10 days
              notices: [{at: 2 days before end, to: admins, template: final}]
            - name: purging
              lasts: 20 days
              deny: [send]
              purge: [reports]
              banner: "Locked until {deadline:%d %B}."
              message: "No {action}: {reason}."
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    acct = dispatch_all(advance(acct, pol, T0 + days(8)).account, pol, T0 + days(8)).account
    acct = set_legal_hold(acct, pol, T0 + days(9), on=True, by="legal", reason="r").account
    acct = advance(acct, pol, T0 + days(12)).account
    case = status(acct, pol, T0 + days(12)).cases[0]
    # the purge on entering `purging` waits, and so does the phase: no deadline, no "until"
    assert (case.phase, case.destruct, case.deadline) == ("purging", "held", None)
    assert case.banner == (
        "retention: locked. The purge waits on a legal hold: it will not happen while the hold "
        "lasts."
    )
    assert check(acct, pol, "send", T0 + days(12)).until is None
    assert check(acct, pol, "send", T0 + days(12)).message == "No send: locked."
    acct = set_legal_hold(acct, pol, T0 + days(15), on=False, by="legal", reason="r").account
    # warned again: the purge runs two days after the warning, and the phase counts from then
    case = status(acct, pol, T0 + days(15)).cases[0]
    assert (case.destruct, case.deadline, case.banner) == (
        "renotice",
        T0 + days(37),
        "Locked until 07 February.",
    )
    acct = dispatch_all(acct, pol, T0 + days(15)).account
    acct = advance(acct, pol, T0 + days(17)).account
    case = status(acct, pol, T0 + days(17)).cases[0]
    assert (case.destruct, case.phase_started_at, case.deadline) == (
        "requested",
        T0 + days(17),
        T0 + days(37),
    )


def test_a_banner_past_the_last_phase_names_the_end_of_that_phase() -> None:
    pol = policy(
        """
        cleanup:
          reason: idle
          starts_on: [note]
          waive: [deletion-without-notice]
          phases:
            - name: grace
              lasts: 10 days
              banner: "Deletion on {deadline:%d %B} ({time_left} left)."
          outcome: delete
        """
    )
    acct = apply_event(account(pol), pol, "note", T0, T0).account
    acct = advance(acct, pol, T0 + days(10)).account  # requested; the deletion queue is slow
    assert status(acct, pol, T0 + days(11)).banner == "Deletion on 11 January (no time left)."


def test_deadline_of_a_case_past_its_timed_phases_is_none() -> None:
    acct = advance(with_events("lock"), POL, T0 + days(31)).account
    assert deadline(acct.cases[0], POL.flows["lock"], POL, T0) is None
    assert deadline(with_events("lock").cases[0], POL.flows["lock"], POL, T0) == T0 + days(30)


def test_messages_and_banners_show_the_deadline_in_the_policy_time_zone() -> None:
    pol = policy(
        """
        f:
          reason: r
          starts_on: [note]
          phases:
            - name: p
              lasts: 1 day
              deny: [send]
              banner: "Ends {deadline:%d %B %Y %H:%M %Z}."
              message: "{action}: wait until {deadline:%H:%M}"
        """,
        timezone="America/New_York",
    )
    start = utc(2024, 7, 1, 2)
    acct = apply_event(account(pol, created=start), pol, "note", start, start).account
    assert status(acct, pol, start).banner == "Ends 01 July 2024 22:00 EDT."
    assert check(acct, pol, "send", start).message == "send: wait until 22:00"
