"""The `lapse` command line: one Typer sub-app per area (`lapse policy ...`).

Commands stay thin: they parse arguments, call the library and print. Add an area with
`app.add_typer(<sub-app>, name=...)` or a single command with `@app.command()`.

Configuration comes from `LAPSE_*` environment variables; flags override them. A configuration
error prints its message and exits 2.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Protocol

import typer

from lapse.errors import ConfigError, InvalidInput, LapseError, PolicyError, UnknownAccount
from lapse.policy import UnknownPreset, describe_policy, inspect_policy, resolve_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.console import Console, RenderableType
    from rich.tree import Tree

    from lapse.core.migrate import CaseMigration, MigrationMode, PolicyPreview
    from lapse.core.model import Explanation, Status, Timeline
    from lapse.policy.durations import Duration
    from lapse.policy.model import Policy
    from lapse.runtime.bootstrap import Services
    from lapse.runtime.settings import Settings
    from lapse.store.base import Store, Tombstone

#: exit codes: 1 the input has errors, 2 the input could not be read at all
EXIT_INVALID = 1
EXIT_UNREADABLE = 2

app = typer.Typer(
    name="lapse",
    help="lapse: account lifecycle engine (grace periods, locks, warnings, deletion).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """lapse: account lifecycle engine (grace periods, locks, warnings, deletion)."""


policy_app = typer.Typer(help="Validate and inspect policy documents.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    files: Annotated[
        list[Path], typer.Argument(help="Policy YAML files to check.", metavar="FILE")
    ],
) -> None:
    """Print every error and waived lint of each FILE; exit 1 if any file has errors."""
    status = 0
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            typer.echo(f"error: {file}: no such file", err=True)
            status = EXIT_UNREADABLE
            continue
        except UnicodeDecodeError:
            typer.echo(f"error: {file}: not UTF-8 text", err=True)
            status = EXIT_UNREADABLE
            continue
        except OSError as exc:
            typer.echo(f"error: {file}: cannot read: {exc.strerror}", err=True)
            status = EXIT_UNREADABLE
            continue
        result = inspect_policy(text, source=str(file))
        for problem in result.problems:
            typer.echo(str(problem))
        if result.policy is None:
            status = max(status, EXIT_INVALID)
        else:
            count = len(result.policy.flows)
            typer.echo(f"ok: {file} ({count} flow{'' if count == 1 else 's'})")
    raise typer.Exit(status)


@policy_app.command("show")
def policy_show(
    file_or_preset: Annotated[
        str, typer.Argument(help="A policy file or a preset name.", metavar="FILE_OR_PRESET")
    ],
) -> None:
    """Print a readable summary of a policy file or preset."""
    typer.echo(describe_policy(_load_offered(file_or_preset)), nl=False)


def _load_offered(file_or_preset: str) -> Policy:
    """The policy a command is given; an unknown name exits 2, an invalid document 1."""
    try:
        return resolve_policy(file_or_preset)
    except UnknownPreset as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from None
    except PolicyError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(EXIT_INVALID) from None


@policy_app.command("apply")
def policy_apply(
    file_or_preset: Annotated[
        str, typer.Argument(help="The new policy: a file or a preset name.", metavar="FILE")
    ],
    keep_deadlines: Annotated[
        bool,
        typer.Option(
            "--keep-deadlines",
            help="Open cases keep their current deadline; later phases follow the new policy.",
        ),
    ] = False,
    replan: Annotated[
        bool,
        typer.Option(
            "--replan", help="Open cases are planned again from their start under the new policy."
        ),
    ] = False,
    close_removed: Annotated[
        bool,
        typer.Option(
            "--close-removed",
            help="Close open cases whose flow or phase the new policy no longer has (audited); "
            "without it such cases refuse the whole change.",
        ),
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(help="Who applies it, for the audit log (default: your user name)."),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Make FILE the database's active policy and migrate the open cases opened under another
    version, keeping or re-planning their deadlines (preview first with `lapse simulate FILE`).
    Every running `lapse serve` and `lapse worker` follows within seconds. Re-running it is
    harmless: it finishes an interrupted migration."""
    if keep_deadlines == replan:
        _fail(InvalidInput("give exactly one of --keep-deadlines and --replan"), EXIT_UNREADABLE)
    offered = _load_offered(file_or_preset)
    services = _services(
        _settings(database_url=database), policy_from="store", adopt=False, started_by="lapse"
    )
    who = by or _user()
    mode: MigrationMode = "keep" if keep_deadlines else "replan"
    try:
        with _progress(services, "migrating accounts") as advance:
            result = services.engine.apply_policy(
                offered, mode=mode, by=who, close_removed=close_removed, progress=advance
            )
    except LapseError as exc:
        _fail(exc)
    finally:
        services.close()
    how = "deadlines kept" if mode == "keep" else "deadlines re-planned"
    previous = result.previous
    before = f" (was {previous.name} v{previous.version})" if previous is not None else ""
    if result.recorded:
        head = f"applied {offered.name} v{offered.version}{before}"
    else:
        head = f"{offered.name} v{offered.version} was already the active policy"
    closed = f", {result.closed} closed" if result.closed else ""
    typer.echo(
        f"{head}: {result.cases} open case{'s' if result.cases != 1 else ''} migrated "
        f"({how}) in {result.accounts} account{'s' if result.accounts != 1 else ''}{closed}"
    )


