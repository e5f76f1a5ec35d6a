"""Exact round trips between the core's values and JSON, and canonical JSON for hashing.

Hand-written rather than a pydantic TypeAdapter: fact values are a union (`bool | int | float |
str | datetime`) that JSON cannot tell apart once a timestamp is a string, audit details are open
mappings, and pydantic returns its own tzinfo class where the core's UTC fast path wants
`datetime.UTC`. Values JSON cannot carry are tagged with a one-key object:

- `{"$dt": "2024-01-01T00:00:00+00:00"}` a timestamp (always stored in UTC),
- `{"$td": 86400000000}` a timedelta in microseconds,
- `{"$tuple": [...]}` a tuple (lists stay plain arrays),
- `{"$f": "1e+16"}` a float that PostgreSQL's `jsonb` would not give back as the same float
  (exponent form, infinities, NaN, negative zero: `jsonb` keeps numbers as `numeric`),
- `{"$map": {...}}` a mapping that has a key starting with `$` (so it is never read as a tag).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from lapse.core.model import (
    Account,
    Adjustment,
    AuditEntry,
    Case,
    DeleteEffect,
    Effect,
    FactEntry,
    HostEffect,
    LegalHold,
    NoticeEffect,
    NoticeRecord,
    PurgeEffect,
)
from lapse.errors import InvalidInput
from lapse.policy.durations import Duration
from lapse.policy.model import AddressRule, FactValue

Json = Any  # a value json.dumps accepts: dict, list, str, int, float, bool, None

_US = timedelta(microseconds=1)
_from_iso = datetime.fromisoformat


# --- timestamps ---------------------------------------------------------------------------------


_TS_CACHE: dict[datetime, str] = {}


def ts(value: datetime) -> str:
    """A timestamp as ISO-8601 UTC text (refuses naive datetimes)."""
    # isoformat() costs ten times a dict lookup, and a batch repeats its times (the step's
    # `now`, phase ends, notice times); equal aware datetimes are the same instant
    text = _TS_CACHE.get(value) if value.tzinfo is not None else None
    if text is not None:
        return text
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"timestamp {value.isoformat()} has no time zone")
        value = value.astimezone(UTC)
    text = value.isoformat()
    if len(_TS_CACHE) >= 8192:
        _TS_CACHE.clear()
    _TS_CACHE[value] = text
    return text


def parse_ts(text: str) -> datetime:
    """The aware UTC datetime `ts` wrote."""
    return _from_iso(text)


def _opt_ts(value: datetime | None) -> str | None:
    return None if value is None else ts(value)


def _opt_parse(text: str | None) -> datetime | None:
    return None if text is None else _from_iso(text)


# --- open values (fact values, audit details, receipts) -----------------------------------------


def _float(value: float) -> Json:
    text = repr(value)
    if "e" in text or "n" in text or (value == 0.0 and math.copysign(1.0, value) < 0):
        return {"$f": text}  # 'n' catches nan and inf
    return value


def encode_value(value: object) -> Json:
    """A JSON-ready form of an open value that `decode_value` turns back into an equal value."""
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return value
    if kind is float:
        return _float(cast(float, value))
    if isinstance(value, datetime):
        return {"$dt": ts(value)}
    if isinstance(value, Mapping):
        out: dict[str, Json] = {}
        tagged = False
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"mapping keys must be strings, found {key!r}")
            if key[:1] == "$":
                tagged = True
            out[key] = encode_value(item)
        return {"$map": out} if tagged else out
    if isinstance(value, list):
        return [encode_value(item) for item in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode_value(item) for item in value]}
    if isinstance(value, timedelta):
        return {"$td": value // _US}
    if isinstance(value, bool | int | str):  # subclasses such as enums: keep the plain value
        return value
    if isinstance(value, float):
        return _float(value)
    raise InvalidInput(f"cannot store a value of type {kind.__name__}: {value!r}")


def decode_value(data: Json) -> Any:
    """The value `encode_value` encoded."""
    if type(data) is dict:
        if len(data) == 1:
            ((key, inner),) = data.items()
            if key[:1] == "$":
                if key == "$dt":
                    return _from_iso(inner)
                if key == "$tuple":
                    return tuple(decode_value(item) for item in inner)
                if key == "$td":
                    return timedelta(microseconds=inner)
                if key == "$f":
                    return float(inner)
                if key == "$map":
                    return {k: decode_value(v) for k, v in inner.items()}
        return {k: decode_value(v) for k, v in data.items()}
    if type(data) is list:
        return [decode_value(item) for item in data]
    return data


def encode_fact(value: FactValue) -> Json:
    """A fact value (bool, number, string or timestamp) as JSON that keeps its type."""
    kind = type(value)
    if kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return _float(cast(float, value))
    if isinstance(value, datetime):
        return {"$dt": ts(value)}
    return encode_value(value)


def decode_fact(data: Json) -> FactValue:
    """The fact value `encode_fact` encoded."""
    if type(data) is dict:
        result: FactValue = decode_value(data)
        return result
    return cast(FactValue, data)


# --- cases and lifecycle state ------------------------------------------------------------------


def encode_adjustment(adj: Adjustment) -> Json:
    """An Adjustment as JSON."""
    return {
        "kind": adj.kind,
        "at": ts(adj.at),
        "delta": adj.delta // _US,
        "phase": adj.phase,
        "detail": adj.detail,
    }


def decode_adjustment(data: Json) -> Adjustment:
    """The Adjustment `encode_adjustment` encoded."""
    return Adjustment(
        kind=data["kind"],
        at=_from_iso(data["at"]),
        delta=timedelta(microseconds=data["delta"]),
        phase=data["phase"],
        detail=data["detail"],
    )


def encode_notice(record: NoticeRecord) -> Json:
    """A NoticeRecord as JSON."""
    return {
        "key": record.key,
        "phase": record.phase,
        "template": record.template,
        "to": record.to,
        "recipients": list(record.recipients),
        "via": list(record.via),
        "due_at": ts(record.due_at),
        "created_at": ts(record.created_at),
        "dispatched_at": _opt_ts(record.dispatched_at),
    }


def decode_notice(data: Json) -> NoticeRecord:
    """The NoticeRecord `encode_notice` encoded."""
    return NoticeRecord(
        key=data["key"],
        phase=data["phase"],
        template=data["template"],
        to=data["to"],
        recipients=tuple(data["recipients"]),
        via=tuple(data["via"]),
        due_at=_from_iso(data["due_at"]),
        created_at=_from_iso(data["created_at"]),
        dispatched_at=_opt_parse(data["dispatched_at"]),
    )


def encode_case(case: Case) -> Json:
    """A Case as JSON."""
    return {
        "id": case.id,
        "flow": case.flow,
        "started_at": ts(case.started_at),
        "phase_index": case.phase_index,
        "phase_started_at": ts(case.phase_started_at),
        "reason": case.reason,
        "opened_by": case.opened_by,
        "policy_version": case.policy_version,
        "shift": case.shift // _US,
        "adjustments": [encode_adjustment(a) for a in case.adjustments],
        "notices": [encode_notice(n) for n in case.notices],
        "destruct": case.destruct,
        "destruct_since": _opt_ts(case.destruct_since),
        "renotice_round": case.renotice_round,
        # only when set: cases written before the field existed read back the same
        **({"ordered": True} if case.ordered else {}),
    }


def decode_case(data: Json) -> Case:
    """The Case `encode_case` encoded."""
    adjustments = data["adjustments"]
    notices = data["notices"]
    return Case(
        id=data["id"],
        flow=data["flow"],
        started_at=_from_iso(data["started_at"]),
        phase_index=data["phase_index"],
        phase_started_at=_from_iso(data["phase_started_at"]),
        reason=data["reason"],
        opened_by=data["opened_by"],
        policy_version=data["policy_version"],
        shift=timedelta(microseconds=data["shift"]),
        adjustments=tuple(decode_adjustment(a) for a in adjustments) if adjustments else (),
        notices=tuple(decode_notice(n) for n in notices) if notices else (),
        destruct=data["destruct"],
        destruct_since=_opt_parse(data["destruct_since"]),
        renotice_round=data["renotice_round"],
        ordered=data.get("ordered", False),
    )


def encode_hold(hold: LegalHold | None) -> Json:
    """A LegalHold (or None) as JSON."""
    if hold is None:
        return None
    return {"since": ts(hold.since), "by": hold.by, "reason": hold.reason}


def decode_hold(data: Json) -> LegalHold | None:
    """The LegalHold `encode_hold` encoded."""
    if data is None:
        return None
    return LegalHold(since=_from_iso(data["since"]), by=data["by"], reason=data["reason"])


def encode_times(times: Mapping[str, datetime]) -> Json:
    """A name -> timestamp mapping (armed_from, last_events, signals) as JSON."""
    return {name: ts(at) for name, at in times.items()}


def decode_times(data: Json) -> dict[str, datetime]:
    """The mapping `encode_times` encoded."""
    return {name: _from_iso(at) for name, at in data.items()} if data else {}


def encode_facts(facts: Mapping[str, FactEntry]) -> Json:
    """Facts (value and changed_at) as JSON."""
    return {
        name: {"value": encode_fact(entry.value), "changed_at": ts(entry.changed_at)}
        for name, entry in facts.items()
    }


def decode_facts(data: Json) -> dict[str, FactEntry]:
    """The facts `encode_facts` encoded."""
    return {
        name: FactEntry(value=decode_fact(item["value"]), changed_at=_from_iso(item["changed_at"]))
        for name, item in data.items()
    }


def encode_lifecycle(account: Account) -> dict[str, Json]:
    """The account's lifecycle state (what the accounts table keeps as JSON)."""
    return {
        "cases": [encode_case(c) for c in account.cases],
        "armed_from": encode_times(account.armed_from),
        "last_events": encode_times(account.last_events),
        "legal_hold": encode_hold(account.legal_hold),
        "case_seq": account.case_seq,
    }


