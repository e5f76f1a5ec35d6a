"""Conditions over an account, as functions of time.

Between two reports from the host an account's signals and facts are constant, so a condition
can only change truth at the thresholds of its time atoms (`no_activity`, `age`, `since`). That
makes three questions exact and cheap: does it hold now, since when, and when will it flip next.

Time atoms count from the flow's *floor*: the account's creation, or the flow's re-arm time
(`Account.armed_from`), whichever is later. That is what gives a reactivated account a fresh
12 months instead of reopening its case on the next tick.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from lapse.core.model import Account, Explanation, FactEntry
from lapse.policy.durations import add
from lapse.policy.model import (
    AccountAge,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    FactRef,
    FactValue,
    NoActivity,
    Not,
    Policy,
    SinceFact,
)
from lapse.policy.render import describe_condition, describe_value

TimeAtom = NoActivity | AccountAge | SinceFact
_MISSING = object()


class Context:
    """One account, one policy, one flow floor: caches each time atom's threshold."""

    __slots__ = ("_thresholds", "account", "floor", "policy")

    def __init__(self, account: Account, policy: Policy, floor: datetime) -> None:
        self.account = account
        self.policy = policy
        self.floor = floor
        self._thresholds: dict[int, object] = {}

    def fact(self, name: str) -> FactEntry | None:
        """The fact's entry, or its declared default (counted as set at account creation)."""
        entry = self.account.facts.get(name)
        if entry is not None:
            return entry
        spec = self.policy.facts.get(name)
        if spec is None or spec.default is None:
            return None
        return FactEntry(value=spec.default, changed_at=self.account.created_at)

    def threshold(self, atom: TimeAtom) -> datetime | None:
        """The moment the time atom starts to hold, or None if it never can (fact not set)."""
        key = id(atom)
        value = self._thresholds.get(key, _MISSING)
        if value is _MISSING:
            value = self._thresholds[key] = self._compute_threshold(atom)
        return value  # type: ignore[return-value]

    def _compute_threshold(self, atom: TimeAtom) -> datetime | None:
        base = self.floor
        if isinstance(atom, NoActivity):
            signals = self.account.signals
            for name in atom.signals:
                seen = signals.get(name)
                if seen is not None and seen > base:
                    base = seen
        elif isinstance(atom, SinceFact):
            entry = self.fact(atom.fact)
            if entry is None or not isinstance(entry.value, datetime):
                return None
            base = max(base, entry.value)
        return add(base, atom.duration, self.policy.timezone)


Evaluator = Callable[[Context, datetime], bool]
_COMPILED: dict[int, tuple[Condition, Evaluator]] = {}


def holds_at(cond: Condition, ctx: Context, at: datetime) -> bool:
    """Truth of `cond` at time `at`, assuming the account's inputs stay as they are."""
    hit = _COMPILED.get(id(cond))
    if hit is None or hit[0] is not cond:
        hit = (cond, _compile(cond))
        _COMPILED[id(cond)] = hit
    return hit[1](ctx, at)


def _compile(cond: Condition) -> Evaluator:
    """Turn a condition tree into nested closures once (the tree is immutable)."""
    if isinstance(cond, NoActivity | AccountAge | SinceFact):
        atom = cond

        def time_atom(ctx: Context, at: datetime) -> bool:
            threshold = ctx.threshold(atom)
            return threshold is not None and at >= threshold

        return time_atom
    if isinstance(cond, Compare):
        compare = cond
        key = id(cond)

        def comparison(ctx: Context, at: datetime) -> bool:
            # facts do not change with time: compared once per context
            value = ctx._thresholds.get(key, _MISSING)
            if value is _MISSING:
                value = ctx._thresholds[key] = _compare(compare, ctx)
            return value is True

        return comparison
    if isinstance(cond, Not):
        inner = _compile(cond.item)
        return lambda ctx, at: not inner(ctx, at)
    parts = tuple(_compile(item) for item in cond.items)
    if isinstance(cond, AllOf):

        def all_of(ctx: Context, at: datetime) -> bool:
            for part in parts:  # noqa: SIM110 - a plain loop is faster than all() here
                if not part(ctx, at):
                    return False
            return True

        return all_of

    def any_of(ctx: Context, at: datetime) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop is faster than any() here
            if part(ctx, at):
                return True
        return False

    return any_of


