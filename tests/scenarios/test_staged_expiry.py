"""Scenarios for the staged-expiry preset: one test per behaviour of the published "What happens
when an account expires?" policy it models (rule-by-rule map: docs/policies/staged-expiry.md).

The story most tests share: Jane's paid year ends on 15 March 2025 at 09:00. She keeps limited
access for one month (until 15 April 2025), her inbox is locked for five more months (until
15 September 2025), and from then on the account may be deleted at any time; its address is
never given out again. lapse warns her three times (the published policy promises no email).
"""

from __future__ import annotations

import pytest

from lapse.errors import AccountDeleted, AddressRetired

from .conftest import START, StartMail, utc

JANE = StartMail.ADDRESS
ALIAS = "alias@startmail.example"

EXPIRY = utc(2025, 3, 15)
GRACE_END = utc(2025, 4, 15)
FINAL_WARNING = utc(2025, 9, 1)
ELIGIBLE = utc(2025, 9, 15)
NEXT_YEAR = utc(2026, 3, 15)

ALL_ACTIONS = {"login", "read_mail", "send_mail", "imap", "renew", "settings", "contacts", "export"}


def expired(startmail: StartMail, moment=EXPIRY, **kwargs) -> str:
    """Jane's mailbox, its year ending on 15 March 2025, run on time until `moment`."""
    account = startmail.mailbox(expires_at=EXPIRY, **kwargs)
    startmail.engine.run_until(moment)
    return account


# --- expiry and phase 1: grace --------------------------------------------------------------


def test_account_not_renewed_expires_at_the_end_of_its_paid_period(startmail):
    account = expired(startmail, utc(2025, 3, 15, 8))
    assert startmail.open_flows(account) == []
    assert startmail.denied_actions(account) == set()

    startmail.engine.run_until(EXPIRY)

    case = startmail.case(account, "expiry")
    assert case.started_at == EXPIRY
    assert case.reason == "the account expired and was not renewed"


def test_one_month_grace_period_follows_expiry(startmail):
    account = expired(startmail)

    case = startmail.case(account, "expiry")
    assert case.phase == "grace"
    assert case.phase_number == 1
    assert case.deadline == GRACE_END
    assert startmail.state(account) == "restricted"


def test_expired_account_can_log_in_and_read_mail_in_first_month(startmail):
    account = expired(startmail)

    for moment in (EXPIRY, utc(2025, 4, 1), utc(2025, 4, 15, 8)):
        startmail.engine.run_until(moment)
        assert startmail.allowed(account, "login"), moment
        assert startmail.allowed(account, "read_mail"), moment


def test_expired_account_cannot_send_or_use_imap_in_first_month(startmail):
    account = expired(startmail)

    assert startmail.denied_actions(account) == {"send_mail", "imap"}
    decision = startmail.engine.check(account, "send_mail")
    assert decision.message == (
        "send_mail is disabled because your account has expired. Renew to re-enable it."
    )
    assert startmail.engine.check(account, "imap").denials[0].phase == "grace"
    # open IMAP connections are cut when the grace period starts
    assert startmail.host(account) == [(EXPIRY, "disable_imap", "enter")]


def test_upgrading_during_grace_re_enables_imap_and_sending(startmail):
    account = expired(startmail, utc(2025, 3, 20))

    startmail.renew(account, NEXT_YEAR)

    assert startmail.open_flows(account) == []
    assert startmail.allowed(account, "imap")
    assert startmail.allowed(account, "send_mail")
    assert startmail.state(account) == "active"
    assert [name for _, name, _ in startmail.host(account)] == ["disable_imap", "enable_imap"]


def test_banner_shows_time_left_in_grace(startmail):
    account = expired(startmail)

    assert startmail.engine.status(account).banner == (
        "Your account has expired. The grace period ends on 15 April 2025 (31 days left); "
        "sending mail and IMAP are disabled until you renew."
    )
    startmail.engine.run_until(utc(2025, 4, 5))
    assert "(10 days left)" in startmail.engine.status(account).banner
    startmail.engine.run_until(utc(2025, 4, 14, 21))
    assert "(12 hours left)" in startmail.engine.status(account).banner


# --- phase 2: inbox access disabled ---------------------------------------------------------