def _user() -> str:
    """The operator's user name, for the audit log."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers): say so
        return "unknown user"


@app.command()
def simulate(
    file_or_preset: Annotated[
        str,
        typer.Argument(help="The proposed policy: a file or a preset name.", metavar="FILE"),
    ],
    mode: Annotated[
        str | None,
        typer.Option(
            help="Show one migration mode: keep (deadlines kept) or replan (default: both).",
            show_default=False,
        ),
    ] = None,
    close_removed: Annotated[
        bool,
        typer.Option(
            "--close-removed",
            help="Preview closing the cases whose flow or phase the new policy lacks.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the preview as JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Preview a policy over the stored accounts before applying it: deadlines that move, cases
    that close or cannot be migrated, accounts that would open a case, notices and deletions
    that would follow at once. Writes nothing."""
    if mode is not None and mode not in ("keep", "replan"):
        _fail(InvalidInput(f"--mode {mode!r}: expected keep or replan"), EXIT_UNREADABLE)
    offered = _load_offered(file_or_preset)
    services = _services(_settings(database_url=database), policy_from="store", adopt=False)
    modes: tuple[MigrationMode, ...] = (
        ("keep", "replan") if mode is None else ("keep",) if mode == "keep" else ("replan",)
    )
    try:
        with _progress(services, "reading accounts") as advance:
            preview = services.engine.preview_policy(
                offered, modes=modes, close_removed=close_removed, progress=advance
            )
    except LapseError as exc:
        _fail(exc)
    finally:
        services.close()
    if as_json:
        from lapse.api.schemas import PolicyPreviewOut

        typer.echo(PolicyPreviewOut.of(preview).model_dump_json(indent=2))
        return
    from rich.console import Console

    # long file names stay on their line (soft wrap), so the commands shown can be copied
    Console(width=120).print(render_preview(preview, file_or_preset), soft_wrap=True)


@contextmanager
def _progress(services: Services, what: str) -> Iterator[Callable[[int], None]]:
    """A progress bar over the stored accounts on stderr; yields the callback to advance it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    if not console.is_terminal:  # a log or a pipe: no bar to redraw
        yield lambda count: None
        return
    total = sum(services.store.count_by_state().values())
    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(what, total=total)
        yield lambda count: progress.advance(task, count)


def render_preview(preview: PolicyPreview, name: str) -> RenderableType:
    """A policy preview for the terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    current, proposed = preview.current, preview.proposed
    parts: list[RenderableType] = [
        Text.assemble(
            ("simulate ", "bold"),
            f"{current.name} v{current.version} (active) -> ",
            (f"{proposed.name} v{proposed.version}", "bold"),
            f" ({name}), as of {_when(preview.as_of)}",
        ),
        Text(
            f"{preview.accounts} account{'s' if preview.accounts != 1 else ''}, "
            f"{preview.open_cases} open case{'s' if preview.open_cases != 1 else ''}, "
            f"{preview.affected} opened under another version than v{proposed.version}"
        ),
    ]
    if current.digest == proposed.digest:
        parts.append(Text("this is the active policy: nothing would change", "green"))
    for impact in preview.modes:
        flag = "--keep-deadlines" if impact.mode == "keep" else "--replan"
        title = "deadlines kept" if impact.mode == "keep" else "deadlines re-planned"
        parts.append(Text(f"\n{title} (lapse policy apply {name} {flag}):", "bold"))
        if impact.phases:
            table = Table("flow", "phase", "cases", "deadline moves", "examples")
            for line in impact.phases:
                moves = "-"
                if line.moved:
                    span = _span(line.earliest, line.latest)
                    moves = f"{line.moved}" + (f": {span}" if span else "")
                examples = "\n".join(
                    _example(c) for c in line.samples[:3] if c.deadline_before != c.deadline_after
                )
                table.add_row(
                    line.flow, line.phase or "(past the last)", str(line.cases), moves, examples
                )
            parts.append(table)
        else:
            parts.append(Text("  no open case to migrate"))
        if impact.blocked:
            parts.append(
                Text(
                    f"  {impact.blocked} case{'s' if impact.blocked != 1 else ''} cannot be "
                    "migrated (apply refuses; --close-removed closes them):",
                    "red",
                )
            )
            for c in impact.blocked_samples:
                parts.append(Text(f"    {c.account_id}/{c.case_id}: {c.why}"))
        if impact.closing:
            parts.append(
                Text(f"  {impact.closing} case{'s' if impact.closing != 1 else ''} close:")
            )
            for closing in impact.closing_samples:
                parts.append(Text(f"    {closing.account_id}/{closing.case_id}: {closing.reason}"))
        for flow, count in impact.opening.items():
            shown = ", ".join(impact.opening_samples.get(flow, ()))
            more = ", ..." if count > len(impact.opening_samples.get(flow, ())) else ""
            parts.append(
                Text(
                    f"  {flow}: {count} account{'s' if count != 1 else ''} would open a case "
                    f"({shown}{more})"
                )
            )
        for key, count in impact.notices.items():
            parts.append(Text(f"  notice {key}: {count} sent at once"))
        for key, count in impact.outcomes.items():
            parts.append(Text(f"  {key}: {count} requested at once", "red"))
    return Group(*parts)


def _span(earliest: timedelta | None, latest: timedelta | None) -> str:
    if earliest is None or latest is None:
        return ""
    if earliest == latest:
        return _moved(earliest)
    return f"{_moved(earliest)} to {_moved(latest)}"