def since(cond: Condition, ctx: Context, now: datetime, holds: bool | None = None) -> datetime:
    """Since when `cond` has had its current truth value (never earlier than the floor).
    `holds`: that truth value, when the caller already knows it (`holds_at(cond, ctx, now)`).

    Exact for the conditions policies use; for a nested mixture it errs late, never early, so a
    case never starts (or stops) before it should have.
    """
    if holds is None:
        holds = holds_at(cond, ctx, now)
    if isinstance(cond, NoActivity | AccountAge | SinceFact):
        threshold = ctx.threshold(cond)
        if holds and threshold is not None:
            return threshold
        return _reset_at(cond, ctx)
    if isinstance(cond, Compare):
        changed = _changed_at(cond, ctx)
        return max(changed, ctx.floor) if changed is not None else ctx.floor
    if isinstance(cond, Not):
        return since(cond.item, ctx, now, not holds)
    parts = []
    for item in cond.items:
        item_holds = holds_at(item, ctx, now)
        parts.append((item_holds, since(item, ctx, now, item_holds)))
    # all() holds since its last part began to hold; it fails since its first failing part failed
    # any() holds since its first holding part began; it fails since its last part failed
    wanted = holds if isinstance(cond, AllOf) else not holds
    if wanted:
        return max(at for _, at in parts)
    return min(at for part_holds, at in parts if part_holds == holds)


def next_change(cond: Condition, ctx: Context, now: datetime) -> datetime | None:
    """The first moment after `now` when `cond` changes truth if nothing is reported."""
    current = holds_at(cond, ctx, now)
    atoms, monotone = _shape(cond)
    if current and monotone:
        return None  # without `not`, passing time can only make a condition true
    candidates = []
    for atom in atoms:
        threshold = ctx.threshold(atom)
        if threshold is not None and threshold > now:
            candidates.append(threshold)
    candidates.sort()
    for moment in candidates:
        if holds_at(cond, ctx, moment) != current:
            return moment
    return None


_SHAPES: dict[int, tuple[Condition, tuple[TimeAtom, ...], bool]] = {}


def _shape(cond: Condition) -> tuple[tuple[TimeAtom, ...], bool]:
    """The time atoms of a condition, and whether it is free of `not` (memoised)."""
    hit = _SHAPES.get(id(cond))
    if hit is None or hit[0] is not cond:
        atoms: list[TimeAtom] = []
        monotone = _collect(cond, atoms)
        hit = (cond, tuple(atoms), monotone)
        _SHAPES[id(cond)] = hit
    return hit[1], hit[2]


def _collect(cond: Condition, atoms: list[TimeAtom]) -> bool:
    if isinstance(cond, NoActivity | AccountAge | SinceFact):
        atoms.append(cond)
        return True
    if isinstance(cond, Compare):
        return True
    if isinstance(cond, Not):
        _collect(cond.item, atoms)
        return False
    monotone = True
    for item in cond.items:
        monotone = _collect(item, atoms) and monotone
    return monotone


def explain(cond: Condition, ctx: Context, now: datetime) -> Explanation:
    """A tree saying, part by part, whether the condition holds, since when, or when it would."""
    holds = holds_at(cond, ctx, now)
    parts: tuple[Explanation, ...] = ()
    if isinstance(cond, AllOf | AnyOf):
        parts = tuple(explain(item, ctx, now) for item in cond.items)
    elif isinstance(cond, Not):
        parts = (explain(cond.item, ctx, now),)
    text = describe_condition(cond)
    if isinstance(cond, Compare) and not holds:
        named = [cond.fact, cond.value.fact] if isinstance(cond.value, FactRef) else [cond.fact]
        unset = [name for name in dict.fromkeys(named) if ctx.fact(name) is None]
        if len(unset) == 1:
            text += f" (fact {unset[0]} is not set)"
        elif unset:
            text += f" (facts {' and '.join(unset)} are not set)"
    elif isinstance(cond, SinceFact) and ctx.fact(cond.fact) is None:
        text += f" (fact {cond.fact} is not set)"
    return Explanation(
        text=text,
        holds=holds,
        since=since(cond, ctx, now, True) if holds else None,
        holds_at=None if holds else next_change(cond, ctx, now),
        parts=parts,
    )


