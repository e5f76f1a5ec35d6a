"""Clocks. The core never reads one; the runtime asks the clock it was given."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from lapse.errors import InvalidInput
from lapse.policy.durations import Duration, add


class Clock(Protocol):
    """Anything that tells the time (aware, UTC)."""

    def now(self) -> datetime:
        """The current time."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: for tests, simulations and demonstrations."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise InvalidInput("ManualClock needs an aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The clock's current time."""
        return self._now

    def set(self, moment: datetime) -> datetime:
        """Move to `moment`; a controlled clock never goes backwards."""
        if moment.tzinfo is None:
            raise InvalidInput("the clock needs an aware time")
        with self._lock:
            moment = moment.astimezone(UTC)
            if moment < self._now:
                raise InvalidInput(
                    f"the clock cannot go back from {self._now.isoformat()} to {moment.isoformat()}"
                )
            self._now = moment
            return self._now

    def advance(self, by: Duration | timedelta | str) -> datetime:
        """Move forward by a duration ('30 days', a Duration or a timedelta)."""
        if isinstance(by, str):
            by = Duration.parse(by)
        target = add(self._now, by) if isinstance(by, Duration) else self._now + by
        return self.set(target)