def _moved(delta: timedelta) -> str:
    """'16 days earlier', '2 days 3 hours later'."""
    seconds = abs(int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes and not days:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    amount = " ".join(parts) or "less than a minute"
    return f"{amount} {'earlier' if delta < timedelta(0) else 'later'}"


def _example(c: CaseMigration) -> str:
    before = _when(c.deadline_before) if c.deadline_before else "none"
    after = _when(c.deadline_after) if c.deadline_after else "none"
    return f"{c.account_id}: {before} -> {after}"


# --- operations: serve, worker, migrate, tokens, accounts, audit ------------------------------
# Heavy imports (uvicorn, the API, the store) stay inside the commands, so `lapse policy check`
# starts fast.

EXIT_CONFIG = 2  # the configuration is invalid or unsafe

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help="Database URL (LAPSE_DATABASE_URL); default: the embedded SQLite file.",
        show_default=False,
    ),
]
PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy", help="A policy file or preset name (LAPSE_POLICY).", show_default=False
    ),
]


def _settings(**flags: object) -> Settings:
    """Settings from the environment with the flags given; a ConfigError exits 2."""
    from lapse.runtime.settings import load_settings

    try:
        return load_settings(**flags)
    except ConfigError as exc:
        _fail(exc, EXIT_CONFIG)


def _fail(exc: Exception, code: int = EXIT_INVALID) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code)


def _services(
    settings: Settings,
    *,
    policy_from: Literal["settings", "store"] = "settings",
    adopt: bool = True,
    started_by: str = "lapse",
) -> Services:
    """The wired process; an invalid policy or configuration, a database that is not at this
    version's schema, or a policy that is not the database's active one and would move open
    cases (see `Engine.adopt_policy`), exits 2."""
    from lapse.runtime.bootstrap import build
    from lapse.store import default_sqlite_url
    from lapse.store.migrate import current_revision, head_revision

    try:
        url = settings.database_url or default_sqlite_url()
        if not url.startswith("sqlite"):
            # only the embedded SQLite file is migrated implicitly (see bootstrap); the schema
            # is checked before anything reads the database (its active policy first)
            current, head = current_revision(url), head_revision()
            if current != head:
                raise ConfigError(
                    f"the database {_shown(url)} is at schema revision "
                    f"{current or 'none'}, this lapse needs {head}: run `lapse migrate`"
                )
        return build(settings, policy_from=policy_from, adopt=adopt, started_by=started_by)
    except LapseError as exc:  # a bad policy, configuration or database
        _fail(exc, EXIT_CONFIG)
    except Exception as exc:  # the driver's own errors: unreachable, refused...
        _fail(ConfigError(f"cannot open the database: {exc}"), EXIT_CONFIG)


def _store(settings: Settings) -> Store:
    """The store alone (tokens, audit): the embedded SQLite file is migrated on first use."""
    from lapse.store import default_sqlite_url, open_store

    url = settings.database_url or default_sqlite_url()
    try:
        return open_store(url, migrate=url.startswith("sqlite"))
    except LapseError as exc:
        _fail(exc, EXIT_CONFIG)


class Update(Protocol):
    """Moves a progress bar: `done` of `total` (None: unknown), `detail` shown beside it."""

    def __call__(
        self, done: int, total: int | None = None, detail: str = "", label: str | None = None
    ) -> None:
        """Show the new state."""


def _no_progress(
    done: int, total: int | None = None, detail: str = "", label: str | None = None
) -> None:
    """Off a terminal: nothing is drawn."""


def interactive() -> bool:
    """True when stdout is a terminal: only then are progress bars drawn, so piped, captured or
    logged output stays exactly what the commands print."""
    return sys.stdout.isatty()


@contextmanager
def progress_bar(label: str) -> Iterator[Update]:
    """A transient progress bar on the terminal while a long operation runs (erased when it
    ends, before the command prints its result); a no-op when stdout is not a terminal."""
    if not interactive():
        yield _no_progress
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None, detail="")

        def update(
            done: int, total: int | None = None, detail: str = "", label: str | None = None
        ) -> None:
            bar.update(
                task,
                completed=done,
                total=total,
                detail=detail,
                description=label if label is not None else bar.tasks[task].description,
            )

        yield update


def _close(store: Store) -> None:
    """Close the store's pooled connections (a SqlStore has them, a MemoryStore not)."""
    close = getattr(store, "close", None)
    if callable(close):
        close()


