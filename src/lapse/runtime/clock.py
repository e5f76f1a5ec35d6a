"""Clocks. The core never reads one; the runtime asks the clock it was given."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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

    def restart(self, moment: datetime) -> datetime:
        """Start over at `moment`, even back in time: only together with erasing everything
        that happened on this clock (`POST /v1/clock/reset`), never to rewrite history."""
        if moment.tzinfo is None:
            raise InvalidInput("the clock needs an aware time")
        with self._lock:
            self._now = moment.astimezone(UTC)
            return self._now


class AcceleratedClock:
    """Simulated time that runs `rate` times faster than real time, from `start`: for demos.

    It measures real time with `time.monotonic`, so a change of the system clock cannot move
    it, and it never goes backwards, whichever thread asks. Settings refuse it in production.
    `origin` is the real (wall-clock) moment at which the clock showed `start`: processes given
    the same start, rate and origin show the same time (a CLI next to the demo's server).
    """

    def __init__(
        self,
        start: datetime | None = None,
        rate: float = 60.0,
        *,
        origin: datetime | None = None,
        timer: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = SystemClock().now,
    ) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None or (origin is not None and origin.tzinfo is None):
            raise InvalidInput("AcceleratedClock needs aware start and origin times")
        if not rate > 0 or rate == float("inf"):
            raise InvalidInput(f"AcceleratedClock needs a finite rate above 0, not {rate!r}")
        self.start = start.astimezone(UTC)
        self.rate = float(rate)
        self._timer = timer  # real seconds from an arbitrary origin; tests pass their own
        self._origin = timer()
        # real seconds the clock already ran before this process made it (never negative)
        self._lead = max((wall() - origin).total_seconds(), 0.0) if origin is not None else 0.0
        self.origin = origin.astimezone(UTC) if origin is not None else wall()
        self._last = self.start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """`start` plus the real time elapsed since `origin`, times `rate`."""
        elapsed = (self._lead + self._timer() - self._origin) * self.rate
        moment = self.start + timedelta(seconds=elapsed)
        # two threads may compute their times in one order and return them in the other: the
        # lock and the last value given out keep every reader's sequence non-decreasing
        with self._lock:
            if moment < self._last:
                return self._last
            self._last = moment
            return moment

    def real_seconds_until(self, moment: datetime) -> float:
        """How many real seconds until the clock shows `moment` (zero if it already did)."""
        return max((moment - self.now()).total_seconds() / self.rate, 0.0)