# --- effects ------------------------------------------------------------------------------------


def _duration(value: Duration | None) -> Json:
    if value is None:
        return None
    return [value.years, value.months, value.weeks, value.days, value.hours, value.minutes]


def effect_kind(effect: Effect) -> str:
    """The discriminator stored with an effect: notice, host, purge or delete."""
    if isinstance(effect, NoticeEffect):
        return "notice"
    if isinstance(effect, HostEffect):
        return "host"
    if isinstance(effect, PurgeEffect):
        return "purge"
    return "delete"


def encode_effect(effect: Effect) -> dict[str, Json]:
    """An effect as JSON, with its `kind`."""
    if isinstance(effect, NoticeEffect):
        return {
            "kind": "notice",
            "account_id": effect.account_id,
            "case_id": effect.case_id,
            "flow": effect.flow,
            "phase": effect.phase,
            "key": effect.key,
            "template": effect.template,
            "to": effect.to,
            "recipients": list(effect.recipients),
            "via": list(effect.via),
            "due_at": ts(effect.due_at),
            "at": ts(effect.at),
            "deadline": _opt_ts(effect.deadline),
            "reason": effect.reason,
        }
    if isinstance(effect, HostEffect):
        return {
            "kind": "host",
            "account_id": effect.account_id,
            "case_id": effect.case_id,
            "flow": effect.flow,
            "phase": effect.phase,
            "name": effect.name,
            "trigger": effect.trigger,
            "at": ts(effect.at),
        }
    if isinstance(effect, PurgeEffect):
        return {
            "kind": "purge",
            "account_id": effect.account_id,
            "case_id": effect.case_id,
            "flow": effect.flow,
            "phase": effect.phase,
            "categories": list(effect.categories),
            "at": ts(effect.at),
        }
    return {
        "kind": "delete",
        "account_id": effect.account_id,
        "case_id": effect.case_id,
        "flow": effect.flow,
        "address": {"mode": effect.address.mode, "duration": _duration(effect.address.duration)},
        "at": ts(effect.at),
    }