def test_account_locked_for_five_months_after_grace(startmail):
    account = expired(startmail, GRACE_END)

    case = startmail.case(account, "expiry")
    assert case.phase == "inbox-locked"
    assert case.phase_started_at == GRACE_END
    assert case.deadline == ELIGIBLE
    assert startmail.state(account) == "locked"
    assert (
        "Renew before 15 September 2025 (153 days left)" in startmail.engine.status(account).banner
    )


def test_only_login_and_renew_in_months_two_to_six(startmail):
    account = expired(startmail)

    for moment in (GRACE_END, utc(2025, 7, 1), utc(2025, 9, 15, 8)):
        startmail.engine.run_until(moment)
        allowed = ALL_ACTIONS - startmail.denied_actions(account)
        assert allowed == {"login", "renew"}, moment
    decision = startmail.engine.check(account, "settings")
    assert decision.message == (
        "Your account is locked because it expired; you can only log in and renew."
    )


def test_inbox_access_disabled_after_grace(startmail):
    account = expired(startmail, utc(2025, 4, 15, 8))
    assert startmail.allowed(account, "read_mail")

    startmail.engine.run_until(GRACE_END)

    assert not startmail.allowed(account, "read_mail")
    assert not startmail.allowed(account, "imap")


def test_renew_during_locked_months_restores_full_access(startmail):
    account = expired(startmail, utc(2025, 7, 1))

    startmail.renew(account, utc(2026, 7, 1))

    assert startmail.denied_actions(account) == set()
    assert startmail.engine.status(account).banner is None
    startmail.engine.run_until(utc(2026, 6, 30))
    assert startmail.deletions(account) == []
    assert startmail.open_flows(account) == []


# --- phase 3: termination -------------------------------------------------------------------


def test_eligible_for_deletion_six_months_after_expiry_and_address_retired(startmail):
    account = expired(startmail, utc(2025, 9, 15, 8))
    assert startmail.deletions(account) == []

    startmail.engine.run_until(ELIGIBLE)

    assert startmail.deletions(account) == [ELIGIBLE]
    stone = startmail.engine.store.tombstone(account)
    assert (stone.flow, stone.address_mode, stone.retired_until) == ("expiry", "retire", None)


def test_deletion_may_happen_any_time_after_the_six_months(startmail):
    queue = startmail.slow_deletions()
    account = expired(startmail, ELIGIBLE)

    case = startmail.case(account, "expiry")
    assert case.phase == "termination"
    assert case.phase_number == 3
    assert case.deadline is None  # open-ended: eligible for deletion from now on
    assert case.destruct == "requested"
    assert startmail.engine.status(account).banner == (
        "Your account expired and is scheduled for permanent deletion."
    )
    assert ALL_ACTIONS - startmail.denied_actions(account) == {"login", "renew"}

    startmail.engine.run_until(utc(2025, 10, 3))
    assert startmail.deletions(account) == []

    # the queue frees up; the deletion, retried at most an hour apart, goes through
    queue.busy = False
    startmail.engine.run_until(utc(2025, 10, 4))
    assert startmail.deletions(account) == [utc(2025, 10, 3, 9, 3)]


@pytest.mark.parametrize(
    "moment",
    [utc(2025, 3, 20), utc(2025, 6, 1), utc(2025, 9, 10), utc(2025, 9, 20)],
    ids=["grace", "inbox-locked", "last-fortnight", "awaiting-deletion"],
)
def test_renew_restores_full_access_at_any_time_before_deletion(startmail, moment):
    queue = startmail.slow_deletions()  # so that the account is still there after 15 September
    account = expired(startmail, moment)
    assert startmail.case(account, "expiry") is not None

    startmail.renew(account, utc(2026, 9, 30))

    assert startmail.open_flows(account) == []
    assert startmail.denied_actions(account) == set()
    assert startmail.state(account) == "active"
    queue.busy = False
    startmail.engine.run_until(utc(2026, 9, 29))
    assert startmail.deletions(account) == []


def test_login_and_renew_allowed_in_every_phase(startmail):
    startmail.slow_deletions()
    account = expired(startmail)

    for moment in (EXPIRY, GRACE_END, ELIGIBLE, utc(2025, 12, 1)):
        startmail.engine.run_until(moment)
        assert startmail.allowed(account, "login"), moment
        assert startmail.allowed(account, "renew"), moment


