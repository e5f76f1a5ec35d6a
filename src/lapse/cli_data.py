"""`lapse export` and `lapse receipt ...`: the account's data from the command line.

Registered on the main app by `lapse.cli`. `lapse export ID -o FILE` writes the same ZIP as the
HTTP API (refused while the account's restrictions deny `export`); `lapse receipt show ID` prints
a deletion or purge receipt (`--json` for the receipt itself, to keep or hand over), and `lapse
receipt list` lists them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import RenderableType

    from lapse.store.base import StoredReceipt

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="Database URL (LAPSE_DATABASE_URL).", show_default=False),
]
PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy", help="A policy file or preset name (LAPSE_POLICY).", show_default=False
    ),
]
ConnectorsOption = Annotated[
    Path | None,
    typer.Option(
        "--connectors",
        help="The data connectors file (LAPSE_CONNECTORS).",
        show_default=False,
    ),
]

receipt_app = typer.Typer(help="Deletion and purge receipts.", no_args_is_help=True)


def export_command(
    account_id: Annotated[str, typer.Argument(help="The account's id.", metavar="ID")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the ZIP.", show_default=False)
    ],
    database: DatabaseOption = None,
    policy: PolicyOption = None,
    connectors: ConnectorsOption = None,
) -> None:
    """Export the account's data as a ZIP of CSV files and a manifest (refused while denied)."""
    from rich.filesize import decimal

    from lapse.cli import EXIT_INVALID, _fail, _services, _settings, progress_bar
    from lapse.data.export import start_export
    from lapse.errors import LapseError

    services = _services(_settings(database_url=database, policy=policy, connectors=connectors))
    target = output.resolve()
    temporary: str | None = None
    try:
        chunks, manifest = start_export(services.engine, account_id)
        # written beside the target and renamed at the end: never a partial archive there
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        with os.fdopen(handle, "wb") as out, progress_bar(f"exporting {account_id}") as update:
            written = 0
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
                # the manifest fills as each file is complete: rows so far, bytes so far
                done = manifest.files
                rows = sum(f.rows for f in done)
                update(written, None, f"{len(done)} files, {rows:,} rows, {decimal(written)}")
        os.replace(temporary, target)
        temporary = None
    except LapseError as exc:
        _fail(exc, EXIT_INVALID)
    except OSError as exc:
        _fail(exc, EXIT_INVALID)
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        services.close()
    rows = sum(f.rows for f in manifest.files)
    typer.echo(f"{target}: {len(manifest.files)} files, {rows} rows of account {account_id}")
    for f in manifest.files:
        typer.echo(f"  {f.file}: {f.rows} rows, sha256 {f.sha256}")


@receipt_app.command("show")
def receipt_show(
    ident: Annotated[
        str, typer.Argument(help="A receipt id (del_..., prg_...) or an account id.", metavar="ID")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the receipt itself (JSON), to keep or share.")
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Print a receipt, or every receipt of an account; exit 1 if there is none."""
    from rich.console import Console

    from lapse.cli import EXIT_INVALID, _close, _settings, _store

    store = _store(_settings(database_url=database))
    try:
        found = store.receipt(ident)
        receipts = [found] if found is not None else store.receipts(account_id=ident, limit=1000)
    finally:
        _close(store)
    if not receipts:
        typer.echo(f"error: no receipt {ident!r}, and no account {ident!r} with receipts", err=True)
        raise typer.Exit(EXIT_INVALID)
    if as_json:
        bodies: Any = [dict(r.body) for r in receipts]
        typer.echo(json.dumps(bodies[0] if found is not None else bodies, indent=2))
        return
    console = Console(width=120)
    for receipt in receipts:
        console.print(render_receipt(receipt))


@receipt_app.command("list")
def receipt_list(
    account: Annotated[str | None, typer.Option(help="Only this account's.")] = None,
    kind: Annotated[str | None, typer.Option(help="delete or purge.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1)] = 100,
    database: DatabaseOption = None,
) -> None:
    """One line per receipt, oldest first."""
    from lapse.cli import EXIT_INVALID, _close, _settings, _store

    if kind not in (None, "delete", "purge"):
        typer.echo(f"error: --kind must be delete or purge, not {kind!r}", err=True)
        raise typer.Exit(EXIT_INVALID)
    store = _store(_settings(database_url=database))
    try:
        receipts = store.receipts(account_id=account, kind=kind, limit=limit)
    finally:
        _close(store)
    for r in receipts:
        rows = r.body.get("rows", 0)
        typer.echo(
            f"{r.id}  {r.kind:<6}  {r.account_id}  {r.finished_at:%Y-%m-%d %H:%M} UTC  "
            f"{rows} rows  {r.flow}"
        )


def render_receipt(receipt: StoredReceipt) -> RenderableType:
    """A receipt for the terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    body = receipt.body
    policy = body.get("policy") or {}
    head = Text.assemble(
        (f"{receipt.kind} receipt ", "bold"),
        (receipt.id, "bold"),
        f" of account {receipt.account_id}",
    )
    lines: list[RenderableType] = [
        head,
        Text(
            f"case {receipt.case_id} (flow {receipt.flow}), policy "
            f"{policy.get('name', '?')} v{policy.get('version', '?')}"
        ),
        Text(f"started {body.get('started_at')}, finished {body.get('finished_at')}"),
    ]
    if body.get("categories"):
        lines.append(Text(f"categories: {', '.join(body['categories'])}"))
    table = Table("connector", "location", "category", "rows", "finished", title="removed")
    for item in body.get("locations") or []:
        table.add_row(
            str(item.get("connector")),
            str(item.get("location")),
            str(item.get("category")),
            str(item.get("rows")),
            str(item.get("finished_at") or "-"),
        )
    lines.append(table)
    verified = "verified: nothing left" if body.get("verified") else "NOT verified"
    lines.append(Text(f"{body.get('rows', 0)} rows in total; {verified}"))
    if "lapse" in body:
        own = ", ".join(f"{k} {v}" for k, v in sorted(body["lapse"].items()))
        lines.append(Text(f"lapse's own rows erased: {own}"))
    if "address" in body:
        lines.append(Text(f"address: {json.dumps(body['address'])}"))
    lines.append(Text(f"sha256 {receipt.hash}", "dim"))
    return Group(*lines)
