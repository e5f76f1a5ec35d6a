"""The demo databases: deterministic, consistent with each other, and every phase populated."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lapse.core.lifecycle import position_phase
from lapse.data.export import ExportDenied, start_export
from lapse.demo import guide, host
from lapse.demo.cast import Cast, Plan, build_cast
from lapse.demo.run import DemoExists, check_directory, check_port
from lapse.demo.seed import Demo, create_demo, demo_settings
from lapse.errors import AccountDeleted, ConfigError
from lapse.policy import load_preset
from lapse.runtime.bootstrap import Services, build
from lapse.runtime.clock import ManualClock

NOW = datetime(2025, 6, 15, 9, 30, tzinfo=UTC)
PRESETS = ("inactivity-cleanup", "staged-expiry", "account-locks")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return create_demo(tmp_path_factory.mktemp("demo") / "var", now=NOW)


@pytest.fixture(scope="module")
def services(demo: Demo) -> Iterator[Services]:
    """The demo's lapse, with time stopped at the demo's start."""
    built = build(demo_settings(demo.directory, now=NOW), clock=ManualClock(NOW))
    yield built
    built.close()


def host_dump(directory: Path) -> str:
    """A digest of every host table's rows, in key order."""
    engine = host.host_engine(f"sqlite:///{directory / 'host.db'}")
    digest = hashlib.sha256()
    try:
        with engine.connect() as conn:
            for table in host.metadata.sorted_tables:
                keys = list(table.primary_key.columns)
                for row in conn.execute(select(table).order_by(*keys)):
                    digest.update(repr(tuple(row)).encode())
    finally:
        engine.dispose()
    return digest.hexdigest()


def open_cases(services: Services, account_id: str) -> list[str]:
    """'flow/phase' of each open case, or ['deleted']."""
    if services.store.tombstone(account_id) is not None:
        return ["deleted"]
    account = services.engine.account(account_id)
    found = []
    for case in account.cases:
        phase = position_phase(case, services.policy.flows[case.flow])
        found.append(f"{case.flow}/{phase.name if phase else '-'}")
    return sorted(found)


def test_every_cast_member_starts_where_its_story_says(demo: Demo, services: Services) -> None:
    wrong = {
        plan.role: (open_cases(services, plan.id), sorted(plan.expect))
        for plan in demo.cast.accounts
        if plan.role and open_cases(services, plan.id) != sorted(plan.expect)
    }
    assert wrong == {}


def test_every_phase_of_every_preset_flow_has_an_account(demo: Demo, services: Services) -> None:
    groups = guide.distribution(services.engine, [p.id for p in demo.cast.accounts])
    for preset in PRESETS:
        for flow in load_preset(preset).flows.values():
            if flow.irreversible or not flow.phases:
                # deleted the moment they start (ToS suspension, test accounts): what can be
                # seen is a past deletion, and one due in the demo's first minutes
                deleted_by = {
                    stone.flow
                    for plan in demo.cast.accounts
                    if (stone := services.store.tombstone(plan.id)) is not None
                }
                assert flow.name in deleted_by
                continue
            for phase in flow.phases:
                assert groups.get(f"{flow.name}/{phase.name}"), f"{flow.name}/{phase.name}"


def test_one_account_is_held_by_a_legal_hold_placed_through_the_engine(
    demo: Demo, services: Services
) -> None:
    held = demo.cast.by_role("legal-hold").id
    status = services.engine.status(held)
    assert status.legal_hold is not None
    assert status.legal_hold.by == "legal@mailwise.example"
    assert "Preservation order" in status.legal_hold.reason
    (case,) = status.cases
    assert (case.phase, case.destruct) == ("termination", "held")
    assert any("legal hold" in text for text in case.waiting)
    kinds = [e.kind for e in services.engine.timeline(held).past]
    assert "hold.placed" in kinds
    assert "outcome.held" in kinds


def test_one_account_is_locked_for_two_reasons(demo: Demo, services: Services) -> None:
    status = services.engine.status(demo.cast.by_role("two-locks").id)
    assert status.state == "locked"
    assert sorted(c.flow for c in status.cases) == ["contact-limit-lock", "payment-lock"]