def _shown(url: str) -> str:
    """A database URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: print nothing secret
        return url.split("@")[-1]


def _ensure_admin_token(store: Store, now: datetime, *, production: bool) -> str | None:
    """On first start (no token at all), create an admin token; returns its secret once.

    In production that start is refused instead: the secret would be printed into the
    service's logs, and an API nobody has a token for serves no one. ConfigError says how to
    create the first token."""
    if store.list_tokens():
        return None
    if production:
        raise ConfigError(
            "no API token exists and LAPSE_ENV=production does not create one at start "
            "(its secret would land in the logs): create the first one with "
            "`lapse token create <name> --scope admin`, then start `lapse serve` again"
        )
    _, secret = store.create_token(name="admin", scopes=["read", "write", "admin"], now=now)
    return secret


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (LAPSE_HOST).", show_default=False)
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (LAPSE_PORT).", show_default=False)
    ] = None,
    database: DatabaseOption = None,
    policy: PolicyOption = None,
    clock: Annotated[
        str | None,
        typer.Option(
            help="'system', 'manual' to move time over the API, or 'accelerated' to run time "
            "faster (LAPSE_CLOCK).",
            show_default=False,
        ),
    ] = None,
    clock_start: Annotated[
        str | None,
        typer.Option(
            help="Where a manual or accelerated clock starts, e.g. 2025-01-31T09:00:00Z "
            "(LAPSE_CLOCK_START).",
            show_default=False,
        ),
    ] = None,
    clock_rate: Annotated[
        float | None,
        typer.Option(
            help="How many times faster than real time an accelerated clock runs "
            "(LAPSE_CLOCK_RATE, default 60: a minute is an hour).",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request (off: lapse logs its own events; proxies log requests).",
        ),
    ] = False,
    loops: Annotated[
        bool,
        typer.Option(
            "--loops/--no-loops",
            help="Run the scheduler and dispatcher here too (off: leave them to `lapse worker`).",
        ),
    ] = True,
) -> None:
    """Run the HTTP API with the scheduler and the dispatcher in one process."""
    settings = _settings(
        host=host,
        port=port,
        database_url=database,
        policy=policy,
        clock=clock,
        clock_start=clock_start,
        clock_rate=clock_rate,
    )
    services = _services(settings, started_by="lapse serve")
    try:
        token = _ensure_admin_token(
            services.store, services.clock.now(), production=settings.env == "production"
        )
    except ConfigError as exc:
        services.close()
        _fail(exc, EXIT_CONFIG)
    _run_server(services, token=token, loops=loops, access_log=access_log)


def _run_server(
    services: Services,
    *,
    token: str | None,
    loops: bool,
    access_log: bool,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
    banner: Callable[[str], str] | None = None,
) -> None:
    """Print where the server listens, run the API (and the loops) until Ctrl-C, then close.

    `before`/`after` run around the server (the demo's host activity); `banner` replaces the
    printed lines (it gets them and returns what to print)."""
    import uvicorn

    from lapse.api import create_app
    from lapse.runtime.clock import AcceleratedClock

    settings = services.settings
    application = create_app(services)
    base = f"http://{settings.host}:{settings.port}"
    engine_policy = services.policy
    lines = [
        f"lapse serving policy {engine_policy.name} v{engine_policy.version}" + _adopted(services),
        f"  API:      {base}  (OpenAPI: {base}/openapi.json, docs: {base}/docs)",
        f"  Admin UI: {base}/admin  (sign in with an API token)",
        f"  database: {_shown(services.database_url)}",
    ]
    manual = settings.clock == "manual"
    if manual:
        lines.append(
            f"  clock:    manual, at {services.clock.now().isoformat()}; "
            "it moves only through POST /v1/clock, which also runs the work due on the way"
        )
    elif isinstance(services.clock, AcceleratedClock):
        lines.append(
            f"  clock:    accelerated, {_rate(services.clock.rate)}, "
            f"from {services.clock.start.isoformat()} (GET /health shows it)"
        )
    if token is not None:
        lines.append(f"  admin token (shown once, keep it): {token}")
    # with a manual clock the API runs due work itself (see create_app): no background loops
    background = services.loops() if loops and not manual else None
    if background is None and not manual:
        lines.append("  no scheduler or dispatcher here (--no-loops): run `lapse worker`")
    text = "\n".join(lines)
    typer.echo(banner(text) if banner is not None else text)
    if background is not None:
        background.start()
    if before is not None:
        before()
    try:
        config = uvicorn.Config(
            application,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=access_log,
        )
        uvicorn.Server(config).run()
    finally:
        if after is not None:
            after()
        if background is not None:
            background.stop()
        _close(services.store)


def _adopted(services: Services) -> str:
    """What starting with the policy did, for the banner ('' if it was the active one)."""
    adoption = services.adoption
    if adoption is None or not adoption.recorded:
        return ""
    if adoption.previous is None:
        return " (recorded as the database's active policy)"
    previous = adoption.previous
    return (
        f" (applied automatically: no open case was opened under the previous policy, "
        f"{previous.name} v{previous.version})"
    )


def _rate(rate: float) -> str:
    """'60x: one minute is one hour' for an accelerated clock's rate."""
    minute = rate * 60
    for seconds, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if minute >= seconds:
            amount = minute / seconds
            shown = f"{amount:g}" if amount != 1 else "one"
            return f"{rate:g}x: one real minute is {shown} {unit}{'s' if amount != 1 else ''}"
    return f"{rate:g}x"


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's databases go (a fresh directory).")
    ] = Path("var/demo"),
    reset: Annotated[
        bool, typer.Option("--reset", help="Delete the demo already in --dir and start over.")
    ] = False,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (LAPSE_HOST).", show_default=False)
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (LAPSE_PORT).", show_default=False)
    ] = None,
    rate: Annotated[
        float,
        typer.Option(
            help="How much faster than real time the demo runs (60: a minute is an hour)."
        ),
    ] = 60.0,
    feed: Annotated[
        bool, typer.Option("--feed/--no-feed", help="Print what lapse does as it happens.")
    ] = True,
) -> None:
    """Create a demo email service with hundreds of accounts in every phase, and serve it on an
    accelerated clock: watch accounts enter grace, get warned, lock, unlock and be deleted."""
    import time
    from datetime import timedelta

    from lapse.demo import guide
    from lapse.demo.live import Feed, HostScript
    from lapse.demo.run import check_directory, check_port, prepare
    from lapse.demo.seed import quiet
    from lapse.runtime.clock import AcceleratedClock

    started = time.monotonic()
    defaults = _settings(host=host, port=port)
    try:
        check_directory(directory, reset=reset)
        check_port(defaults.host, defaults.port)
        typer.echo(f"lapse demo: creating a demo email service in {directory}/")
        prepared = prepare(
            directory,
            rate=rate,
            host=host,
            port=port,
            progress=lambda text: typer.echo(f"  {text}"),
        )
    except LapseError as exc:
        _fail(exc, EXIT_CONFIG)
    services = prepared.services
    clock = services.clock
    assert isinstance(clock, AcceleratedClock)
    demo = prepared.demo
    rows = sum(demo.host_rows.values())
    typer.echo(
        f"  ready in {time.monotonic() - started:.1f} s: {len(demo.cast.accounts)} accounts, "
        f"{rows:,} rows in the host database\n"
    )
    base = f"http://{prepared.settings.host}:{prepared.settings.port}"
    text = guide.render(
        engine=services.engine,
        cast=demo.cast,
        now=demo.now,
        rate=clock.rate,
        base_url=base,
        token=prepared.token,
        directory=str(directory),
        lapse_command=_lapse_command(),
        host_rows=demo.host_rows,
        within=timedelta(hours=1),
    )
    live: list[HostScript | Feed] = [
        HostScript(services.engine, clock, demo.cast.script, demo.host_url, typer.echo)
    ]
    if feed:
        live.append(Feed(services.engine, clock, demo.now, typer.echo))

    def begin() -> None:
        for part in live:
            part.start()

    def end() -> None:
        for part in live:
            part.stop()

    with quiet():  # the feed tells what happens; the info logs would repeat it
        _run_server(
            services,
            token=prepared.token,
            loops=True,
            access_log=False,
            before=begin,
            after=end,
            banner=lambda lines: (
                f"{lines}\n  (the token is also in {directory}/admin-token)\n{text}\n"
            ),
        )


