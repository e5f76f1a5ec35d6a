"""Exact round trips of everything the store persists (Hypothesis), in memory and through both
databases, and the canonical JSON the audit chain hashes."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapse.core.model import (
    Account,
    Adjustment,
    Case,
    DeleteEffect,
    FactEntry,
    HostEffect,
    LegalHold,
    Member,
    NoticeEffect,
    NoticeRecord,
    PurgeEffect,
)
from lapse.policy.durations import Duration
from lapse.policy.model import AddressRule
from lapse.store import codec
from lapse.store.base import Change
from lapse.store.memory import MemoryStore

# fixed offsets only: Python never finds a local time in a DST gap or fold equal to any time
# in another zone (PEP 495), so a Europe/Berlin time could not be compared after the round trip
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]

times = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9998, 12, 30),
    timezones=st.sampled_from(ZONES),
)
# what both databases can store: no NUL, no lone surrogates
texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
names = st.text("abcdefghijklmnopqrstuvwxyz_-/#.", min_size=1, max_size=10)
floats = st.floats(allow_nan=False)
deltas = st.timedeltas()
fact_values = st.one_of(st.booleans(), st.integers(), floats, texts, times)
json_keys = st.one_of(texts, st.sampled_from(["$dt", "$tuple", "$td", "$f", "$map", "$"]))
open_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), floats, texts, times, deltas),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(json_keys, inner, max_size=3),
    ),
    max_leaves=8,
)

adjustments = st.builds(
    Adjustment,
    kind=st.sampled_from(["notice-late", "extended", "hold"]),
    at=times,
    delta=deltas,
    phase=names,
    detail=texts,
)
notices = st.builds(
    NoticeRecord,
    key=names,
    phase=names,
    template=names,
    to=st.sampled_from(["admins", "members", "owner"]),
    recipients=st.lists(texts, max_size=2).map(tuple),
    via=st.lists(st.sampled_from(["email", "webhook", "in_app"]), max_size=3).map(tuple),
    due_at=times,
    created_at=times,
    dispatched_at=st.none() | times,
)
cases = st.builds(
    Case,
    id=names,
    flow=names,
    started_at=times,
    phase_index=st.integers(0, 20),
    phase_started_at=times,
    reason=texts,
    opened_by=texts,
    policy_version=texts,
    shift=deltas,
    adjustments=st.lists(adjustments, max_size=2).map(tuple),
    notices=st.lists(notices, max_size=2).map(tuple),
    destruct=st.sampled_from(["none", "held", "renotice", "requested", "done"]),
    destruct_since=st.none() | times,
    renotice_round=st.integers(0, 5),
    ordered=st.booleans(),
)
holds = st.none() | st.builds(LegalHold, since=times, by=texts, reason=texts)
durations = st.none() | st.builds(Duration, *[st.integers(0, 40) for _ in range(6)])
effects = st.one_of(
    st.builds(
        NoticeEffect,
        account_id=names,
        case_id=names,
        flow=names,
        phase=names,
        key=names,
        template=names,
        to=st.sampled_from(["admins", "members", "owner"]),
        recipients=st.lists(texts, max_size=2).map(tuple),
        via=st.lists(st.sampled_from(["email", "webhook", "in_app"]), max_size=2).map(tuple),
        due_at=times,
        at=times,
        deadline=st.none() | times,
        reason=texts,
    ),
    st.builds(
        HostEffect,
        account_id=names,
        case_id=names,
        flow=names,
        phase=names,
        name=names,
        trigger=st.sampled_from(["enter", "exit", "close"]),
        at=times,
    ),
    st.builds(
        PurgeEffect,
        account_id=names,
        case_id=names,
        flow=names,
        phase=st.none() | names,
        categories=st.lists(names, max_size=3).map(tuple),
        at=times,
    ),
    st.builds(
        DeleteEffect,
        account_id=names,
        case_id=names,
        flow=names,
        address=st.builds(
            AddressRule, mode=st.sampled_from(["release", "retire"]), duration=durations
        ),
        at=times,
    ),
)


def all_utc(value: Any) -> bool:
    """Every datetime inside `value` comes back with datetime.UTC as its zone."""
    if isinstance(value, datetime):
        return value.tzinfo is UTC
    if isinstance(value, dict):
        return all(all_utc(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(all_utc(v) for v in value)
    return True


@given(fact_values)
def test_fact_values_keep_their_type(value: Any) -> None:
    back = codec.decode_fact(codec.encode_fact(value))
    assert back == value
    assert type(back) is type(value)
    assert all_utc(back)


@given(open_values)
def test_open_values_round_trip(value: Any) -> None:
    back = codec.decode_value(codec.encode_value(value))
    assert back == value
    assert all_utc(back)


def test_floats_postgres_would_change_are_tagged() -> None:
    for value in (1e16, -0.0, float("inf"), 1e-7):
        assert isinstance(codec.encode_value(value), dict)
        assert codec.decode_value(codec.encode_value(value)) == value
    assert math.isnan(codec.decode_value(codec.encode_value(float("nan"))))
    assert codec.encode_value(0.25) == 0.25


@given(cases)
def test_cases_round_trip(case: Case) -> None:
    assert codec.decode_case(codec.encode_case(case)) == case


@given(holds)
def test_holds_round_trip(hold: LegalHold | None) -> None:
    assert codec.decode_hold(codec.encode_hold(hold)) == hold


@given(effects)
def test_effects_round_trip(effect: Any) -> None:
    encoded = codec.encode_effect(effect)
    assert encoded["kind"] == codec.effect_kind(effect)
    assert codec.decode_effect(encoded) == effect


@given(st.dictionaries(json_keys, open_values, max_size=4))
def test_canonical_json_is_deterministic(detail: dict[str, Any]) -> None:
    encoded = codec.encode_detail(detail)
    first = codec.canonical_json(encoded)
    assert first == codec.canonical_json(dict(reversed(list(encoded.items()))))
    assert codec.decode_detail(encoded) == detail


def test_canonical_json_shape() -> None:
    when = datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert codec.canonical_json({"b": 1, "a": [when, "é"]}) == (
        '{"a":["2024-01-01T00:00:00+00:00","é"],"b":1}'.encode()
    )


accounts = st.builds(
    Account,
    id=st.just("x"),
    kind=names,
    created_at=times,
    address=st.none() | texts,
    members=st.lists(
        st.builds(Member, email=texts, role=st.sampled_from(["admin", "member", "owner"])),
        max_size=3,
        unique_by=lambda m: m.email,
    ).map(tuple),
    signals=st.dictionaries(names, times, max_size=3),
    facts=st.dictionaries(
        names, st.builds(FactEntry, value=fact_values, changed_at=times), max_size=3
    ),
    last_events=st.dictionaries(names, times, max_size=2),
    legal_hold=holds,
    cases=st.lists(cases, max_size=2, unique_by=lambda c: c.id).map(tuple),
    armed_from=st.dictionaries(names, times, max_size=2),
    case_seq=st.integers(0, 1000),
    deleted_at=st.none() | times,
)

_ids = itertools.count()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=accounts, second=accounts)
def test_accounts_round_trip_through_the_store(any_store, first: Account, second: Account) -> None:
    account_id = f"acct-{next(_ids)}"
    first = Account(**{**_fields(first), "id": account_id})
    second = Account(**{**_fields(second), "id": account_id})
    with any_store.unit() as unit:
        unit.write(Change(account=first, next_due_at=None, created=True))
    assert any_store.get(account_id) == first
    with any_store.unit() as unit:
        assert unit.load(account_id) == first
        unit.write(Change(account=second, next_due_at=None))
    got = any_store.get(account_id)
    assert got == second
    if not isinstance(any_store, MemoryStore):  # the SQL stores give every time back in UTC
        assert all_utc([got.created_at, *got.signals.values(), *got.armed_from.values()])


def _fields(account: Account) -> dict[str, Any]:
    return {name: getattr(account, name) for name in Account.__dataclass_fields__}
