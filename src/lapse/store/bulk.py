"""The store's hot paths in plain driver SQL: loading a batch of accounts, writing a batch of
changes, appending to the audit chain, ingesting signals.

These run for every due account and every reported signal, so they skip SQLAlchemy's per-value
type processing (it costs more than the lifecycle step itself): statements are built once per
dialect from the declared tables' column names, parameters are converted here in bulk, and
everything goes through the driver's own cursor (for writes, executemany on SQLite and one
statement over arrays on PostgreSQL: `Many`). Everything else in the store uses SQLAlchemy
Core expressions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Integer, Table

from lapse.core.model import Account, AuditEntry, Effect, FactEntry, Member
from lapse.errors import AccountExists
from lapse.store import codec
from lapse.store.base import Change, OutboxItem, StaleWrite, idempotency_key, key_time
from lapse.store.tables import (
    Timestamp,
    accounts,
    audit,
    cases,
    events,
    facts,
    members,
    outbox,
    signals,
    to_text,
    to_utc,
    tombstones,
)

CHUNK = 5000  # ids per IN list: far below SQLite's and PostgreSQL's bind parameter limits
GENESIS = "0" * 64  # the prev_hash of the first audit record


def _no_default(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=...).encode, the
    same C encoder called directly: `encode` builds that encoder anew at every call, which costs
    more than encoding the small objects written here."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C accelerator
        return json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys
        ).encode
    chunks = make(None, _no_default, encode_basestring, None, ":", ",", sort_keys, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


_dumps = _json_encoder(sort_keys=False)
_canonical = _json_encoder(sort_keys=True)
_loads = json.loads
_from_iso = datetime.fromisoformat
_EMPTY: Mapping[str, Any] = {}


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pg_time(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _same(value: Any) -> Any:
    return value


class Dialect:
    """Placeholders and value conversions for one database, and the statements built with them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pg = name == "postgresql"
        if self.pg:
            import psycopg

            self.driver_error: type[Exception] = psycopg.Error
            self.integrity_error: type[Exception] = psycopg.IntegrityError
        else:
            import sqlite3

            self.driver_error = sqlite3.Error
            self.integrity_error = sqlite3.IntegrityError
        self.p = "%s" if self.pg else "?"
        # JSON goes in as text: PostgreSQL casts it to jsonb, SQLite stores it as is
        self.j = "%s::jsonb" if self.pg else "?"
        self.time: Callable[[datetime], Any] = to_utc if self.pg else to_text
        self.read_time: Callable[[Any], datetime] = _pg_time if self.pg else _from_iso
        # psycopg already parses jsonb; SQLite gives the text back
        self.read_json: Callable[[Any], Any] = _same if self.pg else _loads
        # the load path reads JSON columns as text on both (see `load`)
        cast = "::text" if self.pg else ""
        self.load_columns = (
            "SELECT id, kind, created_at, address, deleted_at, version, "
            f"cases{cast}, armed_from{cast}, last_events{cast}, legal_hold{cast}, case_seq, state "
            "FROM accounts"
        )
        self.fact_columns = f"SELECT account_id, name, value{cast}, changed_at FROM facts"
        self.insert_account = self._many(accounts, json=_ACCOUNT_JSON)
        self.insert_member = self._many(members)
        self.insert_case = self._many(cases)
        self.insert_event = self._many(events, conflict="ON CONFLICT DO NOTHING")
        self.insert_tombstone = self._insert(tombstones, json={"receipt"})
        self.insert_audit = self._many(audit, json={"detail"})
        self.upsert_signal = self._insert(
            signals,
            conflict="ON CONFLICT (account_id, name) DO UPDATE SET last_seen = excluded.last_seen",
        )
        self.upsert_fact = self._insert(
            facts,
            json={"value"},
            conflict="ON CONFLICT (account_id, name) DO UPDATE "
            "SET value = excluded.value, changed_at = excluded.changed_at",
        )
        p = self.p
        # (a whole account; what a step changes; its state and schedule; only its schedule:
        # an unchanged state then costs no index update) x (guarded by the claim, which the
        # write releases; by the version; by the version, releasing any claim)
        updates = {
            "account": _ACCOUNT_UPDATE,
            "light": ("state", "next_due_at", "wake_signals"),
            "lifecycle": (
                "state",
                "next_due_at",
                "wake_signals",
                "cases",
                "armed_from",
                "last_events",
                "case_seq",
            ),
            "schedule": ("next_due_at", "wake_signals"),
        }
        self.update: dict[tuple[str, str], Many] = {}
        for name, columns in updates.items():
            self.update[name, "claimed"] = self._update(columns, "claimed_by", True)
            self.update[name, "version"] = self._update(columns, "version", False)
            self.update[name, "locked"] = self._update(columns, "version", True)
        # a step that failed keeps the account claimed: retried once the lease expires
        self.claim_account = (
            f"UPDATE accounts SET claimed_by = {p}, claim_expires_at = {p} WHERE id = {p}"
        )
        self.delete_signal = f"DELETE FROM signals WHERE account_id = {p} AND name = {p}"
        self.delete_fact = f"DELETE FROM facts WHERE account_id = {p} AND name = {p}"
        # the store filters by resolution before writing; the guard only keeps a concurrent
        # writer's later time from being moved back
        self.signal_report = (
            f"INSERT INTO signals (account_id, name, last_seen) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (account_id, name) DO UPDATE SET last_seen = excluded.last_seen "
            "WHERE signals.last_seen < excluded.last_seen"
        )
        outbox_columns = [c.name for c in outbox.columns if c.name != "id"]
        assert tuple(outbox_columns) == _OUTBOX_ORDER  # the order write() builds rows in
        self.outbox_columns = outbox_columns
        conflict = "ON CONFLICT (idempotency_key) DO NOTHING"
        # rows whose ids nobody asks for (the scheduler's)
        self.insert_outbox = self._many(outbox, json={"payload"}, skip={"id"}, conflict=conflict)
        # the same without the conflict clause: the keys that exist are filtered out first
        self.copy_outbox = self._many(outbox, json={"payload"}, skip={"id"})
        if self.pg:  # ids from the sequence: the statement says which rows it created
            self.insert_outbox_ids = self._many(
                outbox,
                json={"payload"},
                skip={"id"},
                conflict=f"{conflict} RETURNING id, idempotency_key",
            )
        else:  # ids chosen by the single writer: the missing ones are the existing keys'
            self.insert_outbox_ids = self._many(outbox, json={"payload"}, conflict=conflict)

    def _insert(
        self, table: Table, *, json: frozenset[str] | set[str] = frozenset(), conflict: str = ""
    ) -> str:
        names = [c.name for c in table.columns]
        values = ", ".join(self.j if n in json else self.p for n in names)
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({values})"
        return f"{sql} {conflict}" if conflict else sql

    def _many(
        self,
        table: Table,
        *,
        json: frozenset[str] | set[str] = frozenset(),
        conflict: str = "",
        skip: frozenset[str] | set[str] = frozenset(),
    ) -> Many:
        """An INSERT of many rows (values in the table's column order, without `skip`)."""
        if not self.pg:
            columns = [c.name for c in table.columns if c.name not in skip]
            values = ", ".join("?" for _ in columns)
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({values}) {conflict}"
            return Many(sql.rstrip(), arrays=False)
        cols = [c for c in table.columns if c.name not in skip]
        names = ", ".join(c.name for c in cols)
        picked = ", ".join(f"v.{c.name}::jsonb" if c.name in json else f"v.{c.name}" for c in cols)
        arrays = ", ".join(f"%b::{_array_type(c)}" for c in cols)
        sql = (
            f"INSERT INTO {table.name} ({names}) SELECT {picked} "
            f"FROM unnest({arrays}) AS v({names}) {conflict}"
        )
        if conflict:
            return Many(sql.rstrip(), arrays=True)
        # rows that cannot conflict go in by COPY, whose rows psycopg formats in C; in binary,
        # which spares both sides the text form of times and numbers (JSON is already text)
        copy = f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)"
        types = ["jsonb" if c.name in json else _array_type(c)[:-2] for c in cols]
        return Many(sql.rstrip(), arrays=True, copy=copy, copy_types=types)

    def _update(self, columns: Sequence[str], guard: str, release: bool) -> Many:
        """An UPDATE of many accounts: values for `columns`, then the id and the guard value."""
        tail = ", claimed_by = NULL, claim_expires_at = NULL" if release else ""
        if not self.pg:
            sets = ", ".join(f"{name} = ?" for name in columns)
            sql = (
                f"UPDATE accounts SET {sets}, version = version + 1{tail} "
                f"WHERE id = ? AND {guard} = ?"
            )
            return Many(sql, arrays=False)
        sets = ", ".join(
            f"{name} = v.{name}::jsonb" if name in _ACCOUNT_JSON else f"{name} = v.{name}"
            for name in columns
        )
        types = [_array_type(accounts.c[name]) for name in columns]
        types += ["text[]", "text[]" if guard == "claimed_by" else "int8[]"]
        arrays = ", ".join(f"%b::{t}" for t in types)
        names = ", ".join((*columns, "id", "guard"))
        # the ids once more as a condition on the accounts themselves: joined with the arrays
        # alone, the planner hashes the whole table for every batch (a sequential scan)
        sql = (
            f"UPDATE accounts AS a SET {sets}, version = a.version + 1{tail} "
            f"FROM unnest({arrays}) AS v({names}) "
            f"WHERE a.id = ANY(%b::text[]) AND a.id = v.id AND a.{guard} = v.guard"
        )
        return Many(sql, arrays=True, again=len(columns))

    def in_(self, column: str, ids: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """`column IN (...)` for these ids, and its parameters."""
        if self.pg:
            return f"{column} = ANY({self.p})", (list(ids),)
        return f"{column} IN ({','.join('?' * len(ids))})", tuple(ids)


def _array_type(column: Column[Any]) -> str:
    """The PostgreSQL array type a column's values are sent in (JSON as text, cast per value)."""
    kind = column.type
    if isinstance(kind, Timestamp):
        return "timestamptz[]"
    if isinstance(kind, BigInteger):
        return "int8[]"
    if isinstance(kind, Integer):
        return "int4[]"
    return "text[]"


_JSONB_TEXT: Any = None


def _jsonb_text_dumper() -> Any:
    """A psycopg dumper writing JSON text as binary jsonb (made once, on first use: psycopg is
    imported only for PostgreSQL)."""
    global _JSONB_TEXT
    if _JSONB_TEXT is None:
        import psycopg
        from psycopg.adapt import Dumper
        from psycopg.pq import Format

        jsonb = psycopg.adapters.types["jsonb"].oid

        class JsonbText(Dumper):
            format = Format.BINARY
            oid = jsonb

            def dump(self, obj: str) -> bytes:
                return b"\x01" + obj.encode()

        _JSONB_TEXT = JsonbText
    return _JSONB_TEXT


class Many:
    """One statement for many rows: `executemany` on SQLite; on PostgreSQL an INSERT of rows that
    cannot conflict is a COPY (psycopg formats its rows in C), anything else one execution with
    an array per column (`unnest`), planned and run once for the batch rather than once per row.
    The arrays go in binary (`%b`): psycopg quotes a text array element by element in Python,
    which costs more than the insert itself (the binary dump is Python too, hence COPY)."""

    __slots__ = ("again", "arrays", "copy", "copy_types", "sql")

    def __init__(
        self,
        sql: str,
        *,
        arrays: bool,
        again: int | None = None,
        copy: str | None = None,
        copy_types: Sequence[str] = (),
    ) -> None:
        self.sql = sql
        self.arrays = arrays
        self.again = again  # a column sent a second time, after the others
        self.copy = copy
        self.copy_types = list(copy_types)  # the columns' PostgreSQL types, for a binary COPY

    def run(self, cur: Any, rows: Sequence[Sequence[Any]]) -> int:
        """Run it for `rows` (tuples in the statement's column order); the rows it changed."""
        if self.copy is not None:
            # JSON values are text the store encoded: jsonb's binary form is a version byte and
            # that text (psycopg's own jsonb dumper would encode the text again, as a string)
            cur.adapters.register_dumper(None, _jsonb_text_dumper())
            with cur.copy(self.copy) as copy:
                copy.set_types(self.copy_types)
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            return len(rows)
        if self.arrays:
            columns = [list(column) for column in zip(*rows, strict=True)]
            if self.again is not None:
                columns.append(columns[self.again])
            cur.execute(self.sql, columns)
        else:
            cur.executemany(self.sql, rows)
        count: int = cur.rowcount
        return count


_OUTBOX_ORDER = (
    "account_id",
    "case_id",
    "channel",
    "recipient",
    "kind",
    "name",
    "payload",
    "idempotency_key",
    "status",
    "attempts",
    "next_attempt_at",
    "claimed_by",
    "claim_expires_at",
    "created_at",
    "delivered_at",
    "last_error",
)
_ACCOUNT_JSON = frozenset({"wake_signals", "cases", "armed_from", "last_events", "legal_hold"})
# the columns an account update writes, in this order (then the id and the guard)
_ACCOUNT_UPDATE = (
    "kind",
    "created_at",
    "address",
    "deleted_at",
    "state",
    "next_due_at",
    "wake_signals",
    "cases",
    "armed_from",
    "last_events",
    "legal_hold",
    "case_seq",
)
assert set(_ACCOUNT_UPDATE) < set(accounts.c.keys())


class Loaded:
    """An account as loaded in a transaction: the snapshot, the row's version, and its cases as
    stored (written back as they are when a step leaves the cases unchanged)."""

    __slots__ = ("account", "cases_raw", "state", "version")

    def __init__(
        self, account: Account, version: int, cases_raw: Any = None, state: str | None = None
    ) -> None:
        self.account = account
        self.version = version
        self.cases_raw = cases_raw
        self.state = state


_JSON_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_NOT_LITERAL = object()


def _json_text(text: str) -> Any:
    """json.loads, with the texts most fact values are (booleans) looked up instead."""
    value = _JSON_LITERALS.get(text, _NOT_LITERAL)
    return _loads(text) if value is _NOT_LITERAL else value


def load(
    conn: Connection,
    d: Dialect,
    ids: Sequence[str],
    *,
    worker: str | None = None,
    lock: bool = False,
) -> dict[str, Loaded]:
    """Snapshots of the given accounts, one query per table (optionally only those claimed by
    `worker`, and row-locked on PostgreSQL)."""
    rows: list[Any] = []
    cur = raw_cursor(conn)
    for chunk in chunks(ids):
        where, params = d.in_("id", chunk)
        sql = f"{d.load_columns} WHERE {where}"
        if worker is not None:
            sql += f" AND claimed_by = {d.p}"
            params = (*params, worker)
        if lock and d.pg:
            sql += " FOR UPDATE"
        cur.execute(sql, params)
        rows.extend(cur.fetchall())
    return _assemble(cur, d, rows)


def load_due(
    conn: Connection, d: Dialect, now: datetime, wall: datetime, limit: int
) -> dict[str, Loaded]:
    """Snapshots of up to `limit` accounts due at `now` whose claim is free or expired at
    `wall`, earliest due first, locked until the transaction ends: the claim and the load in
    one statement (on PostgreSQL `FOR UPDATE SKIP LOCKED`, so concurrent workers pass over the
    rows another one holds; SQLite has one writer, whose BEGIN IMMEDIATE is the lock)."""
    p = d.p
    sql = (
        f"{d.load_columns} WHERE next_due_at <= {p} "
        f"AND (claim_expires_at IS NULL OR claim_expires_at < {p}) "
        f"ORDER BY next_due_at LIMIT {p}"
    )
    if d.pg:
        sql += " FOR UPDATE SKIP LOCKED"
    cur = raw_cursor(conn)
    cur.execute(sql, (d.time(now), d.time(wall), limit))
    return _assemble(cur, d, cur.fetchall())


def _assemble(cur: Any, d: Dialect, rows: list[Any]) -> dict[str, Loaded]:
    """The snapshots of these account rows, with their members, signals and facts."""
    if not rows:
        return {}
    execute = cur.execute
    found = [row[0] for row in rows]
    read_time = d.read_time
    # JSON columns come as text (cast on PostgreSQL, whose driver would otherwise parse every
    # one of them, "{}" and "[]" included, at a json.loads each)
    read_json = _json_text
    member_map: dict[str, list[tuple[int, Member]]] = {}
    signal_map: dict[str, dict[str, datetime]] = {}
    fact_map: dict[str, dict[str, FactEntry]] = {}
    decode_fact = codec.decode_fact
    for chunk in chunks(found):
        where, params = d.in_("account_id", chunk)
        # no ORDER BY (a sort per batch): most accounts have one member, the rest sort below
        execute(f"SELECT account_id, position, email, role FROM members WHERE {where}", params)
        for account_id, position, email, role in cur.fetchall():
            got_members = member_map.get(account_id)
            if got_members is None:
                member_map[account_id] = [(position, Member(email=email, role=role))]
            else:
                got_members.append((position, Member(email=email, role=role)))
        execute(f"SELECT account_id, name, last_seen FROM signals WHERE {where}", params)
        for account_id, name, last_seen in cur.fetchall():
            got = signal_map.get(account_id)
            if got is None:
                signal_map[account_id] = {name: read_time(last_seen)}
            else:
                got[name] = read_time(last_seen)
        execute(f"{d.fact_columns} WHERE {where}", params)
        for account_id, name, value, changed_at in cur.fetchall():
            entry = FactEntry(value=decode_fact(read_json(value)), changed_at=read_time(changed_at))
            got_facts = fact_map.get(account_id)
            if got_facts is None:
                fact_map[account_id] = {name: entry}
            else:
                got_facts[name] = entry
    decode_case = codec.decode_case
    decode_times = codec.decode_times
    out: dict[str, Loaded] = {}
    for (
        account_id,
        kind,
        created_at,
        address,
        deleted_at,
        version,
        case_data,
        armed_from,
        last_events,
        legal_hold,
        case_seq,
        state,
    ) in rows:
        # most accounts have no cases, re-arming times or events: skip parsing "[]" and "{}"
        case_list = read_json(case_data) if case_data != "[]" else None
        members_list = member_map.get(account_id)
        account = Account(
            id=account_id,
            kind=kind,
            created_at=read_time(created_at),
            address=address,
            members=_members(members_list) if members_list else (),
            signals=signal_map.get(account_id, _EMPTY),
            facts=fact_map.get(account_id, _EMPTY),
            last_events=decode_times(read_json(last_events)) if last_events != "{}" else _EMPTY,
            legal_hold=codec.decode_hold(read_json(legal_hold)) if legal_hold else None,
            cases=tuple(decode_case(c) for c in case_list) if case_list else (),
            armed_from=decode_times(read_json(armed_from)) if armed_from != "{}" else _EMPTY,
            case_seq=case_seq,
            deleted_at=read_time(deleted_at) if deleted_at is not None else None,
        )
        out[account_id] = Loaded(account, version, case_data, state)
    return out


def _members(found: list[tuple[int, Member]]) -> tuple[Member, ...]:
    if len(found) == 1:
        return (found[0][1],)
    found.sort(key=_first)
    return tuple(member for _, member in found)


def _first(item: tuple[int, Member]) -> int:
    return item[0]


def _times_json(times: Mapping[str, datetime]) -> str:
    if not times:
        return "{}"
    return _dumps(codec.encode_times(times))


def write(
    conn: Connection,
    d: Dialect,
    items: Sequence[tuple[Loaded | None, Change]],
    *,
    worker: str | None,
    now: datetime,
    release: bool = False,
    returning: bool = True,
) -> list[OutboxItem]:
    """Write changes in bulk: accounts, child tables by difference from the loaded snapshot,
    events, tombstones, outbox rows (exactly once per key), and the audit chain last (it takes
    the head lock, which is then held only until the commit that follows).

    Account rows are guarded by `worker`'s claim (released by the write), else by the loaded
    version; with `release`, a version-guarded write also clears any claim (the rows were
    claimed by being locked in this transaction: `load_due`). Without `returning`, the outbox
    rows created are not returned (nor looked up)."""
    time = d.time
    cur = raw_cursor(conn)
    execute = cur.execute
    executemany = cur.executemany
    now_db = time(now)
    created_rows: list[tuple[Any, ...]] = []
    updated_rows: list[tuple[Any, ...]] = []
    member_reset: list[str] = []
    member_rows: list[tuple[Any, ...]] = []
    signal_upserts: list[tuple[Any, ...]] = []
    signal_deletes: list[tuple[Any, ...]] = []
    fact_upserts: list[tuple[Any, ...]] = []
    fact_deletes: list[tuple[Any, ...]] = []
    case_reset: list[str] = []
    case_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    stone_rows: list[tuple[Any, ...]] = []
    drafts: list[tuple[Any, ...]] = []
    draft_objects: list[Any] = []
    entries: list[AuditEntry] = []
    light_rows: list[tuple[Any, ...]] = []
    lifecycle_rows: list[tuple[Any, ...]] = []
    schedule_rows: list[tuple[Any, ...]] = []
    full: list[tuple[Loaded | None, Change]] = []
    effects: dict[int, tuple[str, str, str, Any, str, str, str]] = {}  # by id(): alive all along
    encode_case = codec.encode_case
    for loaded, change in items:
        account = change.account
        account_id = account.id
        old = loaded.account if loaded is not None else None
        if old is None and not change.created:
            raise StaleWrite(f"account {account_id!r} was not loaded before writing")
        if account is old and loaded is not None:
            # the step left the snapshot as it was (the core returns the same object): only the
            # schedule moves, which is most due accounts on most ticks
            due = time(change.next_due_at) if change.next_due_at is not None else None
            wake = _dumps(sorted(change.wake_signals)) if change.wake_signals else None
            guard = worker if worker is not None else loaded.version
            if change.state == loaded.state:
                schedule_rows.append((due, wake, account_id, guard))
            else:
                light_rows.append((change.state, due, wake, account_id, guard))
        else:
            full.append((loaded, change))
        if change.event_id is not None:
            event_at = change.event_at
            event_rows.append(
                (
                    account_id,
                    change.event_id,
                    change.event_name or "",
                    time(event_at) if event_at is not None else None,
                    now_db,
                )
            )
        stone = change.tombstone
        if stone is not None:
            until = stone.retired_until
            stone_rows.append(
                (
                    stone.account_id,
                    time(stone.deleted_at),
                    stone.flow,
                    stone.case_id,
                    stone.address_hash,
                    stone.address_mode,
                    time(until) if until is not None else None,
                    _dumps(codec.encode_value(dict(stone.receipt))),
                )
            )
        for draft in change.outbox:
            effect = draft.effect
            # an effect sent on several channels or to several recipients is encoded once
            encoded = effects.get(id(effect))
            if encoded is None:
                encoded = effects[id(effect)] = _encode_effect(effect, time)
            kind, name, payload, at_db, key_name, at_iso, at_key = encoded
            recipient = draft.recipient
            drafts.append(
                (
                    draft.account_id,
                    draft.case_id,
                    draft.channel,
                    recipient,
                    kind,
                    name,
                    payload,
                    draft.key
                    or idempotency_key(
                        at_key,
                        draft.account_id,
                        draft.case_id,
                        key_name,
                        at_iso,
                        draft.channel,
                        recipient or "",
                    ),
                    "pending",
                    0,
                    at_db,
                    None,
                    None,
                    now_db,
                    None,
                    None,
                )
            )
            draft_objects.append(draft)
        if change.audit:
            entries.extend(change.audit)

    for loaded, change in full:
        account = change.account
        account_id = account.id
        old = loaded.account if loaded is not None else None
        raw = loaded.cases_raw if loaded is not None else None
        if (
            raw is not None
            and old is not None
            and (account.cases is old.cases or account.cases == old.cases)
        ):
            cases_text = raw if type(raw) is str else _dumps(raw)
            cases_changed = False
        else:
            cases_text = _dumps([encode_case(c) for c in account.cases])
            cases_changed = old is None or account.cases != old.cases
        hold = account.legal_hold
        row_guard: str | int | None = None  # a created account has none
        if loaded is not None:
            row_guard = worker if worker is not None else loaded.version
        if (
            old is not None
            and account.kind == old.kind
            and account.created_at == old.created_at
            and account.address == old.address
            and account.deleted_at == old.deleted_at
            and hold == old.legal_hold
        ):
            # what a step changes (most of them): the rest of the row is left alone
            lifecycle_rows.append(
                (
                    change.state,
                    time(change.next_due_at) if change.next_due_at is not None else None,
                    _dumps(sorted(change.wake_signals)) if change.wake_signals else None,
                    cases_text,
                    _times_json(account.armed_from),
                    _times_json(account.last_events),
                    account.case_seq,
                    account_id,
                    row_guard,
                )
            )
            values: tuple[Any, ...] = ()
        else:
            values = (
                account.kind,
                time(account.created_at),
                account.address,
                time(account.deleted_at) if account.deleted_at is not None else None,
                change.state,
                time(change.next_due_at) if change.next_due_at is not None else None,
                _dumps(sorted(change.wake_signals)) if change.wake_signals else None,
                cases_text,
                _times_json(account.armed_from),
                _times_json(account.last_events),
                _dumps(codec.encode_hold(hold)) if hold is not None else None,
                account.case_seq,
            )
        if loaded is None:
            created_rows.append((account_id, *values[:6], None, None, *values[6:7], 1, *values[7:]))
        elif values:
            updated_rows.append((*values, account_id, row_guard))
        # child tables: only what differs from the loaded snapshot
        old_members = old.members if old is not None else ()
        if account.members is not old_members and account.members != old_members:
            if old_members:
                member_reset.append(account_id)
            member_rows.extend(
                (account_id, m.email, m.role, i) for i, m in enumerate(account.members)
            )
        old_signals: Mapping[str, datetime] = old.signals if old is not None else _EMPTY
        if account.signals is not old_signals:
            for name, at in account.signals.items():
                if old_signals.get(name) != at:
                    signal_upserts.append((account_id, name, time(at)))
            signal_deletes.extend(
                (account_id, name) for name in old_signals if name not in account.signals
            )
        old_facts: Mapping[str, FactEntry] = old.facts if old is not None else _EMPTY
        if account.facts is not old_facts:
            for name, entry in account.facts.items():
                if old_facts.get(name) != entry:
                    fact_upserts.append(
                        (
                            account_id,
                            name,
                            _dumps(codec.encode_fact(entry.value)),
                            time(entry.changed_at),
                        )
                    )
            fact_deletes.extend(
                (account_id, name) for name in old_facts if name not in account.facts
            )
        if cases_changed:
            if old is not None and old.cases:
                case_reset.append(account_id)
            case_rows.extend(
                (
                    account_id,
                    case.id,
                    case.flow,
                    case.phase_index,
                    time(case.started_at),
                    case.destruct,
                )
                for case in account.cases
            )

    if created_rows:
        try:
            d.insert_account.run(cur, created_rows)
        except d.integrity_error as exc:  # the primary key: the unit rolls back as a whole
            ids = ", ".join(repr(row[0]) for row in created_rows)
            raise AccountExists(f"account {ids} already exists") from exc
    # guarded by the claim, which the write releases; or, for rows locked by this transaction,
    # by the version, releasing any claim; or by the version alone
    mode = "claimed" if worker is not None else "locked" if release else "version"
    for name, rows in (
        ("schedule", schedule_rows),
        ("light", light_rows),
        ("lifecycle", lifecycle_rows),
        ("account", updated_rows),
    ):
        if rows and d.update[name, mode].run(cur, rows) != len(rows):
            raise StaleWrite(
                "an account changed since it was loaded (another worker took it over); "
                "nothing was written"
            )
    for chunk in chunks(member_reset):
        where, params = d.in_("account_id", chunk)
        execute(f"DELETE FROM members WHERE {where}", params)
    if member_rows:
        d.insert_member.run(cur, member_rows)
    if signal_deletes:
        executemany(d.delete_signal, signal_deletes)
    if signal_upserts:
        executemany(d.upsert_signal, signal_upserts)
    if fact_deletes:
        executemany(d.delete_fact, fact_deletes)
    if fact_upserts:
        executemany(d.upsert_fact, fact_upserts)
    for chunk in chunks(case_reset):
        where, params = d.in_("account_id", chunk)
        execute(f"DELETE FROM cases WHERE {where}", params)
    if case_rows:
        d.insert_case.run(cur, case_rows)
    if event_rows:
        d.insert_event.run(cur, event_rows)
    if stone_rows:
        executemany(d.insert_tombstone, stone_rows)
    created: list[OutboxItem] = []
    if drafts:
        if not returning:
            _insert_outbox_rows(cur, d, drafts)  # exactly once all the same: the key decides
        else:
            created = _insert_outbox(cur, d, drafts, draft_objects, now)
    if entries:
        append_audit(conn, d, entries, now)
    return created


def _insert_outbox_rows(cur: Any, d: Dialect, drafts: list[tuple[Any, ...]]) -> None:
    """Insert outbox rows whose ids nobody asks for; a key that exists is skipped (exactly
    once). On PostgreSQL the rows are copied in (a key twice in the batch once), inside a
    savepoint: a key that exists makes the COPY fail, and the batch's rows then go in by an
    INSERT that skips existing keys. Keys of committed steps are never made again (a step
    records its notices in the same transaction), so the COPY is what runs."""
    if not d.pg:
        d.insert_outbox.run(cur, drafts)
        return
    key_index = d.outbox_columns.index("idempotency_key")
    seen: set[str] = set()
    fresh = []
    for row in drafts:
        key = row[key_index]
        if key not in seen:
            seen.add(key)
            fresh.append(row)
    cur.execute("SAVEPOINT lapse_outbox")
    try:
        d.copy_outbox.run(cur, fresh)
    except d.integrity_error:
        cur.execute("ROLLBACK TO SAVEPOINT lapse_outbox")
        d.insert_outbox.run(cur, fresh)
    cur.execute("RELEASE SAVEPOINT lapse_outbox")


def _insert_outbox(
    cur: Any, d: Dialect, drafts: list[tuple[Any, ...]], objects: list[Any], now: datetime
) -> list[OutboxItem]:
    """Insert outbox rows (a key that exists is skipped: exactly once); the rows created."""
    key_index = d.outbox_columns.index("idempotency_key")
    ids: list[int | None] = []
    if d.pg:
        by_key: dict[str, int] = {
            key: item_id for item_id, key in _returned(cur, d.insert_outbox_ids, drafts)
        }
        for row in drafts:
            # pop: a key twice in one batch is still one row
            ids.append(by_key.pop(row[key_index], None))
    else:
        # the single writer picks the ids; those that stay free belong to keys that existed
        cur.execute("SELECT coalesce(max(id), 0) FROM outbox")
        first = int(cur.fetchone()[0]) + 1
        rows = [(first + i, *row) for i, row in enumerate(drafts)]
        inserted = d.insert_outbox_ids.run(cur, rows)
        ids = list(range(first, first + len(rows)))
        if inserted != len(rows):
            cur.execute(
                "SELECT id FROM outbox WHERE id >= ? AND id < ?", (first, first + len(rows))
            )
            kept = {item_id for (item_id,) in cur.fetchall()}
            ids = [item_id if item_id in kept else None for item_id in ids]
    created = []
    for row, draft, item_id in zip(drafts, objects, ids, strict=True):
        if item_id is None:
            continue  # created by an earlier run of the same step: exactly once
        created.append(
            OutboxItem(
                id=item_id,
                account_id=draft.account_id,
                case_id=draft.case_id,
                effect=draft.effect,
                channel=draft.channel,
                recipient=draft.recipient,
                idempotency_key=row[key_index],
                created_at=now,
                next_attempt_at=draft.effect.at,
            )
        )
    created.sort(key=lambda item: item.id)
    return created


def _returned(cur: Any, statement: Many, rows: list[tuple[Any, ...]]) -> list[Any]:
    """Run a statement with RETURNING over rows; what it returned."""
    statement.run(cur, rows)
    return list(cur.fetchall())


def _encode_effect(
    effect: Effect, time: Callable[[datetime], Any]
) -> tuple[str, str, str, Any, str, str, str]:
    """What the outbox rows of one effect share: kind, name, payload, next attempt, and the
    parts of their idempotency keys (as `OutboxDraft.idempotency_key` computes them)."""
    key_name = (
        getattr(effect, "key", None) or getattr(effect, "name", None) or type(effect).__name__
    )
    return (
        codec.effect_kind(effect),
        codec.effect_name(effect),
        _dumps(codec.encode_effect(effect)),
        time(effect.at),
        str(key_name),
        effect.at.isoformat(),
        key_time(effect.at),
    )


def raw_cursor(conn: Connection) -> Any:
    """A cursor of the driver connection under `conn`, in the same transaction.

    The hot paths use it directly: SQLAlchemy's result rows cost a call per row, and these
    statements need none of what they add. The store converts the driver's errors.
    """
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    return dbapi.cursor()


# --- the audit chain ----------------------------------------------------------------------------


def lock_head(conn: Connection, d: Dialect) -> tuple[int, str]:
    """The chain's head (last seq and hash), locked until the transaction ends."""
    sql = "SELECT seq, hash FROM audit_head WHERE id = 1" + (" FOR UPDATE" if d.pg else "")
    cur = raw_cursor(conn)
    cur.execute(sql)
    row = cur.fetchone()
    if row is None:
        p = d.p
        cur.execute(
            f"INSERT INTO audit_head (id, seq, hash) VALUES ({p}, {p}, {p}) ON CONFLICT DO NOTHING",
            (1, 0, GENESIS),
        )
        cur.execute(sql)
        row = cur.fetchone()
        assert row is not None
    return int(row[0]), str(row[1])


def _opt(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def chain_text(
    seq: int,
    account_id: str,
    at: str,
    recorded_at: str,
    kind: str,
    case_id: str | None,
    flow: str | None,
    detail_json: str,
) -> str:
    """The canonical JSON an audit record's hash covers (== codec.canonical_json of the same
    fields as a mapping, written out by hand because it runs for every record)."""
    return (
        '{"account_id":'
        + encode_basestring(account_id)
        + ',"at":"'
        + at
        + '","case_id":'
        + _opt(case_id)
        + ',"detail":'
        + detail_json
        + ',"flow":'
        + _opt(flow)
        + ',"kind":'
        + encode_basestring(kind)
        + ',"recorded_at":"'
        + recorded_at
        + '","seq":'
        + str(seq)
        + "}"
    )


def chain_hash(prev_hash: str, text: str) -> str:
    """sha256(prev_hash + canonical JSON), hex."""
    return hashlib.sha256((prev_hash + text).encode("utf-8", "surrogatepass")).hexdigest()


_PLAIN = frozenset({str, int, bool, type(None)})
_DETAILS: dict[tuple[Any, ...], str] = {}


def _detail_json(detail: Mapping[str, object]) -> str:
    """The canonical JSON of an audit detail. Details of plain values repeat across accounts
    (the same reason, phase, template...), so their JSON is kept by keys, values and types
    (the types tell True from 1)."""
    values = tuple(detail.values())
    types = tuple(map(type, values))
    if not _PLAIN.issuperset(types):
        return _canonical(codec.encode_detail(detail))
    key = (tuple(detail), values, types)
    text = _DETAILS.get(key)
    if text is None:
        text = _canonical(codec.encode_detail(detail))
        if len(_DETAILS) >= 4096:
            _DETAILS.clear()
        _DETAILS[key] = text
    return text


def append_audit(
    conn: Connection, d: Dialect, entries: Sequence[AuditEntry], recorded_at: datetime
) -> None:
    """Append entries to the chain: lock the head, hash each onto the previous, move the head."""
    seq, prev = lock_head(conn, d)
    time = d.time
    recorded_iso = codec.ts(recorded_at)
    recorded_db = time(recorded_at)
    ts = codec.ts
    rows = []
    times: dict[datetime, tuple[str, Any]] = {}  # the entries of one step share their times
    for entry in entries:
        seq += 1
        detail = entry.detail
        detail_json = _detail_json(detail) if detail else "{}"
        at = entry.at
        got = times.get(at)
        if got is None:  # equal datetimes are the same instant, which ts() writes one way
            got = times[at] = (ts(at), time(at))
        text = chain_text(
            seq,
            entry.account_id,
            got[0],
            recorded_iso,
            entry.kind,
            entry.case_id,
            entry.flow,
            detail_json,
        )
        digest = chain_hash(prev, text)
        rows.append(
            (
                seq,
                entry.account_id,
                got[1],
                recorded_db,
                entry.kind,
                entry.case_id,
                entry.flow,
                detail_json,
                prev,
                digest,
            )
        )
        prev = digest
    cur = raw_cursor(conn)
    d.insert_audit.run(cur, rows)
    cur.execute(f"UPDATE audit_head SET seq = {d.p}, hash = {d.p} WHERE id = 1", (seq, prev))
