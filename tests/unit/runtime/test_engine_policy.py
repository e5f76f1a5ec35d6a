"""The Python API of policy versions on the in-memory engine: preview, apply, refusals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from lapse import Engine, ManualClock, load_preset
from lapse.errors import ConfigError, InvalidInput
from lapse.policy import load_policy
from lapse.runtime.bootstrap import build
from lapse.runtime.settings import load_settings
from lapse.store.base import StoredPolicy

START = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)
TEXT = resources.files("lapse.policy.presets").joinpath("inactivity-cleanup.yaml").read_text()
V2 = load_policy(
    TEXT.replace("version: 1", "version: 2").replace("lasts: 30 days", "lasts: 14 days"), "v2"
)


def test_apply_on_the_in_memory_engine() -> None:
    engine = Engine(load_preset("inactivity-cleanup"), clock=ManualClock(START))
    engine.add_account("acme", kind="standard", members=[("ann@acme.example", "admin")])
    engine.run_until("12 months 3 days")
    (case,) = engine.status("acme").cases
    before = case.deadline
    assert before is not None
    preview = engine.preview_policy(V2)
    assert preview.mode("replan").phases[0].earliest == -timedelta(days=16)
    assert engine.store.policies() == []  # a preview writes nothing, not even the policy
    applied = engine.apply_policy(V2, mode="keep", by="me")
    # the engine's own policy was recorded first: the one the case moved from
    assert applied.previous is not None
    assert (applied.previous.version, applied.previous.mode) == ("1", "initial")
    assert (applied.policy.version, applied.policy.mode, applied.cases) == ("2", "keep", 1)
    assert engine.policy is V2
    assert engine.status("acme").cases[0].deadline == before
    assert [p.version for p in engine.store.policies()] == ["1", "2"]
    # the in-memory engine follows nothing else: refreshing finds its own policy
    assert not engine.refresh_policy()


def test_refusals() -> None:
    engine = Engine(load_preset("inactivity-cleanup"), clock=ManualClock(START))
    with pytest.raises(InvalidInput, match="unknown migration mode 'later'"):
        engine.apply_policy(V2, mode="later", by="me")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="has no document text to store"):
        engine.apply_policy(replace(V2, text=""), mode="keep", by="me")
    assert engine.store.policies() == []


def test_a_policy_whose_templates_are_missing_is_refused_before_anything_changes(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'lapse.db'}",
        policy="inactivity-cleanup",
        clock="manual",
        clock_start=START,
    )
    services = build(settings)
    try:
        odd = load_policy(V2.text.replace("inactivity-final-warning", "no-such-template"), "odd")
        with pytest.raises(ConfigError, match="no-such-template"):
            services.engine.apply_policy(odd, mode="keep", by="me")
        active = services.store.active_policy()
        assert active is not None
        assert active.version == "1"
        assert services.engine.policy.version == "1"
        applied = services.engine.apply_policy(V2, mode="replan", by="me")
        assert applied.recorded
        assert services.policy is V2  # what else holds the policy follows the engine
        assert services.render.policy is V2
    finally:
        services.close()


def test_a_process_that_cannot_run_the_active_policy_keeps_saying_so(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'lapse.db'}",
        policy="inactivity-cleanup",
        clock="manual",
        clock_start=START,
    )
    services = build(settings)
    try:
        odd = load_policy(V2.text.replace("inactivity-final-warning", "no-such-template"), "odd")
        # applied by a process whose templates directory has the template
        services.store.record_policy(
            StoredPolicy(
                name=odd.name,
                version=odd.version,
                digest=odd.digest,
                source=odd.text,
                applied_at=START,
                applied_by="elsewhere",
                mode="keep",
            ),
            [],
        )
        with pytest.raises(ConfigError, match="cannot switch to the active policy") as refused:
            services.engine.refresh_policy()
        assert "no-such-template" in str(refused.value)
        assert services.engine.policy.version == "1"
        # the scheduler's next (throttled) look says so again, without going on under v1
        with pytest.raises(ConfigError, match="cannot switch"):
            services.engine.refresh_policy(max_age=60)
        services.engine.add_account("acme", kind="standard")  # the API still serves
        services.engine.apply_policy(V2, mode="keep", by="ops")  # a runnable one replaces it
        assert not services.engine.refresh_policy(max_age=60)
        assert services.engine.policy is V2
    finally:
        services.close()
