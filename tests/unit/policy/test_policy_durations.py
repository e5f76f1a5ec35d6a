"""Durations: parsing, printing, and calendar arithmetic that never drifts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lapse.policy.durations import Duration, DurationSyntaxError, add, subtract

BRUSSELS = ZoneInfo("Europe/Brussels")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30 days", Duration(days=30)),
        ("1 month", Duration(months=1)),
        ("1 Year 6 MONTHS", Duration(years=1, months=6)),
        ("  4 weeks ", Duration(weeks=4)),
        ("1 month 15 days", Duration(months=1, days=15)),
        ("2 hours 30 minutes", Duration(hours=2, minutes=30)),
        ("1 minute", Duration(minutes=1)),
        ("30days", Duration(days=30)),
        ("0 days", Duration()),
    ],
)
def test_parse(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a duration such as '30 days' or '1 month'"),
        ("   ", "expected a duration such as '30 days' or '1 month'"),
        ("thirty days", "expected a duration such as '30 days' or '1 month', found 'thirty days'"),
        ("30", "expected a duration such as '30 days' or '1 month', found '30'"),
        ("1.5 days", "expected a duration such as '30 days' or '1 month', found '1.5 days'"),
        ("-3 days", "durations cannot be negative, found '-3 days'"),
        (
            "3 fortnights",
            "unknown unit 'fortnights' in '3 fortnights'; expected minutes, hours, days, weeks, "
            "months or years",
        ),
        ("1 day 2 days", "days given twice in '1 day 2 days'"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(DurationSyntaxError) as caught:
        Duration.parse(text)
    assert str(caught.value) == message


def test_parse_refuses_non_text() -> None:
    with pytest.raises(DurationSyntaxError):
        Duration.parse(30)  # type: ignore[arg-type]


def test_str_and_arithmetic() -> None:
    assert str(Duration(years=1, months=2, weeks=1, days=1, hours=1, minutes=5)) == (
        "1 year 2 months 1 week 1 day 1 hour 5 minutes"
    )
    assert str(Duration()) == "0 days"
    assert str(-Duration(days=3)) == "-3 days"
    assert Duration().is_zero
    assert not Duration(minutes=1).is_zero
    assert Duration(months=1) + Duration(days=15) == Duration(months=1, days=15)


def test_min_and_max_seconds() -> None:
    month = Duration(months=1)
    assert (month.min_seconds(), month.max_seconds()) == (28 * 86400, 31 * 86400)
    year = Duration(years=1, hours=1, minutes=1)
    assert (year.min_seconds(), year.max_seconds()) == (
        365 * 86400 + 3660,
        366 * 86400 + 3660,
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize("tz", [UTC, ZoneInfo("UTC"), BRUSSELS])
def test_months_clamp_to_the_month_end_and_are_cumulative(tz: ZoneInfo) -> None:
    start = datetime(2024, 1, 31, 12, tzinfo=tz)
    assert add(start, Duration(months=1), tz) == datetime(2024, 2, 29, 12, tzinfo=tz)
    assert add(start, Duration(months=2), tz) == datetime(2024, 3, 31, 12, tzinfo=tz)
    assert add(start, Duration(years=1, months=1), tz) == datetime(2025, 2, 28, 12, tzinfo=tz)
    assert add(start, Duration(months=11), tz) == datetime(2024, 12, 31, 12, tzinfo=tz)
    assert add(start, Duration(months=12), tz) == datetime(2025, 1, 31, 12, tzinfo=tz)


def test_results_are_utc() -> None:
    moment = datetime(2024, 6, 1, 12, tzinfo=BRUSSELS)
    for tz in (UTC, BRUSSELS):
        assert add(moment, Duration(days=1), tz).tzinfo is UTC
        assert add(moment, Duration(hours=1), tz).tzinfo is UTC
    assert add(utc(2024, 6, 1), Duration(), UTC) == utc(2024, 6, 1)


def test_days_are_calendar_days_across_dst() -> None:
    # Brussels springs forward on 31 March 2024 (a 23-hour day) and falls back on 27 October
    spring = datetime(2024, 3, 30, 12, tzinfo=BRUSSELS)
    assert add(spring, Duration(days=1), BRUSSELS) == datetime(2024, 3, 31, 12, tzinfo=BRUSSELS)
    assert add(spring, Duration(days=1), BRUSSELS) - spring == timedelta(hours=23)
    autumn = datetime(2024, 10, 26, 12, tzinfo=BRUSSELS)
    assert add(autumn, Duration(weeks=1), BRUSSELS) - autumn == timedelta(days=7, hours=1)
    # in UTC every day has 24 hours
    assert add(spring, Duration(days=1), UTC) - spring == timedelta(hours=24)


def test_hours_are_exact_across_dst() -> None:
    spring = datetime(2024, 3, 30, 12, tzinfo=BRUSSELS)
    assert add(spring, Duration(hours=24), BRUSSELS) - spring == timedelta(hours=24)
    # a day then two hours from 01:00, the night before clocks spring forward at 02:00: 24 + 2
    night = datetime(2024, 3, 30, 0, tzinfo=UTC)
    assert add(night, Duration(days=1, hours=2), BRUSSELS) - night == timedelta(hours=26)


def test_subtract() -> None:
    assert subtract(utc(2024, 3, 31), Duration(months=1), UTC) == utc(2024, 2, 29)
    end = datetime(2024, 3, 31, 12, tzinfo=BRUSSELS)
    assert subtract(end, Duration(days=1), BRUSSELS) == datetime(2024, 3, 30, 12, tzinfo=BRUSSELS)
    assert subtract(utc(2024, 1, 1), Duration(minutes=90), UTC) == utc(2023, 12, 31, 22, 30)


def test_add_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        add(datetime(2024, 1, 1), Duration(days=1))


durations = st.builds(
    Duration,
    years=st.integers(0, 5),
    months=st.integers(0, 30),
    weeks=st.integers(0, 10),
    days=st.integers(0, 400),
    hours=st.integers(0, 100),
    minutes=st.integers(0, 1000),
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@given(durations)
def test_str_parses_back(duration: Duration) -> None:
    assert Duration.parse(str(duration)) == duration


@given(moments, durations, durations)
def test_add_is_monotone(moment: datetime, first: Duration, extra: Duration) -> None:
    for tz in (UTC, BRUSSELS):
        assert add(moment, first, tz) <= add(moment, first + extra, tz)


@given(moments, durations)
def test_utc_fast_path_agrees_with_the_general_path(moment: datetime, duration: Duration) -> None:
    # a moment in another UTC zone object takes the general, wall-clock path
    general = add(moment.astimezone(ZoneInfo("Etc/UTC")), duration, UTC)
    assert add(moment, duration, UTC) == general
    assert add(moment, duration, ZoneInfo("UTC")) == general
