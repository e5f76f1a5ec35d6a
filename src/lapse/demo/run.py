"""Preparing `lapse demo`: a fresh directory with both databases, the settings to serve it, and
what other commands need to look at it (`lapse.env`, the admin token).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lapse.demo.seed import (
    HOST_DB,
    LAPSE_DB,
    POLICY,
    Demo,
    create_demo,
    demo_settings,
)
from lapse.errors import ConfigError
from lapse.runtime.bootstrap import Services, build
from lapse.runtime.settings import Settings

MARKER = "demo.json"  # marks a directory as a lapse demo: only such a directory is reset
ENV_FILE = "lapse.env"
TOKEN_FILE = "admin-token"


class DemoExists(ConfigError):
    """The demo directory is not empty and --reset was not given (or it is not a demo)."""

    code = "demo-exists"


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A created demo and the services that serve it."""

    demo: Demo
    settings: Settings
    services: Services
    token: str


def check_directory(directory: Path, *, reset: bool) -> None:
    """Refuse a non-empty directory unless reset is asked and it holds a demo (then empty it)."""
    if not directory.exists() or not any(directory.iterdir()):
        return
    if not (directory / MARKER).is_file():
        raise DemoExists(
            f"{directory} exists and is not a lapse demo (no {MARKER}); "
            "choose another --dir, or remove it yourself"
        )
    if not reset:
        raise DemoExists(
            f"a demo already exists in {directory}; `lapse demo --reset` deletes it and "
            "starts over (or choose another --dir)"
        )
    shutil.rmtree(directory)


def check_port(host: str, port: int) -> None:
    """Refuse a port that is already taken, before spending seconds on the databases."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): pass --port to use another"
            ) from None


def prepare(
    directory: Path,
    *,
    now: datetime | None = None,
    rate: float = 60.0,
    host: str | None = None,
    port: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Prepared:
    """Create the demo in `directory` (which must be empty or absent) and build its services."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    # validated first: a bad rate, host or port is refused before any work
    demo_settings(directory, now=now, rate=rate, host=host, port=port)
    demo = create_demo(directory, now=now, rate=rate, progress=progress)
    settings = demo_settings(
        directory,
        now=now,
        rate=rate,
        host=host,
        port=port,
        origin=datetime.now(UTC),  # the demo clock shows `now` from this moment on
    )
    services = build(settings)
    _, token = services.store.create_token(
        name="demo-admin", scopes=["read", "write", "admin"], now=services.clock.now()
    )
    _write(directory, demo, settings, token)
    return Prepared(demo=demo, settings=settings, services=services, token=token)


def _write(directory: Path, demo: Demo, settings: Settings, token: str) -> None:
    """The marker, the environment other lapse commands need, and the admin token (0600)."""
    marker = {
        "what": "lapse demo",
        "policy": POLICY,
        "start": demo.now.isoformat(),
        "rate": settings.clock_rate,
        "origin": settings.clock_origin.isoformat() if settings.clock_origin else None,
        "host_database": HOST_DB,
        "lapse_database": LAPSE_DB,
        "host_rows": demo.host_rows,
        "accounts": len(demo.cast.accounts),
    }
    (directory / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    env = {
        "LAPSE_DATABASE_URL": settings.database_url,
        "LAPSE_POLICY": settings.policy,
        "LAPSE_CLOCK": settings.clock,
        "LAPSE_CLOCK_START": settings.clock_start.isoformat() if settings.clock_start else None,
        "LAPSE_CLOCK_RATE": f"{settings.clock_rate:g}",
        "LAPSE_CLOCK_ORIGIN": settings.clock_origin.isoformat() if settings.clock_origin else None,
        "LAPSE_PRODUCT": settings.product,
        "LAPSE_CONNECTORS": str(settings.connectors.resolve()) if settings.connectors else None,
    }
    (directory / ENV_FILE).write_text(
        "".join(f"{name}={value}\n" for name, value in env.items() if value), encoding="utf-8"
    )
    path = directory / TOKEN_FILE
    path.write_text(token + "\n", encoding="utf-8")
    os.chmod(path, 0o600)  # a secret, even in a demo