def test_the_crowd_has_no_open_case_and_the_upcoming_steps_are_minutes_away(
    demo: Demo, services: Services
) -> None:
    crowd = [p for p in demo.cast.accounts if not p.role]
    assert len(crowd) > 300
    assert all(open_cases(services, p.id) == [] for p in crowd)
    states = services.store.count_by_state()
    assert states.get("active", 0) > 300
    soon = guide.upcoming(services.engine, demo.cast, NOW, timedelta(hours=1))
    by_account = {item.account_id: item for item in soon}
    expected = {
        "test-account-expires": (3, "deleted (Test account expiry)"),
        "inactive-enters-grace": (5, "email inactivity-grace-started to admins"),
        "mailbox-expires": (8, "enters grace (Account expiry)"),
        "grace-final-warning": (12, "email inactivity-final-warning to admins"),
        "trial-ends": (15, "enters trial-expired"),
        "tos-suspended": (20, "the host reports: abuse desk reports a phishing campaign"),
        "mailbox-terminated": (25, "deleted (Account expiry), address retired"),
        "mailbox-final-warning": (30, "email expiry-final-warning to owner"),
        "two-locks": (35, "the host reports: archives 70 old contacts"),
        "payment-retention-warning": (40, "email lock-retention-warning to admins"),
        "grace-deleted": (45, "deleted (Inactivity clean-up), address released"),
        "payment-locked-recovers": (50, "the host reports: the retried payment goes through"),
        "trial-purged": (55, "history purged (campaign_timelines, reports, contact_actions)"),
    }
    for role, (minutes, text) in expected.items():
        item = by_account[demo.cast.by_role(role).id]
        assert item.at == NOW + timedelta(minutes=minutes), role
        assert text in item.text, role


def test_deletions_and_purges_reached_the_host_database_with_receipts(
    demo: Demo, services: Services
) -> None:
    engine = host.host_engine(demo.host_url)
    try:
        with engine.connect() as conn:

            def rows(table: str, account_id: str) -> int:
                t = host.metadata.tables[table]
                key = t.c[host.account_key(table)]
                return int(conn.execute(select(func.count()).where(key == account_id)).scalar_one())

            deleted = [p for p in demo.cast.accounts if p.expect == ("deleted",)]
            assert len(deleted) == 4
            for plan in deleted:
                assert all(rows(t, plan.id) == 0 for t in host.metadata.tables), plan.role
                stone = services.store.tombstone(plan.id)
                assert stone is not None
                assert stone.receipt["verified"] is True
                assert stone.receipt["rows"] > 0
            purged = [p for p in demo.cast.accounts if p.role.endswith("retention-expired")]
            assert len(purged) == 4
            for plan in purged:
                for table in ("campaign_events", "reports", "contact_actions"):
                    assert rows(table, plan.id) == 0, (plan.role, table)
                assert rows("contacts", plan.id) == plan.contacts  # only history is purged
            kept = demo.cast.by_role("two-locks")
            assert rows("contact_actions", kept.id) > 0
    finally:
        engine.dispose()
    kinds = sorted(r.kind for r in services.store.receipts(limit=100))
    assert kinds == ["delete"] * 4 + ["purge"] * 4


def test_what_lapse_knows_agrees_with_the_host_database(demo: Demo, services: Services) -> None:
    engine = host.host_engine(demo.host_url)
    try:
        with engine.connect() as conn:
            contacts = host.contacts
            counted = dict(
                conn.execute(
                    select(contacts.c.account_id, func.count())
                    .where(contacts.c.status != "archived")
                    .group_by(contacts.c.account_id)
                ).all()
            )
            users = host.users
            admins = {
                (account_id, email)
                for account_id, email in conn.execute(
                    select(users.c.account_id, users.c.email).where(users.c.role == "admin")
                )
            }
    finally:
        engine.dispose()
    for plan in demo.cast.accounts:
        if services.store.tombstone(plan.id) is not None:
            continue
        account = services.engine.account(plan.id)
        if plan.kind == "standard":
            assert account.facts["contacts"].value == counted[plan.id], plan.id
        for member in account.members:
            if member.role == "admin":
                assert (plan.id, member.email) in admins
        if "campaign_sent" in account.signals:
            assert account.signals["campaign_sent"] == plan.last_campaign_at


def test_the_demo_is_deterministic(demo: Demo, tmp_path: Path) -> None:
    again = create_demo(tmp_path / "again", now=NOW)
    assert host_dump(again.directory) == host_dump(demo.directory)
    assert again.host_rows == demo.host_rows
    first = build(demo_settings(demo.directory, now=NOW), clock=ManualClock(NOW))
    second = build(demo_settings(again.directory, now=NOW), clock=ManualClock(NOW))
    try:
        ids = [p.id for p in demo.cast.accounts]
        assert first.store.get_many(ids) == second.store.get_many(ids)
        assert [r.hash for r in first.store.audit(limit=10_000)] == [
            r.hash for r in second.store.audit(limit=10_000)
        ]
    finally:
        first.close()
        second.close()


