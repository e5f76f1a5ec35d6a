"""`lapse migrate`, `token`, `account show`, `audit verify` and configuration errors."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from lapse import cli
from lapse.runtime.bootstrap import Services
from lapse.store import open_store
from lapse.store.codec import effect_kind
from lapse.store.memory import MemoryStore
from lapse.store.migrate import head_revision

HEAD = head_revision()  # the newest migration shipped


def test_migrate_prints_the_revision(runner: CliRunner, env: dict[str, str]) -> None:
    url = env["LAPSE_DATABASE_URL"]
    first = runner.invoke(cli.app, ["migrate"])
    assert first.exit_code == 0, first.output
    assert first.stdout == f"{url}: at revision {HEAD} (head {HEAD}), upgraded from empty\n"
    again = runner.invoke(cli.app, ["migrate", "--database", url])
    assert again.stdout == f"{url}: at revision {HEAD} (head {HEAD}), already up to date\n"


def test_migrate_an_unreachable_database(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(
        cli.app, ["migrate", "--database", "postgresql+psycopg://u:secret@127.0.0.1:1/db"]
    )
    assert result.exit_code == 2
    assert "secret" not in result.output
    assert "cannot migrate postgresql+psycopg://u:***@127.0.0.1:1/db" in result.stderr


def test_tokens_create_list_revoke(runner: CliRunner, env: dict[str, str]) -> None:
    empty = runner.invoke(cli.app, ["token", "list"])
    assert empty.stdout == (
        "no tokens (lapse serve creates an admin token on first start, except in production: "
        "lapse token create NAME --scope admin)\n"
    )
    created = runner.invoke(cli.app, ["token", "create", "ci", "--scope", "read", "-s", "write"])
    assert created.exit_code == 0, created.output
    first, second = created.stdout.splitlines()
    token_id = first.split()[1]
    assert first == f"token {token_id} (ci; scopes: read, write)"
    assert second.startswith(f"secret (shown once, keep it): lapse_{token_id}_")
    listed = runner.invoke(cli.app, ["token", "list"])
    assert token_id in listed.stdout
    assert "read, write" in listed.stdout
    assert "lapse_" not in listed.stdout  # never the secret
    revoked = runner.invoke(cli.app, ["token", "revoke", token_id])
    assert revoked.stdout == f"token {token_id} revoked\n"
    after = runner.invoke(cli.app, ["token", "list"]).stdout
    assert after.count(" UTC") == 2  # created and revoked (never used)
    unknown = runner.invoke(cli.app, ["token", "revoke", "nope"])
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: no API token 'nope'\n"
    bad_scope = runner.invoke(cli.app, ["token", "create", "x", "--scope", "root"])
    assert bad_scope.exit_code == 1
    assert bad_scope.stderr == "error: unknown scope 'root'; expected read, write, admin\n"
    no_scope = runner.invoke(cli.app, ["token", "create", "x"])
    assert no_scope.exit_code == 2
    assert "--scope" in no_scope.output


def test_account_show(runner: CliRunner, services: Services) -> None:
    engine = services.engine
    engine.add_account("acme", kind="standard", members=[("ops@acme.example", "admin")])
    engine.event("acme", "payment_failed", event_id="inv-1")
    result = runner.invoke(cli.app, ["account", "show", "acme"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "account acme (standard): locked" in out
    assert "next step due 2025-07-01 09:00 UTC" in out
    assert "Your account is locked: your payment method failed" in out  # the banner
    assert "denied: export, edit, send_email" in out
    assert "payment-lock#1" in out
    assert "locked (1/2)" in out
    assert "2025-07-31 09:00 UTC" in out  # the deadline
    assert "181 days" in out
    assert "notice locked/lock-started: due 2025-01-31 09:00 UTC, dispatched" in out
    assert "event payment_failed received" in out  # past
    assert "Payment lock: notice lock-retention-warning to admins" in out  # projected
    assert "Contact limit lock: not started" in out  # the start explanations
    assert "fact contacts is greater than fact plan_contact_limit" in out
    assert "Free trial expired: does not apply to this kind" in out


def test_account_show_waiting_and_deleted(runner: CliRunner, services: Services) -> None:
    engine = services.engine
    engine.add_account("quiet", kind="standard")  # nobody to warn
    engine.event("quiet", "payment_failed", event_id="1")
    waiting = runner.invoke(cli.app, ["account", "show", "quiet"]).stdout
    assert "waiting: notice locked/lock-started has no recipient" in waiting
    engine.add_account("gone", kind="standard", address="gone@example.com")
    engine.open_case("gone", flow="tos-suspension", by="cli-test", reason="phishing")
    gone = runner.invoke(cli.app, ["account", "show", "gone"])
    assert gone.exit_code == 0, gone.output
    assert "account gone: deleted" in gone.stdout
    assert "by flow tos-suspension (case tos-suspension#1)" in gone.stdout
    assert "address: retire forever" in gone.stdout
    assert "receipt:" in gone.stdout
    unknown = runner.invoke(cli.app, ["account", "show", "ghost"])
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: no account 'ghost'\n"


def test_audit_verify_ok_and_broken(runner: CliRunner, services: Services) -> None:
    engine = services.engine
    engine.add_account("a", kind="standard", members=[("a@a.io", "admin")])
    engine.event("a", "payment_failed", event_id="1")
    ok = runner.invoke(cli.app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    checked = len(services.store.audit(limit=10_000))
    assert ok.stdout == f"ok: {checked} audit entries, the chain is intact\n"
    db = create_engine(services.database_url)
    with db.begin() as conn:
        conn.execute(text("UPDATE audit SET kind = 'case.closed' WHERE seq = 2"))
        conn.execute(text("DELETE FROM audit WHERE seq = 4"))
    db.dispose()
    broken = runner.invoke(cli.app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert broken.stdout.splitlines() == [
        f"broken: 2 problems in {checked - 1} audit entries",
        "  seq 2: edited: the row's content does not match its hash",
        "  seq 4: removed: seq 4 is missing from the chain",
    ]


def test_configuration_errors_exit_2(runner: CliRunner, env: dict[str, str]) -> None:
    bad_clock = runner.invoke(cli.app, ["token", "list"], env={"LAPSE_CLOCK": "sundial"})
    assert bad_clock.exit_code == 2
    assert bad_clock.stderr.startswith("error: invalid configuration:\n  LAPSE_CLOCK: ")
    worker = runner.invoke(cli.app, ["worker"])
    assert worker.exit_code == 2
    assert "a manual clock only moves inside `lapse serve`" in worker.stderr
    production = runner.invoke(cli.app, ["serve"], env={"LAPSE_ENV": "production"})
    assert production.exit_code == 2
    assert "LAPSE_CLOCK=manual is refused in production" in production.stderr
    assert "LAPSE_SMTP_HOST is required in production" in production.stderr
    assert "LAPSE_ADMIN_SESSION_KEY is required in production" in production.stderr
    policy = runner.invoke(cli.app, ["account", "show", "a", "--policy", "nonexistent"])
    assert policy.exit_code == 2
    assert "nonexistent" in policy.stderr


def test_production_serve_needs_a_token_created_first(
    runner: CliRunner, env: dict[str, str]
) -> None:
    production = {
        "LAPSE_ENV": "production",
        "LAPSE_CLOCK": "system",
        "LAPSE_SMTP_HOST": "smtp",
        "LAPSE_ADMIN_SESSION_KEY": "k" * 32,
    }
    refused = runner.invoke(cli.app, ["serve"], env=production)
    assert refused.exit_code == 2
    assert refused.stderr == (
        "error: no API token exists and LAPSE_ENV=production does not create one at start "
        "(its secret would land in the logs): create the first one with "
        "`lapse token create <name> --scope admin`, then start `lapse serve` again\n"
    )
    assert refused.stdout == ""  # no secret printed, nothing served
    listed = runner.invoke(cli.app, ["token", "list"], env=production)
    assert listed.stdout.startswith("no tokens")  # and none was created
    # with a token, production starts without creating or printing another
    created = runner.invoke(cli.app, ["token", "create", "ops", "--scope", "admin"], env=production)
    assert created.exit_code == 0, created.output
    store = open_store(env["LAPSE_DATABASE_URL"], migrate=False)
    try:
        assert cli._ensure_admin_token(store, datetime.now(UTC), production=True) is None
        assert [t.name for t in store.list_tokens()] == ["ops"]
    finally:
        store.close()  # type: ignore[union-attr]
    # outside production the first start creates an admin token (and shows its secret once)
    fresh = MemoryStore()
    secret = cli._ensure_admin_token(fresh, datetime.now(UTC), production=False)
    assert secret is not None
    assert secret.startswith("lapse_")
    assert [t.scopes for t in fresh.list_tokens()] == [("read", "write", "admin")]


def test_outbox_prune(runner: CliRunner, services: Services) -> None:
    engine = services.engine
    engine.add_account("a", kind="standard", members=[("a@a.io", "admin")])
    engine.event("a", "payment_failed", event_id="1")  # the payment lock and its notice
    engine.event("a", "payment_succeeded", event_id="2")  # the case closes
    assert engine.account("a").cases == ()
    rows = services.store.outbox(account_id="a")
    finished = [
        r for r in rows if effect_kind(r.effect) in ("notice", "host") and r.status == "delivered"
    ]
    assert finished, rows
    [note] = services.store.notifications("a")  # the lock's in-app notice
    # the manual clock stands in 2025: these rows finished longer than 90 days ago
    dry = runner.invoke(cli.app, ["outbox", "prune", "--older-than", "90 days", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith(
        f"would delete {len(finished)} rows and 1 in-app notification finished before "
    )
    assert dry.stdout.endswith("(90 days ago); nothing was deleted\n")
    assert len(services.store.outbox(account_id="a")) == len(rows)
    assert services.store.notifications("a") == [note]
    done = runner.invoke(cli.app, ["outbox", "prune"], env={"LAPSE_OUTBOX_RETENTION": "90 days"})
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(
        f"deleted {len(finished)} rows and 1 in-app notification finished before "
    )
    left = {r.id for r in services.store.outbox(account_id="a")}
    assert left == {r.id for r in rows} - {r.id for r in finished}
    assert services.store.notifications("a") == []
    again = runner.invoke(cli.app, ["outbox", "prune", "--older-than", "1 day"])
    assert again.stdout.startswith("deleted 0 rows and 0 in-app notifications ")


def test_events_prune(runner: CliRunner, services: Services) -> None:
    engine = services.engine
    engine.add_account("a", kind="standard")
    engine.event("a", "payment_failed", event_id="1")
    engine.event("a", "payment_succeeded", event_id="2")
    kept = {"LAPSE_EVENT_RETENTION": "30 days"}  # as the servers have it
    # the manual clock stands in 2025: these ids were received longer than 30 days ago
    dry = runner.invoke(
        cli.app, ["events", "prune", "--older-than", "40 days", "--dry-run"], env=kept
    )
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("would forget 2 event ids received before ")
    assert dry.stdout.endswith("(40 days ago); nothing was forgotten\n")
    assert not engine.event("a", "payment_failed", event_id="1")  # still recognised
    # shorter than what the servers take: refused, nothing forgotten
    short = runner.invoke(cli.app, ["events", "prune", "--older-than", "7 days"], env=kept)
    assert short.exit_code == 1
    assert (
        "--older-than '7 days' is shorter than LAPSE_EVENT_RETENTION (30 days): the servers "
        "still take events that old, so their ids must be kept" in short.stderr
    )
    assert not engine.event("a", "payment_failed", event_id="1")
    done = runner.invoke(cli.app, ["events", "prune"], env=kept)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("forgot 2 event ids received before ")
    # without the setting the servers take events of any age: nothing may be forgotten
    none = runner.invoke(cli.app, ["events", "prune", "--older-than", "90 days"])
    assert none.exit_code == 2
    assert "set LAPSE_EVENT_RETENTION (as the servers have it)" in none.stderr
    bad = runner.invoke(cli.app, ["events", "prune"], env={"LAPSE_EVENT_RETENTION": "soon"})
    assert bad.exit_code == 2
    assert "LAPSE_EVENT_RETENTION" in bad.stderr


def test_outbox_prune_needs_a_retention(runner: CliRunner, env: dict[str, str]) -> None:
    none = runner.invoke(cli.app, ["outbox", "prune"])
    assert none.exit_code == 2
    assert "give --older-than (e.g. '90 days') or set LAPSE_OUTBOX_RETENTION" in none.stderr
    bad = runner.invoke(cli.app, ["outbox", "prune", "--older-than", "a while"])
    assert bad.exit_code == 1
    assert "--older-than: 'a while' is not a duration such as '90 days'" in bad.stderr
    zero = runner.invoke(cli.app, ["outbox", "prune"], env={"LAPSE_OUTBOX_RETENTION": "0 days"})
    assert zero.exit_code == 2
    assert "LAPSE_OUTBOX_RETENTION: '0 days': a retention must be longer than zero" in zero.stderr
