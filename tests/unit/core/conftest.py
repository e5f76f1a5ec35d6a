"""Helpers for the core's unit tests: small inline policies, accounts, times and effect filters.

Test modules import these plain functions (`from .conftest import ...`); the directory is a
package so the module names here never collide with other test directories.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from lapse.core.inputs import new_account
from lapse.core.lifecycle import notice_dispatched
from lapse.core.model import (
    Account,
    AuditEntry,
    Effect,
    HostEffect,
    Member,
    NoticeEffect,
    PurgeEffect,
    Step,
)
from lapse.policy import load_policy
from lapse.policy.model import Condition, Policy

#: the header every `policy()` document starts with; flows are appended under `flows:`
HEADER = """\
version: 7
name: core-test
timezone: {timezone}
actions: [login, view, export, send, edit, renew]
kinds: [standard, trial, test]
signals: [login, sent, api]
facts:
  active: {{type: bool, default: false}}
  contacts: {{type: number}}
  limit: {{type: number}}
  cap: {{type: number, default: 100}}
  plan: {{type: string}}
  expires: {{type: timestamp}}
  renewed: {{type: timestamp, default: '2024-01-10T00:00:00+00:00'}}
events: [note]
categories: [reports, contacts, campaigns]
"""

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ADMIN = "admin@example.com"
MEMBER = "member@example.com"
OWNER = "owner@example.com"


def load(text: str) -> Policy:
    """A whole policy document from a (dedented) string; fails the test on any problem."""
    return load_policy(textwrap.dedent(text).strip("\n") + "\n", "test.yaml")


def policy(flows: str, *, timezone: str = "UTC") -> Policy:
    """HEADER plus the `flows` snippet (written at column 0, dedented) under `flows:`."""
    body = textwrap.dedent(flows).strip("\n")
    indented = "".join(f"  {line}\n" if line else "\n" for line in body.splitlines())
    return load_policy(HEADER.format(timezone=timezone) + "flows:\n" + indented, "test.yaml")


def condition(text: str, *, timezone: str = "UTC") -> tuple[Policy, Condition]:
    """A policy with one flow `f` that starts when `text` (a one-line YAML condition) holds."""
    # an open-ended phase: a flow that ended the moment it started would restart at once
    pol = policy(
        f"f:\n  reason: r\n  starts_when: {text}\n  phases: [{{name: open}}]\n", timezone=timezone
    )
    cond = pol.flows["f"].starts_when
    assert cond is not None
    return pol, cond


def account(
    pol: Policy,
    *,
    kind: str = "standard",
    created: datetime = T0,
    address: str | None = OWNER,
    members: Iterable[Member] | None = None,
    account_id: str = "acct-1",
) -> Account:
    """A new account: by default one admin and one member, the owner as primary address."""
    if members is None:
        members = (Member(email=ADMIN, role="admin"), Member(email=MEMBER))
    return new_account(
        pol, account_id=account_id, kind=kind, created_at=created, address=address, members=members
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def days(n: float) -> timedelta:
    """`n` days as a timedelta."""
    return timedelta(days=n)


def notices(step: Step | Iterable[Effect]) -> list[NoticeEffect]:
    """The notice effects of a step (or of a list of effects)."""
    effects = step.effects if isinstance(step, Step) else step
    return [e for e in effects if isinstance(e, NoticeEffect)]


def kinds_of(effects: Step | Iterable[Effect]) -> list[str]:
    """Short names of effects, in order: 'notice:<key>', 'enter:<name>', 'purge:a,b', 'delete'."""
    out = []
    for effect in effects.effects if isinstance(effects, Step) else effects:
        if isinstance(effect, NoticeEffect):
            out.append(f"notice:{effect.key}")
        elif isinstance(effect, HostEffect):
            out.append(f"{effect.trigger}:{effect.name}")
        elif isinstance(effect, PurgeEffect):
            out.append("purge:" + ",".join(effect.categories))
        else:
            out.append("delete")
    return out


def audit_kinds(step: Step) -> list[str]:
    """The kinds of a step's audit entries, in order."""
    return [entry.kind for entry in step.audit]


def dispatch_all(acct: Account, pol: Policy, now: datetime, at: datetime | None = None) -> Step:
    """Report every created, undispatched notice as dispatched at `at` (default `now`)."""
    step = Step(account=acct)
    effects: list[Effect] = []
    audit: list[AuditEntry] = []
    while True:
        pending = [
            (case.id, record.key)
            for case in step.account.cases
            for record in case.notices
            if record.dispatched_at is None
        ]
        if not pending:
            return Step(
                account=step.account,
                effects=tuple(effects),
                audit=tuple(audit),
                next_due_at=step.next_due_at,
            )
        case_id, key = pending[0]
        step = notice_dispatched(
            step.account, pol, now, case_id=case_id, key=key, at=at if at is not None else now
        )
        effects.extend(step.effects)
        audit.extend(step.audit)
