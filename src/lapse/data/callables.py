"""`CallableConnector`: account data an embedding application reaches with its own functions.

The application gives three functions per connector, each taking the account id and a location
name: `count` (rows there), `delete` (remove all of them; called again after a crash, so it must
be idempotent: deleting what is already gone is not an error) and, optionally, `export` (column
names and an iterable of rows).

Exactly-once counting without the host keeping counters: before the first delete of a location,
the connector counts the rows and records that count in the ledger as in flight; the count is
what the receipt shows, however many times `delete` has to be called after crashes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from lapse.data.base import ConnectorError, ExportTable, Ledger, Location
from lapse.errors import ConfigError, DeliveryError

CountFn = Callable[[str, str], int]
DeleteFn = Callable[[str, str], object]
ExportFn = Callable[[str, str], tuple[Sequence[str], Iterable[Sequence[object]]]]


class CallableConnector:
    """A connector made of Python functions: `count`, `delete` and optionally `export`."""

    def __init__(
        self,
        name: str,
        locations: Sequence[tuple[str, str]] | Sequence[Location],
        *,
        count: CountFn,
        delete: DeleteFn,
        export: ExportFn | None = None,
    ) -> None:
        where = f"connector {name!r}"
        if not locations:
            raise ConfigError(f"{where}: no locations registered")
        built: list[Location] = []
        for item in locations:
            if isinstance(item, Location):
                built.append(Location(connector=name, name=item.name, category=item.category))
            else:
                location, category = item
                built.append(Location(connector=name, name=location, category=category))
        names = [loc.name for loc in built]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{where}: location {dupes[0]!r} is registered twice")
        for what, fn in (("count", count), ("delete", delete), ("export", export)):
            if fn is not None and not callable(fn):
                raise ConfigError(f"{where}: `{what}` is not callable: {fn!r}")
        self.name = name
        self._locations = built
        self._count = count
        self._delete = delete
        self._export = export

    def locations(self) -> Sequence[Location]:
        """The locations, in the order they were given (the deletion order)."""
        return list(self._locations)

    def check(self) -> None:
        """Nothing to reflect: the functions were checked when the connector was built."""

    def export_problem(self) -> str | None:
        """Why this connector cannot take part in exports (no export function), or None."""
        if self._export is None:
            return (
                f"connector {self.name!r} has no export function, so an export would miss "
                f"its data ({', '.join(loc.name for loc in self._locations)}); give it "
                "`export=`"
            )
        return None

    def count(self, account_id: str, locations: Sequence[Location]) -> dict[str, int]:
        """`count(account_id, location)` for each location."""
        out = {}
        for location in locations:
            value = self._call("count", self._count, account_id, location)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConnectorError(
                    f"connector {self.name!r}: count({account_id!r}, {location.name!r}) returned "
                    f"{value!r}, expected a number of rows",
                    permanent=True,
                )
            out[location.name] = value
        return out

    def delete(self, account_id: str, location: Location, ledger: Ledger) -> None:
        """Count (once), record the count, delete everything, confirm the count."""
        pending = ledger.in_flight
        counted = pending.get("rows") if isinstance(pending, dict) else None
        if isinstance(counted, int):
            rows = counted
        else:
            rows = self.count(account_id, [location])[location.name]
            if rows == 0:
                return
            ledger.step(add=0, in_flight={"rows": rows})
        self._call("delete", self._delete, account_id, location)
        ledger.step(add=rows, in_flight=None)

    def export(self, account_id: str, locations: Sequence[Location]) -> Iterator[ExportTable]:
        """`export(account_id, location)` for each location (nothing without an export function)."""
        export = self._export
        if export is None:  # start_export refuses before this (see export_problem)
            raise ConnectorError(str(self.export_problem()), permanent=True)
        for location in locations:
            columns, rows = self._call("export", export, account_id, location)
            yield ExportTable(location=location, columns=tuple(columns), rows=rows)

    def close(self) -> None:
        """Nothing to release."""

    def _call(self, what: str, fn: Callable[[str, str], Any], account: str, loc: Location) -> Any:
        try:
            return fn(account, loc.name)
        except DeliveryError:
            raise
        except Exception as exc:
            raise ConnectorError(
                f"connector {self.name!r}: {what}({account!r}, {loc.name!r}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
