"""Compile the condition mini-language (`no_activity`, `age`, `since`, `fact`, `all`, `any`, `not`).

Conditions are parsed by hand rather than as a pydantic union: a union reports one error per
alternative, while here we know from the key which form was meant and say exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from lapse.policy.durations import Duration, DurationSyntaxError
from lapse.policy.model import (
    AccountAge,
    AllOf,
    AnyOf,
    Compare,
    CompareOp,
    Condition,
    FactRef,
    FactSpec,
    FactType,
    FactValue,
    NoActivity,
    Not,
    SinceFact,
)
from lapse.policy.schema import name_error, parse_duration
from lapse.policy.source import Source, join, listing, show

FORMS = ("no_activity", "age", "since", "fact", "all", "any", "not")
OPS: tuple[CompareOp, ...] = ("is", "is_not", "gt", "gte", "lt", "lte", "in", "not_in")
ORDER_OPS = ("gt", "gte", "lt", "lte")
_KEYS = {
    "no_activity": ("no_activity", "for"),
    "age": ("age",),
    "since": ("since", "for"),
    "fact": ("fact", *OPS),
    "all": ("all",),
    "any": ("any",),
    "not": ("not",),
}
_WORDS: Mapping[str, str] = {
    "bool": "true or false",
    "number": "a number",
    "string": "a string",
    "timestamp": "a timestamp with a zone offset such as '2024-01-31T00:00:00Z'",
}


def literal(value: object, fact_type: FactType) -> FactValue | None:
    """`value` as a literal of `fact_type`, or None if it is not one."""
    if fact_type == "bool":
        return value if isinstance(value, bool) else None
    if fact_type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return cast(FactValue, value) if ok else None
    if fact_type == "string":
        return value if isinstance(value, str) else None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    return None


def literal_error(value: object, fact_type: FactType, context: str) -> str:
    """The message for a literal that is not of the fact's type."""
    return f"expected {_WORDS[fact_type]} {context}, found {show(value)}"


def require_declared(
    source: Source, name: str, declared: Sequence[str] | None, what: str, path: str
) -> bool:
    """Report `name` at `path` unless it is among `declared` (None: that section is invalid)."""
    if declared is None or name in declared:
        return True
    plural = "categories" if what == "category" else f"{what}s"
    known = f"declared {plural}: {listing(declared)}" if declared else f"no {plural} are declared"
    source.error(path, f"unknown {what} {name!r}; {known}")
    return False


def unique(
    source: Source, items: Sequence[str], path: str, indexes: Sequence[int] | None = None
) -> tuple[str, ...]:
    """`items` without repeats, reporting each repeat at its place in the list at `path`
    (`indexes`: where each item is in that list, when some of its items were left out)."""
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        at = join(path, index if indexes is None else indexes[index])
        if item in seen:
            source.duplicate(at, item, seen[item])
        else:
            seen[item] = at
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class Declared:
    """What the policy declares; None where that section itself was invalid (then not checked)."""

    actions: Sequence[str] | None = ()
    kinds: Sequence[str] | None = ()
    signals: Sequence[str] | None = ()
    categories: Sequence[str] | None = ()
    facts: Mapping[str, FactSpec] | None = field(default_factory=dict)


