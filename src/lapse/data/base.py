"""The contract between lapse and the places a host keeps account data.

A connector knows some of the host's data about an account, grouped in *categories* (the names
policies purge: campaigns, contacts, reports...). lapse asks it to count, delete (in batches,
idempotently, children before parents), verify that nothing is left, and export. Three kinds
ship: SQL tables in any database SQLAlchemy reaches, a signed webhook to the host, and a Python
callable for embedders.

Deletion is resumable: every call only removes what is still there, and progress is recorded by
lapse between batches, so a crash at any point is followed by a run that finishes the job and a
receipt that counts every row exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lapse.errors import LapseError


class ConnectorError(LapseError):
    """A connector could not do its part (unreachable store, refused request...); retried."""

    code = "connector-failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """One place a connector keeps account data: a table, a remote collection, a bucket..."""

    connector: str
    name: str  # e.g. "campaigns" (table), "files" (remote store)
    category: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Removed:
    """Rows removed at one location by one batch."""

    location: Location
    rows: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportTable:
    """One location's rows for an export: column names and a lazy stream of rows."""

    location: Location
    columns: tuple[str, ...]
    rows: Iterable[Sequence[object]]


#: called after each batch so progress can be recorded (the receipt survives a crash)
Progress = Callable[[Removed], None]


class Connector(Protocol):
    """A place the host keeps account data."""

    name: str

    def locations(self) -> Sequence[Location]:
        """Where this connector keeps data, in deletion order (children before parents)."""
        ...

    def count(self, account_id: str, categories: frozenset[str] | None = None) -> dict[str, int]:
        """Rows per location name for the account (only `categories` if given)."""
        ...

    def delete(
        self,
        account_id: str,
        categories: frozenset[str] | None,
        *,
        batch_size: int,
        progress: Progress,
    ) -> None:
        """Delete the account's rows (only `categories` if given) in batches, calling
        `progress` after each committed batch. Idempotent: rows already gone are skipped."""
        ...

    def export(self, account_id: str) -> Iterator[ExportTable]:
        """Every location's rows for the account, streamed."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What a deletion or purge did, per connector and location; hashed into the audit log."""

    account_id: str
    case_id: str
    flow: str
    kind: str  # "delete" or "purge"
    categories: tuple[str, ...]  # empty for a full deletion
    policy_version: str
    started_at: str  # ISO 8601 UTC
    finished_at: str
    removed: dict[str, dict[str, int]] = field(default_factory=dict)  # connector -> name -> rows
    verified: bool = False  # every location counted zero rows afterwards
    lapse_rows: dict[str, int] = field(default_factory=dict)  # lapse's own rows erased
    hash: str = ""  # sha256 of the canonical receipt without this field
