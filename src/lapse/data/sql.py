"""`SqlTables`: account data in tables of any database SQLAlchemy reaches.

Each registered table names the column that holds the account key, or reaches the account
through a registered parent table (`contact_actions.contact_id -> contacts.id`, and
`contacts.account_id` holds the key). `check()` reflects the tables: their columns and primary
keys, the foreign keys between them (which decide the deletion order: children before parents),
and unregistered tables that point at registered ones (their rows would block the deletion or
vanish uncounted through ON DELETE CASCADE, so they are refused unless listed under `ignore`).

Deletion goes in short batches, each its own transaction: select the keys of up to
`batch_size` rows, record them in the ledger as in flight, delete exactly those rows by key. A
run that restarts finds the batch in flight and deletes it again: if the first attempt had
committed nothing is left to delete and the batch counts as removed; if not, it is removed now.

A table with a foreign key to itself (`folders.parent_id -> folders.id`) is deleted leaves
first: a batch takes only rows that no other row references, so a batch never removes a row
whose child is still there (whatever the batch size, and on databases that check foreign keys
row by row as well as those that check them per statement); the rows whose children went become
leaves for the next batches. Nothing is updated on the way (no self-reference is set to NULL),
so rows that survive (a legal hold placed mid-run, a crash) are left exactly as they were. The
referencing columns must be indexed (`check()` refuses otherwise): every batch looks children
up by them, and so does the database's own foreign key check for every row deleted. Rows that
reference each other in a cycle, or that rows of another account reference, never become
leaves: the deletion stops with an error naming the table and the column.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from itertools import chain
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import (
    Column,
    Engine,
    ForeignKeyConstraint,
    Index,
    MetaData,
    Select,
    String,
    Text,
    UniqueConstraint,
    and_,
    any_,
    bindparam,
    cast,
    create_engine,
    delete,
    event,
    exists,
    func,
    inspect,
    literal,
    not_,
    select,
    tuple_,
)
from sqlalchemy import Table as SqlTable
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause
from sqlalchemy.types import NullType

from lapse.data.base import ConnectorError, ExportTable, Ledger, Location, Marker
from lapse.errors import ConfigError

DEFAULT_BATCH = 5000
_ROWS_AT_ONCE = 256  # rows fetched at a time while reading a batch's keys (see _next_keys)
Order = Literal["reflect", "declared"]


@dataclass(frozen=True, slots=True)
class Table:
    """One registered table: where an account's rows are and what category they belong to.

    Either `account` (the column holding the account key) or `through` (a registered parent
    table) with `column` (this table's column that references the parent; found from the foreign
    key when omitted) and `parent_key` (the parent's referenced column; the same default).
    """

    table: str
    _: KW_ONLY
    category: str
    account: str | None = None
    through: str | None = None
    column: str | None = None
    parent_key: str | None = None
    key: tuple[str, ...] = ()  # primary key override (default: the reflected primary key)
    name: str | None = None  # the location name (default: the table name)
    exclude: tuple[str, ...] = ()  # columns left out of exports (secrets, password hashes)

    @property
    def location_name(self) -> str:
        """The name receipts and exports use for this table."""
        return self.name or self.table


@dataclass(slots=True)
class _Resolved:
    """A registered table after reflection: its statements, ready to run."""

    spec: Table
    location: Location
    table: SqlTable
    keys: tuple[Column[Any], ...]
    where: ColumnElement[bool]
    # the table joined up to the registered table holding the account column (itself if it
    # holds it), that table's condition on the account, and its key
    joined: FromClause
    root_where: ColumnElement[bool]
    root_keys: tuple[Column[Any], ...]
    root_link: Column[Any] | None  # the joined column equal to the root's (single) key
    parents: set[str] = field(default_factory=set)  # registered tables this one references
    select_keys: Select[Any] | None = None  # the first batch
    select_after: Select[Any] | None = None  # a batch from a root key on (through tables)
    count: Select[Any] | None = None
    export: Select[Any] | None = None
    deleter: _KeyDelete | None = None
    columns: tuple[str, ...] = ()
    # the columns of each foreign key from the table to itself: batches take leaves only
    self_refs: tuple[tuple[str, ...], ...] = ()


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # per connection: foreign keys enforced (a wrong order fails loudly instead of orphaning
    # rows) and a wait instead of an instant error when the host's application holds the lock
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def host_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a host database (SQLite gets foreign keys and a busy timeout)."""
    try:
        engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise ConfigError(f"database URL {_shown(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except Exception:  # not a URL SQLAlchemy parses: print nothing secret
        return repr(url.split("@")[-1])


class SqlTables:
    """A connector for tables in one database (any SQLAlchemy URL, or an Engine you own)."""

    def __init__(
        self,
        name: str,
        url: str | Engine,
        tables: Sequence[Table],
        *,
        schema: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        order: Order = "reflect",
        ignore: Sequence[str] = (),
    ) -> None:
        where = f"connector {name!r}"
        if batch_size < 1:
            raise ConfigError(f"{where}: batch_size must be at least 1, found {batch_size}")
        if order not in ("reflect", "declared"):
            raise ConfigError(f"{where}: order must be 'reflect' or 'declared', found {order!r}")
        if not tables:
            raise ConfigError(f"{where}: no tables registered")
        seen: dict[str, str] = {}
        for spec in tables:
            label = f"{where}: table {spec.table!r}"
            if (spec.account is None) == (spec.through is None):
                raise ConfigError(
                    f"{label}: give either `account` (the column holding the account key) or "
                    "`through` (a registered parent table it reaches the account by)"
                )
            if spec.account is not None and (spec.column or spec.parent_key):
                raise ConfigError(f"{label}: `column` and `parent_key` go with `through` only")
            if not spec.category:
                raise ConfigError(f"{label}: `category` is empty")
            if spec.location_name in seen:
                raise ConfigError(
                    f"{where}: two tables are named {spec.location_name!r} "
                    f"({seen[spec.location_name]} and {spec.table}); set `name` on one"
                )
            seen[spec.location_name] = spec.table
        registered = {spec.table for spec in tables}
        for spec in tables:
            if spec.through is not None and spec.through not in registered:
                raise ConfigError(
                    f"{where}: table {spec.table!r}: `through: {spec.through}` names a table "
                    f"that is not registered in this connector; registered: "
                    f"{', '.join(sorted(registered))}"
                )
        self.name = name
        self.schema = schema
        self.batch_size = batch_size
        self.order = order
        self.ignore = frozenset(ignore)
        self.specs = tuple(tables)
        self._owns_engine = isinstance(url, str)
        self.engine = host_engine(url) if isinstance(url, str) else url
        self._resolved: dict[str, _Resolved] | None = None
        self._order: list[Location] = []
        self._json_keys = False  # whether the database unpacks keys sent as a JSON document

    # --- configuration ----------------------------------------------------------------------

    def check(self) -> None:
        """Reflect the tables and validate everything; ConfigError says what, where, and how."""
        self._resolved = None
        self._resolve()

    def _resolve(self) -> dict[str, _Resolved]:
        if self._resolved is not None:
            return self._resolved
        where = f"connector {self.name!r}"
        metadata = MetaData(schema=self.schema)
        reflected: dict[str, SqlTable] = {}
        try:
            with self.engine.connect() as conn:
                for spec in self.specs:
                    try:
                        reflected[spec.table] = SqlTable(spec.table, metadata, autoload_with=conn)
                    except NoSuchTableError:
                        names = inspect(conn).get_table_names(schema=self.schema)
                        raise ConfigError(
                            f"{where}: table {spec.table!r} does not exist in the database; "
                            f"it has: {', '.join(sorted(names)) or 'no tables'}"
                        ) from None
                strays = self._unregistered_children(conn, set(reflected))
                self._json_keys = _unpacks_json(conn)
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"{where}: cannot read the database {_shown(str(self.engine.url))}: "
                f"{_first_line(exc)}"
            ) from None
        if strays:
            raise ConfigError(
                f"{where}: "
                + "; ".join(
                    f"table {child!r} references registered table {parent!r} but is not "
                    "registered: its rows would block the deletion or vanish uncounted"
                    for child, parent in strays
                )
                + "; register it (with `through:`) or list it under `ignore:`"
            )
        resolved: dict[str, _Resolved] = {}
        by_table = {spec.table: spec for spec in self.specs}
        pending = list(self.specs)
        # a table reaching the account through a parent needs the parent's condition first
        while pending:
            progressed = False
            for spec in list(pending):
                if spec.through is not None and spec.through not in resolved:
                    continue
                resolved[spec.table] = self._resolve_one(spec, reflected, resolved)
                pending.remove(spec)
                progressed = True
            if not progressed:
                cycle = " -> ".join(f"{s.table} through {s.through}" for s in pending)
                raise ConfigError(f"{where}: `through` forms a cycle: {cycle}")
        for item in resolved.values():
            for fk in item.table.foreign_keys:
                parent = fk.column.table.name
                if parent in by_table and parent != item.spec.table:
                    item.parents.add(parent)
            if item.spec.through is not None:
                item.parents.add(item.spec.through)
        self._order = [resolved[t].location for t in self._deletion_order(resolved)]
        by_name = {r.location.name: r for r in resolved.values()}
        self._resolved = by_name
        return by_name

    def _unregistered_children(self, conn: Any, registered: set[str]) -> list[tuple[str, str]]:
        inspector = inspect(conn)
        found = []
        for table in sorted(inspector.get_table_names(schema=self.schema)):
            if table in registered or table in self.ignore:
                continue
            for fk in inspector.get_foreign_keys(table, schema=self.schema):
                parent = fk.get("referred_table")
                if parent in registered:
                    found.append((table, str(parent)))
        return found

    def _resolve_one(
        self, spec: Table, reflected: Mapping[str, SqlTable], resolved: Mapping[str, _Resolved]
    ) -> _Resolved:
        label = f"connector {self.name!r}: table {spec.table!r}"
        table = reflected[spec.table]
        names = [c.name for c in table.columns]

        def column(name: str, what: str, of: SqlTable = table) -> Column[Any]:
            if name not in of.columns:
                raise ConfigError(
                    f"{label}: {what} {name!r} is not a column of {of.name!r}; "
                    f"it has: {', '.join(c.name for c in of.columns)}"
                )
            col: Column[Any] = of.columns[name]
            return col

        if spec.key:
            keys = tuple(column(k, "key column") for k in spec.key)
        else:
            keys = tuple(table.primary_key.columns)
            if not keys:
                raise ConfigError(
                    f"{label}: the table has no primary key; declare `key:` with the columns "
                    "that identify a row"
                )
        for excluded in spec.exclude:
            column(excluded, "excluded column")
        account: Any = bindparam("account", type_=String())
        limit: Any = bindparam("limit")
        self_refs = _self_references(table)
        for fk in self_refs:
            if not _indexed(table, [el.parent.name for el in fk.elements]):
                columns = ", ".join(el.parent.name for el in fk.elements)
                referenced = ", ".join(el.column.name for el in fk.elements)
                raise ConfigError(
                    f"{label}: column {columns!r} references the table itself "
                    f"({table.name}.{referenced}), but no index starts with it: deletion takes "
                    "only rows no other row references and looks that up at every batch, as "
                    "the database's own foreign key check does for every row deleted; create "
                    f"an index on {table.name}({columns})"
                )
        leaf = _leaf(table, keys, self_refs)
        if spec.account is not None:
            where: ColumnElement[bool] = column(spec.account, "account column") == account
            joined: FromClause = table
            root_where, root_keys, root_link = where, keys, None
            # the account's rows in any order: the rows of earlier batches are gone
            select_keys = select(*keys).where(where, *leaf).limit(limit)
            select_after = None
        else:
            assert spec.through is not None
            parent = resolved[spec.through]
            own, referenced = self._link(spec, table, parent.table, label)
            own_col = column(own, "column")
            parent_col = column(referenced, "parent_key", parent.table)
            where = own_col.in_(select(parent_col).where(parent.where))
            joined = table.join(parent.joined, own_col == parent_col)
            root_where, root_keys = parent.root_where, parent.root_keys
            root_link = parent.root_link
            if len(root_keys) == 1 and root_keys[0] is parent_col:  # (`is`: `==` builds SQL)
                root_link = own_col  # this table's column referencing the root's key
            # through a join, in the order of the account's root rows, each batch from the
            # root row the previous one ended at: no batch walks again past the root rows
            # whose rows here are already gone (which made deletions quadratic)
            bounds = [bindparam(f"floor{i}", type_=k.type) for i, k in enumerate(root_keys)]
            floor: ColumnElement[bool] = (
                root_keys[0] >= bounds[0]
                if len(root_keys) == 1
                else tuple_(*root_keys) >= tuple_(*bounds)
            )
            if root_link is not None:
                # the same bound on the column joined to the root's key, which a planner
                # does not infer: a merge join then starts there instead of at the beginning
                floor = and_(floor, root_link >= bounds[0])
            base = select(*keys, *root_keys).select_from(joined).order_by(*root_keys).limit(limit)
            select_keys = base.where(root_where, *leaf)
            select_after = base.where(root_where, floor, *leaf)
        location = Location(connector=self.name, name=spec.location_name, category=spec.category)
        exported = tuple(c for c in names if c not in spec.exclude)
        deleter = _KeyDelete(table, keys, self.engine.dialect.name, json=self._json_keys)
        return _Resolved(
            spec=spec,
            location=location,
            table=table,
            keys=keys,
            where=where,
            joined=joined,
            root_where=root_where,
            root_keys=root_keys,
            root_link=root_link,
            select_keys=select_keys,
            select_after=select_after,
            count=select(func.count()).select_from(table).where(where),
            export=select(*(table.columns[c] for c in exported)).where(where).order_by(*keys),
            deleter=deleter,
            columns=exported,
            self_refs=tuple(tuple(el.parent.name for el in fk.elements) for fk in self_refs),
        )

    def _link(self, spec: Table, table: SqlTable, parent: SqlTable, label: str) -> tuple[str, str]:
        """(this table's column, the parent's column) joining a child to its parent."""
        if spec.column is not None and spec.parent_key is not None:
            return spec.column, spec.parent_key
        links = [
            (fk.parent.name, fk.column.name)
            for fk in table.foreign_keys
            if fk.column.table.name == parent.name
            and (spec.column is None or fk.parent.name == spec.column)
        ]
        if spec.column is not None and not links:
            pk = list(parent.primary_key.columns)
            if len(pk) != 1:
                raise ConfigError(
                    f"{label}: no foreign key from {spec.column!r} to {parent.name!r}; "
                    "declare `parent_key:` (the parent's column it references)"
                )
            return spec.column, pk[0].name
        if len(links) != 1:
            found = f"{len(links)} foreign keys" if links else "no foreign key"
            raise ConfigError(
                f"{label}: {found} to {parent.name!r}; declare `column:` (this table's column "
                "referencing the parent) and `parent_key:` (the parent's column)"
            )
        own, referenced = links[0]
        return spec.column or own, spec.parent_key or referenced

    def _deletion_order(self, resolved: Mapping[str, _Resolved]) -> list[str]:
        """Registered tables, children before parents (declared order breaks ties)."""
        declared = [spec.table for spec in self.specs]
        if self.order == "declared":
            return declared
        # a table may go once every table that references it has gone
        children: dict[str, set[str]] = {t: set() for t in declared}
        for table, item in resolved.items():
            for parent in item.parents:
                children[parent].add(table)
        done: list[str] = []
        left = list(declared)
        while left:
            ready = [t for t in left if children[t] <= set(done)]
            if not ready:
                cycle = ", ".join(left)
                raise ConfigError(
                    f"connector {self.name!r}: the foreign keys between {cycle} form a cycle, so "
                    "no order deletes children before parents; list the tables in a workable "
                    "order and set `order: declared`"
                )
            done.append(ready[0])
            left.remove(ready[0])
        return done

    def locations(self) -> Sequence[Location]:
        """The registered tables, in deletion order (children before parents)."""
        self._resolve()
        return list(self._order)

    def children(self, name: str) -> list[Location]:
        """The registered tables that reference table `name` (by foreign key or `through`)."""
        resolved = self._resolve()
        table = resolved[name].spec.table if name in resolved else name
        return [r.location for r in resolved.values() if table in r.parents]

    # --- work ---------------------------------------------------------------------------------

    def _get(self, location: Location) -> _Resolved:
        resolved = self._resolve()
        found = resolved.get(location.name)
        if found is None:
            raise ConnectorError(
                f"connector {self.name!r} has no table {location.name!r} (was it unregistered "
                "while a deletion was under way?)",
                permanent=True,
            )
        return found

    def count(self, account_id: str, locations: Sequence[Location]) -> dict[str, int]:
        """Rows of the account in each table."""
        out: dict[str, int] = {}
        with self._errors("count rows"), self.engine.connect() as conn:
            for location in locations:
                stmt = self._get(location).count
                assert stmt is not None
                out[location.name] = int(conn.execute(stmt, {"account": account_id}).scalar_one())
        return out

    def delete(self, account_id: str, location: Location, ledger: Ledger) -> None:
        """Delete the account's rows in one table, batch by batch, through the ledger."""
        item = self._get(location)
        confirmed = 0
        pending = ledger.in_flight
        if isinstance(pending, dict) and isinstance(pending.get("keys"), str):
            pending = json.loads(str(pending["keys"]))
        if isinstance(pending, list) and pending:
            # a batch recorded before a crash: delete it (again); nothing left means the first
            # attempt committed, and the batch counts once either way
            keys = _keys_from(pending, len(item.keys))
            removed = self._delete_keys(item, keys)
            confirmed = removed or len(keys)
        params: dict[str, Any] = {"account": account_id, "limit": self.batch_size}
        while True:
            keys = self._next_keys(item, params)
            if not keys and item.self_refs and "floor0" in params:
                # a sweep over the root rows ended; the rows whose children it removed are
                # leaves now, wherever they are: sweep again from the first root row
                for i in range(len(item.root_keys)):
                    del params[f"floor{i}"]
                keys = self._next_keys(item, params)
            ledger.step(add=confirmed, in_flight=_marker(keys) if keys else None)
            if not keys:
                if item.self_refs:
                    self._no_leaves_left(account_id, item)
                return
            confirmed = self._delete_keys(item, keys)

    def _no_leaves_left(self, account_id: str, item: _Resolved) -> None:
        """No row of the account is a leaf any more: fine if none is left, else say why."""
        assert item.count is not None
        with self._errors(f"count rows of {item.location.name!r}"), self.engine.connect() as conn:
            left = int(conn.execute(item.count, {"account": account_id}).scalar_one())
        if left:
            columns = " and ".join(repr(", ".join(cols)) for cols in item.self_refs)
            raise ConnectorError(
                f"connector {self.name!r}: table {item.spec.table!r}: {left} rows of account "
                f"{account_id!r} are each referenced by another row through column {columns} "
                "(rows that reference each other in a cycle, or rows of another account that "
                "point at them), so none of them can go first; lapse deletes a row only once "
                "nothing references it"
            )

    def _next_keys(self, item: _Resolved, params: dict[str, Any]) -> list[Any]:
        """The keys of the next batch; `params` then say where the batch after it starts.

        Rows are read a few hundred at a time and only their keys kept: a list of thousands of
        row objects lives through several collections, reaches the collector's oldest
        generation at every batch and soon sets off full collections over every object of the
        process (a large part of the time of a large deletion went there)."""
        width = len(item.keys)
        after = "floor0" in params
        stmt = item.select_after if after else item.select_keys
        assert stmt is not None
        keys: list[Any] = []
        last: Any = None
        with self._errors(f"select rows of {item.location.name!r}"), self.engine.connect() as conn:
            for part in conn.execute(stmt, params).partitions(_ROWS_AT_ONCE):
                if width == 1:
                    keys.extend(row[0] for row in part)
                else:
                    keys.extend(tuple(row[:width]) for row in part)
                last = part[-1]
        if last is not None and item.select_after is not None:
            # the next batch starts at the last root row of this one (it may have more)
            params.update({f"floor{i}": last[width + i] for i in range(len(item.root_keys))})
            keys = list(dict.fromkeys(keys))  # one row per root row it reaches
        return keys

    def _delete_keys(self, item: _Resolved, keys: Sequence[Any]) -> int:
        assert item.deleter is not None
        stmt, params = item.deleter(keys)
        with self._errors(f"delete rows of {item.location.name!r}"), self.engine.begin() as conn:
            return int(conn.execute(stmt, params).rowcount)

    def export(self, account_id: str, locations: Sequence[Location]) -> Iterator[ExportTable]:
        """Each table's rows of the account, ordered by key, streamed from a server cursor."""
        for location in locations:
            item = self._get(location)
            yield ExportTable(
                location=location, columns=item.columns, rows=self._rows(item, account_id)
            )

    def _rows(self, item: _Resolved, account_id: str) -> Iterator[tuple[object, ...]]:
        stmt = item.export
        assert stmt is not None
        with self._errors(f"export {item.location.name!r}"), self.engine.connect() as conn:
            result = conn.execution_options(yield_per=2000).execute(stmt, {"account": account_id})
            for row in result:
                yield tuple(row)

    def close(self) -> None:
        """Close the pooled connections (only of an engine this connector created)."""
        if self._owns_engine:
            self.engine.dispose()

    def _errors(self, doing: str) -> _Errors:
        return _Errors(f"connector {self.name!r}: cannot {doing}")


class _Errors:
    """Turns driver errors into ConnectorErrors (retried by the outbox) that say where."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, SQLAlchemyError):
            raise ConnectorError(f"{self.where}: {_first_line(exc)}") from exc


def _self_references(table: SqlTable) -> list[ForeignKeyConstraint]:
    """The table's foreign keys to itself (`folders.parent_id -> folders.id`)."""
    found = [fk for fk in table.foreign_key_constraints if fk.referred_table is table]
    return sorted(found, key=lambda fk: [el.parent.name for el in fk.elements])


def _indexed(table: SqlTable, columns: Sequence[str]) -> bool:
    """Whether an index (the primary key and unique constraints included) starts with them."""
    width = len(columns)
    starts = [[c.name for c in table.primary_key.columns][:width]]
    for item in table.indexes:
        if isinstance(item, Index):
            starts.append([c.name for c in item.columns][:width])
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            starts.append([c.name for c in constraint.columns][:width])
    return any(sorted(start) == sorted(columns) for start in starts)


def _leaf(
    table: SqlTable, keys: Sequence[Column[Any]], self_refs: Sequence[ForeignKeyConstraint]
) -> list[ColumnElement[bool]]:
    """Conditions true of rows no other row of the table references (none without self-refs)."""
    conditions: list[ColumnElement[bool]] = []
    for number, fk in enumerate(self_refs):
        child = table.alias(f"lapse_child{number}")
        link = and_(*(child.c[el.parent.name] == table.c[el.column.name] for el in fk.elements))
        # a row referencing itself does not keep itself from going
        other = not_(and_(*(child.c[k.name] == k for k in keys)))
        conditions.append(not_(exists(select(literal(1)).select_from(child).where(link, other))))
    return conditions


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class _KeyDelete:
    """Deletes rows of one table by a list of their keys, in one statement.

    Integer and text keys (the usual ones) go in one parameter whatever the batch size, so the
    statement is compiled once and encoding the keys costs next to nothing (an expanding `IN`
    list is re-rendered with thousands of parameters at every batch): on PostgreSQL an array
    literal per key column (`= ANY(...)`, `unnest` for a composite key), on SQLite a JSON array
    (`json_each`). Other keys (UUIDs, dates, bytes...) go as PostgreSQL arrays adapted by the
    driver, and other databases get an expanding `IN` (SQLite renders composite keys as
    `IN (VALUES ...)`). On PostgreSQL a composite key is never an `IN` list of row values,
    which it plans as thousands of ORs."""

    def __init__(
        self, table: SqlTable, keys: tuple[Column[Any], ...], dialect: str, *, json: bool
    ) -> None:
        self.width = len(keys)
        self.postgres = dialect == "postgresql"
        self.by_text: Any = None  # the statement taking plain keys encoded as text
        single = len(keys) == 1
        key_expr: Any = keys[0] if single else tuple_(*keys)
        if self.postgres:
            from sqlalchemy.dialects.postgresql import ARRAY

            def arrays(param: Callable[[int, Column[Any]], Any]) -> Any:
                if single:
                    return delete(table).where(keys[0] == any_(param(0, keys[0])))
                unnested = select(*(func.unnest(param(i, k)) for i, k in enumerate(keys)))
                return delete(table).where(key_expr.in_(unnested))

            self.by_list: Any = arrays(lambda i, k: bindparam(f"keys{i}", type_=ARRAY(k.type)))
            if not any(isinstance(k.type, NullType) for k in keys):
                self.by_text = arrays(
                    lambda i, k: cast(bindparam(f"keys{i}", type_=Text()), ARRAY(k.type))
                )
        else:
            self.by_list = delete(table).where(key_expr.in_(bindparam("keys", expanding=True)))
            if json and dialect == "sqlite":
                items = func.json_each(bindparam("keys", type_=Text())).table_valued("value")
                values = (
                    [items.c.value]
                    if single
                    else [func.json_extract(items.c.value, f"$[{i}]") for i in range(len(keys))]
                )
                self.by_text = delete(table).where(key_expr.in_(select(*values)))

    def __call__(self, batch: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        """The statement and its parameters deleting the rows with these keys."""
        plain = self.by_text is not None and _plain(batch)
        if not self.postgres:
            if plain:
                return self.by_text, {"keys": json.dumps(list(batch), separators=(",", ":"))}
            return self.by_list, {"keys": list(batch)}
        columns = [batch] if self.width == 1 else [[k[i] for k in batch] for i in range(self.width)]
        if plain:
            return self.by_text, {f"keys{i}": _array_literal(c) for i, c in enumerate(columns)}
        return self.by_list, {f"keys{i}": list(c) for i, c in enumerate(columns)}


def _array_literal(values: Sequence[int | str]) -> str:
    """A PostgreSQL array literal of integers and strings (`{1,2}`, `{"a","b\\"c"}`)."""
    if set(map(type, values)) == {int}:
        return "{" + ",".join(map(str, values)) + "}"
    return (
        "{"
        + ",".join(
            str(v)
            if type(v) is int
            else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def _unpacks_json(conn: Any) -> bool:
    """PostgreSQL always; SQLite if built with its JSON functions (the default since 3.38)."""
    name = conn.dialect.name
    if name == "postgresql":
        return True
    if name != "sqlite":
        return False
    try:
        conn.exec_driver_sql("SELECT value FROM json_each('[1]')").all()
    except SQLAlchemyError:
        return False
    return True


_JSON_PLAIN = frozenset((int, str))


def _plain(keys: Sequence[Any]) -> bool:
    """Whether every key is an int or a str (or a tuple of them): JSON as it is."""
    kinds = set(map(type, keys))
    if tuple in kinds:
        if kinds != {tuple}:
            return False
        kinds = set(map(type, chain.from_iterable(keys)))
    return kinds <= _JSON_PLAIN


def _marker(keys: Sequence[Any]) -> Marker:
    """Keys for the ledger: the JSON array of the keys (composite keys become lists), as text.

    One string instead of an array of thousands of elements: lapse's store keeps the marker as
    JSON (jsonb on PostgreSQL), which takes an array element by element at every batch."""
    plain = _plain(keys)  # the usual integer or text keys go as they are (tuples as lists)
    document = json.dumps(
        list(keys) if plain else [_json_key(k) for k in keys], separators=(",", ":")
    )
    return {"keys": document}


def _json_key(key: Any) -> Marker:
    if isinstance(key, tuple):
        return [_json_key(part) for part in key]
    if key is None or isinstance(key, bool | int | float | str):
        return key
    if isinstance(key, UUID | Decimal):
        return str(key)
    if isinstance(key, datetime | date | time):
        return key.isoformat()
    if isinstance(key, bytes):
        return base64.b64encode(key).decode()
    return str(key)


def _keys_from(marker: list[Marker], width: int) -> list[Any]:
    if width == 1:
        return list(marker)
    return [tuple(k) if isinstance(k, list) else k for k in marker]