def _lapse_command() -> str:
    """How to run lapse from here: `lapse` if it is on the PATH, else its path (.venv/bin)."""
    import os
    import shutil
    import sys

    script = Path(sys.executable).parent / "lapse"
    found = shutil.which("lapse")
    if found is not None and Path(found).resolve() == script.resolve():
        return "lapse"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(script)


@app.command()
def worker(
    database: DatabaseOption = None,
    policy: PolicyOption = None,
    worker_id: Annotated[
        str | None,
        typer.Option(help="Name in claims and logs (LAPSE_WORKER_ID); default host:pid."),
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option(help="Seconds to sleep when idle (LAPSE_POLL_SECONDS).", show_default=False),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve this worker's Prometheus counters at http://LAPSE_HOST:PORT/metrics "
            "(LAPSE_METRICS_PORT).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the scheduler and the dispatcher only (several may share one PostgreSQL database)."""
    import signal

    settings = _settings(
        database_url=database,
        policy=policy,
        worker_id=worker_id,
        poll_seconds=poll,
        metrics_port=metrics_port,
    )
    if settings.clock == "manual":
        _fail(
            ConfigError(
                "LAPSE_CLOCK=manual: a manual clock only moves inside `lapse serve` "
                "(POST /v1/clock); a worker needs the system clock"
            ),
            EXIT_CONFIG,
        )
    if settings.clock == "accelerated":
        _fail(
            ConfigError(
                "LAPSE_CLOCK=accelerated: an accelerated clock lives inside one process "
                "(`lapse serve`, `lapse demo`); workers would each run their own time"
            ),
            EXIT_CONFIG,
        )
    # a worker runs the database's active policy, so that one `lapse policy apply` switches
    # every worker (they follow it between batches); LAPSE_POLICY only seeds an empty database
    services = _services(settings, policy_from="store", started_by="lapse worker")
    loops = services.loops()
    typer.echo(
        f"lapse worker {services.engine.worker_id}: policy {services.policy.name} "
        f"v{services.policy.version}{_adopted(services)}, database "
        f"{_shown(services.database_url)}"
    )
    note = _configured_differs(settings, services)
    if note:
        typer.echo(note, err=True)
    server = _metrics_server(settings, services) if settings.metrics_port is not None else None
    # SIGTERM (systemd, Kubernetes) stops as gracefully as Ctrl-C: the current batch finishes
    signal.signal(signal.SIGTERM, lambda *_: loops.stop_event.set())
    try:
        loops.run_forever()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        _close(services.store)


def _metrics_server(settings: Settings, services: Services) -> Any:
    """Serve this process's counters (`lapse.runtime.metrics.REGISTRY`: steps, batches,
    deliveries, pruned rows) for Prometheus, behind LAPSE_METRICS_TOKEN when it is set; the
    database gauges are the API's to serve."""
    from lapse.runtime import metrics

    port = settings.metrics_port
    assert port is not None
    try:
        server = metrics.serve(settings.host, port, settings.metrics_token)
    except OSError as exc:
        _close(services.store)
        _fail(
            ConfigError(
                f"LAPSE_METRICS_PORT: cannot serve metrics on {settings.host}:{port}: "
                f"{exc.strerror or exc}"
            ),
            EXIT_CONFIG,
        )
    guard = " (bearer LAPSE_METRICS_TOKEN)" if settings.metrics_token else ""
    typer.echo(f"  metrics: http://{settings.host}:{port}/metrics{guard}")
    return server


def _configured_differs(settings: Settings, services: Services) -> str:
    """A note when LAPSE_POLICY is not the active policy a worker runs."""
    try:
        configured = resolve_policy(settings.policy)
    except LapseError:
        return f"note: LAPSE_POLICY={settings.policy} cannot be loaded; it is not used here"
    if configured.digest == services.policy.digest:
        return ""
    return (
        f"note: LAPSE_POLICY={settings.policy} ({configured.name} v{configured.version}) is not "
        "the database's active policy and is not used: preview it with `lapse simulate "
        f"{settings.policy}`, apply it with `lapse policy apply {settings.policy} "
        "--keep-deadlines` or `--replan`"
    )


@app.command()
def migrate(database: DatabaseOption = None) -> None:
    """Upgrade the database schema to this version of lapse and print the revision."""
    from lapse.store import default_sqlite_url
    from lapse.store.migrate import current_revision, head_revision
    from lapse.store.migrate import migrate as upgrade

    settings = _settings(database_url=database)
    url = settings.database_url or default_sqlite_url()
    try:
        before = current_revision(url)
        with progress_bar("migrating") as update:
            upgrade(
                url,
                progress=lambda done, total, revision: update(
                    done, total, f"revision {revision} ({done} of {total})"
                ),
            )
        after = current_revision(url)
    except LapseError as exc:
        _fail(exc, EXIT_CONFIG)
    except Exception as exc:  # alembic and the driver raise their own errors
        _fail(ConfigError(f"cannot migrate {_shown(url)}: {exc}"), EXIT_CONFIG)
    change = "already up to date" if before == after else f"upgraded from {before or 'empty'}"
    typer.echo(f"{_shown(url)}: at revision {after} (head {head_revision()}), {change}")


token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

SCOPE_NAMES = ("read", "write", "admin")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who uses the token (recorded as `by`).")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="read, write or admin (repeat for several)."),
    ],
    database: DatabaseOption = None,
) -> None:
    """Create an API token and print its secret (shown this once)."""
    bad = [s for s in scope if s not in SCOPE_NAMES]
    if bad:
        _fail(InvalidInput(f"unknown scope {bad[0]!r}; expected {', '.join(SCOPE_NAMES)}"))
    store = _store(_settings(database_url=database))
    try:
        info, secret = store.create_token(
            name=name, scopes=list(dict.fromkeys(scope)), now=datetime.now(UTC)
        )
    finally:
        _close(store)
    typer.echo(f"token {info.id} ({name}; scopes: {', '.join(info.scopes)})")
    typer.echo(f"secret (shown once, keep it): {secret}")


