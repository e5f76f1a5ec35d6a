"""What the admin pages show, gathered from the store's listings and the pure core: one query per
listing and per page of accounts, never one per stored account.

A page of accounts is loaded in one round trip (`Store.get_many`) and each account's status is
computed by the core, so deadlines and time left are exact (notice pushes included) without
the store having to keep them. The upcoming page projects only the accounts whose next due time
falls in its window: an account due later has nothing happening before then.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from lapse.admin.format import Clock
from lapse.core.decisions import status as core_status
from lapse.core.model import Account, CaseStatus, Status, Timeline
from lapse.core.timeline import timeline as project
from lapse.data import receipts as receipt_checks
from lapse.errors import InvalidInput
from lapse.policy.model import Flow, Policy
from lapse.store.base import AccountSummary, Store, StoredReceipt

#: the upcoming page's choices: which projected events it lists
UPCOMING_KINDS: dict[str, frozenset[str]] = {
    "warnings-and-deletions": frozenset({"notice", "delete", "purge"}),
    "warnings": frozenset({"notice"}),
    "deletions": frozenset({"delete", "purge"}),
    "everything": frozenset(
        {"notice", "delete", "purge", "phase.enters", "case.opens", "case.closes", "host-effect"}
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRow:
    """One line of the accounts list: the stored summary and the open cases as of now."""

    summary: AccountSummary
    cases: tuple[CaseStatus, ...]
    next_deadline: CaseStatus | None  # the open case whose deadline comes first


def account_rows(
    store: Store, policy: Policy, summaries: Sequence[AccountSummary], now: datetime
) -> list[AccountRow]:
    """The page's accounts with their cases and next deadline (one query for the page)."""
    accounts = store.get_many([s.id for s in summaries])
    rows = []
    for summary in summaries:
        account = accounts.get(summary.id)
        cases = core_status(account, policy, now).cases if account is not None else ()
        timed = [c for c in cases if c.deadline is not None]
        first = min(timed, key=lambda c: c.deadline or now) if timed else None
        rows.append(AccountRow(summary=summary, cases=cases, next_deadline=first))
    return rows


def positions(policy: Policy, flow: str | None, phase: str | None) -> list[tuple[str, int]] | None:
    """The (flow, phase index) pairs a phase filter means: that phase of that flow, or of every
    flow that has a phase of that name; None without a phase filter. InvalidInput if unknown."""
    if not phase:
        return None
    flows = [policy.flows[flow]] if flow else list(policy.flows.values())
    found = [(f.name, p.index) for f in flows for p in f.phases if p.name == phase]
    if not found and not any(p.name == phase for f in policy.flows.values() for p in f.phases):
        raise InvalidInput(f"phase: no flow of the policy has a phase {phase!r}")
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseCount:
    """How many open cases one phase of a flow holds (phase None: past its last phase)."""

    phase: str | None
    index: int
    count: int


def phase_counts(store: Store, policy: Policy) -> list[tuple[Flow, list[PhaseCount]]]:
    """Open cases per phase of every flow, in the policy's order (one grouped query)."""
    counted = store.count_cases()
    out = []
    for flow in policy.flows.values():
        rows = [
            PhaseCount(phase=p.name, index=p.index, count=counted.get((flow.name, p.index), 0))
            for p in flow.phases
        ]
        past = counted.get((flow.name, len(flow.phases)), 0)
        if past:
            rows.append(PhaseCount(phase=None, index=len(flow.phases), count=past))
        out.append((flow, rows))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class UpcomingItem:
    """One projected event of one account."""

    at: datetime
    account_id: str
    state: str
    kind: str
    flow: str
    phase: str | None
    text: str


def upcoming(
    store: Store,
    policy: Policy,
    now: datetime,
    until: datetime,
    kinds: Collection[str],
    *,
    accounts: int = 1000,
) -> tuple[list[UpcomingItem], bool]:
    """The projected events of `kinds` between now and `until`, earliest first, over at most
    `accounts` accounts (those due first); True with them if more accounts were due."""
    due = store.accounts_due(until, limit=accounts + 1)
    capped = len(due) > accounts
    ids = [account_id for account_id, _ in due[:accounts]]
    items: list[UpcomingItem] = []
    for chunk in _chunks(ids, 200):
        for account in store.get_many(chunk).values():
            items.extend(_events(account, policy, now, until, kinds))
    items.sort(key=lambda item: (item.at, item.account_id))
    return items, capped


def _events(
    account: Account, policy: Policy, now: datetime, until: datetime, kinds: Collection[str]
) -> Iterable[UpcomingItem]:
    if account.deleted_at is not None:
        return
    state = core_status(account, policy, now).state
    for event in project(account, policy, now).events:
        if event.at > until:
            break
        if event.kind in kinds and event.at >= now:
            yield UpcomingItem(
                at=event.at,
                account_id=account.id,
                state=state,
                kind=event.kind,
                flow=event.flow,
                phase=event.phase,
                text=event.text,
            )


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True, kw_only=True)
class Headline:
    """The one sentence a support person reads first on an account page."""

    tone: str  # "danger", "warn", "hold", "ok"
    text: str