def test_the_sizes_are_hundreds_of_accounts_and_tens_of_thousands_of_rows(demo: Demo) -> None:
    assert 300 <= demo.host_rows["accounts"] <= 600
    assert 30_000 <= sum(demo.host_rows.values()) <= 150_000
    assert all(demo.host_rows[name] > 0 for name in host.metadata.tables)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2025, 8, 31, 23, 59, tzinfo=UTC),  # six months back lands in February
        datetime(2024, 2, 29, 12, 0, tzinfo=UTC),  # twelve months back has no 29 February
        datetime(2025, 3, 31, 0, 1, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 58, tzinfo=UTC),
    ],
)
def test_the_story_holds_on_awkward_dates(now: datetime) -> None:
    cast = build_cast(now)
    starts = _first_steps(cast)
    # every step of the first demo hour is in the future, at most three days late
    for role, at in starts.items():
        assert now < at <= now + timedelta(days=3, hours=1), role


def _first_steps(cast: Cast) -> dict[str, datetime]:
    """When each time-driven step of the first demo hour falls, from the cast's own dates."""
    from lapse.demo.cast import SIX_MONTHS, YEAR
    from lapse.policy.durations import add

    def plan(role: str) -> Plan:
        return cast.by_role(role)

    def expires(role: str) -> datetime:
        moment = plan(role).subscription_expires_at or plan(role).trial_ends_at
        assert moment is not None
        return moment

    def last_campaign(role: str) -> datetime:
        moment = plan(role).last_campaign_at
        assert moment is not None
        return moment

    return {
        "inactive-enters-grace": add(last_campaign("inactive-enters-grace"), YEAR),
        "mailbox-expires": expires("mailbox-expires"),
        "mailbox-terminated": add(expires("mailbox-terminated"), SIX_MONTHS),
        "trial-ends": expires("trial-ends"),
        "trial-purged": add(expires("trial-purged"), SIX_MONTHS),
        "test-account-expires": plan("test-account-expires").created_at + timedelta(days=30),
    }


def test_a_directory_that_is_not_a_demo_is_never_reset(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoExists, match="is not a lapse demo"):
        check_directory(tmp_path, reset=True)
    assert (tmp_path / "notes.txt").exists()


def test_a_demo_directory_is_refused_without_reset_and_emptied_with_it(tmp_path: Path) -> None:
    (tmp_path / "demo.json").write_text("{}")
    (tmp_path / "lapse.db").write_text("")
    with pytest.raises(DemoExists, match="--reset"):
        check_directory(tmp_path, reset=False)
    check_directory(tmp_path, reset=True)
    assert not tmp_path.exists()
    check_directory(tmp_path, reset=False)  # absent: fine


def test_a_taken_port_is_refused_before_any_work() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port("127.0.0.1", port)


def test_on_an_awkward_date_every_cast_member_still_starts_in_its_phase(tmp_path: Path) -> None:
    now = datetime(2025, 8, 31, 23, 59, tzinfo=UTC)
    demo = create_demo(tmp_path / "var", now=now)
    services = build(demo_settings(demo.directory, now=now), clock=ManualClock(now))
    try:
        wrong = {
            plan.role: open_cases(services, plan.id)
            for plan in demo.cast.accounts
            if plan.role and open_cases(services, plan.id) != sorted(plan.expect)
        }
        assert wrong == {}
    finally:
        services.close()


def test_exports_leave_the_api_keys_secret_hashes_out(demo: Demo, services: Services) -> None:
    """An export shows an account holder their data, never a secret of theirs (the key hashes)."""
    connectors = (demo.directory / "connectors.yaml").read_text()
    assert "{table: api_keys, account: account_id, category: api_keys, exclude: [secret_hash]}" in (
        connectors
    )
    engine = host.host_engine(f"sqlite:///{demo.directory / 'host.db'}")
    try:
        with engine.connect() as conn:
            owners = conn.execute(select(host.api_keys.c.account_id).distinct()).scalars().all()
            hashes = set(conn.execute(select(host.api_keys.c.secret_hash)).scalars())
    finally:
        engine.dispose()
    exported = 0
    for account_id in owners:
        try:
            chunks, _ = start_export(services.engine, account_id)
        except (AccountDeleted, ExportDenied):  # deleted, or a phase that denies `export`
            continue
        archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
        keys = list(csv.reader(io.StringIO(archive.read("mailwise/api_keys.csv").decode())))
        assert "secret_hash" not in keys[0]
        assert "prefix" in keys[0]
        assert len(keys) > 1
        text = "".join(archive.read(name).decode() for name in archive.namelist())
        assert not any(h in text for h in hashes)
        exported += 1
        if exported == 3:
            break
    assert exported == 3