def decode_effect(data: Json) -> Effect:
    """The effect `encode_effect` encoded."""
    kind = data["kind"]
    if kind == "notice":
        return NoticeEffect(
            account_id=data["account_id"],
            case_id=data["case_id"],
            flow=data["flow"],
            phase=data["phase"],
            key=data["key"],
            template=data["template"],
            to=data["to"],
            recipients=tuple(data["recipients"]),
            via=tuple(data["via"]),
            due_at=_from_iso(data["due_at"]),
            at=_from_iso(data["at"]),
            deadline=_opt_parse(data["deadline"]),
            reason=data["reason"],
        )
    if kind == "host":
        return HostEffect(
            account_id=data["account_id"],
            case_id=data["case_id"],
            flow=data["flow"],
            phase=data["phase"],
            name=data["name"],
            trigger=data["trigger"],
            at=_from_iso(data["at"]),
        )
    if kind == "purge":
        return PurgeEffect(
            account_id=data["account_id"],
            case_id=data["case_id"],
            flow=data["flow"],
            phase=data["phase"],
            categories=tuple(data["categories"]),
            at=_from_iso(data["at"]),
        )
    if kind == "delete":
        address = data["address"]
        duration = address["duration"]
        return DeleteEffect(
            account_id=data["account_id"],
            case_id=data["case_id"],
            flow=data["flow"],
            address=AddressRule(
                mode=address["mode"], duration=Duration(*duration) if duration else None
            ),
            at=_from_iso(data["at"]),
        )
    raise InvalidInput(f"unknown effect kind {kind!r}")


