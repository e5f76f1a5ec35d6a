"""What `lapse demo` prints: where each account stands, what the next demo hour brings, and
commands to look at it all. Computed from lapse's own answers (statuses and projected
timelines), so the guide cannot promise what lapse will not do.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from lapse.core.lifecycle import position_phase
from lapse.demo.cast import Cast
from lapse.runtime.engine import Engine

#: the order of the phrases for one account at one moment
_KIND_ORDER = {"phase.enters": 0, "notice": 1, "purge": 2, "delete": 3, "case.closes": 4}


@dataclass(frozen=True, slots=True, kw_only=True)
class Upcoming:
    """One thing that will happen to one account (or that the host will report)."""

    at: datetime
    account_id: str
    text: str


def distribution(engine: Engine, account_ids: Sequence[str]) -> dict[str, list[str]]:
    """Account ids by "flow/phase" of their open cases; "deleted" and "no open case" too."""
    found: dict[str, list[str]] = defaultdict(list)
    accounts = engine.store.get_many(list(account_ids))
    for account_id in account_ids:
        account = accounts.get(account_id)
        if account is None or account.deleted_at is not None:
            if engine.store.tombstone(account_id) is not None:
                found["deleted"].append(account_id)
            continue
        if not account.cases:
            found["no open case"].append(account_id)
        for case in account.cases:
            flow = engine.policy.flows[case.flow]
            phase = position_phase(case, flow)
            found[f"{case.flow}/{phase.name if phase else '-'}"].append(account_id)
    order = [
        f"{flow.name}/{phase.name}"
        for flow in engine.policy.flows.values()
        for phase in flow.phases
    ]
    rank = {key: index for index, key in enumerate([*order, "deleted", "no open case"])}
    return dict(sorted(found.items(), key=lambda item: rank.get(item[0], len(rank))))


def upcoming(engine: Engine, cast: Cast, now: datetime, within: timedelta) -> list[Upcoming]:
    """What the cast's projected timelines and the host's script hold until `now + within`."""
    end = now + within
    found: list[Upcoming] = []
    for plan in cast.accounts:
        if not plan.role or engine.store.tombstone(plan.id) is not None:
            continue
        grouped: dict[datetime, list[str]] = defaultdict(list)
        events = engine.timeline(plan.id).events
        for event in sorted(events, key=lambda e: (e.at, _KIND_ORDER.get(e.kind, 9))):
            if not now <= event.at <= end:
                continue
            text = _phrase(event.kind, event.text, event.phase, grouped[event.at])
            if text:
                grouped[event.at].append(text)
        found.extend(
            Upcoming(at=at, account_id=plan.id, text="; ".join(texts))
            for at, texts in grouped.items()
            if texts
        )
    found.extend(
        Upcoming(at=item.at, account_id=item.account_id, text=f"the host reports: {item.text}")
        for item in cast.script
        if now <= item.at <= end
    )
    return sorted(found, key=lambda u: (u.at, u.account_id))


def _phrase(kind: str, text: str, phase: str | None, before: list[str]) -> str:
    """A short phrase for a projected event; '' for what an earlier phrase already says."""
    title, _, rest = text.partition(":")
    if kind == "delete":
        return f"deleted ({title}){_address(rest)}"
    if kind == "purge":
        return f"history purged ({rest.strip().removeprefix('purge of ')})"
    if kind == "notice":
        template = rest.strip().removeprefix("notice ").split(" to ")
        return f"email {template[0]} to {template[1] if len(template) > 1 else 'them'}"
    if kind == "phase.enters":
        return f"enters {phase} ({title})"
    if kind == "case.closes" and not before:
        return f"{title.removesuffix(' ends')} ends"
    return ""


def _address(rest: str) -> str:
    if "retire" in rest:
        return ", address retired"
    if "release" in rest:
        return ", address released"
    return ""


def clock_text(moment: datetime, start: datetime, rate: float) -> str:
    """'0:05  09:35' : real minutes:seconds from the start, and the demo's time of day."""
    real = max((moment - start).total_seconds() / rate, 0.0)
    return f"{int(real // 60)}:{int(real % 60):02d}  {moment:%H:%M}"