class ConditionCompiler:
    """Parses conditions, reporting every problem on the Source; returns None for a bad one."""

    def __init__(self, source: Source, declared: Declared) -> None:
        self.source = source
        self.declared = declared

    def compile(self, raw: Any, path: str) -> Condition | None:
        """The condition at `path`, or None (with problems reported) if it is invalid."""
        forms = [k for k in raw if k in FORMS] if isinstance(raw, dict) else []
        if not isinstance(raw, dict) or not forms:
            found = show(raw)
            if isinstance(raw, dict):
                found = f"keys: {listing(raw)}" if raw else "an empty mapping"
            self.source.error(
                path, f"expected a condition with one of the keys: {listing(FORMS)}; found {found}"
            )
            return None
        if len(forms) > 1:
            self.source.error(
                path,
                f"a condition has exactly one of the keys: {listing(FORMS)}; "
                f"found {listing(forms)}",
            )
            return None
        form = forms[0]
        ok = self._known_keys(raw, path, _KEYS[form])
        if form in ("no_activity", "since") and "for" not in raw:
            self.source.error(path, "missing required key 'for'")
            ok = False
        parse = {
            "no_activity": self._no_activity,
            "age": self._age,
            "since": self._since,
            "fact": self._comparison,
            "all": self._all,
            "any": self._any,
            "not": self._not,
        }[form]
        condition = parse(raw, path)
        return condition if ok else None

    def _known_keys(self, raw: dict[str, Any], path: str, allowed: Sequence[str]) -> bool:
        ok = True
        for key in raw:
            if key not in allowed:
                self.source.error(
                    join(path, key),
                    f"unknown key {key!r}; expected one of: {listing(allowed)}",
                    at_key=True,
                )
                ok = False
        return ok

    def _duration(self, raw: Any, path: str) -> Duration | None:
        try:
            return parse_duration(raw)
        except DurationSyntaxError as exc:
            self.source.error(path, str(exc))
            return None

    def _no_activity(self, raw: dict[str, Any], path: str) -> Condition | None:
        signals = self._signals(raw["no_activity"], join(path, "no_activity"))
        duration = self._duration(raw["for"], join(path, "for")) if "for" in raw else None
        if signals is None or duration is None:
            return None
        return NoActivity(signals=signals, duration=duration, path=path)

    def _signals(self, raw: Any, path: str) -> tuple[str, ...] | None:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items:
            self.source.error(
                path, f"expected a signal name or a list of signal names, found {show(raw)}"
            )
            return None
        ok = True
        seen: dict[str, str] = {}
        for index, item in enumerate(items):
            item_path = join(path, index) if isinstance(raw, list) else path
            if message := name_error(item):
                self.source.error(item_path, message)
                ok = False
            elif item in seen:
                self.source.duplicate(item_path, item, seen[item])
                ok = False
            else:
                ok = (
                    require_declared(self.source, item, self.declared.signals, "signal", item_path)
                    and ok
                )
                seen[item] = item_path
        return tuple(items) if ok else None

    def _age(self, raw: dict[str, Any], path: str) -> Condition | None:
        duration = self._duration(raw["age"], join(path, "age"))
        return AccountAge(duration=duration, path=path) if duration else None

    def _since(self, raw: dict[str, Any], path: str) -> Condition | None:
        fact = self._fact(raw["since"], join(path, "since"))
        if fact is not None and fact.type != "timestamp":
            self.source.error(
                join(path, "since"),
                f"since needs a timestamp fact; {fact.name!r} is a {fact.type} fact",
            )
            fact = None
        duration = self._duration(raw["for"], join(path, "for")) if "for" in raw else None
        if fact is None or duration is None:
            return None
        return SinceFact(fact=fact.name, duration=duration, path=path)

    def _fact(self, raw: Any, path: str) -> FactSpec | None:
        """The declared fact named by `raw`; when facts are unknown, an untyped stand-in."""
        if message := name_error(raw):
            self.source.error(path, message)
            return None
        facts = self.declared.facts
        if facts is None:  # the facts section is invalid: its errors are reported already
            return FactSpec(name=raw, type="timestamp")
        if not require_declared(self.source, raw, list(facts), "fact", path):
            return None
        return facts[raw]

    def _comparison(self, raw: dict[str, Any], path: str) -> Condition | None:
        ops = [op for op in OPS if op in raw]
        fact = self._fact(raw["fact"], join(path, "fact"))
        if len(ops) != 1:
            found = f", found {listing(ops)}" if ops else ""
            self.source.error(
                path, f"a fact comparison needs exactly one operator of: {listing(OPS)}{found}"
            )
            return None
        op = ops[0]
        op_path = join(path, op)
        if fact is None or self.declared.facts is None:
            return None
        if op in ORDER_OPS and fact.type not in ("number", "timestamp"):
            self.source.error(
                op_path,
                f"{op} needs a number or timestamp fact; {fact.name!r} is a {fact.type} fact",
            )
            return None
        value: FactValue | FactRef | tuple[FactValue, ...] | None
        if op in ("in", "not_in"):
            value = self._literals(raw[op], op_path, fact, op)
        elif isinstance(raw[op], dict):
            value = self._fact_ref(raw[op], op_path, fact)
        else:
            value = self._literal(raw[op], op_path, fact)
        if value is None:
            return None
        return Compare(fact=fact.name, op=op, value=value, path=path)

    def _literal(self, raw: Any, path: str, fact: FactSpec) -> FactValue | None:
        value = literal(raw, fact.type)
        if value is None:
            context = f"to compare with {fact.type} fact {fact.name!r}"
            self.source.error(path, literal_error(raw, fact.type, context))
        return value

    def _literals(
        self, raw: Any, path: str, fact: FactSpec, op: str
    ) -> tuple[FactValue, ...] | None:
        if not isinstance(raw, list) or not raw:
            self.source.error(
                path, f"expected a non-empty list of values for {op}, found {show(raw)}"
            )
            return None
        values = [self._literal(item, join(path, i), fact) for i, item in enumerate(raw)]
        if any(v is None for v in values):
            return None
        return tuple(cast(list[FactValue], values))

    def _fact_ref(self, raw: dict[str, Any], path: str, fact: FactSpec) -> FactRef | None:
        if "fact" not in raw:
            self.source.error(path, f"expected a value or {{fact: <name>}}, found {show(raw)}")
            return None
        if not self._known_keys(raw, path, ("fact",)):
            return None
        other = self._fact(raw["fact"], join(path, "fact"))
        if other is None:
            return None
        if other.type != fact.type:
            self.source.error(
                join(path, "fact"),
                f"cannot compare {fact.type} fact {fact.name!r} with {other.type} fact "
                f"{other.name!r}",
            )
            return None
        return FactRef(fact=other.name)

    def _items(self, raw: dict[str, Any], path: str, key: str) -> tuple[Condition, ...] | None:
        items = raw[key]
        if not isinstance(items, list) or not items:
            self.source.error(
                join(path, key), f"expected a non-empty list of conditions, found {show(items)}"
            )
            return None
        compiled = [self.compile(item, join(join(path, key), i)) for i, item in enumerate(items)]
        if any(c is None for c in compiled):
            return None
        return tuple(cast(list[Condition], compiled))

    def _all(self, raw: dict[str, Any], path: str) -> Condition | None:
        items = self._items(raw, path, "all")
        return AllOf(items=items, path=path) if items else None

    def _any(self, raw: dict[str, Any], path: str) -> Condition | None:
        items = self._items(raw, path, "any")
        return AnyOf(items=items, path=path) if items else None

    def _not(self, raw: dict[str, Any], path: str) -> Condition | None:
        item = self.compile(raw["not"], join(path, "not"))
        return Not(item=item, path=path) if item else None