@token_app.command("list")
def token_list(database: DatabaseOption = None) -> None:
    """List API tokens (never their secrets)."""
    from rich.console import Console
    from rich.table import Table

    store = _store(_settings(database_url=database))
    try:
        tokens = store.list_tokens()
    finally:
        _close(store)
    if not tokens:
        typer.echo(
            "no tokens (lapse serve creates an admin token on first start, except in "
            "production: lapse token create NAME --scope admin)"
        )
        return
    table = Table("id", "name", "scopes", "created", "last used", "revoked")
    for t in tokens:
        table.add_row(
            t.id,
            t.name,
            ", ".join(t.scopes),
            _when(t.created_at),
            _when(t.last_used_at),
            _when(t.revoked_at),
        )
    Console(width=120).print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `lapse token list`).")],
    database: DatabaseOption = None,
) -> None:
    """Revoke an API token: requests with it are refused from now on."""
    store = _store(_settings(database_url=database))
    try:
        if not any(t.id == token_id for t in store.list_tokens()):
            _fail(InvalidInput(f"no API token {token_id!r}"))
        store.revoke_token(token_id, datetime.now(UTC))
    finally:
        _close(store)
    typer.echo(f"token {token_id} revoked")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


account_app = typer.Typer(help="Look at accounts.", no_args_is_help=True)
app.add_typer(account_app, name="account")


@account_app.command("show")
def account_show(
    account_id: Annotated[str, typer.Argument(help="The account's id.", metavar="ID")],
    database: DatabaseOption = None,
    policy: PolicyOption = None,
) -> None:
    """Status and timeline of one account: state, cases, deadlines, banner, past and future."""
    from rich.console import Console

    # read-only: the database's active policy (LAPSE_POLICY if it has none yet), unless
    # --policy names one
    services = _services(
        _settings(database_url=database, policy=policy),
        policy_from="settings" if policy is not None else "store",
        adopt=False,
    )
    try:
        _show(services, account_id, Console(width=120))
    finally:
        _close(services.store)


def _show(services: Services, account_id: str, console: Console) -> None:
    engine = services.engine
    try:
        account = engine.account(account_id)
    except UnknownAccount as exc:
        stone = services.store.tombstone(account_id)
        if stone is None:
            _fail(exc)
        console.print(render_tombstone(stone))
        return
    if account.deleted_at is not None:
        stone = services.store.tombstone(account_id)
        if stone is not None:
            console.print(render_tombstone(stone))
            return
    console.print(render_account(engine.status(account_id), engine.timeline(account_id)))


_STATE_STYLE = {
    "active": "green",
    "restricted": "yellow",
    "locked": "red",
    "suspended": "bold red",
    "deleted": "dim",
}