def render(
    *,
    engine: Engine,
    cast: Cast,
    now: datetime,
    rate: float,
    base_url: str,
    token: str | None,
    directory: str,
    lapse_command: str,
    host_rows: dict[str, int],
    within: timedelta,
) -> str:
    """The whole guide."""
    ids = [plan.id for plan in cast.accounts]
    groups = distribution(engine, ids)
    lines = [
        "",
        f"The demo: Mailwise, an email service with {len(ids)} accounts "
        f"({sum(host_rows.values()):,} rows in {len(host_rows)} tables of {directory}/host.db).",
        f"Demo time starts at {now:%Y-%m-%d %H:%M} UTC and runs {rate:g}x: "
        f"one real minute is {_span(timedelta(seconds=60 * rate))}.",
        "",
        "Where the accounts stand now (flow/phase: accounts):",
    ]
    for key, members in groups.items():
        shown = ", ".join(members[:4]) + (f", ... ({len(members)})" if len(members) > 4 else "")
        lines.append(f"  {key:38} {shown}")
    events = upcoming(engine, cast, now, within)
    real = _span(timedelta(seconds=within.total_seconds() / rate)).removeprefix("one ")
    lines += [
        "",
        f"What happens in the next {real} of real time ({_span(within)} of demo time):",
        "  real  demo   account",
    ]
    width = max((len(e.account_id) for e in events), default=10)
    for event in events:
        when = clock_text(event.at, now, rate)
        lines.append(f"  {when}  {event.account_id:{width}}  {event.text}")
    lines += ["", *commands(cast, base_url, token, directory, lapse_command, groups)]
    return "\n".join(lines)


def commands(
    cast: Cast,
    base_url: str,
    token: str | None,
    directory: str,
    lapse_command: str,
    groups: dict[str, list[str]],
) -> list[str]:
    """Ready-to-paste commands to look at the demo while it runs."""
    two = cast.by_role("two-locks").id
    warned = cast.by_role("grace-final-warning").id
    gone = cast.by_role("inactive-deleted-earlier").id
    held = cast.by_role("legal-hold").id
    auth = '-H "Authorization: Bearer $TOKEN"'
    secret = token or "<the admin token printed on the first start>"
    curl = f"curl -s {auth}"
    env = shlex.quote(f"{directory}/lapse.env")
    pasted = [
        (f"curl -s {base_url}/health", "the demo clock: now"),
        (f"{curl} '{base_url}/v1/accounts?state=locked'", "accounts by state"),
        (f"{curl} {base_url}/v1/accounts/{two}/status", "locked for two reasons"),
        (f"{curl} {base_url}/v1/accounts/{warned}/timeline", "past and projected"),
        (f"{curl} '{base_url}/v1/outbox?status=delivered'", "the emails sent"),
        (f"{curl} {base_url}/v1/outbox/1", "one email, rendered"),
        (f"{curl} {base_url}/v1/accounts/{gone}/tombstone", "a deletion and its receipt"),
        (f"{curl} {base_url}/v1/accounts/{held}/status", "waiting on a legal hold"),
        (f"export $(cat {env})", "lapse commands in this shell now see the demo"),
        (f"{lapse_command} account show {two}", ""),
        (f"{lapse_command} account show {gone}", ""),
        (f"{lapse_command} audit verify", ""),
    ]
    width = max(len(command) for command, _ in pasted)
    return [
        f"The admin UI: open {base_url}/admin in a browser and sign in with the admin token",
        f"  {secret}",
        f"(also in {directory}/admin-token): accounts by state, each account's timeline, "
        "upcoming deletions, the outbox, receipts, the audit log, and actions.",
        "",
        "Look at it from another terminal while it runs:",
        f"  export TOKEN={secret}",
        *(f"  {command:{width}}  # {note}" if note else f"  {command}" for command, note in pasted),
        f"Open {base_url}/docs for every endpoint. Ctrl-C stops the demo; "
        "`lapse demo --reset` starts it over.",
    ]


def _span(delta: timedelta) -> str:
    """'one minute', '2 hours', '2.5 days'."""
    seconds = delta.total_seconds()
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            amount = seconds / size
            if amount == 1:
                return f"one {unit}"
            return f"{amount:g} {unit}s"
    return f"{seconds:g} seconds"
