"""The cycle collector pauses for a scheduler batch and resumes after it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from lapse import Engine, ManualClock
from lapse.policy import load_preset
from lapse.runtime import heap

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_turns_the_collector_off_inside_and_back_on_after() -> None:
    with heap.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_paused_turns_it_back_on_after_an_error_too() -> None:
    with pytest.raises(RuntimeError), heap.paused():
        raise RuntimeError("the batch failed")
    assert gc.isenabled()


def test_nested_and_overlapping_pauses_resume_only_when_the_last_one_ends() -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with heap.paused():
            entered.set()
            release.wait(5)
        seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    with heap.paused():
        thread.start()
        assert entered.wait(5)
        with heap.paused():
            pass
        assert not gc.isenabled()  # the inner block ended, the outer ones still run
    assert not gc.isenabled()  # the other thread's batch still runs
    release.set()
    thread.join(5)
    assert seen == [True]
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with heap.paused():
        pass
    assert not gc.isenabled()


def test_a_scheduler_batch_runs_with_the_collector_paused() -> None:
    engine = Engine(load_preset("inactivity-cleanup"), clock=ManualClock(NOW))
    engine.add_account(
        "a", kind="standard", created_at=NOW - timedelta(days=300), address="a@example.test"
    )  # 12 months without activity come 65 days after NOW
    during: list[bool] = []
    process_due = engine.store.process_due

    def watched(*args: object, **kwargs: object) -> list[str]:
        during.append(gc.isenabled())
        return process_due(*args, **kwargs)  # type: ignore[arg-type]

    engine.store.process_due = watched  # type: ignore[method-assign]
    engine.clock.set(NOW + timedelta(days=70))  # type: ignore[attr-defined]
    assert engine.step_once() == 1
    assert during == [False]
    assert gc.isenabled()


def test_settle_freezes_what_is_alive() -> None:
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
