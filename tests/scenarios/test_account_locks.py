"""Scenarios for the account-locks preset: one test per behaviour of the published "What happens
to my data when my account is locked" policy it models (rule-by-rule map:
docs/policies/account-locks.md).

The story most tests share: the paying team `shop` (admins owner@ and ops@, one writer, 800 of
1,000 contacts, 1% bounces) has a payment failure on 10 February 2025 at 09:00. It is locked
read-only; its admins are warned on 11 July 2025 that the six months run out, and on 10 August
2025 its history (campaign timelines, reports, contact actions) is purged. The free trial
`tryout` ends on 14 February 2025.
"""

from __future__ import annotations

import pytest

from lapse.errors import AccountDeleted, AddressRetired, Conflict, IrreversibleCase

from .conftest import START, SendX, utc

OWNER, OPS = SendX.ADMINS
WRITER = SendX.MEMBER

LOCKED = utc(2025, 2, 10)
RETENTION_WARNING = utc(2025, 7, 11)
SIX_MONTHS = utc(2025, 8, 10)
HISTORY = ("campaign_timelines", "reports", "contact_actions")

TRIAL_END = utc(2025, 2, 14)
TRIAL_WARNING = utc(2025, 7, 15)
TRIAL_SIX_MONTHS = utc(2025, 8, 14)

READ_ONLY = {
    "login",
    "view",
    "view_reports",
    "remove_contacts",
    "process_unsubscribe",
    "deliver_webhook",
    "integration_update",
    "update_billing",
    "upgrade_plan",
}
ALL_ACTIONS = READ_ONLY | {
    "export",
    "edit",
    "send_email",
    "schedule_campaign",
    "run_automation",
    "bulk_action",
    "serve_forms",
    "serve_landing_pages",
}
TRIAL_DENIED = {
    "send_email",
    "schedule_campaign",
    "run_automation",
    "bulk_action",
    "serve_forms",
    "serve_landing_pages",
}


def payment_locked(sendx: SendX, moment=LOCKED, account_id: str = "shop") -> str:
    """The team, its payment failing on 10 February 2025, run on time until `moment`."""
    account = sendx.team(account_id)
    sendx.engine.run_until(LOCKED)
    sendx.engine.event(account, "payment_failed", event_id=f"{account_id}-invoice-1")
    sendx.engine.run_until(moment)
    return account


def expired_trial(sendx: SendX, moment=TRIAL_END) -> str:
    """The free trial ending on 14 February 2025, run on time until `moment`."""
    account = sendx.trial(ends_at=TRIAL_END)
    sendx.engine.run_until(moment)
    return account


def allowed_set(sendx: SendX, account: str) -> set[str]:
    return ALL_ACTIONS - sendx.denied_actions(account)


# --- why accounts get locked ----------------------------------------------------------------


def test_payment_failure_locks_read_only(sendx):
    account = payment_locked(sendx)

    case = sendx.case(account, "payment-lock")
    assert (case.started_at, case.phase, case.deadline) == (LOCKED, "locked", SIX_MONTHS)
    assert case.reason == "your payment method failed or your subscription could not be renewed"
    assert sendx.state(account) == "locked"
    assert allowed_set(sendx, account) == READ_ONLY


def test_failed_subscription_renewal_locks_the_account(sendx):
    account = sendx.team()
    sendx.engine.run_until(LOCKED)

    sendx.engine.event(account, "renewal_failed", event_id="renewal-2025")

    assert sendx.case(account, "payment-lock").opened_by == "event:renewal_failed"
    assert allowed_set(sendx, account) == READ_ONLY


def test_contacts_over_the_plan_limit_lock_the_account(sendx):
    account = sendx.team(contacts=800, limit=1000)
    sendx.engine.run_until(LOCKED)

    sendx.engine.set_fact(account, "contacts", 1000)
    assert sendx.open_flows(account) == []  # at the limit is within the allowance

    sendx.engine.set_fact(account, "contacts", 1001)
    case = sendx.case(account, "contact-limit-lock")
    assert case.started_at == LOCKED
    assert case.reason == "your contacts exceed your plan's contact limit"
    assert allowed_set(sendx, account) == READ_ONLY


