"""Read a YAML policy into plain Python values, remembering where every value came from.

PyYAML's node API (`compose`) keeps a line and column on every node; we convert the node tree
into dicts, lists and scalars ourselves so that duplicate keys are reported (PyYAML silently keeps
the last one) and every value has a path such as `flows.inactivity.phases[0].lasts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lapse.errors import Problem

Position = tuple[int, int]

#: converting more values than this (after expanding aliases) is refused: a "billion laughs" guard
MAX_VALUES = 100_000

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "value")}
_VALUE = _TAG + "value"
_MERGE = _TAG + "merge"
_MISSING = object()


def join(path: str, key: str | int) -> str:
    """The path of `key` (a mapping key or a list index) inside `path`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def show(value: object) -> str:
    """How a found value is quoted in a message: 'text', 30, true, null, a list, a mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, date):  # also datetime
        return value.isoformat()
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    return repr(value)


def listing(names: Iterable[str]) -> str:
    """'a, b, c' for messages."""
    return ", ".join(names)


@dataclass(slots=True)
class Source:
    """A parsed document: its values, where each one is, and the problems found so far.

    Mutable on purpose: checking the document adds its problems here as it goes.
    """

    name: str
    data: Any = None
    positions: dict[str, Position] = field(default_factory=dict)  # path -> value position
    key_positions: dict[str, Position] = field(default_factory=dict)  # path -> key position
    scalars: dict[str, object] = field(default_factory=dict)  # path -> scalar value
    #: values YAML could not read (they read as null): later problems there would only repeat it
    unreadable: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)

    def position(self, path: str) -> Position | None:
        """Where the value at `path` (or its nearest enclosing value) starts."""
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return None
            path = _parent(path)

    def existing(self, parts: Sequence[str | int]) -> str:
        """The longest prefix of `parts` that names a value in the document, as a path."""
        path = ""
        for part in parts:
            candidate = join(path, part)
            if candidate not in self.positions:
                break
            path = candidate
        return path

    def item_path(self, list_path: str, value: object) -> str:
        """The path of the first item equal to `value` in the list at `list_path`."""
        index = 0
        while (candidate := join(list_path, index)) in self.positions:
            if self.scalars.get(candidate, _MISSING) == value:
                return candidate
            index += 1
        return list_path

    def problem(
        self,
        path: str,
        message: str,
        *,
        at_key: bool = False,
        code: str = "invalid",
        severity: str = "error",
    ) -> Problem:
        """A Problem at `path` (at its key when `at_key`, for unknown and duplicate keys)."""
        where = self.key_positions.get(path) if at_key else None
        where = where or self.position(path)
        line, column = where if where else (None, None)
        return Problem(
            source=self.name,
            line=line,
            column=column,
            path=path,
            message=message,
            code=code,
            severity=severity,
        )

    def error(self, path: str, message: str, *, at_key: bool = False) -> None:
        """Record an error at `path`."""
        self.problems.append(self.problem(path, message, at_key=at_key))

    def duplicate(self, path: str, value: str, first: str, what: str = "") -> None:
        """Record that `value` at `path` repeats the one at `first`."""
        where = self.position(first)
        line = f" (first at line {where[0]})" if where else ""
        self.error(path, f"duplicate {what}{value!r}{line}")


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


class _TooLarge(Exception):
    pass


def read_yaml(text: str, name: str) -> Source:
    """Parse `text`; on a YAML syntax error the Source has no data and one problem."""
    source = Source(name)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.problem and exc.context:
            message += f" ({exc.context})"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        source.problems.append(
            Problem(source=name, line=line, column=column, path="", message=message)
        )
        return source
    finally:
        loader.dispose()
    if node is None:
        source.problems.append(
            Problem(
                source=name,
                line=1,
                column=1,
                path="",
                message="the document is empty; expected a mapping with version, name and flows",
            )
        )
        return source
    reader = _Reader(loader, source)
    try:
        source.data = reader.value(node, "")
    except _TooLarge:
        source.data = None
        source.problems.append(
            source.problem(
                "", f"the document is too large: more than {MAX_VALUES} values once aliases expand"
            )
        )
    return source


class _Reader:
    """Converts nodes to values, recording positions and structural problems on the Source."""

    def __init__(self, loader: yaml.SafeLoader, source: Source) -> None:
        self.loader = loader
        self.source = source
        self.count = 0
        self.active: set[int] = set()  # nodes being converted: an alias to one of them recurses

    def value(self, node: Node, path: str) -> Any:
        self.source.positions[path] = _mark(node)
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooLarge
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            return self.unreadable(path, "an alias refers to a value that contains it")
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _TAG + "seq":
                    return self.unsupported(node, path)
                return [self.value(item, join(path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            if node.tag != _TAG + "map":
                return self.unsupported(node, path)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def unsupported(self, node: Node, path: str) -> None:
        self.unreadable(path, f"unsupported YAML tag {node.tag!r}")

    def unreadable(self, path: str, message: str) -> None:
        self.source.error(path, message)
        self.source.unreadable.add(path)

    def scalar(self, node: ScalarNode, path: str) -> Any:
        if node.tag not in _SCALAR_TAGS:
            return self.unsupported(node, path)
        try:
            # YAML 1.1 reads a bare `=` as a "value" tag PyYAML cannot construct: keep the text
            value = node.value if node.tag == _VALUE else self.loader.construct_object(node)
        except ValueError as exc:  # a timestamp-looking value that is not a date: 2024-13-45
            return self.unreadable(path, f"cannot read {node.value!r}: {exc}")
        self.source.scalars[path] = value
        return value

    def mapping(self, node: MappingNode, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        explicit, merged = self.pairs(node, path)
        pairs = [(k, v, False) for k, v in explicit] + [(k, v, True) for k, v in merged]
        for key_node, value_node, is_merged in pairs:
            if not isinstance(key_node, ScalarNode):
                message = f"expected a plain key, found {_kind(key_node)} as a key"
                self.source.problems.append(_at(self.source, path, _mark(key_node), message))
                continue
            # keys are names in our schema: keep the text as written (`on:` stays 'on', not True)
            key = key_node.value
            child = join(path, key)
            if key in out:
                if not is_merged:  # merged keys never override: explicit keys win silently
                    message = f"duplicate key {key!r} (first at line {first_line[key]})"
                    self.source.problems.append(_at(self.source, child, _mark(key_node), message))
                continue
            first_line[key] = _mark(key_node)[0]
            self.source.key_positions[child] = _mark(key_node)
            out[key] = self.value(value_node, child)
        return out

    def pairs(
        self, node: MappingNode, path: str
    ) -> tuple[list[tuple[Node, Node]], list[tuple[Node, Node]]]:
        """The explicit key/value pairs, and those merged in with `<<: *anchor` (first wins)."""
        explicit: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                explicit.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for merge_source in sources:
                if id(merge_source) in self.active:
                    message = "an alias refers to a value that contains it"
                elif not isinstance(merge_source, MappingNode):
                    message = (
                        "expected a mapping or a list of mappings after '<<', "
                        f"found {_kind(merge_source)}"
                    )
                else:
                    self.active.add(id(merge_source))
                    inner_explicit, inner_merged = self.pairs(merge_source, path)
                    self.active.discard(id(merge_source))
                    merged.extend(inner_explicit + inner_merged)
                    continue
                self.source.problems.append(_at(self.source, path, _mark(merge_source), message))
        return explicit, merged


def _kind(node: Node) -> str:
    """What a node is, for messages: 'a mapping', 'a list' or its text quoted."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return repr(node.value)


def _mark(node: Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _at(source: Source, path: str, where: Position, message: str) -> Problem:
    return Problem(source=source.name, line=where[0], column=where[1], path=path, message=message)
