"""Scenarios for the inactivity-cleanup preset: one test per behaviour of the published
"About inactive accounts" policy it models (rule-by-rule map: docs/policies/inactivity-cleanup.md).

The story most tests share: the customer `acme` signs up on 31 January 2025 (START), makes its
last API request on 10 February 2025 and sends its last campaign on 15 March 2025. Twelve months
later, on 15 March 2026 09:00, it qualifies: the 30-day grace period runs until 14 April 2026
09:00, the final email goes out a week before, on 7 April 2026 09:00.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from lapse.errors import AccountDeleted, AccountExists

from .conftest import Flexmail, utc

ANN, BOB = Flexmail.ADMINS
CARL = Flexmail.MEMBER

LAST_API_REQUEST = utc(2025, 2, 10)
LAST_CAMPAIGN = utc(2025, 3, 15)
QUALIFIES = utc(2026, 3, 15)
FINAL_EMAIL = utc(2026, 4, 7)
DELETION = utc(2026, 4, 14)

STARTED = "inactivity-grace-started"
FINAL = "inactivity-final-warning"


def last_used_in_march_2025(flexmail: Flexmail, account_id: str = "acme") -> str:
    """The shared story up to its last activity (the clock ends on 15 March 2025)."""
    flexmail.customer(account_id)
    flexmail.engine.run_until(LAST_API_REQUEST)
    flexmail.engine.signal(account_id, "api_request")
    flexmail.engine.run_until(LAST_CAMPAIGN)
    flexmail.engine.signal(account_id, "campaign_sent")
    return account_id


def in_grace(flexmail: Flexmail) -> str:
    """The shared story, run on time until the grace period has just started."""
    account = last_used_in_march_2025(flexmail)
    flexmail.engine.run_until(QUALIFIES)
    return account


# --- when does an account qualify? ----------------------------------------------------------


def test_account_qualifies_after_12_months_without_campaigns_or_api_requests(flexmail):
    account = last_used_in_march_2025(flexmail)

    flexmail.engine.run_until(utc(2026, 3, 15, 8))
    assert flexmail.open_flows(account) == []
    assert flexmail.state(account) == "active"

    flexmail.engine.run_until(QUALIFIES)
    case = flexmail.case(account, "inactivity")
    assert case is not None
    assert case.started_at == QUALIFIES
    assert case.opened_by == "condition"
    assert case.reason == (
        "no campaign sent and no API request in the last 12 months, and no active subscription"
    )


def test_new_account_never_used_qualifies_12_months_after_signing_up(flexmail):
    account = flexmail.customer()

    flexmail.engine.run_until(utc(2026, 2, 1))

    case = flexmail.case(account, "inactivity")
    assert case is not None
    assert case.started_at == utc(2026, 1, 31)
    # 30 calendar days from 31 January 2026 (February 2026 has 28 days)
    assert case.deadline == utc(2026, 3, 2)


def test_campaign_sent_within_12_months_postpones_qualification(flexmail):
    account = last_used_in_march_2025(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 1))
    flexmail.engine.signal(account, "campaign_sent")

    flexmail.engine.run_until(utc(2027, 2, 28))
    assert flexmail.open_flows(account) == []

    flexmail.engine.run_until(utc(2027, 3, 1))
    assert flexmail.case(account, "inactivity").started_at == utc(2027, 3, 1)


def test_api_request_within_12_months_postpones_qualification(flexmail):
    account = last_used_in_march_2025(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 10))
    flexmail.engine.signal(account, "api_request")

    flexmail.engine.run_until(utc(2027, 3, 10, 8))
    assert flexmail.open_flows(account) == []

    flexmail.engine.run_until(utc(2027, 3, 10))
    assert flexmail.case(account, "inactivity").started_at == utc(2027, 3, 10)


def test_active_subscription_keeps_an_unused_account_from_qualifying(flexmail):
    account = last_used_in_march_2025(flexmail)
    flexmail.engine.set_fact(account, "subscription_active", True)

    flexmail.engine.run_until(utc(2026, 6, 1))
    assert flexmail.open_flows(account) == []
    assert flexmail.sent(account) == []

    # the subscription ends: twelve months without campaigns or API requests are long past
    flexmail.engine.set_fact(account, "subscription_active", False)
    case = flexmail.case(account, "inactivity")
    assert case.started_at == utc(2026, 6, 1)
    assert case.deadline == utc(2026, 7, 1)


def test_logging_in_does_not_keep_an_account_from_qualifying(flexmail):
    account = last_used_in_march_2025(flexmail)
    for month in range(4, 13):
        flexmail.engine.run_until(utc(2025, month, 20))
        flexmail.engine.signal(account, "login")

    flexmail.engine.run_until(QUALIFIES)

    assert flexmail.case(account, "inactivity").started_at == QUALIFIES


def test_timeline_explains_when_the_account_will_qualify_and_be_deleted(flexmail):
    account = last_used_in_march_2025(flexmail)

    timeline = flexmail.engine.timeline(account)

    outlook = next(f for f in timeline.flows if f.flow == "inactivity")
    assert outlook.applies
    assert not outlook.start.holds
    assert outlook.start.holds_at == QUALIFIES
    projected = [(e.at, e.kind) for e in timeline.events if e.flow == "inactivity"]
    assert (QUALIFIES, "case.opens") in projected
    assert (FINAL_EMAIL, "notice") in projected
    assert (DELETION, "delete") in projected
    assert not next(f for f in timeline.flows if f.flow == "test-account-expiry").applies


# --- notifications --------------------------------------------------------------------------


def test_all_admins_get_an_email_when_grace_period_starts(flexmail):
    account = in_grace(flexmail)

    assert flexmail.sent(account) == [
        (QUALIFIES, STARTED, ANN),
        (QUALIFIES, STARTED, BOB),
    ]
    (notice, *_) = flexmail.engine.notices.for_account(account)
    assert notice.deadline == DELETION


def test_plain_members_and_the_billing_address_get_no_email(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(DELETION)

    recipients = {recipient for _, _, recipient in flexmail.sent(account)}
    assert recipients == {ANN, BOB}
    assert CARL not in recipients
    assert Flexmail.ADDRESS not in recipients


def test_final_email_one_week_before_deletion(flexmail):
    account = in_grace(flexmail)

    flexmail.engine.run_until(utc(2026, 4, 7, 8))
    assert flexmail.sent(account, FINAL) == []

    flexmail.engine.run_until(FINAL_EMAIL)
    assert flexmail.sent(account, FINAL) == [(FINAL_EMAIL, FINAL, ANN), (FINAL_EMAIL, FINAL, BOB)]
    assert (DELETION - FINAL_EMAIL).days == 7


def test_admins_receive_exactly_two_emails_during_grace(flexmail):
    account = in_grace(flexmail)

    flexmail.engine.run_until(DELETION)

    for admin in (ANN, BOB):
        assert [(at, t) for at, t, r in flexmail.sent(account) if r == admin] == [
            (QUALIFIES, STARTED),
            (FINAL_EMAIL, FINAL),
        ]


def test_admins_are_notified_by_email_and_in_the_account(flexmail):
    account = in_grace(flexmail)
    # the last hour of grace, both notices out (the deletion erases the account's notifications)
    flexmail.engine.run_until(utc(2026, 4, 14, 8))

    assert {n.channel for n in flexmail.engine.notices.for_account(account)} == {"email"}
    # "and by notifications in the account": the same two notices, in the account's dashboard
    in_app = flexmail.engine.store.notifications(account)
    assert sorted((n.created_at, n.template) for n in in_app) == [
        (QUALIFIES, STARTED),
        (FINAL_EMAIL, FINAL),
    ]


def test_admin_added_during_grace_receives_the_final_email(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 20))
    flexmail.engine.add_member(account, "dana@acme.example", "admin")

    flexmail.engine.run_until(FINAL_EMAIL)

    assert flexmail.recipients(account, FINAL) == [ANN, BOB, "dana@acme.example"]
    assert flexmail.recipients(account, STARTED) == [ANN, BOB]


def test_account_without_admin_users_is_notified_at_its_address(flexmail):
    flexmail.engine.add_account("solo", kind="standard", address="solo@solo.example")

    flexmail.engine.run_until(utc(2026, 3, 2))

    assert flexmail.sent("solo") == [
        (utc(2026, 1, 31), STARTED, "solo@solo.example"),
        (utc(2026, 2, 23), FINAL, "solo@solo.example"),
    ]


def test_banner_in_the_account_announces_the_deletion_date(flexmail):
    account = in_grace(flexmail)

    assert flexmail.engine.status(account).banner == (
        "Your account has been inactive for 12 months and will be permanently deleted on "
        "14 April 2026 (30 days left). Contact sales@flexmail.be or take out a subscription "
        "to keep it; you can still log on, view and export your data."
    )
    flexmail.engine.run_until(FINAL_EMAIL)
    assert "(7 days left)" in flexmail.engine.status(account).banner


# --- the grace period -----------------------------------------------------------------------


def test_grace_period_starts_the_moment_the_account_qualifies_and_lasts_30_days(flexmail):
    account = in_grace(flexmail)

    case = flexmail.case(account, "inactivity")
    assert case.phase == "grace"
    assert case.phase_started_at == QUALIFIES
    assert case.deadline == DELETION
    assert case.time_left == "30 days"
    assert case.outcome == "delete"
    assert flexmail.state(account) == "restricted"


def test_sending_disabled_but_login_view_export_allowed_during_grace(flexmail):
    account = last_used_in_march_2025(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 14))
    assert flexmail.allowed(account, "send_campaign")

    flexmail.engine.run_until(QUALIFIES)

    decision = flexmail.engine.check(account, "send_campaign")
    assert not decision.allowed
    assert decision.message == (
        "Sending campaigns is disabled during the grace period: no campaign sent and no API "
        "request in the last 12 months, and no active subscription."
    )
    for action in ("login", "view", "export", "view_reports"):
        assert flexmail.allowed(account, action), action
    assert flexmail.denied_actions(account) == {"send_campaign"}


def test_no_campaign_can_be_sent_at_any_time_during_grace(flexmail):
    account = in_grace(flexmail)

    for moment in (utc(2026, 3, 16), utc(2026, 4, 1), FINAL_EMAIL, utc(2026, 4, 14, 8, 59)):
        flexmail.engine.run_until(moment)
        decision = flexmail.engine.check(account, "send_campaign")
        assert not decision.allowed, moment
        assert decision.until is None  # the grace period ends in deletion, not in sending again


def test_data_can_be_exported_until_the_last_moment_of_grace(flexmail):
    account = in_grace(flexmail)

    flexmail.engine.run_until(utc(2026, 4, 14, 8, 59))

    assert flexmail.allowed(account, "export")
    assert flexmail.allowed(account, "view_reports")
    assert flexmail.case(account, "inactivity").time_left == "1 minute"


# --- what keeps the account -----------------------------------------------------------------


def test_contacting_sales_during_grace_keeps_the_account(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 25))

    flexmail.engine.event(account, "contacted_sales", event_id="ticket-4711")

    assert flexmail.open_flows(account) == []
    assert flexmail.allowed(account, "send_campaign")
    flexmail.engine.run_until(utc(2026, 5, 1))
    assert flexmail.sent(account, FINAL) == []
    assert flexmail.deletions(account) == []
    assert flexmail.state(account) == "active"


def test_new_subscription_during_grace_keeps_the_account(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 4, 10))

    flexmail.engine.set_fact(account, "subscription_active", True)

    assert flexmail.open_flows(account) == []
    assert flexmail.allowed(account, "send_campaign")
    flexmail.engine.run_until(utc(2027, 6, 1))
    assert flexmail.deletions(account) == []
    assert flexmail.open_flows(account) == []


def test_login_alone_does_not_stop_the_grace_period(flexmail):
    account = in_grace(flexmail)
    for day in (16, 25):
        flexmail.engine.run_until(utc(2026, 3, day))
        flexmail.engine.signal(account, "login")
        assert flexmail.case(account, "inactivity") is not None

    flexmail.engine.run_until(DELETION)

    assert flexmail.deletions(account) == [DELETION]


def test_api_request_during_grace_does_not_stop_the_grace_period(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 4, 1))
    flexmail.engine.signal(account, "api_request")

    flexmail.engine.run_until(DELETION)

    assert flexmail.deletions(account) == [DELETION]


def test_contacting_sales_before_the_grace_period_does_not_count(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 20))

    # a ticket from early March, delivered late: it predates the grace period
    flexmail.engine.event(account, "contacted_sales", at=utc(2026, 3, 2), event_id="ticket-1")

    assert flexmail.case(account, "inactivity") is not None
    flexmail.engine.run_until(DELETION)
    assert flexmail.deletions(account) == [DELETION]


def test_kept_account_gets_a_fresh_12_months(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 25))
    flexmail.engine.event(account, "contacted_sales")

    flexmail.engine.run_until(utc(2027, 3, 25, 8))
    assert flexmail.open_flows(account) == []

    flexmail.engine.run_until(utc(2027, 3, 25))
    case = flexmail.case(account, "inactivity")
    assert case.started_at == utc(2027, 3, 25)
    assert case.deadline == utc(2027, 4, 24)


def test_duplicate_contact_event_is_applied_once(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 25))

    assert flexmail.engine.event(account, "contacted_sales", event_id="ticket-9") is True
    assert flexmail.engine.event(account, "contacted_sales", event_id="ticket-9") is False

    assert flexmail.audit_kinds(account).count("event.received") == 1


# --- deletion -------------------------------------------------------------------------------


def test_account_deleted_after_the_30_day_grace_period(flexmail):
    account = in_grace(flexmail)

    # four weeks (28 days) is not enough: the preset uses the 30 days the deletion is tied to
    flexmail.engine.run_until(utc(2026, 4, 12))
    assert flexmail.deletions(account) == []
    flexmail.engine.run_until(utc(2026, 4, 14, 8))
    assert flexmail.deletions(account) == []

    flexmail.engine.run_until(DELETION)
    assert flexmail.deletions(account) == [DELETION]
    assert flexmail.engine.status(account).deleted_at == DELETION


def test_deletion_removes_the_account_and_all_its_data(flexmail):
    account = in_grace(flexmail)

    flexmail.engine.run_until(DELETION)

    (deleted_at, effect), *rest = flexmail.engine.data.deleted
    assert rest == []
    assert (deleted_at, effect.account_id, effect.flow) == (DELETION, account, "inactivity")
    assert flexmail.purges(account) == []  # everything goes, not a selection of categories
    registered = set(flexmail.policy.categories)
    assert {
        "campaigns",
        "contacts",
        "templates",
        "payment_details",
        "api_keys",
        "contact_actions",
        "reports",
        "usage",
    } <= registered
    assert flexmail.state(account) == "deleted"
    assert flexmail.denied_actions(account) == set(flexmail.policy.actions)
    assert flexmail.engine.status(account).denied == flexmail.policy.action_order


def test_deleted_account_cannot_be_restored(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(DELETION)

    with pytest.raises(AccountDeleted):
        flexmail.engine.reactivate(account, by="support@flexmail.example", reason="please")
    with pytest.raises(AccountDeleted):
        flexmail.engine.event(account, "contacted_sales")
    with pytest.raises(AccountDeleted):
        flexmail.engine.set_fact(account, "subscription_active", True)
    assert flexmail.engine.store.tombstone(account).deleted_at == DELETION


def test_deleted_address_can_register_again(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(DELETION)
    assert flexmail.engine.store.tombstone(account).address_mode == "release"

    again = flexmail.engine.add_account(
        "acme-2", kind="standard", address=Flexmail.ADDRESS, members=[(ANN, "admin")]
    )

    assert again.address == Flexmail.ADDRESS
    assert flexmail.state("acme-2") == "active"
    with pytest.raises(AccountExists):  # the old account itself stays gone
        flexmail.customer(account)


# --- test accounts --------------------------------------------------------------------------


def test_test_accounts_deleted_after_30_days_without_grace(flexmail):
    sandbox = flexmail.test_account()

    flexmail.engine.run_until(utc(2025, 3, 2, 8))
    assert flexmail.state(sandbox) == "active"
    assert flexmail.denied_actions(sandbox) == set()  # no grace period: nothing is restricted

    flexmail.engine.run_until(utc(2025, 3, 2))
    assert flexmail.deletions(sandbox) == [utc(2025, 3, 2)]  # 30 days after 31 January
    assert flexmail.sent(sandbox) == []
    assert flexmail.engine.store.tombstone(sandbox).flow == "test-account-expiry"


def test_test_account_activity_does_not_extend_its_30_days(flexmail):
    sandbox = flexmail.test_account()
    flexmail.engine.run_until(utc(2025, 2, 25))
    flexmail.engine.signal(sandbox, "campaign_sent")
    flexmail.engine.signal(sandbox, "api_request")
    flexmail.engine.set_fact(sandbox, "subscription_active", True)

    flexmail.engine.run_until(utc(2025, 3, 2))

    assert flexmail.deletions(sandbox) == [utc(2025, 3, 2)]


def test_standard_accounts_are_not_deleted_after_30_days(flexmail):
    account = flexmail.customer()

    flexmail.engine.run_until(utc(2025, 6, 1))

    assert flexmail.deletions(account) == []
    assert flexmail.open_flows(account) == []


def test_deleted_test_account_address_can_register_again(flexmail):
    flexmail.test_account(address="dev@acme.example")
    flexmail.engine.run_until(utc(2025, 3, 2))

    flexmail.engine.add_account("sandbox-2", kind="test", address="dev@acme.example")

    assert flexmail.state("sandbox-2") == "active"


# --- guarantees end to end ------------------------------------------------------------------


def test_email_outage_delays_the_final_email_and_pushes_the_deletion(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 4, 7, 8))
    flexmail.engine.notices.down = True

    flexmail.engine.run_until(FINAL_EMAIL)
    case = flexmail.case(account, "inactivity")
    assert case.waiting == (
        "notice grace/inactivity-final-warning is not dispatched yet "
        f"(retrying after 1 attempt: {flexmail.outage_error})",
    )
    flexmail.engine.run_until(utc(2026, 4, 8))
    assert flexmail.sent(account, FINAL) == []

    flexmail.engine.notices.down = False
    flexmail.engine.run_until(utc(2026, 4, 9))

    # retries back off to at most an hour apart: the first one after the outage sends it
    resent = utc(2026, 4, 8, 9, 3)
    assert flexmail.sent(account, FINAL) == [(resent, FINAL, ANN), (resent, FINAL, BOB)]
    # the late email states the date the admins really have: a full week from when it left
    email = flexmail.email_text(account, FINAL, ANN)
    assert "will be permanently deleted on 15 April 2026, in 7 days, because" in email
    assert "This reminder reaches you later than planned" in email
    case = flexmail.case(account, "inactivity")
    assert case.deadline == resent + timedelta(days=7)
    assert case.planned_deadline == DELETION
    flexmail.engine.run_until(utc(2026, 4, 14))
    assert flexmail.deletions(account) == []
    assert "(1 day left)" in flexmail.engine.status(account).banner
    flexmail.engine.run_until(utc(2026, 4, 16))
    assert flexmail.deletions(account) == [resent + timedelta(days=7)]


def test_catch_up_after_scheduler_downtime_sends_each_email_once_and_in_order(flexmail):
    account = last_used_in_march_2025(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 1))

    # the scheduler is down from 1 March to 20 April 2026, past the planned deletion date
    flexmail.clock.advance("50 days")
    flexmail.engine.run_due()
    flexmail.engine.run_due()

    caught_up = utc(2026, 4, 20)
    assert flexmail.sent(account) == [
        (caught_up, STARTED, ANN),
        (caught_up, STARTED, BOB),
        (caught_up, FINAL, ANN),
        (caught_up, FINAL, BOB),
    ]
    case = flexmail.case(account, "inactivity")
    assert case.started_at == QUALIFIES  # the same case as on time...
    assert case.deadline == utc(2026, 4, 27)  # ...but the admins still get their full week
    assert flexmail.deletions(account) == []

    flexmail.clock.advance("30 days")
    flexmail.engine.run_due()
    assert flexmail.deletions(account) == [utc(2026, 5, 20)]
    assert len(flexmail.sent(account)) == 4


def test_legal_hold_blocks_the_deletion_and_warns_again_after_release(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 4, 1))
    flexmail.engine.legal_hold(account, on=True, by="legal@flexmail.example", reason="court order")

    flexmail.engine.run_until(utc(2026, 5, 1))

    assert flexmail.deletions(account) == []
    case = flexmail.case(account, "inactivity")
    assert case.destruct == "held"
    assert case.waiting == ("legal hold: the deletion waits (since 2026-04-14)",)
    status = flexmail.engine.status(account)
    assert status.legal_hold.reason == "court order"
    assert not flexmail.allowed(account, "send_campaign")
    # no date that has gone by ("deleted on 14 April 2026 (no time left)"): the hold is said
    assert (case.deadline, case.time_left) == (None, None)
    assert status.banner == (
        "Inactivity clean-up: no campaign sent and no API request in the last 12 months, and no "
        "active subscription. The deletion waits on a legal hold: it will not happen while the "
        "hold lasts."
    )

    flexmail.engine.run_until(utc(2026, 6, 1))
    flexmail.engine.legal_hold(account, on=False, by="legal@flexmail.example", reason="settled")

    assert flexmail.sent(account)[-2:] == [
        (utc(2026, 6, 1), FINAL, ANN),
        (utc(2026, 6, 1), FINAL, BOB),
    ]
    case = flexmail.case(account, "inactivity")
    assert case.waiting == ("hold lifted: warnings sent again before the deletion",)
    # the deadline is the re-sent warning's week, as the email says, not 14 April
    assert (case.deadline, case.planned_deadline, case.time_left) == (
        utc(2026, 6, 8),
        DELETION,
        "7 days",
    )
    assert "permanently deleted on 08 June 2026 (7 days left)" in (
        flexmail.engine.status(account).banner
    )
    flexmail.engine.run_until(utc(2026, 6, 8, 8))
    assert flexmail.deletions(account) == []
    flexmail.engine.run_until(utc(2026, 6, 8))
    assert flexmail.deletions(account) == [utc(2026, 6, 8)]


def test_admin_reactivation_closes_the_case_lifts_restrictions_and_rearms(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 3, 20))

    flexmail.engine.reactivate(account, by="support@flexmail.example", reason="customer called")

    assert flexmail.open_flows(account) == []
    assert flexmail.allowed(account, "send_campaign")
    assert flexmail.engine.status(account).banner is None
    flexmail.engine.run_until(utc(2027, 3, 20, 8))
    assert flexmail.open_flows(account) == []
    assert flexmail.deletions(account) == []
    flexmail.engine.run_until(utc(2027, 3, 20))
    assert flexmail.case(account, "inactivity").started_at == utc(2027, 3, 20)


def test_every_account_is_processed_on_its_own_dates(flexmail):
    flexmail.engine.add_account(
        "beta",
        kind="standard",
        address="beta@beta.example",
        members=[("eve@beta.example", "admin")],
    )
    sandbox = flexmail.test_account()
    last_used_in_march_2025(flexmail, "acme")

    flexmail.engine.run_until(utc(2026, 5, 1))

    assert flexmail.deletions(sandbox) == [utc(2025, 3, 2)]
    assert flexmail.deletions("beta") == [utc(2026, 3, 2)]
    assert flexmail.deletions("acme") == [DELETION]


def test_final_email_that_keeps_failing_holds_the_deletion_until_it_goes_out(flexmail):
    account = in_grace(flexmail)
    flexmail.engine.run_until(utc(2026, 4, 7, 8))
    flexmail.engine.notices.down = True

    # a six-day outage with a scheduler ticking every hour: the retries (about five days of
    # them) give up
    for _ in range(144):
        flexmail.clock.advance("1 hour")
        flexmail.engine.run_due()
    flexmail.engine.notices.down = False
    flexmail.engine.run_until(utc(2026, 4, 20))

    assert flexmail.sent(account, FINAL) == []
    assert flexmail.deletions(account) == []  # never deleted without the final email
    assert flexmail.case(account, "inactivity").waiting == (
        "notice grace/inactivity-final-warning is not dispatched yet "
        f"(failed after 120 attempts: {flexmail.outage_error})",
    )
    failed = flexmail.engine.store.outbox(account_id=account, status="failed")
    assert sorted(i.recipient for i in failed) == [ANN, BOB]

    for item in failed:  # an operator re-queues the notice
        flexmail.engine.store.retry_outbox(item.id)
    flexmail.engine.run_due()

    assert flexmail.sent(account, FINAL) == [
        (utc(2026, 4, 20), FINAL, ANN),
        (utc(2026, 4, 20), FINAL, BOB),
    ]
    assert flexmail.case(account, "inactivity").deadline == utc(2026, 4, 27)
    flexmail.engine.run_until(utc(2026, 4, 27))
    assert flexmail.deletions(account) == [utc(2026, 4, 27)]
