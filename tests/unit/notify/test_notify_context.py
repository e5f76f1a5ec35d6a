"""notice_context: what templates see, and above all the deadline the holder is told."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import pytest
from notify_scenarios import ADMIN, OWNER, Scenario, run_until

from lapse.core.decisions import time_left
from lapse.core.lifecycle import advance, extend
from lapse.notify.context import format_date, format_datetime, humanize, notice_context
from lapse.policy import Duration, load_policy
from lapse.policy.model import Policy

KEYS = {
    "product",
    "recipient",
    "sent_at",
    "timezone",
    "account_id",
    "account_address",
    "account_kind",
    "case_id",
    "flow",
    "flow_title",
    "phase",
    "phase_lasts",
    "reason",
    "deadline",
    "deadline_date",
    "deadline_datetime",
    "deadline_iso",
    "time_left",
    "outcome",
    "outcome_categories",
    "outcome_from",
    "outcome_from_date",
    "address_rule",
    "data_categories",
    "notice_key",
    "template",
    "due_at",
    "late",
    "renotice",
    "policy_name",
    "policy_version",
}


def context(s: Scenario, **kwargs: object) -> dict[str, object]:
    return notice_context(
        s.effect, account=s.account, policy=s.policy, now=s.now, recipient=ADMIN, **kwargs
    )


def test_every_documented_key_is_present_with_the_notice_facts() -> None:
    s = run_until("inactivity", "inactivity-grace-started")
    ctx = context(s, product="Flexmail")
    assert set(ctx) == KEYS
    assert ctx["product"] == "Flexmail"
    assert ctx["recipient"] == ADMIN
    assert ctx["account_id"] == "acme-42"
    assert ctx["account_address"] == OWNER
    assert ctx["account_kind"] == "standard"
    assert ctx["case_id"] == "inactivity#1"
    assert ctx["flow"] == "inactivity"
    assert ctx["flow_title"] == "Inactivity clean-up"
    assert ctx["phase"] == "grace"
    assert ctx["phase_lasts"] == "30 days"
    assert ctx["reason"] == s.effect.reason
    assert ctx["notice_key"] == "grace/inactivity-grace-started"
    assert ctx["template"] == "inactivity-grace-started"
    assert ctx["policy_name"] == "inactivity-cleanup"
    assert ctx["policy_version"] == "1"
    assert ctx["outcome"] == "delete"
    assert ctx["address_rule"] == "release"
    assert "API keys" in ctx["data_categories"]  # type: ignore[operator]
    assert ctx["late"] is False
    assert ctx["renotice"] is False


def test_on_time_start_notice_states_the_planned_deadline_and_time_left() -> None:
    s = run_until("inactivity", "inactivity-grace-started")
    ctx = context(s)
    assert s.effect.deadline is not None
    assert ctx["deadline"] == s.effect.deadline
    assert ctx["time_left"] == time_left(s.now, s.effect.deadline) == "30 days"
    assert ctx["deadline_date"] == "14 February 2026"
    assert ctx["deadline_datetime"] == "14 February 2026 at 09:30 UTC"
    assert ctx["deadline_iso"] == "2026-02-14T09:30:00+00:00"
    assert ctx["outcome_from"] == ctx["deadline"]


def test_late_final_warning_keeps_its_full_lead() -> None:
    s = run_until("inactivity", "inactivity-final-warning", late=timedelta(days=20))
    ctx = context(s)
    assert ctx["late"] is True
    assert ctx["deadline"] == s.now + timedelta(days=7)
    assert ctx["time_left"] == "7 days"


def test_final_warning_sent_even_later_than_created_pushes_the_stated_date() -> None:
    # the transport was down: the notice was created on time but leaves three days later
    s = run_until("inactivity", "inactivity-final-warning")
    later = s.now + timedelta(days=3)
    ctx = notice_context(s.effect, account=s.account, policy=s.policy, now=later, recipient=ADMIN)
    assert ctx["deadline"] == later + timedelta(days=7)
    assert ctx["time_left"] == "7 days"
    assert ctx["late"] is True


def test_start_notice_leaving_with_a_due_final_warning_states_the_pushed_date() -> None:
    # after weeks of downtime both notices of the grace phase leave together: both must say
    # the date the final warning's 7-day lead produces, not the planned one already past
    start = run_until("inactivity", "inactivity-grace-started")
    now = start.now + timedelta(days=40)
    step = advance(start.account, start.policy, now)
    ctx = notice_context(
        start.effect, account=step.account, policy=start.policy, now=now, recipient=ADMIN
    )
    assert ctx["deadline"] == now + timedelta(days=7)
    assert ctx["time_left"] == "7 days"
    assert ctx["late"] is True


def test_on_time_start_notice_is_not_pushed_by_a_final_warning_not_yet_due() -> None:
    s = run_until("inactivity", "inactivity-grace-started", late=timedelta(days=20))
    ctx = context(s)
    assert ctx["late"] is True
    assert ctx["deadline"] == s.effect.deadline  # the final warning can still go out on time
    assert ctx["time_left"] == "10 days"


def test_an_extension_after_the_notice_was_created_is_stated() -> None:
    s = run_until("payment-lock", "lock-started")
    step = extend(
        s.account,
        s.policy,
        s.now,
        case_id=s.effect.case_id,
        by="support@acme.example",
        reason="customer asked",
        duration=Duration(days=10),
    )
    ctx = notice_context(
        s.effect, account=step.account, policy=s.policy, now=s.now, recipient=ADMIN
    )
    assert s.effect.deadline is not None
    assert ctx["deadline"] == s.effect.deadline + timedelta(days=10)


def test_outcome_from_is_the_end_of_the_last_timed_phase() -> None:
    s = run_until("expiry", "expiry-grace-started")
    ctx = context(s)
    assert ctx["phase_lasts"] == "1 month"
    assert ctx["deadline_date"] == "24 March 2025"  # expired 24 February
    assert ctx["outcome_from_date"] == "24 August 2025"
    assert ctx["address_rule"] == "retire"


def test_purge_outcome_lists_its_categories_and_releases_nothing() -> None:
    ctx = context(run_until("payment-lock", "lock-started"))
    assert ctx["outcome"] == "purge"
    assert ctx["outcome_categories"] == ["campaign timelines", "reports", "contact actions"]
    assert ctx["address_rule"] is None


def test_closed_case_falls_back_to_the_notice_deadline() -> None:
    s = run_until("expiry", "expiry-grace-started")
    closed = replace(s.account, cases=())
    ctx = notice_context(s.effect, account=closed, policy=s.policy, now=s.now, recipient=ADMIN)
    assert ctx["deadline"] == s.effect.deadline
    assert ctx["outcome_from"] is None  # grace is not the last timed phase: unknown

    last = run_until("expiry", "expiry-final-warning")
    closed = replace(last.account, cases=())
    ctx = notice_context(
        last.effect, account=closed, policy=last.policy, now=last.now, recipient=ADMIN
    )
    assert ctx["outcome_from"] == ctx["deadline"]


def test_renotice_after_a_hold_is_flagged_and_keeps_its_lead() -> None:
    s = run_until("inactivity", "inactivity-final-warning")
    again = replace(s.effect, key=s.effect.key + "#r1")
    later = s.now + timedelta(days=60)
    ctx = notice_context(
        again, account=replace(s.account, cases=()), policy=s.policy, now=later, recipient=ADMIN
    )
    assert ctx["renotice"] is True
    assert ctx["deadline"] == later + timedelta(days=7)


def test_notice_without_deadline_has_no_deadline_texts() -> None:
    s = run_until("payment-lock", "lock-started")
    ctx = notice_context(
        replace(s.effect, deadline=None),
        account=replace(s.account, cases=()),
        policy=s.policy,
        now=s.now,
        recipient=ADMIN,
    )
    assert (
        ctx["deadline"] is ctx["deadline_date"] is ctx["time_left"] is ctx["outcome_from"] is None
    )


def _brussels(name: str) -> Policy:
    text = resources.files("lapse.policy.presets").joinpath(f"{name}.yaml").read_text()
    return load_policy(text.replace("timezone: UTC", "timezone: Europe/Brussels"), name)


def test_deadline_is_written_in_the_policy_time_zone() -> None:
    s = run_until("payment-lock", "lock-started")
    policy = _brussels("account-locks")
    # a deadline at 23:30 UTC is already the next day in Brussels
    effect = replace(s.effect, deadline=datetime(2025, 8, 24, 23, 30, tzinfo=UTC))
    ctx = notice_context(
        effect, account=replace(s.account, cases=()), policy=policy, now=s.now, recipient=ADMIN
    )
    deadline = ctx["deadline"]
    assert isinstance(deadline, datetime)
    assert deadline.tzinfo == ZoneInfo("Europe/Brussels")
    assert ctx["deadline_date"] == "25 August 2025"
    assert ctx["deadline_datetime"] == "25 August 2025 at 01:30 CEST"
    assert ctx["timezone"] == "Europe/Brussels"


def test_late_has_a_tolerance_for_scheduler_ticks() -> None:
    s = run_until("payment-lock", "lock-started")
    soon = s.effect.due_at + timedelta(minutes=5)
    ctx = notice_context(s.effect, account=s.account, policy=s.policy, now=soon, recipient=ADMIN)
    assert ctx["late"] is False
    ctx = notice_context(
        s.effect,
        account=s.account,
        policy=s.policy,
        now=soon,
        recipient=ADMIN,
        late_after=timedelta(0),
    )
    assert ctx["late"] is True


def test_naive_now_is_refused() -> None:
    s = run_until("payment-lock", "lock-started")
    with pytest.raises(ValueError, match="aware"):
        notice_context(
            s.effect, account=s.account, policy=s.policy, now=datetime(2025, 1, 1), recipient=ADMIN
        )


def test_formatting_helpers() -> None:
    moment = datetime(2026, 3, 4, 7, 5, tzinfo=UTC)
    assert format_date(moment) == "4 March 2026"
    assert format_datetime(moment) == "4 March 2026 at 07:05 UTC"
    assert humanize("campaign_timelines") == "campaign timelines"
    assert humanize("api_keys") == "API keys"
    assert humanize("landing-pages") == "landing pages"