def test_bounce_rate_over_5_percent_locks_the_account(sendx):
    account = sendx.team()
    sendx.engine.run_until(LOCKED)

    sendx.engine.set_fact(account, "bounce_rate", 0.05)
    assert sendx.open_flows(account) == []

    sendx.engine.set_fact(account, "bounce_rate", 0.051)
    case = sendx.case(account, "bounce-rate-lock")
    assert case.reason == "too many of your emails bounce"
    assert allowed_set(sendx, account) == READ_ONLY


def test_locks_are_temporary_not_deletion(sendx):
    account = payment_locked(sendx, utc(2026, 6, 1))

    # more than a year later: still locked, never deleted
    assert sendx.deletions(account) == []
    assert sendx.state(account) == "locked"
    assert sendx.case(account, "payment-lock").outcome == (
        "purge: campaign_timelines, reports, contact_actions"
    )


# --- what you can still do while locked -----------------------------------------------------


def test_you_and_team_members_can_log_in_and_view_data_while_locked(sendx):
    account = payment_locked(sendx)

    for action in ("login", "view", "view_reports"):
        assert sendx.allowed(account, action), action
    # the lock removes nobody from the team
    assert {m.email for m in sendx.engine.account(account).members} == {OWNER, OPS, WRITER}


def test_team_members_added_during_a_lock_also_get_read_only_access(sendx):
    account = payment_locked(sendx, utc(2025, 3, 1))

    sendx.engine.add_member(account, "intern@shop.example")

    assert allowed_set(sendx, account) == READ_ONLY
    assert sendx.case(account, "payment-lock") is not None


def test_unsubscribes_webhooks_and_integrations_keep_working_while_locked(sendx):
    account = payment_locked(sendx)

    assert sendx.allowed(account, "process_unsubscribe")
    assert sendx.allowed(account, "deliver_webhook")
    assert sendx.allowed(account, "integration_update")


def test_integration_triggered_campaigns_do_not_go_out_while_locked(sendx):
    account = payment_locked(sendx)

    assert sendx.allowed(account, "integration_update")
    assert not sendx.allowed(account, "send_email")


# --- what you cannot do while locked --------------------------------------------------------


def test_sending_disabled_while_locked(sendx):
    account = payment_locked(sendx)

    decision = sendx.engine.check(account, "send_email")
    assert not decision.allowed
    assert decision.message == (
        "send_email is disabled while your account is locked: your payment method failed or "
        "your subscription could not be renewed."
    )
    assert decision.until is None  # lifted when the cause is resolved, not at a set date


def test_automations_and_bulk_actions_paused_while_locked(sendx):
    account = payment_locked(sendx)

    assert not sendx.allowed(account, "run_automation")
    assert not sendx.allowed(account, "bulk_action")
    assert (LOCKED, "pause_automations", "enter") in sendx.host(account)


def test_scheduled_campaigns_stopped_on_lock(sendx):
    account = payment_locked(sendx)

    assert not sendx.allowed(account, "schedule_campaign")
    # lapse stops scheduled and active campaigns at once; mails already queued are the host's
    assert sendx.host(account) == [
        (LOCKED, "stop_scheduled_campaigns", "enter"),
        (LOCKED, "pause_automations", "enter"),
    ]


def test_export_disabled_while_locked(sendx):
    account = payment_locked(sendx)

    for moment in (LOCKED, utc(2025, 5, 1), SIX_MONTHS, utc(2025, 12, 1)):
        sendx.engine.run_until(moment)
        assert not sendx.allowed(account, "export"), moment


def test_no_changes_can_be_made_while_locked(sendx):
    account = payment_locked(sendx)

    assert not sendx.allowed(account, "edit")


def test_forms_and_landing_pages_do_not_serve_while_locked(sendx):
    # not in the published list; the preset's read-only allow-list covers "most active features"
    account = payment_locked(sendx)

    assert not sendx.allowed(account, "serve_forms")
    assert not sendx.allowed(account, "serve_landing_pages")


# --- notifications --------------------------------------------------------------------------


