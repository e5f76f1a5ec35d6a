"""The accelerated clock: simulated time `rate` times faster than real time, for the demo."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lapse.errors import ConfigError, InvalidInput
from lapse.runtime.bootstrap import build
from lapse.runtime.clock import AcceleratedClock
from lapse.runtime.settings import load_settings

START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)


class FakeTimer:
    """Real seconds that move only when told to."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def test_simulated_time_runs_rate_times_faster_than_real_time() -> None:
    timer = FakeTimer()
    clock = AcceleratedClock(START, rate=60, timer=timer)
    assert clock.now() == START
    timer.seconds += 1.5
    assert clock.now() == START + timedelta(seconds=90)
    timer.seconds += 60
    assert clock.now() == START + timedelta(minutes=61, seconds=30)
    assert clock.real_seconds_until(START + timedelta(hours=2, minutes=1, seconds=30)) == 60
    assert clock.real_seconds_until(START) == 0


def test_the_start_is_kept_in_utc_and_must_be_aware() -> None:
    paris = datetime(2025, 1, 31, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))
    clock = AcceleratedClock(paris, rate=2, timer=FakeTimer())
    assert clock.now() == START
    assert clock.now().tzinfo is UTC
    with pytest.raises(InvalidInput, match="aware start and origin times"):
        AcceleratedClock(datetime(2025, 1, 31), rate=2)


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_a_rate_must_be_finite_and_positive(rate: float) -> None:
    with pytest.raises(InvalidInput, match="finite rate above 0"):
        AcceleratedClock(START, rate=rate)


def test_it_never_goes_backwards_even_if_the_timer_does() -> None:
    timer = FakeTimer()
    clock = AcceleratedClock(START, rate=10, timer=timer)
    timer.seconds += 5
    later = clock.now()
    timer.seconds -= 3  # a timer that stepped back (it cannot with time.monotonic; belt and braces)
    assert clock.now() == later


def test_it_is_monotonic_across_threads_on_the_real_timer() -> None:
    clock = AcceleratedClock(START, rate=3600)
    failures: list[str] = []

    def read() -> None:
        last = clock.now()
        for _ in range(20_000):
            now = clock.now()
            if now < last:
                failures.append(f"{now} < {last}")
            last = now

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    time.sleep(0.01)
    assert clock.now() >= START + timedelta(seconds=36)  # 0.01 s real at 3600x


def test_settings_select_it_and_bootstrap_builds_it(tmp_path: Path) -> None:
    settings = load_settings(
        clock="accelerated",
        clock_start="2025-01-31T09:00:00Z",
        clock_rate=120,
        database_url=f"sqlite:///{tmp_path / 'lapse.db'}",
    )
    services = build(settings)
    try:
        assert isinstance(services.clock, AcceleratedClock)
        assert services.clock.start == START
        assert services.clock.rate == 120
        assert services.engine.clock is services.clock
    finally:
        services.close()


def test_production_refuses_it() -> None:
    with pytest.raises(ConfigError, match="LAPSE_CLOCK=accelerated is refused in production"):
        load_settings(env="production", clock="accelerated", smtp_host="mail.example")


@pytest.mark.parametrize("rate", [0, -5])
def test_settings_refuse_a_rate_that_is_not_positive(rate: float) -> None:
    with pytest.raises(ConfigError, match="LAPSE_CLOCK_RATE"):
        load_settings(clock="accelerated", clock_rate=rate)


def test_an_origin_in_the_past_means_the_clock_already_ran() -> None:
    timer = FakeTimer()
    wall = START + timedelta(seconds=30)  # the real time now: 30 s after the origin
    clock = AcceleratedClock(
        datetime(2030, 1, 1, tzinfo=UTC), rate=60, origin=START, timer=timer, wall=lambda: wall
    )
    assert clock.now() == datetime(2030, 1, 1, 0, 30, tzinfo=UTC)
    timer.seconds += 1
    assert clock.now() == datetime(2030, 1, 1, 0, 31, tzinfo=UTC)
    assert clock.origin == START


def test_two_clocks_with_the_same_origin_agree() -> None:
    origin = datetime.now(UTC) - timedelta(seconds=5)
    first = AcceleratedClock(START, rate=60, origin=origin)
    second = AcceleratedClock(START, rate=60, origin=origin)
    assert abs((first.now() - second.now()).total_seconds()) < 1  # < 1/60 s of real time apart
    assert first.now() >= START + timedelta(minutes=5)


def test_settings_pass_the_origin() -> None:
    settings = load_settings(
        clock="accelerated", clock_start="2025-01-31T09:00:00Z", clock_origin="2025-01-01T00:00Z"
    )
    assert settings.clock_origin == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="LAPSE_CLOCK_ORIGIN: needs a time zone"):
        load_settings(clock="accelerated", clock_origin="2025-01-01T00:00")