_SYMBOLS = {
    "is": "is",
    "is_not": "is not",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "in",
    "not_in": "not in",
}


def holding_parts(cond: Condition, ctx: Context, at: datetime) -> list[str]:
    """The parts that make `cond` hold at `at`, in words with the facts' values
    ('contacts 1200 > plan_contact_limit 1000'); empty if it does not hold."""
    if not holds_at(cond, ctx, at):
        return []
    if isinstance(cond, AllOf | AnyOf):
        return [text for item in cond.items for text in holding_parts(item, ctx, at)]
    if isinstance(cond, Compare):
        entry = ctx.fact(cond.fact)
        assert entry is not None  # a comparison with an unset fact does not hold
        if cond.op == "is" and not isinstance(cond.value, FactRef):
            return [f"{cond.fact} is {describe_value(entry.value)}"]
        right = describe_value(cond.value)
        if isinstance(cond.value, FactRef):
            other = ctx.fact(cond.value.fact)
            assert other is not None
            right = f"{cond.value.fact} {describe_value(other.value)}"
        elif cond.op in ("in", "not_in"):
            right = f"[{right}]"
        return [f"{cond.fact} {describe_value(entry.value)} {_SYMBOLS[cond.op]} {right}"]
    text = describe_condition(cond)
    if isinstance(cond, SinceFact):
        entry = ctx.fact(cond.fact)
        assert entry is not None
        assert isinstance(entry.value, datetime)
        text += f" ({cond.fact} is {describe_value(entry.value)})"
    return [text]


def _reset_at(atom: TimeAtom, ctx: Context) -> datetime:
    """Since when a time atom that does not hold has not held (the activity that reset it)."""
    latest = ctx.floor
    if isinstance(atom, NoActivity):
        for name in atom.signals:
            seen = ctx.account.signals.get(name)
            if seen is not None and seen > latest:
                latest = seen
    elif isinstance(atom, SinceFact):
        entry = ctx.account.facts.get(atom.fact)
        if entry is not None and entry.changed_at > latest:
            latest = entry.changed_at
    return latest


def _changed_at(cond: Compare, ctx: Context) -> datetime | None:
    entry = ctx.fact(cond.fact)
    changed = entry.changed_at if entry is not None else None
    if isinstance(cond.value, FactRef):
        other = ctx.fact(cond.value.fact)
        if other is not None and (changed is None or other.changed_at > changed):
            changed = other.changed_at
    return changed


def _compare(cond: Compare, ctx: Context) -> bool:
    entry = ctx.fact(cond.fact)
    if entry is None:
        return False
    left = entry.value
    right: FactValue | tuple[FactValue, ...]
    if isinstance(cond.value, FactRef):
        other = ctx.fact(cond.value.fact)
        if other is None:
            return False
        right = other.value
    else:
        right = cond.value
    op = cond.op
    if op == "is":
        return left == right
    if op == "is_not":
        return left != right
    if op == "in":
        return isinstance(right, tuple) and left in right
    if op == "not_in":
        return isinstance(right, tuple) and left not in right
    # ordering operators: the loader only allows them on numbers and timestamps
    try:
        if op == "gt":
            return left > right  # type: ignore[operator]
        if op == "gte":
            return left >= right  # type: ignore[operator]
        if op == "lt":
            return left < right  # type: ignore[operator]
        return left <= right  # type: ignore[operator]
    except TypeError:
        # a fact compared with a fact of another type: does not hold, and explain() says why
        return False