def render_account(status: Status, timeline: Timeline) -> RenderableType:
    """Status and timeline of one account for the terminal."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    style = _STATE_STYLE.get(status.state, "")
    head = Text.assemble(
        ("account ", "bold"),
        (status.account_id, "bold"),
        f" ({status.kind}): ",
        (status.state, style),
        f"  as of {_when(status.as_of)}",
    )
    if status.next_due_at is not None:
        head.append(f"; next step due {_when(status.next_due_at)}")
    parts.append(head)
    if status.legal_hold is not None:
        hold = status.legal_hold
        parts.append(
            Text(f"legal hold since {_when(hold.since)} by {hold.by}: {hold.reason}", "magenta")
        )
    if status.banner:
        parts.append(Panel(status.banner, title="banner", title_align="left", border_style=style))
    if status.denied:
        parts.append(Text(f"denied: {', '.join(status.denied)}"))
    if status.cases:
        cases = Table("case", "phase", "state", "deadline", "time left", "outcome", title="cases")
        details: list[RenderableType] = []
        for case in status.cases:
            phase = case.phase or "(past the last phase)"
            deadline = _when(case.deadline)
            if case.planned_deadline is not None and case.deadline != case.planned_deadline:
                deadline += f"\n(planned {_when(case.planned_deadline)})"
            cases.add_row(
                f"{case.id}\n{case.title}",
                f"{phase} ({case.phase_number}/{case.phase_count})",
                Text(case.state, _STATE_STYLE.get(case.state, "")),
                deadline,
                case.time_left or "-",
                case.outcome or "-",
            )
            notes = [f"reason: {case.reason}", f"opened by {case.opened_by}"]
            notes += [f"waiting: {w}" for w in case.waiting]
            notes += [f"deadline moved: {a.detail} (+{a.delta})" for a in case.adjustments]
            for n in case.notices:
                sent = f"dispatched {_when(n.dispatched_at)}" if n.dispatched_at else "not sent yet"
                notes.append(f"notice {n.key}: due {_when(n.due_at)}, {sent}")
            details.append(Text(f"{case.id}:\n" + "\n".join(f"  {n}" for n in notes)))
        parts.append(cases)
        parts.extend(details)
    else:
        parts.append(Text("no open case", "green"))
    past = Table("when", "what", title="past")
    for event in timeline.past:
        past.add_row(_when(event.at), event.text)
    parts.append(past if timeline.past else Text("past: nothing recorded"))
    future = Table("when", "what", title="projected (if nothing changes)")
    for event in timeline.events:
        future.add_row(_when(event.at), event.text)
    if timeline.truncated:
        future.add_row("...", "(more)")
    parts.append(future if timeline.events else Text("projected: nothing will happen"))
    parts.append(_flows(timeline))
    return Group(*parts)


def _flows(timeline: Timeline) -> RenderableType:
    from rich.tree import Tree

    tree = Tree("flows", guide_style="dim")
    for outlook in timeline.flows:
        if not outlook.applies:
            tree.add(f"[dim]{outlook.title}: does not apply to this kind[/dim]")
            continue
        if outlook.open_case is not None:
            tree.add(f"{outlook.title}: case {outlook.open_case} is open")
            continue
        branch = tree.add(f"{outlook.title}: not started")
        if outlook.starts_on:
            branch.add(f"starts on event {' or '.join(outlook.starts_on)}")
        if outlook.start is not None:
            _explain(branch, outlook.start)
        if outlook.armed_from is not None:
            branch.add(f"[dim]time counts from {_when(outlook.armed_from)} (re-armed)[/dim]")
    return tree


def _explain(parent: Tree, explanation: Explanation) -> None:
    mark = "[green]holds[/green]" if explanation.holds else "[yellow]does not hold[/yellow]"
    when = ""
    if explanation.holds and explanation.since is not None:
        when = f" since {_when(explanation.since)}"
    elif not explanation.holds and explanation.holds_at is not None:
        when = f", will hold on {_when(explanation.holds_at)}"
    node = parent.add(f"{explanation.text}: {mark}{when}")
    for part in explanation.parts:
        _explain(node, part)


def render_tombstone(stone: Tombstone) -> RenderableType:
    """A deleted account's tombstone and receipt for the terminal."""
    import json

    from rich.console import Group
    from rich.text import Text

    address = stone.address_mode
    if stone.address_mode == "retire":
        address += f" until {_when(stone.retired_until)}" if stone.retired_until else " forever"
    return Group(
        Text.assemble(("account ", "bold"), (stone.account_id, "bold"), ": ", ("deleted", "dim")),
        Text(f"deleted {_when(stone.deleted_at)} by flow {stone.flow} (case {stone.case_id})"),
        Text(f"address: {address}"),
        Text("receipt: " + json.dumps(stone.receipt, indent=2, default=str, sort_keys=True)),
    )


