"""Exports: one account's data as a streamed ZIP (one CSV per location and a JSON manifest).

The archive is produced chunk by chunk in constant memory: rows come from the connectors'
streams, each CSV is written into its ZIP entry as they arrive (Python's zipfile writes to a
non-seekable stream with data descriptors), and the bytes written so far are handed out every
64 KiB. The manifest comes last, when every file's row count and SHA-256 (of the CSV as
extracted) are known.

CSV (UTF-8, CRLF line ends, RFC 4180 quoting): a header row with the column names, then one row
per record. Each value is written by its own type, not its column's (SQLite's loose typing and
JSON columns mix types in one column): NULL is an empty field; int, float and str as they are;
booleans `true`/`false`; dicts and lists (JSON, JSONB, arrays) as compact JSON; bytes as base64
(standard alphabet, padded); datetimes, dates and times ISO 8601; anything else (Decimal, UUID,
enums) as `str()`.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, BinaryIO

from lapse.core.model import Decision
from lapse.data.base import ExportTable
from lapse.data.receipts import iso
from lapse.errors import Conflict

if TYPE_CHECKING:
    from lapse.runtime.engine import Engine

FORMAT = "lapse-export/1"
CHUNK = 64 * 1024


class ExportDenied(Conflict):
    """The account's current restrictions do not allow `export`; says which case denies it."""

    code = "export-denied"

    def __init__(self, account_id: str, decision: Decision) -> None:
        self.account_id = account_id
        self.decision = decision
        reasons = "; ".join(
            f"case {d.case_id} ({d.flow}, phase {d.phase}): {d.message or d.reason}"
            for d in decision.denials
        )
        super().__init__(
            f"account {account_id!r} may not export its data now: {reasons or decision.message}"
        )


def refuse_unless_allowed(account_id: str, decision: Decision | None) -> None:
    """Raise ExportDenied unless `decision` (for `export`; None: not gated) allows it."""
    if decision is not None and not decision.allowed:
        raise ExportDenied(account_id, decision)


@dataclass(slots=True)
class ArchiveFile:
    """One CSV of an archive, as the manifest describes it."""

    file: str
    connector: str
    location: str
    category: str
    columns: list[str]
    rows: int = 0
    bytes: int = 0
    sha256: str = ""


@dataclass(slots=True)
class Manifest:
    """What an archive holds: filled in while it is written, complete at its end."""

    account: str
    generated_at: str
    files: list[ArchiveFile] = field(default_factory=list)
    extra: Mapping[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The manifest document."""
        return {
            "format": FORMAT,
            "account": self.account,
            "generated_at": self.generated_at,
            **dict(self.extra),
            "rows": sum(f.rows for f in self.files),
            "files": [
                {
                    "file": f.file,
                    "connector": f.connector,
                    "location": f.location,
                    "category": f.category,
                    "columns": f.columns,
                    "rows": f.rows,
                    "bytes": f.bytes,
                    "sha256": f.sha256,
                }
                for f in self.files
            ],
        }


class _Sink(io.RawIOBase):
    """A write-only, non-seekable stream collecting what zipfile writes, for handing out."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self.size += len(chunk)
        return len(chunk)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return out


class _CsvOut:
    """What csv.writer writes to: text buffered, then encoded, hashed and compressed."""

    def __init__(self, entry: BinaryIO) -> None:
        self._entry = entry
        self._parts: list[str] = []
        self._pending = 0
        self.hash = hashlib.sha256()
        self.bytes = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._pending += len(text)
        if self._pending >= CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._parts:
            return
        data = "".join(self._parts).encode("utf-8")
        self._parts.clear()
        self._pending = 0
        self.hash.update(data)
        self.bytes += len(data)
        self._entry.write(data)


#: the types csv writes as the export wants them (None: an empty field); exactly these, so
#: `bool` (an int subclass) and str or int subclasses (enums) are converted
_PLAIN_ROW = frozenset((int, float, str, type(None)))


def _text(value: object) -> object:
    """A value as the CSV shows it: see the module docstring (and docs/data.md)."""
    kind = type(value)
    if kind in _PLAIN_ROW:
        return value
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=_json_default, separators=(",", ":"))
    return _scalar(value)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)  # Decimal, UUID, enums, int and str subclasses...


