"""Creating a demo: the host database, then lapse's own, with every history lived on time.

The cast's histories are replayed through a real engine on a manual clock, from the earliest
moment any of them needs to the demo's start: accounts join, the host reports its events and
facts at the moments they happened, and the scheduler and the dispatcher run every step when it
is due. So what lapse holds at the start is exactly what it would hold had it run all along:
notices sent on time (the outbox has them, dated), phases entered at their deadlines, purges
and deletions done with their receipts, a legal hold placed by a named person with a reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from lapse.core import inputs
from lapse.core.model import Account, Member
from lapse.demo.cast import Cast, HostInput, Plan, build_cast
from lapse.demo.generate import generate
from lapse.demo.host import host_engine
from lapse.policy.model import Policy
from lapse.runtime.bootstrap import Services, build
from lapse.runtime.clock import ManualClock
from lapse.runtime.engine import Engine
from lapse.runtime.settings import Settings, load_settings

POLICY = "email-service-demo"
PRODUCT = "Mailwise"
SEED = 7
HOST_DB = "host.db"
LAPSE_DB = "lapse.db"
CONNECTORS = "connectors.yaml"


@dataclass(frozen=True, slots=True, kw_only=True)
class Demo:
    """A created demo: where its databases are, when it starts, who is in it."""

    directory: Path
    host_url: str
    lapse_url: str
    now: datetime
    cast: Cast
    host_rows: dict[str, int]


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file."""
    return f"sqlite:///{path.resolve()}"


def demo_settings(
    directory: Path,
    *,
    now: datetime,
    rate: float = 60.0,
    host: str | None = None,
    port: int | None = None,
    origin: datetime | None = None,
) -> Settings:
    """The settings of a demo in `directory`: its database, policy and accelerated clock."""
    return load_settings(
        database_url=sqlite_url(directory / LAPSE_DB),
        policy=POLICY,
        clock="accelerated",
        clock_start=now,
        clock_rate=rate,
        clock_origin=origin,
        connectors=directory / CONNECTORS,
        poll_seconds=0.1,  # a tenth of a real second: six demo seconds at 60x
        product=PRODUCT,
        login_url="https://app.mailwise.example/login",
        billing_url="https://app.mailwise.example/billing",
        support_contact="support@mailwise.example",
        sales_contact="sales@mailwise.example",
        host=host,
        port=port,
    )


def write_connectors(directory: Path, host_url: str) -> Path:
    """The demo's LAPSE_CONNECTORS file: every host table, its account key and category."""
    from lapse.demo import host

    lines = [
        "# The demo host's tables, registered with lapse: where each account's data lives.",
        "# See docs/demo.md; the format is described in lapse.data.config.",
        "version: 1",
        "connectors:",
        "  - name: mailwise",
        "    kind: sql",
        f"    url: {json.dumps(host_url)}",
        "    tables:",
        *(
            f"      - {{table: {table.name}, account: {host.account_key(table.name)}, "
            f"category: {host.CATEGORIES[table.name]}{_excluded(table.name)}}}"
            for table in host.metadata.sorted_tables
        ),
    ]
    path = directory / CONNECTORS
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _excluded(table: str) -> str:
    from lapse.demo import host

    columns = host.EXCLUDED.get(table)
    return f", exclude: [{', '.join(columns)}]" if columns else ""