def test_admins_are_told_by_email_and_in_the_dashboard_why_the_account_was_locked(sendx):
    account = payment_locked(sendx)

    assert sendx.sent(account) == [
        (LOCKED, "lock-started", OWNER),
        (LOCKED, "lock-started", OPS),
    ]
    assert {n.channel for n in sendx.engine.notices.for_account(account)} == {"email"}
    (dashboard,) = sendx.engine.store.notifications(account)
    assert (dashboard.created_at, dashboard.template) == (LOCKED, "lock-started")
    assert sendx.engine.status(account).banner == (
        "Your account is locked: your payment method failed or your subscription could not be "
        "renewed. You can log in and view your data, but sending and exports are disabled. Your "
        "data is fully preserved until 10 August 2025 (181 days left)."
    )


def test_admins_warned_30_days_before_data_may_be_lost(sendx):
    account = payment_locked(sendx, utc(2025, 7, 11, 8))
    assert sendx.sent(account, "lock-retention-warning") == []

    sendx.engine.run_until(RETENTION_WARNING)

    assert sendx.sent(account, "lock-retention-warning") == [
        (RETENTION_WARNING, "lock-retention-warning", OWNER),
        (RETENTION_WARNING, "lock-retention-warning", OPS),
    ]
    assert WRITER not in {r for _, _, r in sendx.sent(account)}


# --- data while locked ----------------------------------------------------------------------


def test_data_kept_intact_within_six_months_of_lock(sendx):
    account = payment_locked(sendx, utc(2025, 8, 10, 8))

    assert sendx.purges(account) == []
    assert sendx.deletions(account) == []
    assert sendx.case(account, "payment-lock").time_left == "1 hour"


def test_history_purged_after_six_months_of_lock(sendx):
    account = payment_locked(sendx, SIX_MONTHS)

    assert sendx.purges(account) == [(SIX_MONTHS, HISTORY)]
    # contacts, lists, templates, forms, domain settings, images, API keys, automations stay
    kept = set(sendx.policy.categories) - set(HISTORY)
    assert {
        "contacts",
        "contact_lists",
        "templates",
        "forms",
        "landing_pages",
        "domain_settings",
        "images",
        "api_keys",
        "automations",
    } <= kept
    case = sendx.case(account, "payment-lock")
    assert case.phase == "retention-expired"
    assert case.destruct == "done"


def test_data_still_viewable_but_locked_after_six_months(sendx):
    account = payment_locked(sendx, utc(2025, 12, 1))

    assert sendx.state(account) == "locked"
    assert allowed_set(sendx, account) == READ_ONLY
    assert sendx.engine.status(account).banner == (
        "Your account is still locked: your payment method failed or your subscription could "
        "not be renewed. It has been locked for more than six months, so some history may have "
        "been lost."
    )
    assert len(sendx.purges(account)) == 1  # purged once, not again and again


# --- unlocking ------------------------------------------------------------------------------


def test_payment_lock_lifted_as_soon_as_payment_succeeds(sendx):
    account = payment_locked(sendx, utc(2025, 3, 3))

    sendx.engine.event(account, "payment_succeeded", event_id="shop-invoice-1-paid")

    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()
    assert sendx.host(account)[-1] == (utc(2025, 3, 3), "resume_automations", "close")


def test_unlock_within_six_months_restores_everything_immediately(sendx):
    account = payment_locked(sendx, utc(2025, 8, 1))

    sendx.engine.event(account, "payment_succeeded")

    assert sendx.state(account) == "active"
    assert sendx.denied_actions(account) == set()
    sendx.engine.run_until(utc(2026, 3, 1))
    assert sendx.purges(account) == []


def test_unlock_after_six_months_restores_access_with_history_gaps(sendx):
    account = payment_locked(sendx, utc(2025, 9, 1))

    sendx.engine.event(account, "payment_succeeded")

    assert sendx.denied_actions(account) == set()
    assert sendx.purges(account) == [(SIX_MONTHS, HISTORY)]


def test_contact_limit_lock_lifted_by_upgrading_the_plan(sendx):
    account = sendx.team(contacts=1200, limit=1000)
    assert sendx.case(account, "contact-limit-lock") is not None
    assert sendx.allowed(account, "upgrade_plan")
    sendx.engine.run_until(utc(2025, 2, 3))

    sendx.engine.set_fact(account, "plan_contact_limit", 2500)

    assert sendx.open_flows(account) == []
    assert sendx.host(account)[-1] == (utc(2025, 2, 3), "resume_automations", "close")


