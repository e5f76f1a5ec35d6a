"""Public helpers for tests of lapse and of the products that embed it.

- `MemoryStore` (re-exported from `lapse.store.memory`): the whole storage contract in memory.
- `throwaway_postgres()`: a real PostgreSQL server in a temporary directory, for integration tests
  that must see what production sees (row locks, SKIP LOCKED, jsonb, timestamptz).
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lapse.store.memory import MemoryStore

_BINARIES = ("initdb", "pg_ctl", "postgres")
_SERVER_USER = "postgres"  # PostgreSQL refuses to run as root; this account runs it instead


def _bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: the PATH, then usual install places."""
    found = [shutil.which(name) for name in _BINARIES]
    if all(found):
        return Path(str(found[0])).resolve().parent
    for candidate in [
        *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True),
        "/usr/local/pgsql/bin",
        "/opt/homebrew/bin",
    ]:
        if all((Path(candidate) / name).exists() for name in _BINARIES):
            return Path(candidate)
    return None


def _as_server_user() -> list[str] | None:
    """The command prefix that runs a program as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        return None
    if shutil.which("runuser"):
        return ["runuser", "-u", _SERVER_USER, "--"]
    if shutil.which("su"):
        return ["su", _SERVER_USER, "-s", "/bin/sh", "-c"]
    return None


def postgres_available() -> str | None:
    """None if `throwaway_postgres()` can start a server here, else the reason it cannot."""
    if _bin_dir() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) are not on the PATH nor in "
            "/usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql)"
        )
    if _as_server_user() is None:
        return (
            "running as root and there is no 'postgres' user (or no runuser/su) to run the "
            "server as; PostgreSQL refuses to run as root"
        )
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(prefix: list[str], args: list[str]) -> None:
    command = [*prefix, shlex.join(args)] if prefix[-1:] == ["-c"] else [*prefix, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


@contextmanager
def throwaway_postgres(*, durable: bool = False) -> Iterator[str]:
    """Start a PostgreSQL cluster in a temporary directory; yield its SQLAlchemy URL; remove it.

    Trust authentication on 127.0.0.1 and a unix socket inside the directory. Unless `durable`
    (benchmarks: commits as a production server makes them), fsync, synchronous commit and full
    page writes are off: the data is thrown away. As root, the server runs as `postgres`.
    """
    reason = postgres_available()
    if reason is not None:
        raise RuntimeError(reason)
    bin_dir = _bin_dir()
    prefix = _as_server_user()
    assert bin_dir is not None
    assert prefix is not None
    root = Path(tempfile.mkdtemp(prefix="lapse-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        entry = pwd.getpwnam(_SERVER_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
        "-c max_connections=200"
    )
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = False
    try:
        _run(
            prefix,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        _run(
            prefix,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run(
                prefix, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            )
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["MemoryStore", "postgres_available", "throwaway_postgres"]
