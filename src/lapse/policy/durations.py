"""Calendar durations ("30 days", "1 month", "12 months") and the arithmetic that never drifts.

Months and years are calendar units: adding them keeps the day of month and clamps to the end of
shorter months (Jan 31 + 1 month = Feb 28 or 29). Phase ends count their months from an anchor
with the *cumulative* duration (`lapse.core.lifecycle.cumulative`), so Jan 31 + 1 month + 1
month is Mar 31, not Mar 28.
Days and weeks are calendar days in the policy's time zone (a day across a DST change is 23 or
25 hours); hours and minutes are exact.
"""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

_UNITS = {
    "minute": "minutes",
    "minutes": "minutes",
    "hour": "hours",
    "hours": "hours",
    "day": "days",
    "days": "days",
    "week": "weeks",
    "weeks": "weeks",
    "month": "months",
    "months": "months",
    "year": "years",
    "years": "years",
}
_PART = re.compile(r"\s*(\d+)\s*([a-z]+)\s*", re.IGNORECASE)
_ORDER = ("years", "months", "weeks", "days", "hours", "minutes")


class DurationSyntaxError(ValueError):
    """The text is not a duration such as '30 days' or '1 month 15 days'."""


@dataclass(frozen=True, slots=True)
class Duration:
    """A calendar duration; every component has the same sign."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse '30 days', '1 month', '1 year 6 months', '4 weeks' (case-insensitive)."""
        if not isinstance(text, str) or not text.strip():
            raise DurationSyntaxError("expected a duration such as '30 days' or '1 month'")
        parts: dict[str, int] = {}
        pos = 0
        stripped = text.strip()
        while pos < len(stripped):
            match = _PART.match(stripped, pos)
            if match is None or match.end() == pos:
                break
            unit = _UNITS.get(match.group(2).lower())
            if unit is None:
                raise DurationSyntaxError(
                    f"unknown unit {match.group(2)!r} in {text!r}; "
                    "expected minutes, hours, days, weeks, months or years"
                )
            if unit in parts:
                raise DurationSyntaxError(f"{unit} given twice in {text!r}")
            parts[unit] = int(match.group(1))
            pos = match.end()
        if pos != len(stripped) or not parts:
            if stripped.startswith("-"):
                raise DurationSyntaxError(f"durations cannot be negative, found {text!r}")
            raise DurationSyntaxError(
                f"expected a duration such as '30 days' or '1 month', found {text!r}"
            )
        return cls(**parts)

    @property
    def is_zero(self) -> bool:
        """True for a duration of nothing ('0 days')."""
        return not any((self.years, self.months, self.weeks, self.days, self.hours, self.minutes))

    def __add__(self, other: Duration) -> Duration:
        return Duration(
            self.years + other.years,
            self.months + other.months,
            self.weeks + other.weeks,
            self.days + other.days,
            self.hours + other.hours,
            self.minutes + other.minutes,
        )

    def __neg__(self) -> Duration:
        return Duration(
            -self.years, -self.months, -self.weeks, -self.days, -self.hours, -self.minutes
        )

    def min_seconds(self) -> float:
        """The shortest this duration can be (a month is at least 28 days, a year 365)."""
        return self._seconds(28, 365)

    def max_seconds(self) -> float:
        """The longest this duration can be (a month is at most 31 days, a year 366)."""
        return self._seconds(31, 366)

    def _seconds(self, month_days: int, year_days: int) -> float:
        days = self.years * year_days + self.months * month_days + self.weeks * 7 + self.days
        # a calendar day across a DST change can be an hour shorter or longer
        return days * 86400.0 + self.hours * 3600.0 + self.minutes * 60.0

    def __str__(self) -> str:
        out = []
        for unit in _ORDER:
            value = getattr(self, unit)
            if value:
                out.append(f"{value} {unit[:-1] if abs(value) == 1 else unit}")
        return " ".join(out) if out else "0 days"


_UTC_ZONES = (UTC, ZoneInfo("UTC"))


def add(moment: datetime, duration: Duration, tz: tzinfo = UTC) -> datetime:
    """`moment + duration` in calendar arithmetic of `tz`; returns an aware UTC datetime."""
    return _shift(moment, duration, tz, 1)


def _shift(moment: datetime, duration: Duration, tz: tzinfo, sign: int) -> datetime:
    """`moment + sign * duration` (sign 1 or -1), without building the negated duration."""
    if moment.tzinfo is None:
        raise ValueError("add() needs an aware datetime")
    if tz in _UTC_ZONES and moment.tzinfo is UTC:
        # fast path: in UTC a calendar day is always 24 hours (the core's hot loop lands here)
        months = (duration.years * 12 + duration.months) * sign
        if months:
            year, month0 = divmod(moment.month - 1 + months, 12)
            year += moment.year
            day = min(moment.day, monthrange(year, month0 + 1)[1])
            moment = moment.replace(year=year, month=month0 + 1, day=day)
        if duration.weeks or duration.days or duration.hours or duration.minutes:
            moment += timedelta(
                days=(duration.weeks * 7 + duration.days) * sign,
                hours=duration.hours * sign,
                minutes=duration.minutes * sign,
            )
        return moment
    calendar = bool(duration.years or duration.months or duration.weeks or duration.days)
    if calendar:
        wall = moment.astimezone(tz).replace(tzinfo=None)
        months = (duration.years * 12 + duration.months) * sign
        if months:
            year, month0 = divmod(wall.month - 1 + months, 12)
            year += wall.year
            day = min(wall.day, monthrange(year, month0 + 1)[1])
            wall = wall.replace(year=year, month=month0 + 1, day=day)
        days = (duration.weeks * 7 + duration.days) * sign
        if days:
            wall += timedelta(days=days)
        moment = wall.replace(tzinfo=tz)
    moment = moment.astimezone(UTC)
    if duration.hours or duration.minutes:
        # exact hours: added to the absolute time, not to the wall clock (DST would bend them)
        moment += timedelta(hours=duration.hours * sign, minutes=duration.minutes * sign)
    return moment


def subtract(moment: datetime, duration: Duration, tz: tzinfo = UTC) -> datetime:
    """`moment - duration` in calendar arithmetic of `tz`."""
    return _shift(moment, duration, tz, -1)