def effect_name(effect: Effect) -> str:
    """What identifies the effect within its case: the notice key or the hook name."""
    if isinstance(effect, NoticeEffect):
        return effect.key
    if isinstance(effect, HostEffect):
        return effect.name
    return effect_kind(effect)


# --- audit --------------------------------------------------------------------------------------


def encode_detail(detail: Mapping[str, object]) -> dict[str, Json]:
    """An audit entry's detail as JSON (always an object)."""
    if not detail:
        return {}
    for key, value in detail.items():
        kind = type(value)
        plain = kind is str or kind is int or kind is bool or value is None
        if not plain or type(key) is not str or key[:1] == "$":
            return cast(dict[str, Json], encode_value(detail))
    # the common case: plain strings and numbers need no tags
    return detail if type(detail) is dict else dict(detail)


def decode_detail(data: Json) -> dict[str, Any]:
    """The detail `encode_detail` encoded."""
    return cast(dict[str, Any], decode_value(data)) if data else {}


def audit_payload(
    seq: int, entry: AuditEntry, recorded_at: datetime, detail: Json
) -> dict[str, Json]:
    """The fields of one audit row that its hash covers (detail already encoded)."""
    return {
        "seq": seq,
        "account_id": entry.account_id,
        "at": ts(entry.at),
        "recorded_at": ts(recorded_at),
        "kind": entry.kind,
        "case_id": entry.case_id,
        "flow": entry.flow,
        "detail": detail,
    }


def _canonical_default(value: object) -> Json:
    if isinstance(value, datetime):
        return ts(value)
    if isinstance(value, timedelta):
        return value // _US
    if isinstance(value, tuple | frozenset | set):
        return sorted(value) if not isinstance(value, tuple) else list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


_canonical = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=True,
    default=_canonical_default,
)


def canonical_json(obj: object) -> bytes:
    """Deterministic JSON bytes for hashing: sorted keys, no spaces, datetimes as ISO UTC."""
    return _canonical.encode(obj).encode("utf-8", "surrogatepass")
