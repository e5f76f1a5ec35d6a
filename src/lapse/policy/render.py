"""Policies and conditions in words, for `lapse policy show` and for explanations.

Deterministic: the same policy always renders to the same text (sets are sorted).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from lapse.errors import Problem
from lapse.policy.durations import Duration
from lapse.policy.model import (
    AccountAge,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    FactRef,
    FactValue,
    Flow,
    NoActivity,
    Not,
    Phase,
    Policy,
    SinceFact,
)

_OPS = {
    "is": "is",
    "is_not": "is not",
    "gt": "is greater than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "in": "is one of",
    "not_in": "is not one of",
}


def describe_condition(condition: Condition) -> str:
    """A condition in words: 'no login for 12 months and fact subscription_active is false'."""
    if isinstance(condition, NoActivity):
        return f"no {_either(condition.signals)} for {condition.duration}"
    if isinstance(condition, AccountAge):
        return f"the account is at least {condition.duration} old"
    if isinstance(condition, SinceFact):
        return f"at least {condition.duration} since {condition.fact}"
    if isinstance(condition, Compare):
        return f"fact {condition.fact} {_OPS[condition.op]} {describe_value(condition.value)}"
    if isinstance(condition, Not):
        return f"not ({describe_condition(condition.item)})"
    joiner = " and " if isinstance(condition, AllOf) else " or "
    if not condition.items:
        return "always" if isinstance(condition, AllOf) else "never"
    return joiner.join(_nested(item) for item in condition.items)


def _nested(condition: Condition) -> str:
    # parentheses keep "(a or b) and c" apart from "a or (b and c)"
    text = describe_condition(condition)
    return f"({text})" if isinstance(condition, AllOf | AnyOf) and condition.items else text


def describe_value(value: FactValue | FactRef | tuple[FactValue, ...]) -> str:
    """A literal, a list of literals or another fact, as a condition shows it."""
    if isinstance(value, FactRef):
        return f"fact {value.fact}"
    if isinstance(value, tuple):
        return ", ".join(describe_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _either(names: Iterable[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    items = list(names)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def phase_state(flow: Flow, phase: Phase) -> str:
    """The account state while a case of `flow` is in `phase` (explicit, else derived)."""
    return flow.state_in(phase)


def describe_policy(policy: Policy) -> str:
    """A readable multi-line summary of a policy, for `lapse policy show`."""
    lines = [f"{policy.name} (version {policy.version})"]
    if policy.description:
        lines.append(policy.description)
    lines += [
        f"Source: {policy.source} (sha256 {policy.digest})",
        f"Time zone: {policy.timezone_name}; signals are rewritten at most every "
        f"{policy.resolution}",
        f"Actions: {_names(policy.action_order)}",
        f"Kinds: {_names(sorted(policy.kinds))}",
        f"Signals: {_names(sorted(policy.signals))}",
        f"Facts: {_names(_fact(policy, name) for name in policy.facts)}",
        f"Events: {_names(sorted(policy.events))}",
        f"Data categories: {_names(sorted(policy.categories))}",
    ]
    if policy.waive:
        lines.append(f"Lints waived for every flow: {_names(sorted(policy.waive))}")
    if policy.templates:
        lines.append(f"Notice templates it carries: {_names(sorted(policy.templates))}")
    if not policy.flows:
        lines += ["", "No flows."]
    for flow in policy.flows.values():
        lines += ["", *_flow(policy, flow)]
    return "\n".join(lines) + "\n"


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "(none)"


def _fact(policy: Policy, name: str) -> str:
    spec = policy.facts[name]
    default = "" if spec.default is None else f", default {describe_value(spec.default)}"
    return f"{name} ({spec.type}{default})"


def _flow(policy: Policy, flow: Flow) -> list[str]:
    lines = [f"Flow {flow.name}" + ("" if flow.title == flow.name else f": {flow.title}")]
    if flow.reason:
        lines.append(f"  Reason: {flow.reason}")
    kinds = "every kind" if flow.applies_to is None else ", ".join(sorted(flow.applies_to))
    lines.append(f"  Applies to: {kinds}")
    if flow.starts_when is not None:
        lines.append(f"  Starts when: {describe_condition(flow.starts_when)}")
    if flow.starts_on:
        lines.append(f"  Starts on: {', '.join(sorted(flow.starts_on))}")
    lines += _stops(flow)
    if flow.phases:
        lines.append("  Phases:")
        for phase in flow.phases:
            lines += _phase(policy, flow, phase)
    if flow.on_close:
        lines.append(f"  On close: {', '.join(flow.on_close)}")
    lines += _outcome(flow)
    if flow.waive:
        lines.append(f"  Waives: {', '.join(sorted(flow.waive))}")
    waived = [
        p for p in policy.problems if isinstance(p, Problem) and p.path.startswith(flow.path + ".")
    ]
    for problem in waived:
        lines.append(f"  Waived {problem.code} at {problem.path}: {problem.message}")
    return lines


def _stops(flow: Flow) -> list[str]:
    if flow.irreversible:
        return ["  Stops: never (irreversible: not even reactivation stops it)"]
    lines = []
    if flow.stops_when is not None:
        lines.append(f"  Stops when: {describe_condition(flow.stops_when)}")
    if flow.stops_on:
        lines.append(f"  Stops on: {', '.join(sorted(flow.stops_on))}")
    if flow.default_stop:
        lines.append("  Stops: when its start condition no longer holds")
    if not lines:
        lines.append("  Stops: only when an administrator reactivates the account")
    return lines


def _actions(policy: Policy, names: Iterable[str]) -> str:
    """Actions in the order the policy declares them (undeclared ones last, sorted)."""
    wanted = set(names)
    ordered = [a for a in policy.action_order if a in wanted]
    return _names([*ordered, *sorted(wanted - set(ordered))])


def _phase(policy: Policy, flow: Flow, phase: Phase) -> list[str]:
    length = "open-ended (until the case stops)" if phase.lasts is None else str(phase.lasts)
    lines = [f"    {phase.index + 1}. {phase.name}: {length}, state {phase_state(flow, phase)}"]
    details: list[str] = []
    if phase.deny:
        details.append(f"denies: {_actions(policy, phase.deny)}")
    if phase.allow_only is not None:
        details.append(f"allows only: {_actions(policy, phase.allow_only)}")
    if phase.banner is not None:
        details.append(f'banner: "{phase.banner}"')
    if phase.message is not None:
        details.append(f'message: "{phase.message}"')
    for notice in phase.notices:
        details.append(
            f"notice {notice.describe()} to {notice.to}: {notice.template} "
            f"({', '.join(notice.via)})"
        )
    if phase.on_enter:
        details.append(f"on enter: {', '.join(phase.on_enter)}")
    if phase.on_exit:
        details.append(f"on exit: {', '.join(phase.on_exit)}")
    if phase.purge:
        details.append(f"purges on entering: {', '.join(phase.purge)}")
    return lines + [f"       {line}" for line in details]


def _outcome(flow: Flow) -> list[str]:
    if flow.outcome is None:
        return ["  Outcome: none (restrictions only)"]
    what = (
        "delete the account"
        if flow.outcome.kind == "delete"
        else f"purge {', '.join(flow.outcome.categories)}"
    )
    timed = flow.phases[: flow.timed_phase_count]
    if not timed:
        when = "as soon as the case starts"
    else:
        total = sum((p.lasts for p in timed if p.lasts is not None), Duration())
        when = f"{total} after the case starts (when phase {timed[-1].name} ends)"
    lines = [f"  Outcome: {what} {when}"]
    if flow.outcome.kind == "delete":
        address = flow.address
        if address.mode == "release":
            text = "released (it may register again)"
        elif address.duration is None:
            text = "retired forever"
        else:
            text = f"retired for {address.duration}, then released"
        lines.append(f"  Address: {text}")
    return lines
