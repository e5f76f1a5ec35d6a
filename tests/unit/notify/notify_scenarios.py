"""Real notices for the notify tests: each preset run through the core until a template is due.

Driving the actual core (instead of hand-built effects) keeps the tests honest about what the
dispatcher will pass: the effect, the account snapshot at send time, and the policy. A plain
module with a distinctive name (not conftest) so test modules can import it unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from lapse.core.inputs import new_account, set_fact
from lapse.core.lifecycle import advance, apply_event, notice_dispatched
from lapse.core.model import Account, Member, NoticeEffect, Step
from lapse.policy import load_preset
from lapse.policy.model import Policy

T0 = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
ADMIN = "admin@acme.example"
OWNER = "owner@acme.example"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One notice as the dispatcher sees it: the effect, the account and policy, and now."""

    effect: NoticeEffect
    account: Account
    policy: Policy
    now: datetime


def _start(flow: str, policy: Policy) -> tuple[Account, datetime, str | None]:
    """A fresh account of the right kind and what makes `flow` open: (account, now, event)."""

    def make(kind: str) -> Account:
        return new_account(
            policy,
            account_id="acme-42",
            kind=kind,
            created_at=T0,
            address=OWNER,
            members=(Member(email=ADMIN, role="admin"),),
        )

    later = T0 + timedelta(days=40)
    if flow == "inactivity":
        return make("standard"), T0 + timedelta(days=365), None
    if flow == "expiry":
        return set_fact(make("personal"), policy, "subscription_expires_at", later, T0), later, None
    if flow == "payment-lock":
        return make("standard"), later, "payment_failed"
    if flow == "contact-limit-lock":
        acct = set_fact(make("standard"), policy, "plan_contact_limit", 1000, T0)
        return set_fact(acct, policy, "contacts", 1250, later), later, None
    if flow == "bounce-rate-lock":
        return set_fact(make("standard"), policy, "bounce_rate", 0.09, later), later, None
    if flow == "trial-expiry":
        return set_fact(make("trial"), policy, "trial_ends_at", later, T0), later, None
    raise AssertionError(f"no starter for flow {flow!r}")


@cache
def _preset(name: str) -> Policy:
    return load_preset(name)  # policies are immutable: load each preset once per session


PRESET_OF = {
    "inactivity": "inactivity-cleanup",
    "expiry": "staged-expiry",
    "payment-lock": "account-locks",
    "contact-limit-lock": "account-locks",
    "bounce-rate-lock": "account-locks",
    "trial-expiry": "account-locks",
}


@cache  # scenarios are immutable values; each one is computed once per session
def run_until(flow: str, template: str, *, late: timedelta = timedelta(0)) -> Scenario:
    """Run `flow`'s preset on time (every notice dispatched when created) until `template` is due.

    With `late`, the scheduler and transport are down for that long when the notice falls due:
    the scenario's `now` is that much after the due time, as after an outage.
    """
    policy = _preset(PRESET_OF[flow])
    account, start, event = _start(flow, policy)

    def evaluate(acct: Account, at: datetime, first: bool) -> Step:
        if first and event:
            return apply_event(acct, policy, event, start, at)
        return advance(acct, policy, at)

    before, now, first = account, start, True
    step = evaluate(before, now, first)
    for _ in range(1000):
        for effect in step.effects:
            if not isinstance(effect, NoticeEffect):
                continue
            if effect.template == template and effect.flow == flow:
                if late:
                    # the same step, processed `late` after the notice fell due (an outage)
                    now = effect.due_at + late
                    step = evaluate(before, now, first)
                    effect = next(
                        e
                        for e in step.effects
                        if isinstance(e, NoticeEffect) and e.template == template
                    )
                return Scenario(effect=effect, account=step.account, policy=policy, now=now)
            step = notice_dispatched(
                step.account, policy, now, case_id=effect.case_id, key=effect.key, at=now
            )
        before, first = step.account, False
        due = step.next_due_at
        if due is None:
            break
        now = max(due, now)
        step = evaluate(before, now, first)
    raise AssertionError(f"{flow}: template {template!r} never became due")


#: (flow, template) of every notice the three presets send
PRESET_NOTICES = [
    ("inactivity", "inactivity-grace-started"),
    ("inactivity", "inactivity-final-warning"),
    ("expiry", "expiry-grace-started"),
    ("expiry", "expiry-locked"),
    ("expiry", "expiry-final-warning"),
    ("payment-lock", "lock-started"),
    ("payment-lock", "lock-retention-warning"),
    ("contact-limit-lock", "lock-started"),
    ("contact-limit-lock", "lock-retention-warning"),
    ("bounce-rate-lock", "lock-started"),
    ("bounce-rate-lock", "lock-retention-warning"),
    ("trial-expiry", "trial-expired"),
    ("trial-expiry", "trial-retention-warning"),
]
