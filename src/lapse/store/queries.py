"""SQL statements kept in `store/sql/*.sql` files, loaded by name (per dialect if they differ)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def query(name: str, dialect: str) -> str:
    """The text of `sql/<name>.<dialect>.sql`, or of `sql/<name>.sql` if there is no variant."""
    folder = resources.files("lapse.store").joinpath("sql")
    for candidate in (f"{name}.{dialect}.sql", f"{name}.sql"):
        path = folder.joinpath(candidate)
        if path.is_file():
            # comments go: SQLAlchemy's text() would read ":name" in them as bind parameters
            lines = path.read_text(encoding="utf-8").splitlines()
            return "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    raise LookupError(f"no SQL file for query {name!r} ({dialect})")
