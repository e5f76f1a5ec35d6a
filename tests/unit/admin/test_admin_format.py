"""How the admin UI says times and lapse's words: dates in the policy's zone, time left, labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from lapse.admin.format import Clock, event_label, event_tone, plural, words
from lapse.admin.queries import opened_by

NOW = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


def test_dates_and_time_left_read_like_a_person_writes_them() -> None:
    clock = Clock(now=NOW, zone=UTC, zone_name="UTC")
    deadline = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)
    assert f"Deletion on {clock.date(deadline)} ({clock.left(deadline)})" == (
        "Deletion on 8 April 2026 (6 days left)"
    )
    assert clock.when(deadline) == "8 April 2026, 09:00 UTC"
    assert clock.relative(deadline) == "in 6 days"
    assert clock.relative(NOW - timedelta(hours=3)) == "3 hours ago"
    assert clock.left(NOW - timedelta(hours=3)) == "passed 3 hours ago"
    assert clock.left(NOW) == clock.relative(NOW) == "now"
    assert clock.left(None) == clock.relative(None) == ""
    assert clock.date(None) == clock.when(None) == "—"
    assert clock.span(timedelta(days=14)) == "14 days"
    assert clock.span(timedelta(days=1, hours=4)) == "1 day 4 hours"
    assert clock.span(-timedelta(hours=2)) == "-2 hours"
    assert clock.span(timedelta(0)) == "0"
    assert clock.iso(deadline) == "2026-04-08T09:00:00Z"


def test_times_are_shown_in_the_policys_time_zone() -> None:
    paris = Clock(now=NOW, zone=ZoneInfo("Europe/Paris"), zone_name="Europe/Paris")
    late = datetime(2026, 4, 8, 23, 30, tzinfo=UTC)  # already 9 April in Paris
    assert paris.date(late) == "9 April 2026"
    assert paris.when(late) == "9 April 2026, 01:30 CEST"


def test_lapse_words_for_support_staff() -> None:
    assert event_label("notice") == "Email"
    assert event_label("delete") == "Deletion"
    assert event_label("hold.placed") == "Legal hold placed"
    assert event_label("something.new") == "Something new"
    assert event_tone("delete") == "danger"
    assert event_tone("phase.enters") == "plain"
    assert plural(1, "account") == "1 account"
    assert plural(2, "entry", "entries") == "2 entries"
    assert words("send_campaign") == "send campaign"
    assert opened_by("condition") == "automatically: its start condition held"
    assert opened_by("event:payment_failed") == "by the event payment_failed"
    assert opened_by("admin:ann") == "by ann, by hand"
    assert opened_by("import") == "import"
