"""`ConnectorDataHandler`: deletions, purges and exports across every registered connector.

The engine calls `delete` / `purge` from the outbox dispatcher when a case's outcome (or a
phase) asks for it. A run goes connector by connector (in registration order) and location by
location (each connector's deletion order: children before parents), recording progress in
lapse's store between batches. When every location is done it counts again: anything left (the
host wrote rows meanwhile) sends those locations round once more, up to `max_passes`; a run
that cannot empty a location fails and the outbox retries it later. The result, with each
location's rows, times and the verification, becomes the receipt the engine seals and audits.

A run is keyed by its receipt id (one per account for deletions, one per case and phase for
purges) and claimed by one worker at a time, so a crashed run is resumed, never run twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from lapse.core.model import DeleteEffect, PurgeEffect
from lapse.data.base import Connector, ConnectorError, ExportTable, Location, Marker, by_category
from lapse.data.receipts import iso, receipt_id
from lapse.errors import ConfigError, Conflict, LapseError
from lapse.runtime.channels import DataHandler
from lapse.store.base import DataProgress, DataRun, StaleWrite

if TYPE_CHECKING:
    from lapse.policy.model import Policy
    from lapse.store.base import Store

log = structlog.get_logger("lapse.data")

#: the least a run's claim lasts; every progress write extends it, so it lapses only when the
#: worker died (another then resumes the run)
MIN_LEASE = timedelta(seconds=1)
#: how long to wait for a run still claimed by another worker before leaving it for later
TAKEOVER_WAIT = 2.0


class _Ledger:
    """One location's progress in one run, saved to the store at every step."""

    def __init__(
        self,
        handler: ConnectorDataHandler,
        run_id: str,
        progress: DataProgress,
        now: Callable[[], datetime],
    ) -> None:
        self._handler = handler
        self._run = run_id
        self.progress = progress
        self._now = now

    @property
    def run(self) -> str:
        """The run's id."""
        return self._run

    @property
    def removed(self) -> int:
        """Rows confirmed removed so far."""
        return self.progress.removed

    @property
    def in_flight(self) -> Marker:
        """The batch under way, as the connector recorded it."""
        value: Marker = self.progress.in_flight
        return value

    def step(self, *, add: int, in_flight: Marker) -> None:
        """Confirm `add` rows and record the next batch, in one write."""
        if add < 0:
            raise ConnectorError(f"a connector reported {add} rows removed", permanent=True)
        current = self.progress
        if add == 0 and in_flight == current.in_flight and current.started_at is not None:
            return
        self.save(
            replace(
                current,
                removed=current.removed + add,
                in_flight=in_flight,
                started_at=current.started_at or self._now(),
            )
        )

    def save(self, progress: DataProgress) -> None:
        """Store `progress` (extending the run's claim)."""
        self._handler._save(self._run, progress)
        self.progress = progress


