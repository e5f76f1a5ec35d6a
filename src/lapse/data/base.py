"""The contract between lapse and the places a host keeps account data.

A connector knows some of the host's data about an account, in *locations* (a table, a remote
collection...), each of one *category* (the names policies purge: campaigns, contacts,
reports...). lapse asks it to count an account's rows, delete them (in batches, children before
parents), and export them. Three kinds ship: SQL tables in any database SQLAlchemy reaches
(`lapse.data.sql`), a signed webhook to the host (`lapse.data.webhook`), and Python callables for
embedders (`lapse.data.callables`).

Deletion is resumable and counts every row exactly once. The connector deletes one location at
a time and keeps its progress in a `Ledger` that lapse stores between batches: before a batch
goes to the host the ledger records which rows it is about to remove (`in_flight`); the next
write confirms how many went. A run that restarts after a crash finds the batch that was in
flight, finishes or confirms it, and goes on: no row is counted twice, none is missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from lapse.errors import DeliveryError

#: what a ledger keeps about the batch in flight: JSON (lists of keys, numbers, strings)
Marker: TypeAlias = "bool | int | float | str | list[Marker] | dict[str, Marker] | None"


class ConnectorError(DeliveryError):
    """A connector could not do its part (unreachable store, refused request...).

    A DeliveryError: the outbox retries the deletion or purge later, with backoff, unless the
    error is permanent (the host refused for good)."""

    code = "connector-failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """One place a connector keeps account data: a table, a remote collection, a bucket..."""

    connector: str
    name: str  # e.g. "campaigns" (table), "files" (remote store); unique within the connector
    category: str

    @property
    def label(self) -> str:
        """`connector/name`, as errors and receipts name it."""
        return f"{self.connector}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportTable:
    """One location's rows for an export: column names and a lazy stream of rows."""

    location: Location
    columns: tuple[str, ...]
    rows: Iterable[Sequence[object]]


class Ledger(Protocol):
    """The progress of one location in one deletion run, kept in lapse's store."""

    @property
    def run(self) -> str:
        """The run's id (also the receipt's): stable across restarts, for hosts to dedupe."""
        ...

    @property
    def removed(self) -> int:
        """Rows confirmed removed so far."""
        ...

    @property
    def in_flight(self) -> Marker:
        """What the last `step` said was about to be removed (None: nothing in flight)."""
        ...

    def step(self, *, add: int, in_flight: Marker) -> None:
        """Confirm `add` more rows removed and record the next batch in flight, in one write.

        Raises ConnectorError if this run lost its claim (another worker took it over)."""
        ...


class Connector(Protocol):
    """A place the host keeps account data."""

    name: str

    def locations(self) -> Sequence[Location]:
        """Where this connector keeps data, in deletion order (children before parents)."""
        ...

    def check(self) -> None:
        """Validate the configuration against the store itself (reflection, reachability);
        ConfigError naming the connector, the location and what is wrong."""
        ...

    def count(self, account_id: str, locations: Sequence[Location]) -> dict[str, int]:
        """The account's rows at each of `locations`, by location name."""
        ...

    def delete(self, account_id: str, location: Location, ledger: Ledger) -> None:
        """Remove every row of the account at `location` (in the connector's own batches),
        recording progress in `ledger`.

        Resumes from `ledger.in_flight` if a previous run stopped mid-batch; returns once the
        location holds nothing more for the account (as far as this connector can tell)."""
        ...

    def export(self, account_id: str, locations: Sequence[Location]) -> Iterator[ExportTable]:
        """The account's rows at each of `locations`, streamed (constant memory)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def by_category(locations: Sequence[Location], categories: Iterable[str] | None) -> list[Location]:
    """The locations of the given categories (all of them if None), in their order."""
    if categories is None:
        return list(locations)
    wanted = frozenset(categories)
    return [loc for loc in locations if loc.category in wanted]
