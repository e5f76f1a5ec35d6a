"""`evolve`: the core's fast `dataclasses.replace` gives what `replace` gives."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from lapse.core import model
from lapse.core.model import Account, Case, Member, NoticeRecord, evolve

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _case() -> Case:
    return Case(
        id="inactivity#1",
        flow="inactivity",
        started_at=T0,
        phase_index=0,
        phase_started_at=T0,
        reason="idle",
        opened_by="condition",
        policy_version="1",
    )


def test_evolve_equals_replace() -> None:
    case = _case()
    changes = {"phase_index": 1, "shift": timedelta(days=1), "destruct": "held"}
    assert evolve(case, **changes) == dataclasses.replace(case, **changes)  # type: ignore[arg-type]
    assert evolve(case) == case
    assert evolve(case) is not case
    account = Account(id="a", kind="standard", created_at=T0, members=(Member(email="m@x"),))
    assert evolve(account, cases=(case,)) == dataclasses.replace(account, cases=(case,))


def test_evolve_refuses_unknown_fields() -> None:
    record = NoticeRecord(
        key="k",
        phase="grace",
        template="t",
        to="admins",
        recipients=(),
        via=(),
        due_at=T0,
        created_at=T0,
    )
    assert evolve(record, dispatched_at=T0).dispatched_at == T0
    assert record.dispatched_at is None
    with pytest.raises(TypeError, match="NoticeRecord has no field nope"):
        evolve(record, nope=1)


def test_state_values_are_frozen_to_the_type_checker_and_answers_at_run_time() -> None:
    # `@value` tells type checkers (mypy strict on src/) the class is frozen and keyword-only
    assert model.value.__dataclass_transform__["kwargs"] == {"frozen_default": True}  # type: ignore[attr-defined]
    assert model.value.__dataclass_transform__["kw_only_default"] is True  # type: ignore[attr-defined]
    state = (model.Account, model.Case, model.NoticeRecord, model.NoticeEffect, model.Step)
    answers = (model.Decision, model.Denial, model.Status, model.CaseStatus, model.Timeline)
    for cls in state + answers:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls), cls
        assert params.eq, cls
        assert params.frozen is (cls in answers), cls
        assert cls.__hash__ is not None, cls  # hashable like a frozen dataclass
    decision = model.Decision(action="login", allowed=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]


def test_every_value_evolve_may_see_has_only_init_fields_and_no_post_init() -> None:
    for value in vars(model).values():
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            assert all(f.init for f in dataclasses.fields(value)), value
            assert not hasattr(value, "__post_init__"), value