class ConnectorDataHandler(DataHandler):
    """Deletes, purges and exports an account's data through the registered connectors."""

    def __init__(
        self,
        connectors: Sequence[Connector],
        *,
        max_passes: int = 3,
        lease: timedelta | None = None,
    ) -> None:
        names = [c.name for c in connectors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"connector names must be unique: {dupes[0]!r} is registered twice")
        self.connectors = tuple(connectors)
        self.max_passes = max_passes
        self._lease = lease  # None: the engine's claim lease
        self.lease = lease or timedelta(minutes=1)
        self._store: Store | None = None
        self._now: Callable[[], datetime] | None = None
        self._worker = "lapse"
        self._policy: Mapping[str, str] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> ConnectorDataHandler:
        """The handler for the connectors a YAML or JSON file describes (see lapse.data.config)."""
        from lapse.data.config import load_connectors

        return cls(load_connectors(path))

    def attach(
        self,
        *,
        store: Store,
        now: Callable[[], datetime],
        policy: Policy,
        worker: str,
        lease: timedelta,
    ) -> None:
        """Called by the engine it serves: where to keep progress, the clock, the worker id,
        and how long a claim on a run lasts without a progress write."""
        if self._lease is None:
            self.lease = max(lease, MIN_LEASE)
        self._store = store
        self._now = now
        self._worker = worker
        self._policy = {"name": policy.name, "version": policy.version, "digest": policy.digest}

    def check(self, policy: Policy | None = None) -> None:
        """Validate every connector against its store, and (given the policy) that each purge
        removes whole subtrees: a purged table's children must be purged with it."""
        problems: list[str] = []
        for connector in self.connectors:
            try:
                connector.check()
                locations = connector.locations()
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            names = [loc.name for loc in locations]
            for name in sorted({n for n in names if names.count(n) > 1}):
                problems.append(f"connector {connector.name!r}: location {name!r} appears twice")
        if problems:
            raise ConfigError("data connectors:\n  " + "\n  ".join(problems))
        if policy is not None:
            for categories in purge_sets(policy):
                problems.extend(self._purge_problems(categories))
        if problems:
            raise ConfigError("data connectors:\n  " + "\n  ".join(dict.fromkeys(problems)))

    def _purge_problems(self, categories: frozenset[str]) -> list[str]:
        problems = []
        for connector in self.connectors:
            children_of = getattr(connector, "children", None)
            if children_of is None:
                continue
            for location in by_category(connector.locations(), categories):
                for child in children_of(location.name):
                    if child.category not in categories:
                        problems.append(
                            f"connector {connector.name!r}: a purge of "
                            f"{', '.join(sorted(categories))} removes {location.name!r}, but its "
                            f"child table {child.name!r} (category {child.category!r}) is not "
                            "purged with it: its rows would block the purge or be orphaned"
                        )
        return problems

    def close(self) -> None:
        """Close every connector."""
        for connector in self.connectors:
            connector.close()

    def locations(self) -> list[Location]:
        """Every registered location, connector by connector, in deletion order."""
        return [loc for c in self.connectors for loc in c.locations()]

    # --- deletion and purge -----------------------------------------------------------------

    def delete(self, effect: DeleteEffect, at: datetime) -> Mapping[str, object]:
        """Delete every registered row of the account; the data part of the receipt."""
        run = DataRun(
            id=receipt_id("delete", effect.account_id, effect.case_id),
            account_id=effect.account_id,
            case_id=effect.case_id,
            flow=effect.flow,
            kind="delete",
            categories=(),
            started_at=at,
        )
        return self._run(run, None)

    def purge(self, effect: PurgeEffect, at: datetime) -> Mapping[str, object]:
        """Delete the account's rows of the named categories; the data part of the receipt."""
        run = DataRun(
            id=receipt_id("purge", effect.account_id, effect.case_id, effect.phase),
            account_id=effect.account_id,
            case_id=effect.case_id,
            flow=effect.flow,
            kind="purge",
            categories=tuple(effect.categories),
            started_at=at,
        )
        return self._run(run, frozenset(effect.categories))

    def _run(self, run: DataRun, categories: frozenset[str] | None) -> Mapping[str, object]:
        store = self._need_store()
        deadline = time.monotonic() + TAKEOVER_WAIT
        while True:
            try:
                run = store.claim_data_run(run, worker=self._worker, lease=self.lease)
                break
            except Conflict as exc:
                # a dead worker's claim lapses with its outbox row's: only the first moments
                # of a run can lag behind; a live worker keeps it, and the row retries later
                if time.monotonic() >= deadline:
                    raise ConnectorError(str(exc)) from exc
                time.sleep(0.1)
        account = run.account_id
        progress = {(p.connector, p.location): p for p in run.progress}
        plan = [(c, by_category(c.locations(), categories)) for c in self.connectors]
        log.info("data run", run=run.id, account=account, kind=run.kind, resumed=bool(progress))
        for round_no in range(1, self.max_passes + 1):
            for connector, locations in plan:
                for location in locations:
                    key = (connector.name, location.name)
                    current = progress.get(key) or DataProgress(
                        connector=connector.name,
                        location=location.name,
                        category=location.category,
                    )
                    if current.finished_at is not None:
                        continue
                    self._hold_check(run)
                    ledger = _Ledger(self, run.id, current, self._clock)
                    connector.delete(account, location, ledger)
                    done = replace(
                        ledger.progress,
                        in_flight=None,
                        passes=ledger.progress.passes + 1,
                        started_at=ledger.progress.started_at or self._clock(),
                        finished_at=self._clock(),
                    )
                    ledger.save(done)
                    progress[key] = done
            left = self._leftovers(account, plan)
            if not left:
                break
            if round_no == self.max_passes:
                raise ConnectorError(
                    f"the {run.kind} of account {account!r} left rows after {round_no} passes "
                    f"(the host keeps writing them?): "
                    + ", ".join(f"{c}/{loc}: {n}" for (c, loc), n in left.items())
                )
            for key in left:
                reopened = replace(progress[key], finished_at=None)
                self._save(run.id, reopened)
                progress[key] = reopened
        order = {(c.name, loc.name): i for i, (c, locs) in enumerate(plan) for loc in locs}
        items = sorted(
            progress.values(),
            key=lambda p: (order.get((p.connector, p.location), len(order)), p.connector),
        )
        return {
            "id": run.id,
            "started_at": iso(run.started_at),
            "locations": [_location_entry(p) for p in items],
            "verified": True,
        }

    def _leftovers(
        self, account: str, plan: Sequence[tuple[Connector, Sequence[Location]]]
    ) -> dict[tuple[str, str], int]:
        left = {}
        for connector, locations in plan:
            if not locations:
                continue
            counts = connector.count(account, locations)
            for location in locations:
                rows = counts.get(location.name, 0)
                if rows:
                    left[(connector.name, location.name)] = rows
        return left

    def _hold_check(self, run: DataRun) -> None:
        """Stop between locations if a legal hold was placed while the run was under way."""
        account = self._need_store().get(run.account_id)
        if account is not None and account.legal_hold is not None:
            raise ConnectorError(
                f"a legal hold was placed on account {run.account_id!r} during its {run.kind}; "
                "it stopped between two locations and resumes when the hold is lifted"
            )

    def _save(self, run_id: str, progress: DataProgress) -> None:
        try:
            self._need_store().save_progress(
                run_id, progress, worker=self._worker, lease=self.lease
            )
        except StaleWrite as exc:
            raise ConnectorError(f"{exc}: another worker took the run over") from exc

    def _clock(self) -> datetime:
        if self._now is None:
            raise LapseError("the data handler is not attached to an engine")
        return self._now()

    def _need_store(self) -> Store:
        if self._store is None:
            raise LapseError("the data handler is not attached to an engine (Engine(data=...))")
        return self._store

    # --- export -----------------------------------------------------------------------------

    def export(self, account_id: str) -> Iterator[ExportTable]:
        """Every location's rows of the account, parents before children, streamed."""
        for connector in self.connectors:
            yield from connector.export(account_id, list(reversed(connector.locations())))

    def export_problems(self) -> list[str]:
        """Why some connectors cannot export (empty if all can): asked before a link is issued,
        so an export is refused at once instead of failing half-way through the download. A
        connector says so with an optional `export_problem()` method (None: it can)."""
        problems = []
        for connector in self.connectors:
            ask = getattr(connector, "export_problem", None)
            problem = ask() if ask is not None else None
            if problem:
                problems.append(str(problem))
        return problems

    def count(self, account_id: str) -> dict[str, dict[str, int]]:
        """The account's rows at every location, per connector."""
        return {c.name: c.count(account_id, c.locations()) for c in self.connectors}


def _location_entry(progress: DataProgress) -> dict[str, Any]:
    return {
        "connector": progress.connector,
        "location": progress.location,
        "category": progress.category,
        "rows": progress.removed,
        "started_at": iso(progress.started_at) if progress.started_at else None,
        "finished_at": iso(progress.finished_at) if progress.finished_at else None,
    }


def purge_sets(policy: Policy) -> list[frozenset[str]]:
    """The sets of categories a policy can purge at once (a phase's purge with its flow's purge
    outcome when they fall on the same position, as the lifecycle emits them)."""
    sets: list[frozenset[str]] = []
    for flow in policy.flows.values():
        outcome = (
            frozenset(flow.outcome.categories)
            if flow.outcome is not None and flow.outcome.kind == "purge"
            else frozenset()
        )
        for index, phase in enumerate(flow.phases):
            categories = frozenset(phase.purge)
            if index == flow.timed_phase_count:
                categories |= outcome
            if categories:
                sets.append(categories)
        if outcome and flow.timed_phase_count >= len(flow.phases):
            sets.append(outcome)
    return list(dict.fromkeys(sets))