def _json_default(value: object) -> str:
    """Values inside a JSON value (a PostgreSQL array of dates or bytea) spelled as in a cell."""
    return _scalar(value)


def _file_name(connector: str, location: str, taken: set[str]) -> str:
    safe = "/".join(re.sub(r"[^A-Za-z0-9_.\-]", "_", part) or "_" for part in (connector, location))
    name = f"{safe}.csv"
    number = 2
    while name in taken:
        name = f"{safe}-{number}.csv"
        number += 1
    taken.add(name)
    return name


def archive(
    tables: Iterable[ExportTable],
    manifest: Manifest,
    *,
    compresslevel: int = 6,
) -> Iterator[bytes]:
    """The ZIP archive of `tables`, chunk by chunk; `manifest` is complete at the end."""
    sink = _Sink()
    taken: set[str] = set()
    with zipfile.ZipFile(
        sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
    ) as zf:
        for table in tables:
            location = table.location
            name = _file_name(location.connector, location.name, taken)
            entry = ArchiveFile(
                file=name,
                connector=location.connector,
                location=location.name,
                category=location.category,
                columns=list(table.columns),
            )
            with zf.open(name, "w", force_zip64=True) as raw:
                out = _CsvOut(raw)  # type: ignore[arg-type]
                writer = csv.writer(out, lineterminator="\r\n")
                writer.writerow(table.columns)
                rows = 0
                for row in table.rows:
                    # per value, not per column: SQLite's loose typing and JSON columns mix
                    # types in one column; a row of plain values (the usual) goes as it is
                    if _PLAIN_ROW.issuperset(map(type, row)):
                        writer.writerow(row)
                    else:
                        writer.writerow([_text(value) for value in row])
                    rows += 1
                    if sink.size >= CHUNK:
                        yield sink.take()
                out.flush()
            entry.rows = rows
            entry.bytes = out.bytes
            entry.sha256 = out.hash.hexdigest()
            manifest.files.append(entry)
            if sink.size:
                yield sink.take()
        document = json.dumps(manifest.as_json(), indent=2, ensure_ascii=False).encode()
        zf.writestr("manifest.json", document)
    yield sink.take()


def write_archive(
    tables: Iterable[ExportTable],
    out: BinaryIO,
    *,
    account_id: str,
    generated_at: datetime,
    extra: Mapping[str, object] | None = None,
) -> Manifest:
    """Write the archive of `tables` to a binary file object; returns its manifest."""
    manifest = Manifest(
        account=account_id, generated_at=generated_at.isoformat(), extra=dict(extra or {})
    )
    for chunk in archive(tables, manifest):
        out.write(chunk)
    return manifest


class NothingToExport(Conflict):
    """No data connector is configured, so an export would hold nothing."""

    code = "no-connectors"


class ExportUnavailable(Conflict):
    """A registered connector cannot export (a callable without an export function): the
    archive would miss its data, so no export is started (nor a link issued)."""

    code = "export-unavailable"


def start_export(engine: Engine, account_id: str) -> tuple[Iterator[bytes], Manifest]:
    """Refuse unless the account may `export` now (exact across processes); else the
    archive's chunks (lazy: the host's data is read while they are consumed) and its manifest,
    complete once the chunks are."""
    from lapse.errors import AccountDeleted

    account = engine.account(account_id)
    if account.deleted_at is not None:
        raise AccountDeleted(f"account {account_id!r} was deleted; its data is gone")
    # a policy that does not gate `export` allows it
    decision = (
        engine.check_exact(account_id, "export") if "export" in engine.policy.actions else None
    )
    refuse_unless_allowed(account_id, decision)
    exporter = getattr(engine.data, "export", None)
    if exporter is None:
        raise NothingToExport(
            "no data connectors are configured (LAPSE_CONNECTORS): lapse reaches none of the "
            "host's data, so there is nothing to export"
        )
    ask = getattr(engine.data, "export_problems", None)
    problems = ask() if ask is not None else []
    if problems:
        raise ExportUnavailable("no export is possible: " + "; ".join(problems))
    policy = engine.policy
    manifest = Manifest(
        account=account_id,
        generated_at=iso(engine.clock.now()),
        extra={"policy": {"name": policy.name, "version": policy.version}},
    )
    tables: Iterable[ExportTable] = exporter(account_id)
    return archive(tables, manifest), manifest