def test_contact_limit_lock_lifted_by_removing_inactive_contacts(sendx):
    account = sendx.team(contacts=1200, limit=1000)
    assert sendx.allowed(account, "remove_contacts")

    sendx.engine.set_fact(account, "contacts", 1100)
    assert sendx.case(account, "contact-limit-lock") is not None
    sendx.engine.set_fact(account, "contacts", 990)

    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()


def test_bounce_rate_lock_lifted_when_the_rate_is_back_under_5_percent(sendx):
    account = sendx.team()
    sendx.engine.set_fact(account, "bounce_rate", 0.09)
    assert sendx.allowed(account, "remove_contacts")  # clean the list of invalid addresses

    sendx.engine.set_fact(account, "bounce_rate", 0.04)

    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()


def test_billing_and_plan_can_be_fixed_while_locked(sendx):
    account = payment_locked(sendx)

    assert sendx.allowed(account, "update_billing")
    assert sendx.allowed(account, "upgrade_plan")
    assert sendx.allowed(account, "remove_contacts")


def test_two_locks_unlock_only_when_both_resolved(sendx):
    account = payment_locked(sendx, utc(2025, 2, 12))
    sendx.engine.set_fact(account, "contacts", 1200)
    assert sendx.open_flows(account) == ["contact-limit-lock", "payment-lock"]
    assert sendx.recipients(account, "lock-started") == [OPS, OPS, OWNER, OWNER]

    sendx.engine.run_until(utc(2025, 3, 1))
    sendx.engine.event(account, "payment_succeeded")
    assert sendx.open_flows(account) == ["contact-limit-lock"]
    assert sendx.state(account) == "locked"
    assert allowed_set(sendx, account) == READ_ONLY
    assert "contacts exceed" in sendx.engine.status(account).banner

    sendx.engine.set_fact(account, "contacts", 950)
    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()


def test_automations_resume_only_when_the_last_lock_is_lifted(sendx):
    account = payment_locked(sendx, utc(2025, 2, 12))
    sendx.engine.set_fact(account, "contacts", 1200)
    sendx.engine.run_until(utc(2025, 3, 1))

    sendx.engine.event(account, "payment_succeeded")

    assert not sendx.allowed(account, "run_automation")
    assert "resume_automations" not in [name for _, name, _ in sendx.host(account)]

    sendx.engine.set_fact(account, "contacts", 900)

    assert sendx.allowed(account, "run_automation")
    assert sendx.host(account)[-1] == (utc(2025, 3, 1), "resume_automations", "close")


def test_new_payment_failure_after_unlock_locks_again_for_a_fresh_six_months(sendx):
    account = payment_locked(sendx, utc(2025, 3, 1))
    sendx.engine.event(account, "payment_succeeded")
    sendx.engine.run_until(utc(2025, 9, 1))

    sendx.engine.event(account, "payment_failed", event_id="shop-invoice-8")

    case = sendx.case(account, "payment-lock")
    assert (case.started_at, case.deadline) == (utc(2025, 9, 1), utc(2026, 3, 1))
    assert sendx.purges(account) == []


def test_support_can_lift_a_payment_lock_by_hand(sendx):
    account = payment_locked(sendx, utc(2025, 3, 1))

    sendx.engine.reactivate(account, by="support@sendx.example", reason="paid by bank transfer")

    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()
    assert sendx.host(account)[-1] == (utc(2025, 3, 1), "resume_automations", "close")