def test_terminated_account_is_permanently_inaccessible(startmail):
    account = expired(startmail, ELIGIBLE)

    assert startmail.state(account) == "deleted"
    assert startmail.denied_actions(account) == ALL_ACTIONS
    with pytest.raises(AccountDeleted):
        startmail.renew(account, utc(2026, 9, 15))
    with pytest.raises(AccountDeleted):
        startmail.engine.reactivate(account, by="support@startmail.example", reason="please")


def test_new_account_needs_a_new_address_after_termination(startmail):
    expired(startmail, ELIGIBLE)

    with pytest.raises(AddressRetired):
        startmail.mailbox("jane-again", expires_at=utc(2026, 9, 15))
    startmail.mailbox("jane-again", expires_at=utc(2026, 9, 15), address="jane2@startmail.example")
    assert startmail.state("jane-again") == "active"

    # years later the address is still retired
    startmail.engine.run_until(utc(2030, 1, 1))
    with pytest.raises(AddressRetired):
        startmail.engine.add_account("jane-3", kind="personal", address=JANE)


# --- account kinds --------------------------------------------------------------------------


def test_public_beta_account_not_upgraded_expires_the_same_way(startmail):
    account = startmail.mailbox(
        "tester", kind="beta", expires_at=EXPIRY, address="t@startmail.example"
    )

    startmail.engine.run_until(GRACE_END)
    assert startmail.case(account, "expiry").phase == "inbox-locked"
    startmail.engine.run_until(ELIGIBLE)
    assert startmail.deletions(account) == [ELIGIBLE]


def test_upgrading_a_beta_account_to_personal_restores_full_access(startmail):
    account = startmail.mailbox(
        "tester", kind="beta", expires_at=EXPIRY, address="t@startmail.example"
    )
    startmail.engine.run_until(utc(2025, 5, 1))

    startmail.engine.set_kind(account, "personal")
    startmail.renew(account, utc(2026, 5, 1))

    assert startmail.open_flows(account) == []
    assert startmail.denied_actions(account) == set()


# --- what lapse adds: warnings to the owner -------------------------------------------------


def test_owner_is_warned_when_each_stage_begins_and_two_weeks_before_deletion(startmail):
    account = expired(startmail, ELIGIBLE, members=((ALIAS, "admin"),))

    assert startmail.sent(account) == [
        (EXPIRY, "expiry-grace-started", JANE),
        (GRACE_END, "expiry-locked", JANE),
        (FINAL_WARNING, "expiry-final-warning", JANE),
    ]


def test_final_warning_two_weeks_before_the_account_becomes_eligible(startmail):
    account = expired(startmail, utc(2025, 9, 1, 8))
    assert startmail.sent(account, "expiry-final-warning") == []

    startmail.engine.run_until(FINAL_WARNING)

    assert startmail.sent(account, "expiry-final-warning") == [
        (FINAL_WARNING, "expiry-final-warning", JANE)
    ]
    assert "(14 days left)" in startmail.engine.status(account).banner


# --- calendar and reporting -----------------------------------------------------------------


def test_months_are_calendar_months_clamped_at_the_month_end(startmail):
    account = startmail.mailbox(expires_at=START)  # 31 January 2025

    startmail.engine.run_until(utc(2025, 2, 28))
    assert startmail.case(account, "expiry").phase == "inbox-locked"  # one month: 28 February
    assert startmail.case(account, "expiry").deadline == utc(2025, 7, 31)  # six: 31 July
    startmail.engine.run_until(utc(2025, 7, 31))

    assert startmail.sent(account) == [
        (START, "expiry-grace-started", JANE),
        (utc(2025, 2, 28), "expiry-locked", JANE),
        (utc(2025, 7, 17), "expiry-final-warning", JANE),
    ]
    assert startmail.deletions(account) == [utc(2025, 7, 31)]


def test_expiry_reported_late_counts_from_the_expiry_date(startmail):
    startmail.engine.add_account("late", kind="personal", address="late@startmail.example")
    startmail.engine.run_until(utc(2025, 3, 20))

    startmail.engine.set_fact("late", "subscription_expires_at", EXPIRY)

    case = startmail.case("late", "expiry")
    assert case.started_at == EXPIRY
    assert case.deadline == GRACE_END


