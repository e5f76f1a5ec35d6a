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


def test_evolve_keeps_values_frozen_and_refuses_unknown_fields() -> None:
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
    changed = evolve(record, dispatched_at=T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError, match="NoticeRecord has no field nope"):
        evolve(record, nope=1)


def test_every_value_evolve_may_see_has_only_init_fields_and_no_post_init() -> None:
    for value in vars(model).values():
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            assert all(f.init for f in dataclasses.fields(value)), value
            assert not hasattr(value, "__post_init__"), value
