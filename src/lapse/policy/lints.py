"""Safety lints: policies that are valid but probably wrong. Errors unless waived with `waive:`.

Every offender is reported (not just the first), each at the place in the document it comes from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from lapse.errors import Problem
from lapse.policy.model import (
    AccountAge,
    AllOf,
    AnyOf,
    Condition,
    Flow,
    NoActivity,
    Phase,
    Policy,
    SinceFact,
)
from lapse.policy.source import listing

#: recipients whose notice counts as a warning before a deletion or purge: anyone, the owner too
#: (a personal account's only reader is its primary address)
_WARNED = ("admins", "members", "owner")


class Locator(Protocol):
    """Where paths are in the source document (the loader's `Source` is one)."""

    def problem(self, path: str, message: str, *, code: str, severity: str) -> Problem:
        """A Problem at `path`."""
        ...

    def item_path(self, list_path: str, value: object) -> str:
        """The path of the item equal to `value` in the list at `list_path`."""
        ...


class _Unplaced:
    """A Locator for a policy without its source text: problems carry paths but no lines."""

    def __init__(self, source: str) -> None:
        self.source = source

    def problem(self, path: str, message: str, *, code: str, severity: str) -> Problem:
        return Problem(
            source=self.source,
            line=None,
            column=None,
            path=path,
            message=message,
            code=code,
            severity=severity,
        )

    def item_path(self, list_path: str, value: object) -> str:
        return list_path


def lint_policy(policy: Policy, locator: Locator | None = None) -> list[Problem]:
    """Every lint of every flow of a loaded policy, waived ones with severity 'waived'."""
    where = locator or _Unplaced(policy.source)
    out = []
    for flow in policy.flows.values():
        out += lint_flow(
            flow, actions=policy.action_order, policy_waive=policy.waive, locator=where
        )
    return out


def lint_flow(
    flow: Flow,
    *,
    actions: Sequence[str] | None,
    policy_waive: frozenset[str],
    locator: Locator,
) -> list[Problem]:
    """The lints of one flow. `actions` None: the policy's actions are unknown (not checked)."""
    waived = flow.waive | policy_waive
    return [
        locator.problem(
            path,
            message,
            code=code,
            severity="waived" if code in waived else "error",
        )
        for code, path, message in _findings(flow, actions, locator)
    ]


def _findings(
    flow: Flow, actions: Sequence[str] | None, locator: Locator
) -> Iterator[tuple[str, str, str]]:
    yield from _unknown_actions(flow, actions, locator)
    yield from _unreachable_phases(flow)
    yield from _deletion_without_notice(flow)
    yield from _notice_leads(flow)
    yield from _irreversible_with_stop(flow)
    yield from _banner_without_login(flow, actions)
    yield from _instant_cycle(flow)


def _can_hold_when_rearmed(cond: Condition) -> bool:
    """Whether `cond` may hold at the very moment its flow re-arms (time atoms restart then)."""
    if isinstance(cond, NoActivity | AccountAge | SinceFact):
        return cond.duration.is_zero
    if isinstance(cond, AllOf):
        return all(_can_hold_when_rearmed(item) for item in cond.items)
    if isinstance(cond, AnyOf):
        return any(_can_hold_when_rearmed(item) for item in cond.items)
    return True  # a fact comparison, or a negation: may hold at any moment


def _instant_cycle(flow: Flow) -> Iterator[tuple[str, str, str]]:
    """A condition-started flow that completes the moment it opens would open again at once.

    Not waivable (the code is not a lint name): the flow would restart on every evaluation.
    """
    if flow.starts_when is None or flow.timed_phase_count < len(flow.phases):
        return  # event-started, or it stays in an open-ended phase until stopped
    if flow.outcome is not None and flow.outcome.kind == "delete":
        return  # the account is gone afterwards
    if any(p.lasts is not None and not p.lasts.is_zero for p in flow.phases):
        return  # each round takes time: a recurring flow
    if not _can_hold_when_rearmed(flow.starts_when):
        return  # its time conditions count again from the close: a recurring flow
    yield (
        "instant-cycle",
        flow.path,
        f"flow {flow.name!r} would end the moment it starts and start again at once (its start "
        "condition still holds): give it a phase with a duration, an open-ended phase, or the "
        "outcome delete",
    )


def _unknown_actions(
    flow: Flow, actions: Sequence[str] | None, locator: Locator
) -> Iterator[tuple[str, str, str]]:
    if actions is None:
        return
    known = f"declared actions: {listing(actions)}" if actions else "no actions are declared"
    for phase in flow.phases:
        for key, names in (("deny", phase.deny), ("allow_only", phase.allow_only or ())):
            for name in sorted(set(names) - set(actions)):
                path = locator.item_path(f"{phase.path}.{key}", name)
                yield "unknown-action", path, f"unknown action {name!r}; {known}"


def _reachable(flow: Flow) -> tuple[Phase, ...]:
    """The phases a case can enter: up to and including the first open-ended one."""
    return flow.phases[: flow.timed_phase_count + 1]


def _unreachable_phases(flow: Flow) -> Iterator[tuple[str, str, str]]:
    reachable = _reachable(flow)
    for phase in flow.phases[len(reachable) :]:
        yield (
            "unreachable-phase",
            phase.path,
            f"phase {phase.name!r} can never be entered: it follows the open-ended phase "
            f"{reachable[-1].name!r}",
        )


def _warned(phases: Sequence[Phase]) -> bool:
    return any(notice.to in _WARNED for phase in phases for notice in phase.notices)


def _deletion_without_notice(flow: Flow) -> Iterator[tuple[str, str, str]]:
    reachable = _reachable(flow)
    for index, phase in enumerate(reachable):
        # a phase purges when it is entered; its own notices count (they go out on entering too)
        if phase.purge and not _warned(reachable[: index + 1]):
            yield (
                "deletion-without-notice",
                f"{phase.path}.purge",
                f"phase {phase.name!r} purges {listing(phase.purge)} without any notice before it",
            )
    if flow.outcome is not None and not _warned(flow.phases[: flow.timed_phase_count]):
        yield (
            "deletion-without-notice",
            flow.outcome.path,
            f"outcome {flow.outcome.kind} runs without any notice before it",
        )


def _notice_leads(flow: Flow) -> Iterator[tuple[str, str, str]]:
    for phase in flow.phases:
        if phase.lasts is None:
            continue
        for notice in phase.notices:
            # months vary: warn when the lead can be longer than the phase can be short
            if notice.at != "start" and notice.offset.max_seconds() > phase.lasts.min_seconds():
                yield (
                    "notice-lead-exceeds-phase",
                    f"{notice.path}.at",
                    f"notice {notice.describe()!r} can be longer than its phase ({phase.lasts})",
                )


def _irreversible_with_stop(flow: Flow) -> Iterator[tuple[str, str, str]]:
    if not flow.irreversible:
        return
    for key, present in (("stops_when", flow.stops_when is not None), ("stops_on", flow.stops_on)):
        if present:
            yield (
                "irreversible-with-stop",
                f"{flow.path}.{key}",
                f"an irreversible flow cannot have {key}: nothing stops it",
            )


def _banner_without_login(
    flow: Flow, actions: Sequence[str] | None
) -> Iterator[tuple[str, str, str]]:
    # without a `login` action nothing gates logging in, so the banner can always be seen
    if actions is not None and "login" not in actions:
        return
    for phase in flow.phases:
        if phase.banner is not None and phase.denies(frozenset({"login"})):
            yield (
                "banner-without-login",
                f"{phase.path}.banner",
                f"phase {phase.name!r} shows a banner but denies login, so nobody can see it",
            )