def test_support_cannot_lift_a_contact_limit_lock_while_the_contacts_are_still_over(sendx):
    account = sendx.team(contacts=1200, limit=1000)
    sendx.engine.run_until(utc(2025, 3, 1))

    # lifted by hand, the lock would open again that very moment: a second "locked" email and
    # six fresh months. Refused, saying why
    with pytest.raises(Conflict) as refused:
        sendx.engine.reactivate(account, by="support@sendx.example", reason="customer asked")
    assert "contacts 1200 > plan_contact_limit 1000" in str(refused.value)
    case = sendx.case(account, "contact-limit-lock")
    assert (case.id, case.started_at) == ("contact-limit-lock#1", START)
    assert sendx.recipients(account, "lock-started") == [OPS, OWNER]

    # support can give the team a week to clean up: unlocked until then
    week = utc(2025, 3, 8)
    sendx.engine.reactivate(
        account, by="support@sendx.example", reason="a week to clean up", snooze_until=week
    )
    assert sendx.open_flows(account) == []
    sendx.engine.run_until(week)
    assert sendx.case(account, "contact-limit-lock").started_at == week


# --- free trials ----------------------------------------------------------------------------


def test_trial_expiry_disables_forms_and_landing_pages_but_keeps_data(sendx):
    account = expired_trial(sendx, utc(2025, 2, 14, 8))
    assert sendx.denied_actions(account) == set()

    sendx.engine.run_until(TRIAL_END)

    case = sendx.case(account, "trial-expiry")
    assert (case.started_at, case.phase, case.deadline) == (
        TRIAL_END,
        "trial-expired",
        TRIAL_SIX_MONTHS,
    )
    assert not sendx.allowed(account, "serve_forms")
    assert not sendx.allowed(account, "serve_landing_pages")
    assert sendx.host(account) == [(TRIAL_END, "disable_forms_and_landing_pages", "enter")]
    assert sendx.purges(account) == []
    assert sendx.deletions(account) == []


def test_expired_trial_cannot_send_until_upgraded(sendx):
    account = expired_trial(sendx)

    assert sendx.denied_actions(account) == TRIAL_DENIED
    assert sendx.engine.check(account, "send_email").message == (
        "send_email needs a paid plan: your free trial has expired."
    )
    assert sendx.state(account) == "restricted"


def test_expired_trial_can_still_log_in_view_and_export(sendx):
    account = expired_trial(sendx, utc(2025, 8, 14, 8))

    for action in ("login", "view", "view_reports", "export", "edit"):
        assert sendx.allowed(account, action), action
    assert "Upgrade or export your data before then." in sendx.engine.status(account).banner


def test_trial_user_told_when_trial_expires_and_before_data_is_at_risk(sendx):
    account = expired_trial(sendx, TRIAL_SIX_MONTHS)

    assert sendx.sent(account) == [
        (TRIAL_END, "trial-expired", "maker@tryout.example"),
        (TRIAL_WARNING, "trial-retention-warning", "maker@tryout.example"),
    ]


def test_upgrading_trial_restores_forms_and_landing_pages_immediately(sendx):
    account = expired_trial(sendx, utc(2025, 5, 1))

    sendx.engine.set_fact(account, "subscription_active", True)

    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()
    assert sendx.host(account)[-1] == (utc(2025, 5, 1), "enable_forms_and_landing_pages", "close")
    sendx.engine.run_until(utc(2025, 12, 1))
    assert sendx.purges(account) == []


def test_trial_converted_to_a_paid_account_restores_forms_and_landing_pages(sendx):
    account = expired_trial(sendx, utc(2025, 5, 1))

    sendx.engine.set_kind(account, "standard")

    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()
    assert sendx.host(account)[-1] == (utc(2025, 5, 1), "enable_forms_and_landing_pages", "close")


def test_trial_data_not_guaranteed_beyond_six_months(sendx):
    account = expired_trial(sendx, TRIAL_SIX_MONTHS)

    assert sendx.purges(account) == [
        (
            TRIAL_SIX_MONTHS,
            ("campaign_timelines", "reports", "contact_actions"),
        )
    ]
    case = sendx.case(account, "trial-expiry")
    assert case.phase == "retention-expired"
    assert sendx.denied_actions(account) == TRIAL_DENIED
    assert sendx.deletions(account) == []


def test_trial_accounts_are_not_locked_for_payment_problems(sendx):
    account = expired_trial(sendx, utc(2025, 2, 1))

    sendx.engine.event(account, "payment_failed")
    sendx.engine.set_facts(account, facts={"contacts": 5000, "plan_contact_limit": 100})

    assert sendx.open_flows(account) == []


