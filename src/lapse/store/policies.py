"""SQL for the applied policies (the `policies` table) and the policy versions of open cases:
the parts of `SqlStore` that policy versions and migrations (lapse.core.migrate) rely on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, insert, select, text

from lapse.store.base import StoredPolicy
from lapse.store.tables import policies


def active(conn: Connection) -> StoredPolicy | None:
    """The newest row."""
    row = conn.execute(select(policies).order_by(policies.c.seq.desc()).limit(1)).mappings().first()
    return _policy(row) if row is not None else None


def active_seq(conn: Connection) -> int:
    """The seq of the newest row (0 if none): what processes poll to notice a new policy."""
    value = conn.execute(select(policies.c.seq).order_by(policies.c.seq.desc()).limit(1)).scalar()
    return int(value) if value is not None else 0


def history(conn: Connection) -> list[StoredPolicy]:
    """Every row, oldest first."""
    rows = conn.execute(select(policies).order_by(policies.c.seq)).mappings()
    return [_policy(row) for row in rows]


def record(conn: Connection, policy: StoredPolicy) -> int:
    """Insert a row; returns its seq."""
    seq = conn.execute(
        insert(policies)
        .values(
            name=policy.name,
            version=policy.version,
            digest=policy.digest,
            source=policy.source,
            applied_at=policy.applied_at,
            applied_by=policy.applied_by,
            mode=policy.mode,
            close_removed=policy.close_removed,
        )
        .returning(policies.c.seq)
    ).scalar_one()
    return int(seq)


def open_case_versions(conn: Connection, dialect: str) -> dict[str, int]:
    """Open cases per policy version, from the accounts' own case lists (one pass, in SQL)."""
    if dialect == "postgresql":
        sql = (
            "SELECT c.value->>'policy_version', count(*) FROM accounts a, "
            "jsonb_array_elements(a.cases) c WHERE a.deleted_at IS NULL GROUP BY 1"
        )
    else:
        sql = (
            "SELECT json_extract(c.value, '$.policy_version'), count(*) FROM accounts a, "
            "json_each(a.cases) c WHERE a.deleted_at IS NULL GROUP BY 1"
        )
    return {str(version): int(count) for version, count in conn.execute(text(sql))}


def _policy(row: RowMapping) -> StoredPolicy:
    applied_at: datetime = row["applied_at"]
    return StoredPolicy(
        seq=int(row["seq"]),
        name=row["name"],
        version=row["version"],
        digest=row["digest"],
        source=row["source"],
        applied_at=applied_at,
        applied_by=row["applied_by"],
        mode=row["mode"],
        close_removed=bool(row["close_removed"]),
    )
