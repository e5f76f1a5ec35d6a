"""The one exception hierarchy of lapse: every error a user can cause is a `LapseError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class LapseError(Exception):
    """Root of every error lapse raises on purpose."""

    #: a short machine-readable code, used as the problem type over HTTP
    code = "lapse-error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One problem found in a policy document: where, what was found, what was expected."""

    source: str
    line: int | None
    column: int | None
    path: str
    message: str
    code: str = "invalid"
    severity: str = "error"  # "error", or "waived" for a lint the policy waives explicitly

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        path = f" {self.path}:" if self.path else ""
        tag = f" [{self.code}]" if self.code != "invalid" else ""
        prefix = "waived: " if self.severity == "waived" else ""
        return f"{where}:{path} {prefix}{self.message}{tag}"


class PolicyError(LapseError):
    """A policy document has errors; nothing of it was loaded."""

    code = "invalid-policy"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        head = f"{count} error{'s' if count != 1 else ''} in policy"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class UnknownAccount(LapseError):
    """No account with this id exists."""

    code = "unknown-account"


class AccountExists(LapseError):
    """An account with this id already exists."""

    code = "account-exists"


class AccountDeleted(LapseError):
    """The account was deleted; only its tombstone remains."""

    code = "account-deleted"


class AddressRetired(LapseError):
    """The address belonged to a deleted account whose flow retires addresses."""

    code = "address-retired"


class UnknownAction(LapseError):
    """The action is not one the policy gates."""

    code = "unknown-action"


class InvalidInput(LapseError):
    """A value reported to lapse is malformed (bad fact type, naive timestamp, unknown name...)."""

    code = "invalid-input"


class CaseNotFound(LapseError):
    """No open case matches."""

    code = "case-not-found"


class IrreversibleCase(LapseError):
    """The case belongs to an irreversible flow; nothing can stop it."""

    code = "irreversible"


class Conflict(LapseError):
    """The request contradicts the current state (for example a flow that is already open)."""

    code = "conflict"


class DeliveryError(LapseError):
    """A transport could not deliver (SMTP refused, webhook timed out...); retried with backoff."""

    code = "delivery-failed"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # no point retrying (e.g. the recipient address is invalid)


class ConfigError(LapseError):
    """The configuration is invalid or unsafe (says which setting and why)."""

    code = "invalid-config"


class NotFound(LapseError):
    """Something other than an account (an outbox row, an API token...) does not exist."""

    code = "not-found"


class TooLarge(LapseError):
    """A request exceeds a configured limit (body size, batch length); nothing was read further."""

    code = "too-large"


class PolicyMismatch(ConfigError):
    """The policy a process was started with is not the store's active policy, and applying it
    would move open cases: that takes an explicit `lapse policy apply`."""

    code = "policy-mismatch"


class MigrationBlocked(Conflict):
    """A policy cannot be applied: open cases are in flows or phases the new version lacks."""

    code = "migration-blocked"