# --- permanent suspension -------------------------------------------------------------------


def test_tos_violation_suspends_and_deletes_at_once_irreversibly(sendx):
    account = sendx.team()
    sendx.engine.run_until(LOCKED)

    sendx.engine.event(account, "tos_violation", event_id="abuse-report-17")

    assert sendx.deletions(account) == [LOCKED]
    assert sendx.state(account) == "deleted"
    assert sendx.denied_actions(account) == ALL_ACTIONS
    with pytest.raises(AccountDeleted):
        sendx.engine.reactivate(account, by="support@sendx.example", reason="appeal")
    assert sendx.engine.store.tombstone(account).flow == "tos-suspension"


def test_tos_suspension_comes_without_warning(sendx):
    account = sendx.team()

    sendx.engine.event(account, "tos_violation")

    assert sendx.sent(account) == []
    assert sendx.host(account) == [
        (sendx.now, "stop_scheduled_campaigns", "enter"),
        (sendx.now, "revoke_sessions", "enter"),
    ]


def test_tos_suspension_cannot_be_reactivated_or_stopped(sendx):
    sendx.slow_deletions()  # the account is still there while its deletion is queued
    account = sendx.team()
    sendx.engine.event(account, "tos_violation")

    assert sendx.state(account) == "suspended"
    assert sendx.denied_actions(account) == ALL_ACTIONS  # not even login
    with pytest.raises(IrreversibleCase):
        sendx.engine.reactivate(account, by="support@sendx.example", reason="appeal")
    sendx.engine.event(account, "payment_succeeded")
    assert sendx.case(account, "tos-suspension").irreversible
    assert sendx.state(account) == "suspended"


def test_suspended_account_address_cannot_register_again(sendx):
    account = sendx.team()
    sendx.engine.event(account, "tos_violation")

    with pytest.raises(AddressRetired):
        sendx.engine.add_account("shop-2", kind="trial", address=SendX.ADDRESS)


def test_tos_violation_during_a_free_trial_also_deletes_at_once(sendx):
    account = expired_trial(sendx, utc(2025, 3, 1))

    sendx.engine.event(account, "tos_violation")

    assert sendx.deletions(account) == [utc(2025, 3, 1)]


def test_tos_violation_on_a_locked_account_deletes_it_without_resuming_anything(sendx):
    account = payment_locked(sendx, utc(2025, 3, 1))

    sendx.engine.event(account, "tos_violation")

    assert sendx.deletions(account) == [utc(2025, 3, 1)]
    assert "resume_automations" not in [name for _, name, _ in sendx.host(account)]


# --- guarantees end to end ------------------------------------------------------------------


def test_out_of_order_payment_events_do_not_lock(sendx):
    account = sendx.team()
    sendx.engine.run_until(utc(2025, 3, 1, 12))

    # the retry at 10:00 succeeded; its notification overtakes the 08:00 failure's
    sendx.engine.event(account, "payment_succeeded", at=utc(2025, 3, 1, 10), event_id="pay-2")
    sendx.engine.event(account, "payment_failed", at=utc(2025, 3, 1, 8), event_id="pay-1")

    assert sendx.open_flows(account) == []
    assert sendx.denied_actions(account) == set()
    assert sendx.audit_kinds(account)[-1] == "event.ignored"


def test_payment_success_older_than_the_lock_does_not_unlock(sendx):
    account = payment_locked(sendx, utc(2025, 2, 11))

    sendx.engine.event(account, "payment_succeeded", at=utc(2025, 2, 9), event_id="old-receipt")

    assert sendx.case(account, "payment-lock") is not None


def test_a_payment_reported_after_the_purge_unlocks_without_undoing_the_record(sendx):
    account = payment_locked(sendx, utc(2025, 8, 15))
    assert sendx.purges(account) == [(SIX_MONTHS, HISTORY)]

    # the provider reports on 15 August a payment that went through on 1 July
    sendx.engine.event(account, "payment_succeeded", at=utc(2025, 7, 1), event_id="late-receipt")

    assert sendx.open_flows(account) == []
    # the lock ends after what lapse already did (the purge of 10 August), not before it
    (closed,) = [
        r.entry
        for r in sendx.engine.store.audit(account_id=account, limit=1000)
        if r.entry.kind == "case.closed"
    ]
    assert closed.at == SIX_MONTHS
    assert closed.detail["stopped_at"] == "2025-07-01T09:00:00+00:00"
    assert sendx.host(account)[-1] == (SIX_MONTHS, "resume_automations", "close")