outbox_app = typer.Typer(help="The outbox of notices and effects.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("prune")
def outbox_prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delete rows finished longer ago than this, e.g. '90 days' "
            "(default: LAPSE_OUTBOX_RETENTION).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the rows, delete nothing.")
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Delete the outbox rows of closed cases that were delivered (or skipped) longer ago
    than the retention: notices and host effects (deletion and purge rows, failed and
    pending rows stay), and the in-app notifications of closed cases created before then.
    The audit log keeps what was decided and sent."""
    settings = _settings(database_url=database)
    before, retention = _cutoff(older_than, settings.outbox_retention, "LAPSE_OUTBOX_RETENTION")
    store = _store(settings)
    try:
        rows = _pruned(store.prune_outbox, before, dry_run, "the outbox")
        notes = _pruned(store.prune_notifications, before, dry_run, "in-app notifications")
    finally:
        _close(store)
    told = (
        f"{_rows(rows)} and {_rows(notes, 'in-app notification')} "
        f"finished before {before.isoformat(timespec='seconds')} ({retention} ago)"
    )
    typer.echo(f"would delete {told}; nothing was deleted" if dry_run else f"deleted {told}")


events_app = typer.Typer(help="The ids of applied events.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("prune")
def events_prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Forget the ids of events received longer ago than this, e.g. '30 days' "
            "(default: LAPSE_EVENT_RETENTION).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the ids, forget nothing.")
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Forget the ids of events received longer ago than LAPSE_EVENT_RETENTION (or the
    longer --older-than). An id is kept only to recognise a repeated delivery of its event;
    the servers refuse events older than LAPSE_EVENT_RETENTION, so no forgotten id can be
    applied twice. Without it set, or with a shorter --older-than, nothing is forgotten."""
    from lapse.policy.durations import subtract

    settings = _settings(database_url=database)
    kept = settings.event_retention_duration
    if kept is None:
        _fail(
            ConfigError(
                "set LAPSE_EVENT_RETENTION (as the servers have it): without it they take "
                "events of any age, so a forgotten id could be applied a second time"
            ),
            EXIT_CONFIG,
        )
    before, retention = _cutoff(older_than, settings.event_retention, "LAPSE_EVENT_RETENTION")
    if before > subtract(datetime.now(UTC), kept):
        _fail(
            InvalidInput(
                f"--older-than {older_than!r} is shorter than LAPSE_EVENT_RETENTION ({kept}): "
                "the servers still take events that old, so their ids must be kept"
            ),
            EXIT_INVALID,
        )
    store = _store(settings)
    try:
        ids = _pruned(store.prune_events, before, dry_run, "event ids")
    finally:
        _close(store)
    told = (
        f"{_rows(ids, 'event id')} received before "
        f"{before.isoformat(timespec='seconds')} ({retention} ago)"
    )
    typer.echo(f"would forget {told}; nothing was forgotten" if dry_run else f"forgot {told}")


def _cutoff(older_than: str | None, setting: str | None, name: str) -> tuple[datetime, Duration]:
    """The moment before which rows go, from --older-than or the retention setting `name`."""
    from lapse.policy.durations import subtract
    from lapse.runtime.settings import retention_duration

    text_value = older_than if older_than is not None else setting
    if text_value is None:
        _fail(ConfigError(f"give --older-than (e.g. '90 days') or set {name}"), EXIT_CONFIG)
    try:
        retention = retention_duration(text_value)
    except ValueError as exc:
        where = "--older-than" if older_than is not None else name
        _fail(InvalidInput(f"{where}: {exc}"), EXIT_INVALID)
    return subtract(datetime.now(UTC), retention), retention


def _pruned(prune: Callable[..., int], before: datetime, dry_run: bool, what: str) -> int:
    """Run one of the store's prunes with a progress bar."""
    with progress_bar(f"counting {what}" if dry_run else f"pruning {what}") as update:
        return prune(
            before, dry_run=dry_run, progress=lambda done: update(done, None, f"{done:,} rows")
        )


def _rows(count: int, noun: str = "row") -> str:
    return f"{count:,} {noun}{'s' if count != 1 else ''}"


audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(database: DatabaseOption = None) -> None:
    """Walk the whole audit chain and check every receipt against its audit entry; exit 1 and
    list every problem if anything is broken."""
    from lapse.data.receipts import verify_store as verify_receipts

    store = _store(_settings(database_url=database))
    with progress_bar("walking the audit chain") as update:
        try:
            result = store.verify_audit(
                progress=lambda done, total: update(done, total, f"{done:,} of {total:,} entries")
            )
            update(0, None, "", label="checking the receipts")
            receipts, receipt_problems = verify_receipts(store)
        finally:
            _close(store)
    if result.ok and not receipt_problems:
        matched = (
            f"; {receipts} receipt{'s' if receipts != 1 else ''} verified against the audit log"
            if receipts
            else ""
        )
        typer.echo(f"ok: {result.checked} audit entries, the chain is intact{matched}")
        return
    count = len(result.problems)
    if count:
        typer.echo(
            f"broken: {count} problem{'s' if count != 1 else ''} in {result.checked} audit entries"
        )
    for p in result.problems:
        typer.echo(f"  seq {p.seq}: {p.problem}: {p.detail}")
    if receipt_problems:
        count = len(receipt_problems)
        typer.echo(f"broken: {count} problem{'s' if count != 1 else ''} in {receipts} receipts")
    for text in receipt_problems:
        typer.echo(f"  {text}")
    raise typer.Exit(EXIT_INVALID)


# the account's data: `lapse export`, `lapse receipt ...` (lapse.cli_data imports this module
# lazily, inside its commands, so this import at the end is not circular)
from lapse.cli_data import export_command, receipt_app  # noqa: E402

app.command("export")(export_command)
app.add_typer(receipt_app, name="receipt")


def main() -> None:
    """Entry point of the `lapse` script."""
    app()
