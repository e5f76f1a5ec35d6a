"""What the host reports about an account: kind, members, signals, facts. Pure and validated.

Each function returns the same object when nothing changed, so a caller can skip the write: a
signal less than the policy's resolution after the stored one, or a fact set to its current
value, costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from lapse.core.model import Account, FactEntry, Member
from lapse.errors import InvalidInput
from lapse.policy.durations import add
from lapse.policy.model import FactValue, Policy

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ROLES = ("admin", "member", "owner", "billing", "viewer")


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{what}: expected a timestamp, found {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what}: timestamp {value.isoformat()} has no time zone")
    return value


def check_email(email: str, what: str = "email") -> str:
    """Return the address lower-cased, or raise if it is not an email address."""
    if not isinstance(email, str) or not _EMAIL.match(email.strip()):
        raise InvalidInput(f"{what}: {email!r} is not an email address")
    return email.strip().lower()


def new_account(
    policy: Policy,
    *,
    account_id: str,
    kind: str,
    created_at: datetime,
    address: str | None = None,
    members: Iterable[Member] = (),
) -> Account:
    """A new account snapshot, validated against the policy."""
    if not isinstance(account_id, str) or not account_id or len(account_id) > 200:
        raise InvalidInput(f"account id: expected 1 to 200 characters, found {account_id!r}")
    _kind(policy, kind)
    _aware(created_at, f"account {account_id}: created_at")
    return Account(
        id=account_id,
        kind=kind,
        created_at=created_at,
        address=check_email(address, "address") if address else None,
        members=tuple(_member(m) for m in members),
    )


def set_kind(account: Account, policy: Policy, kind: str) -> Account:
    """Change the account's kind (a trial that became a paid account)."""
    _kind(policy, kind)
    return account if account.kind == kind else replace(account, kind=kind)


def add_member(account: Account, email: str, role: str = "member") -> Account:
    """Add a member, or change the role of an existing one."""
    member = _member(Member(email=email, role=role))
    if member in account.members:
        return account
    kept = tuple(m for m in account.members if m.email != member.email)
    return replace(account, members=(*kept, member))


def remove_member(account: Account, email: str) -> Account:
    """Remove a member; raise if there is none with that address."""
    email = check_email(email)
    kept = tuple(m for m in account.members if m.email != email)
    if len(kept) == len(account.members):
        raise InvalidInput(f"account {account.id!r} has no member {email!r}")
    return replace(account, members=kept)


def record_signal(account: Account, policy: Policy, name: str, at: datetime) -> Account:
    """Record activity; only the latest time per signal is kept, at the policy's resolution."""
    if name not in policy.signals:
        known = ", ".join(sorted(policy.signals)) or "none"
        raise InvalidInput(f"unknown signal {name!r}; the policy knows: {known}")
    _aware(at, f"signal {name}")
    seen = account.signals.get(name)
    if seen is not None and at < add(seen, policy.resolution, policy.timezone):
        return account
    return replace(account, signals={**account.signals, name: at})


def set_fact(
    account: Account, policy: Policy, name: str, value: FactValue | None, at: datetime
) -> Account:
    """Set (or with None, unset) a fact; the value must have the type the policy declares."""
    spec = policy.facts.get(name)
    if spec is None:
        known = ", ".join(sorted(policy.facts)) or "none"
        raise InvalidInput(f"unknown fact {name!r}; the policy knows: {known}")
    _aware(at, f"fact {name}")
    if value is None:
        if name not in account.facts:
            return account
        facts = dict(account.facts)
        del facts[name]
        return replace(account, facts=facts)
    value = coerce_fact(name, spec.type, value)
    current = account.facts.get(name)
    if current is not None and current.value == value and type(current.value) is type(value):
        return account
    return replace(account, facts={**account.facts, name: FactEntry(value=value, changed_at=at)})


def coerce_fact(name: str, type_: str, value: object) -> FactValue:
    """Check a reported value against the fact's type; ISO strings become timestamps."""
    if type_ == "bool":
        if isinstance(value, bool):
            return value
    elif type_ == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise InvalidInput(f"fact {name}: expected a finite number, found {value!r}")
            return value
    elif type_ == "string":
        if isinstance(value, str):
            return value
    else:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise InvalidInput(
                    f"fact {name}: expected an ISO 8601 timestamp, found {value!r}"
                ) from None
        if isinstance(value, datetime):
            return _aware(value, f"fact {name}")
    raise InvalidInput(f"fact {name}: expected a {type_}, found {value!r}")


def _kind(policy: Policy, kind: str) -> None:
    if kind not in policy.kinds:
        known = ", ".join(sorted(policy.kinds))
        raise InvalidInput(f"unknown account kind {kind!r}; the policy knows: {known}")


def _member(member: Member) -> Member:
    email = check_email(member.email, "member email")
    if member.role not in _ROLES:
        raise InvalidInput(
            f"member {email}: unknown role {member.role!r}; expected one of {', '.join(_ROLES)}"
        )
    return Member(email=email, role=member.role)