def test_duplicate_event_ids_are_ignored(sendx):
    account = payment_locked(sendx, utc(2025, 3, 1))
    assert sendx.engine.event(account, "payment_failed", event_id="shop-invoice-1") is False

    sendx.engine.event(account, "payment_succeeded", event_id="shop-invoice-1-paid")
    # the payment provider delivers the old failure again
    again = sendx.engine.event(account, "payment_failed", at=LOCKED, event_id="shop-invoice-1")

    assert again is False
    assert sendx.open_flows(account) == []
    assert sendx.recipients(account, "lock-started") == [OPS, OWNER]


def test_legal_hold_blocks_the_purge_and_warns_again_after_release(sendx):
    account = payment_locked(sendx, utc(2025, 6, 1))
    sendx.engine.legal_hold(account, on=True, by="legal@sendx.example", reason="litigation")

    sendx.engine.run_until(utc(2025, 10, 1))

    assert sendx.purges(account) == []
    case = sendx.case(account, "payment-lock")
    assert case.waiting == ("legal hold: the purge waits (since 2025-08-10)",)
    assert sendx.state(account) == "locked"

    sendx.engine.legal_hold(account, on=False, by="legal@sendx.example", reason="settled")
    assert sendx.sent(account)[-2:] == [
        (utc(2025, 10, 1), "lock-retention-warning", OWNER),
        (utc(2025, 10, 1), "lock-retention-warning", OPS),
    ]
    sendx.engine.run_until(utc(2025, 10, 31, 8))
    assert sendx.purges(account) == []
    sendx.engine.run_until(utc(2025, 10, 31))
    assert sendx.purges(account) == [(utc(2025, 10, 31), HISTORY)]


def test_legal_hold_keeps_the_data_of_a_suspended_account(sendx):
    account = sendx.team()
    sendx.engine.legal_hold(account, on=True, by="legal@sendx.example", reason="investigation")

    sendx.engine.event(account, "tos_violation")

    assert sendx.deletions(account) == []
    assert sendx.state(account) == "suspended"
    assert sendx.case(account, "tos-suspension").waiting == (
        f"legal hold: the deletion waits (since {sendx.now:%Y-%m-%d})",
    )
    sendx.engine.run_until(utc(2025, 4, 1))
    sendx.engine.legal_hold(account, on=False, by="legal@sendx.example", reason="closed")
    assert sendx.deletions(account) == [utc(2025, 4, 1)]
    assert sendx.sent(account) == []


def test_catch_up_after_scheduler_downtime_sends_each_warning_once_and_in_order(sendx):
    account = payment_locked(sendx)

    sendx.clock.set(utc(2025, 9, 1))  # down from the day of the lock to 1 September
    sendx.engine.run_due()
    sendx.engine.run_due()

    assert sendx.sent(account) == [
        (LOCKED, "lock-started", OWNER),
        (LOCKED, "lock-started", OPS),
        (utc(2025, 9, 1), "lock-retention-warning", OWNER),
        (utc(2025, 9, 1), "lock-retention-warning", OPS),
    ]
    assert sendx.purges(account) == []  # the admins still get their 30 days
    assert sendx.case(account, "payment-lock").deadline == utc(2025, 10, 1)
    sendx.engine.run_until(utc(2025, 10, 1))
    assert sendx.purges(account) == [(utc(2025, 10, 1), HISTORY)]
    assert len(sendx.sent(account)) == 4


def test_timeline_projects_the_warning_and_the_purge(sendx):
    account = payment_locked(sendx)

    projected = [
        (e.at, e.kind) for e in sendx.engine.timeline(account).events if e.flow == "payment-lock"
    ]

    assert (RETENTION_WARNING, "notice") in projected
    assert (SIX_MONTHS, "purge") in projected
