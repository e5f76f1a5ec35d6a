"""Policy versions at run time: which policy is active, applying a new one, previewing it.

The store keeps every policy applied to it (`Store.record_policy`); the newest is the active
one. A process compares the policy it was started with against it (`adopt`): the same document
goes on; a first start records it; a new document is applied automatically only when no open
case would move. Moving open cases takes an explicit `apply` (keep deadlines or re-plan, see
`lapse.core.migrate`), which every other process notices (`refresh`, polled between scheduler
batches, and at most every second by the API) and follows.

`apply` records the new active policy first, then migrates the accounts in chunks, one
transaction each. Until the last chunk, and for any case another process opens under the old
version meanwhile, the engine migrates an account the moment it touches it (`current`), with
the mode recorded with the active policy, so nothing is ever evaluated under a version it was
not opened under or migrated to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from lapse.core import lifecycle
from lapse.core.migrate import (
    MODES,
    Migration,
    MigrationMode,
    PolicyPreview,
    Preview,
    migrate_account,
    needs_migration,
)
from lapse.core.model import Account, AuditEntry, Step
from lapse.errors import ConfigError, InvalidInput, LapseError, MigrationBlocked, PolicyMismatch
from lapse.policy.loader import load_policy
from lapse.policy.model import Policy
from lapse.store.base import PolicyMode, StaleWrite, StoredPolicy

if TYPE_CHECKING:
    from lapse.runtime.engine import Engine

log = structlog.get_logger("lapse.policy")

#: accounts per transaction when a policy is applied, and per read when one is previewed
CHUNK = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyApplied:
    """What starting with a policy, or applying one, did."""

    policy: StoredPolicy  # the active policy now
    previous: StoredPolicy | None  # the one active before (None: the store had none)
    recorded: bool  # False: this document was the active policy already
    accounts: int = 0  # accounts rewritten by the migration
    cases: int = 0  # open cases moved to the new version
    closed: int = 0  # open cases closed because their flow or phase is gone


def stored_name(stored: StoredPolicy) -> str:
    """Where a policy loaded from the store comes from, for its problems and `source`."""
    return f"<database: policy {stored.name} v{stored.version}>"


def load_stored(stored: StoredPolicy) -> Policy:
    """The policy of a stored document (it was valid when applied)."""
    return load_policy(stored.source, source=stored_name(stored))


def describe(stored: StoredPolicy) -> str:
    """'inactivity-cleanup v2 (applied 2025-02-01 09:00 UTC by ops, keep)'."""
    return (
        f"{stored.name} v{stored.version} (applied {stored.applied_at:%Y-%m-%d %H:%M} UTC "
        f"by {stored.applied_by}, {stored.mode})"
    )


class PolicyVersions:
    """The engine's side of policy versions (see the module docstring)."""

    def __init__(self, engine: Engine, *, poll: float = 1.0) -> None:
        self.engine = engine
        self.poll = poll  # seconds between the API's checks for a policy applied elsewhere
        #: called with a policy before anything is written or switched to it; raising refuses it
        self.checks: list[Callable[[Policy], None]] = []
        #: called once the engine runs a new policy (what else holds the policy follows it)
        self.followers: list[Callable[[Policy], None]] = []
        self._seq = 0  # the active row the engine runs (0: not tracked)
        self._mode: MigrationMode = "keep"  # how accounts touched before their migration move
        self._close_removed = False
        self._known: dict[str, Policy] | None = None
        self._seqs: dict[str, int] = {}  # the newest row of each known version
        self._refused: str | None = None  # why the active policy could not be switched to
        self._checked = 0.0

    # --- which policy runs ------------------------------------------------------------------

    def adopt(self, *, by: str, shown: str | None = None, follow: bool = False) -> PolicyApplied:
        """Start with the engine's policy: record it, go on, apply it automatically when no
        open case would move, or refuse (PolicyMismatch) naming what to do instead.

        With `follow` (workers: their policy is the store's), an active policy other than the
        engine's is switched to, never replaced: the engine's is recorded only in a store
        that has none."""
        engine = self.engine
        store = engine.store
        offered = engine.policy
        active = store.active_policy()
        if active is not None and active.digest == offered.digest:
            self._track(active)
            return PolicyApplied(policy=active, previous=active, recorded=False)
        if follow and active is not None:
            # applied by another process since this one read it: run that one
            self._switch(load_stored(active), active)
            return PolicyApplied(policy=active, previous=active, recorded=False)
        counts = store.open_cases_by_version()
        name = shown or offered.source
        if active is None:
            foreign = {v: n for v, n in counts.items() if v != offered.version}
            if foreign:
                total = sum(foreign.values())
                raise PolicyMismatch(
                    f"{_cases(total)} {'was' if total == 1 else 'were'} opened under policy "
                    f"version {_versions(foreign)}, and the database has no record of "
                    f"{'that policy' if len(foreign) == 1 else 'those policies'}: start once "
                    f"with the policy they were opened under (or record it with `lapse policy "
                    f"apply FILE --keep-deadlines`), then apply {name} (v{offered.version}) "
                    f"with `lapse policy apply {name} --keep-deadlines` or `--replan`"
                )
            return self._applied(self._record(offered, "initial", by, None), None)
        self._refuse_reused_version(offered, counts, name)
        self._refuse_superseded(offered, active, name)
        affected = sum(n for v, n in counts.items() if v != offered.version)
        if affected:
            raise PolicyMismatch(
                f"the database's active policy is {describe(active)}; this process was started "
                f"with {offered.name} v{offered.version} ({name}), and {_cases(affected)} "
                f"opened under another version would be affected. Preview the change with "
                f"`lapse simulate {name}`, then apply it with `lapse policy apply {name} "
                f"--keep-deadlines` or `--replan`; or start with the active policy"
            )
        return self._applied(self._record(offered, "automatic", by, active), active)

    def _refuse_superseded(self, offered: Policy, active: StoredPolicy, name: str) -> None:
        """A start with a document the store already replaced is a stale configuration (an
        API process restarted with the old file), not a decision to roll back: refuse it."""
        for stored in self.engine.store.policies():
            if stored.digest == offered.digest and stored.seq < active.seq:
                raise PolicyMismatch(
                    f"this process was started with {offered.name} v{offered.version} ({name}), "
                    f"which the database's active policy {describe(active)} replaced; start "
                    f"with the active policy, or roll back explicitly with `lapse policy apply "
                    f"{name} --keep-deadlines` or `--replan`"
                )

    def refresh(self, *, max_age: float = 0.0) -> bool:
        """Switch to the store's active policy if another process applied a new one (checked
        at most every `max_age` seconds); True if the engine switched."""
        now = time.monotonic()
        if max_age and now - self._checked < max_age:
            if self._refused is not None:
                # a scheduler does not go on under a policy that is no longer the active one
                raise ConfigError(self._refused)
            return False
        self._checked = now
        store = self.engine.store
        seq = store.active_policy_seq()
        if seq == 0 or seq == self._seq:
            return False
        stored = store.active_policy()
        if stored is None:  # pragma: no cover - a row cannot vanish between two reads
            return False
        if stored.digest == self.engine.policy.digest:
            self._track(stored)
            return False
        try:
            self._switch(load_stored(stored), stored)
        except LapseError as exc:
            self._refused = f"cannot switch to the active policy {describe(stored)}: {exc}"
            raise ConfigError(self._refused) from exc
        self._refused = None
        log.info("policy changed", policy=stored.name, version=stored.version, mode=stored.mode)
        return True

    def stale(self) -> bool:
        """True if the API should look for a policy applied elsewhere (every `poll` seconds)."""
        return bool(self._seq) and time.monotonic() - self._checked >= self.poll

    # --- applying and previewing ------------------------------------------------------------

    def apply(
        self,
        policy: Policy,
        *,
        mode: MigrationMode,
        by: str,
        close_removed: bool = False,
        chunk: int = CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> PolicyApplied:
        """Make `policy` the active policy and migrate every open case opened under another
        version, one transaction per chunk of accounts; audited; idempotent when re-run."""
        if mode not in MODES:
            raise InvalidInput(f"unknown migration mode {mode!r}; expected keep or replan")
        engine = self.engine
        store = engine.store
        for check in self.checks:
            check(policy)  # e.g. refuse a policy whose notice templates are missing
        previous = store.active_policy()
        counts = store.open_cases_by_version()
        if (
            previous is None
            and engine.policy.digest != policy.digest
            and counts.get(engine.policy.version)
        ):
            # a store that never recorded a policy: its open cases were opened under the
            # engine's, which is the one they move from (cases of any other version are
            # blocked below: the store has no record of their policy)
            previous = self._record(engine.policy, "initial", by, None)
        self._refuse_reused_version(policy, counts, policy.source)
        foreign = sum(n for v, n in counts.items() if v != policy.version)
        known = {**self.known(), policy.version: policy}
        if foreign:
            self._refuse_blocked(policy, known, mode, close_removed, chunk)
        if previous is not None and previous.digest == policy.digest:
            recorded, stored = False, previous
        else:
            recorded = True
            first: PolicyMode = "initial" if previous is None and not foreign else mode
            stored = self._record(policy, first, by, previous, close_removed=close_removed)
        if engine.policy.digest != policy.digest:
            self._switch(policy, stored)
        else:
            self._track(stored)
        accounts = cases = closed = 0
        if foreign:
            now = engine.clock.now()
            for ids in self._chunks(chunk, with_cases=True, progress=progress):
                with store.unit() as unit:
                    for account_id in ids:
                        account = unit.load(account_id)
                        if account is None or not needs_migration(account, policy):
                            continue
                        migration = migrate_account(
                            account,
                            known,
                            policy,
                            now,
                            mode=mode,
                            close_removed=close_removed,
                            by=by,
                        )
                        if not migration.changed:
                            continue
                        engine._write(unit, self.step(migration))
                        accounts += 1
                        cases += sum(1 for c in migration.cases if c.outcome == "migrated")
                        closed += sum(1 for c in migration.cases if c.outcome == "closed")
        engine._after()
        return PolicyApplied(
            policy=stored,
            previous=previous,
            recorded=recorded,
            accounts=accounts,
            cases=cases,
            closed=closed,
        )

    def preview(
        self,
        policy: Policy,
        *,
        modes: Iterable[MigrationMode] = MODES,
        close_removed: bool = False,
        chunk: int = CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> PolicyPreview:
        """What applying `policy` would do to the stored accounts, as of now, per mode (see
        `lapse.core.migrate.Preview`); writes nothing."""
        engine = self.engine
        builder = Preview(
            engine.policy,
            policy,
            engine.clock.now(),
            known=self.known(),
            modes=modes,
            close_removed=close_removed,
        )
        for ids in self._chunks(chunk, with_cases=False, progress=progress):
            for account in engine.store.get_many(ids).values():
                builder.add(account)
        return builder.result()

    # --- accounts touched before their migration --------------------------------------------

    def current(self, account: Account, *, writing: bool = True) -> Migration | None:
        """The account moved to the engine's version if an open case was opened under another
        one (a migration under way, or applied by another process); None if none was.

        Only versions applied before the engine's policy are migrated from. A case of a version
        applied after it means another process applied a policy this one has not switched to
        yet: the engine looks (at most once a second) and switches; if it still runs the older
        policy, a write is refused (StaleWrite: retried) and a read shows the account as it is.
        """
        policy = self.engine.policy
        if account.deleted_at is not None or not needs_migration(account, policy):
            return None
        versions = {c.policy_version for c in account.cases} - {policy.version}
        if not all(self._older(v) for v in versions):
            try:
                switched = self.refresh(max_age=1.0)
            except ConfigError:  # the active policy cannot run here (logged by the loops)
                switched = False
            if switched:
                return self.current(account, writing=writing)
            newer = sorted(v for v in versions if self._newer(v))
            if newer:
                if writing:
                    raise StaleWrite(
                        f"account {account.id!r} has cases of policy version "
                        f"{', '.join(newer)}, applied after the {policy.name} v{policy.version} "
                        "this process runs; it switches within seconds: retry"
                    )
                return None
        migration = migrate_account(
            account,
            self.known(),
            policy,
            self.engine.clock.now(),
            mode=self._mode,
            close_removed=self._close_removed,
        )
        return migration if migration.changed else None

    def _older(self, version: str) -> bool:
        """True if `version` was applied before the policy the engine runs (any known version
        for an engine that follows no store record)."""
        self.known()
        seq = self._seqs.get(version)
        return seq is not None and (not self._seq or seq < self._seq)

    def _newer(self, version: str) -> bool:
        self.known()
        seq = self._seqs.get(version)
        return seq is not None and bool(self._seq) and seq > self._seq

    def step(
        self, migration: Migration, *, dispatched: Mapping[tuple[str, str], datetime] | None = None
    ) -> Step:
        """The migrated account evaluated at now, with the migration's effects and audit
        (`dispatched`: as for `lifecycle.advance`)."""
        engine = self.engine
        step = lifecycle.advance(
            migration.account, engine.policy, engine.clock.now(), dispatched=dispatched
        )
        return Step(
            account=step.account,
            effects=(*migration.effects, *step.effects),
            audit=(*migration.audit, *step.audit),
            next_due_at=step.next_due_at,
        )

    def known(self) -> dict[str, Policy]:
        """The policies open cases may have been opened under, by version (newest document of
        each version), the engine's own included."""
        known = self._known
        if known is None:
            known = {}
            seqs: dict[str, int] = {}
            for stored in self.engine.store.policies():
                if stored.digest == self.engine.policy.digest:
                    known[stored.version] = self.engine.policy
                else:
                    known[stored.version] = load_stored(stored)
                seqs[stored.version] = stored.seq
            known[self.engine.policy.version] = self.engine.policy
            self._seqs = seqs
            self._known = known
        return known

    # --- plumbing ---------------------------------------------------------------------------

    def _refuse_reused_version(self, policy: Policy, counts: dict[str, int], name: str) -> None:
        """A changed document under a version that open cases already carry: they could not
        be told apart from cases of the new document."""
        count = counts.get(policy.version, 0)
        if not count:
            return
        documents = [s for s in self.engine.store.policies() if s.version == policy.version]
        if documents and documents[-1].digest != policy.digest:
            raise PolicyMismatch(
                f"{name} changed the policy but keeps version {policy.version}, and "
                f"{_cases(count)} {'was' if count == 1 else 'were'} opened under version "
                f"{policy.version}: bump `version:` in the document so open cases can be "
                "migrated to it explicitly"
            )

    def _refuse_blocked(
        self,
        policy: Policy,
        known: dict[str, Policy],
        mode: MigrationMode,
        close_removed: bool,
        chunk: int,
    ) -> None:
        """Nothing is written if any open case has no place in the new version (unless those
        cases are to be closed)."""
        if close_removed:
            return
        now = self.engine.clock.now()
        blocked: list[str] = []
        count = 0
        for ids in self._chunks(chunk, with_cases=True):
            for account in self.engine.store.get_many(ids).values():
                for item in migrate_account(account, known, policy, now, mode=mode).blocked:
                    count += 1
                    if len(blocked) < 10:
                        blocked.append(f"{item.account_id}/{item.case_id}: {item.why}")
        if count:
            more = f"\n  ... and {count - len(blocked)} more" if count > len(blocked) else ""
            raise MigrationBlocked(
                f"{_cases(count)} cannot be migrated to {policy.name} v{policy.version}; "
                "nothing was changed. Close them with --close-removed (audited as a policy "
                "migration), or keep their flows and phases in the new version:\n  "
                + "\n  ".join(blocked)
                + more
            )

    def _chunks(
        self, size: int, *, with_cases: bool, progress: Callable[[int], None] | None = None
    ) -> Iterator[list[str]]:
        """Account ids in id order, a chunk at a time (deleted accounts left out)."""
        after: str | None = None
        while True:
            rows = self.engine.store.list_accounts(after=after, limit=size)
            if not rows:
                return
            ids = [r.id for r in rows if r.deleted_at is None and (r.open_flows or not with_cases)]
            if ids:
                yield ids
            if progress is not None:
                progress(len(rows))
            after = rows[-1].id

    def _record(
        self,
        policy: Policy,
        mode: PolicyMode,
        by: str,
        previous: StoredPolicy | None,
        *,
        close_removed: bool = False,
    ) -> StoredPolicy:
        if not policy.text:
            raise InvalidInput(
                f"policy {policy.name} v{policy.version} has no document text to store: load it "
                "with load_policy, load_policy_file or load_preset"
            )
        now = self.engine.clock.now()
        detail: dict[str, object] = {
            "name": policy.name,
            "version": policy.version,
            "digest": policy.digest,
            "mode": mode,
            "by": by,
            "previous": previous.version if previous is not None else None,
        }
        if close_removed:
            detail["close_removed"] = True
        entry = AuditEntry(account_id="", at=now, kind="policy.applied", detail=detail)
        stored = self.engine.store.record_policy(
            StoredPolicy(
                name=policy.name,
                version=policy.version,
                digest=policy.digest,
                source=policy.text,
                applied_at=now,
                applied_by=by,
                mode=mode,
                close_removed=close_removed,
            ),
            [entry],
        )
        self._known = None
        return stored

    def _applied(self, stored: StoredPolicy, previous: StoredPolicy | None) -> PolicyApplied:
        self._track(stored)
        return PolicyApplied(policy=stored, previous=previous, recorded=True)

    def _track(self, stored: StoredPolicy) -> None:
        """The engine runs the policy of this row (already loaded)."""
        if stored.seq != self._seq:
            self._known = None  # the history changed: read it again when needed
        self._seq = stored.seq
        self._refused = None
        self._mode = "replan" if stored.mode == "replan" else "keep"
        self._close_removed = stored.close_removed
        self._checked = time.monotonic()

    def _switch(self, policy: Policy, stored: StoredPolicy) -> None:
        """Run `policy` from now on: the checks first (they may refuse it), then the engine and
        its followers."""
        for check in self.checks:
            check(policy)
        self.engine._use_policy(policy)
        for follow in self.followers:
            follow(policy)
        self._known = None
        self._track(stored)


def _cases(count: int) -> str:
    return f"{count} open case{'s' if count != 1 else ''}"


def _versions(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} ({n})" for v, n in sorted(counts.items()))
