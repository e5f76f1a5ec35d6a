"""The `lapse` command line: one Typer sub-app per area (`lapse policy ...`).

Commands stay thin: they parse arguments, call the library and print. Add an area with
`app.add_typer(<sub-app>, name=...)` or a single command with `@app.command()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lapse.errors import PolicyError
from lapse.policy import UnknownPreset, describe_policy, inspect_policy, resolve_policy

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
    try:
        policy = resolve_policy(file_or_preset)
    except UnknownPreset as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from None
    except PolicyError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo(describe_policy(policy), nl=False)


def main() -> None:
    """Entry point of the `lapse` script."""
    app()