def create_demo(
    directory: Path,
    *,
    now: datetime,
    seed: int = SEED,
    rate: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> Demo:
    """Create the demo host database and lapse's database in the empty `directory`."""
    say = progress or (lambda _: None)
    directory.mkdir(parents=True, exist_ok=True)
    cast = build_cast(now, seed)
    host_url = sqlite_url(directory / HOST_DB)
    say(f"generating the host database ({HOST_DB})")
    engine = host_engine(host_url)
    try:
        rows = generate(engine, cast, seed)
    finally:
        engine.dispose()
    write_connectors(directory, host_url)
    settings = demo_settings(directory, now=now, rate=rate)
    start = min(plan.joins_at for plan in cast.accounts)
    services = build(settings, clock=ManualClock(start))
    try:
        say(f"replaying {len(cast.history)} host reports since {start:%Y-%m-%d} ({LAPSE_DB})")
        replay(services, cast)
    finally:
        services.close()
    return Demo(
        directory=directory,
        host_url=host_url,
        lapse_url=settings.database_url or "",
        now=now,
        cast=cast,
        host_rows=rows,
    )


@dataclass(frozen=True, slots=True)
class _Step:
    at: datetime
    order: int  # at the same moment: joins first, then the account's reports
    apply: Callable[[Engine], None]


def replay(services: Services, cast: Cast) -> None:
    """Live the cast's histories on time, up to the demo's start; import the crowd there."""
    engine = services.engine
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    steps: list[_Step] = []
    for plan in cast.accounts:
        if plan.joins_at < cast.now:
            steps.extend(_joining(plan))
    steps.extend(_Step(item.at, 2, _report(item)) for item in cast.history)
    steps.sort(key=lambda s: (s.at, s.order))
    engine.deliver_inline = True  # each step's notices go out at its moment, as on time
    with quiet():
        for step in steps:
            if step.at >= cast.now:
                break
            if step.at > clock.now():
                engine.run_until(step.at)
            step.apply(engine)
        engine.run_until(cast.now)
        # the crowd (and the cast members lapse meets at the start) in one bulk import
        engine.import_accounts(
            _snapshot(plan, engine.policy, cast.now)
            for plan in cast.accounts
            if plan.joins_at >= cast.now
        )
        engine.run_due()


def _snapshot(plan: Plan, policy: Policy, now: datetime) -> Account:
    """The account as the host knows it at `now`: members, last activity, facts."""
    account = inputs.new_account(
        policy,
        account_id=plan.id,
        kind=plan.kind,
        created_at=plan.created_at,
        address=plan.address,
        members=[Member(email=user.email, role=user.role) for user in plan.users],
    )
    for name, at in plan.signals().items():
        account = inputs.record_signal(account, policy, name, at)
    for name, value in {**plan.facts(), **plan.facts_at_join}.items():
        account = inputs.set_fact(account, policy, name, value, now)
    return account


@contextmanager
def quiet() -> Iterator[None]:
    """Keep the replay's info logs (a line per host effect) off the screen."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


def _joining(plan: Plan) -> list[_Step]:
    """The account joins lapse with what the host knew then; later activity follows."""
    signals = plan.signals()
    known = {name: at for name, at in signals.items() if at <= plan.joins_at}
    facts = {**plan.facts(), **plan.facts_at_join}

    def join(engine: Engine) -> None:
        engine.add_account(
            plan.id,
            kind=plan.kind,
            created_at=plan.created_at,
            address=plan.address,
            members=[(user.email, user.role) for user in plan.users],
            signals=known,
            facts=facts,
        )

    steps = [_Step(plan.joins_at, 0, join)]
    for name, at in signals.items():
        if at > plan.joins_at:
            steps.append(_Step(at, 1, _signal(plan.id, name, at)))
    return steps


def _signal(account_id: str, name: str, at: datetime) -> Callable[[Engine], None]:
    return lambda engine: engine.signal(account_id, name, at)


def _report(item: HostInput) -> Callable[[Engine], None]:
    """Apply one host report through the engine's public API."""

    def apply(engine: Engine) -> None:
        if item.what == "event":
            engine.event(
                item.account_id,
                item.name,
                at=item.at,
                event_id=item.event_id,
                reason=item.reason or None,
            )
        elif item.what == "facts":
            engine.set_facts(item.account_id, dict(item.facts), at=item.at)
        else:
            engine.legal_hold(item.account_id, on=True, by=item.by, reason=item.reason)

    return apply