def test_renewed_account_expires_again_at_its_new_end(startmail):
    account = expired(startmail, utc(2025, 4, 1))
    startmail.renew(account, NEXT_YEAR)

    startmail.engine.run_until(utc(2026, 3, 15, 8))
    assert startmail.open_flows(account) == []

    startmail.engine.run_until(NEXT_YEAR)
    case = startmail.case(account, "expiry")
    assert case.started_at == NEXT_YEAR
    assert case.deadline == utc(2026, 4, 15)
    assert startmail.sent(account)[-1] == (NEXT_YEAR, "expiry-grace-started", JANE)


def test_timeline_projects_every_stage(startmail):
    account = startmail.mailbox(expires_at=EXPIRY)

    projected = [
        (e.at, e.kind) for e in startmail.engine.timeline(account).events if e.flow == "expiry"
    ]

    assert (EXPIRY, "case.opens") in projected
    assert (GRACE_END, "phase.enters") in projected
    assert (FINAL_WARNING, "notice") in projected
    assert (ELIGIBLE, "delete") in projected


# --- guarantees end to end ------------------------------------------------------------------


def test_email_outage_delays_final_warning_and_keeps_its_two_weeks(startmail):
    account = expired(startmail, utc(2025, 9, 1, 8))
    startmail.engine.notices.down = True
    startmail.engine.run_until(FINAL_WARNING)
    startmail.engine.run_until(utc(2025, 9, 4))
    startmail.engine.notices.down = False

    startmail.engine.run_until(utc(2025, 9, 5))

    # retried at most an hour apart: the first attempt after the outage delivers it
    resent = utc(2025, 9, 4, 9, 3)
    assert startmail.sent(account, "expiry-final-warning") == [
        (resent, "expiry-final-warning", JANE)
    ]
    assert startmail.case(account, "expiry").deadline == utc(2025, 9, 18, 9, 3)
    startmail.engine.run_until(utc(2025, 9, 18, 9))
    assert startmail.deletions(account) == []
    startmail.engine.run_until(utc(2025, 9, 19))
    assert startmail.deletions(account) == [utc(2025, 9, 18, 9, 3)]


def test_catch_up_after_scheduler_downtime_sends_each_warning_once_and_in_order(startmail):
    account = startmail.mailbox(expires_at=EXPIRY)
    startmail.engine.run_until(utc(2025, 3, 1))

    startmail.clock.set(utc(2025, 10, 1))  # the scheduler was down for seven months
    startmail.engine.run_due()
    startmail.engine.run_due()

    down_until = utc(2025, 10, 1)
    assert startmail.sent(account) == [
        (down_until, "expiry-grace-started", JANE),
        (down_until, "expiry-locked", JANE),
    ]
    case = startmail.case(account, "expiry")
    assert case.started_at == EXPIRY  # the same case as on time...
    # ...but no phase ends before its notice went out: the grace period ended when Jane was
    # told about it, and the locked months that follow keep their length (169 days later)
    assert case.phase == "inbox-locked"
    assert case.phase_started_at == down_until
    assert [(a.kind, a.phase, a.delta.days) for a in case.adjustments] == [
        ("notice-late", "grace", 169)
    ]
    assert case.deadline == utc(2026, 3, 3)
    assert startmail.deletions(account) == []

    startmail.engine.run_until(utc(2026, 3, 3))
    assert startmail.sent(account) == [
        (down_until, "expiry-grace-started", JANE),
        (down_until, "expiry-locked", JANE),
        (utc(2026, 2, 17), "expiry-final-warning", JANE),
    ]
    assert startmail.deletions(account) == [utc(2026, 3, 3)]


def test_legal_hold_blocks_the_deletion_and_warns_again_after_release(startmail):
    account = expired(startmail, utc(2025, 8, 1))
    startmail.engine.legal_hold(account, on=True, by="legal@startmail.example", reason="inquiry")

    startmail.engine.run_until(utc(2025, 12, 1))

    assert startmail.deletions(account) == []
    case = startmail.case(account, "expiry")
    assert case.phase == "termination"
    assert case.waiting == ("legal hold: the deletion waits (since 2025-09-15)",)

    startmail.engine.legal_hold(account, on=False, by="legal@startmail.example", reason="closed")
    assert startmail.sent(account)[-1] == (utc(2025, 12, 1), "expiry-final-warning", JANE)
    startmail.engine.run_until(utc(2025, 12, 15))
    assert startmail.deletions(account) == [utc(2025, 12, 15)]