def headline(status: Status, timeline: Timeline, clock: Clock) -> Headline:
    """'Deletion on 8 April 2026 (6 days left).', 'The deletion waits: a legal hold is on.', or
    what would start, and when, if nothing changes."""
    titles = {outlook.flow: outlook.title for outlook in timeline.flows}
    if status.deleted_at is not None:
        return Headline(tone="danger", text=f"Deleted on {clock.date(status.deleted_at)}.")
    for case in status.cases:
        if case.destruct == "held":
            what = "deletion" if (case.outcome or "").startswith("delete") else "data purge"
            return Headline(
                tone="hold",
                text=f"The {what} ({case.title}) waits: a legal hold is on. "
                "It goes ahead only once the hold is lifted.",
            )
    for event in timeline.events:
        when = f"{clock.date(event.at)} ({clock.left(event.at)})"
        if event.kind == "delete":
            return Headline(tone="danger", text=f"Deletion on {when}, if nothing changes.")
        if event.kind == "purge":
            return Headline(tone="warn", text=f"Data purge on {when}, if nothing changes.")
        if event.kind == "held":
            return Headline(
                tone="hold",
                text=f"On {clock.date(event.at)} the outcome of "
                f"{titles.get(event.flow, event.flow)} will wait: a legal hold is on.",
            )
    if status.cases:
        open_titles = ", ".join(c.title for c in status.cases)
        return Headline(
            tone="warn",
            text=f"{status.state.capitalize()} ({open_titles}); no deletion is planned.",
        )
    for event in timeline.events:
        if event.kind == "case.opens":
            title = titles.get(event.flow, event.flow)
            return Headline(
                tone="ok",
                text=f"Active. If nothing changes, {title} starts on {clock.date(event.at)} "
                f"({clock.relative(event.at)}).",
            )
    return Headline(tone="ok", text="Active; nothing is planned.")


def receipt_problems(store: Store, receipt: StoredReceipt) -> list[str]:
    """What is wrong with a receipt: its hash against its content, and against the hash its
    audit entry (the account's `account.tombstoned` or `purge.receipt`) carries."""
    audited: str | None = None
    found = False
    after: int | None = None
    while not found:
        records = store.audit(account_id=receipt.account_id, after=after, limit=1000)
        for record in records:
            detail = record.entry.detail
            if (
                record.entry.kind in receipt_checks.RECEIPT_EVENTS
                and detail.get("receipt") == receipt.id
            ):
                value = detail.get("receipt_hash")
                audited = value if isinstance(value, str) else None
                found = True
                break
        if len(records) < 1000:
            break
        after = records[-1].seq
    problems = receipt_checks.check(receipt.body, audited)
    if receipt.hash != receipt.body.get("hash"):
        problems.append(f"its stored hash {receipt.hash} is not the one in its body")
    if not found:
        problems.append("no audit entry records it")
    return problems


def hash_ok(receipt: StoredReceipt) -> bool:
    """True if the receipt's content hashes to its stated hash (the list's quick check)."""
    return not receipt_checks.check(receipt.body) and receipt.hash == receipt.body.get("hash")


def after_deadline(case: CaseStatus, policy: Policy) -> str:
    """What happens when the case's current deadline passes: 'then phase locked', 'then the
    deletion', 'then phase termination (the deletion may run from then on)'."""
    flow = policy.flows.get(case.flow)
    if flow is None or case.phase is None or case.deadline is None:
        return ""
    outcome = outcome_words(flow)
    following = case.phase_number  # the next phase's index (phase_number is 1-based)
    if following < len(flow.phases):
        text = f"then phase {flow.phases[following].name}"
        if following >= flow.timed_phase_count and outcome:
            text += f" (the {outcome} may run from then on)"
        return text
    return f"then the {outcome}" if outcome else "then its last phase is over"


def outcome_words(flow: Flow) -> str:
    """'deletion', 'purge of contacts, reports', or '' for a flow without an outcome."""
    if flow.outcome is None:
        return ""
    if flow.outcome.kind == "delete":
        return "deletion"
    return f"purge of {', '.join(flow.outcome.categories)}"


def opened_by(text: str) -> str:
    """'condition' -> 'automatically: its start condition held', 'event:x' -> 'by the event
    x', 'admin:ann' -> 'by ann (by hand)'."""
    if text == "condition":
        return "automatically: its start condition held"
    kind, _, rest = text.partition(":")
    if kind == "event":
        return f"by the event {rest}"
    if kind == "admin":
        return f"by {rest}, by hand"
    return text
