"""The shape of a policy document, as pydantic models, and pydantic errors turned into our words.

The models check keys and simple types only (strict: no coercion, `extra="forbid"`). What needs
the rest of the document (declared names, fact types, conditions, outcomes) is checked by
`lapse.policy.compiler`, which gives more precise messages than a union of models would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import UnionType
from typing import Annotated, Any, Literal, TypeAlias, TypeGuard, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from lapse.errors import Problem
from lapse.policy.durations import Duration, DurationSyntaxError
from lapse.policy.model import LINTS
from lapse.policy.source import Source, listing, show

NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
POLICY_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
DURATION_EXPECTED = "expected a duration such as '30 days' or '1 month'"


def _fail(message: str) -> PydanticCustomError:
    # the message is passed through the context so braces in it are never read as placeholders
    return PydanticCustomError("lapse", "{message}", {"message": message})


def name_error(value: object) -> str | None:
    """Why `value` is not a name (flows, phases, actions, ...), or None if it is one."""
    if isinstance(value, str) and NAME.match(value):
        return None
    return (
        "expected a name (lower case letters, digits, '_' and '-', starting with a letter), "
        f"found {show(value)}"
    )


def parse_duration(value: object) -> Duration:
    """A Duration from a YAML value; DurationSyntaxError says what was wrong."""
    if not isinstance(value, str):
        raise DurationSyntaxError(f"{DURATION_EXPECTED}, found {show(value)}")
    return Duration.parse(value)


def _name(value: object) -> str:
    message = name_error(value)
    if message:
        raise _fail(message)
    assert isinstance(value, str)
    return value


def _name_or_list(value: object) -> object:
    # `starts_on: payment_failed` is short for `starts_on: [payment_failed]`
    return [_name(value)] if isinstance(value, str) else value


def _policy_name(value: object) -> str:
    if isinstance(value, str) and POLICY_NAME.match(value):
        return value
    raise _fail(
        "expected a policy name (lower case letters, digits and '-', starting with a letter "
        f"or digit), found {show(value)}"
    )


def _version(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise _fail(f"expected a version: a string or an integer, found {show(value)}")


def _duration(value: object) -> Duration:
    try:
        return parse_duration(value)
    except DurationSyntaxError as exc:
        raise _fail(str(exc)) from None


def _timezone(value: object) -> str:
    if isinstance(value, str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return value
    raise _fail(
        f"unknown time zone {show(value)}; expected an IANA name such as 'Europe/Brussels' or 'UTC'"
    )


def _lint(value: object) -> str:
    if isinstance(value, str) and value in LINTS:
        return value
    raise _fail(f"unknown lint {show(value)}; expected one of: {listing(LINTS)}")


def _template_part(value: object) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, str):
        raise _fail("a template part cannot be empty")
    raise _fail(f"expected the Jinja2 source of a template part (a string), found {show(value)}")


NoticeAt: TypeAlias = tuple[Literal["start", "after_start", "before_end"], Duration]
_AT = re.compile(r"(?P<offset>.+?)\s+(?P<rel>after start|before end)\Z")
AT_EXPECTED = "expected 'start', '<duration> after start' or '<duration> before end'"


def _notice_at(value: object) -> NoticeAt:
    if isinstance(value, str):
        text = value.strip()
        if text == "start":
            return ("start", Duration())
        match = _AT.match(text)
        if match:
            try:
                offset = Duration.parse(match["offset"])
            except DurationSyntaxError as exc:
                raise _fail(str(exc)) from None
            return ("after_start" if match["rel"] == "after start" else "before_end", offset)
    raise _fail(f"{AT_EXPECTED}, found {show(value)}")


Name = Annotated[str, PlainValidator(_name)]
NameOrList = Annotated[list[Name], BeforeValidator(_name_or_list)]
PolicyName = Annotated[str, PlainValidator(_policy_name)]
Version = Annotated[str, PlainValidator(_version)]
DurationValue = Annotated[Duration, PlainValidator(_duration)]
TimeZoneName = Annotated[str, PlainValidator(_timezone)]
TemplatePart = Annotated[str, PlainValidator(_template_part)]
LintName = Annotated[str, PlainValidator(_lint)]
NoticeTime = Annotated[NoticeAt, PlainValidator(_notice_at)]


class _Doc(BaseModel):
    # strict: a YAML `30` is not the string '30', `yes` is not accepted for a string, and so on
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FactDoc(_Doc):
    """`facts.<name>`."""

    type: Literal["bool", "number", "string", "timestamp"]
    default: Any = None


class TemplateDoc(_Doc):
    """`templates.<name>`: a notice template carried by the policy (Jinja2 source texts)."""

    subject: TemplatePart
    text: TemplatePart
    html: TemplatePart


class PolicyDoc(_Doc):
    """The top of a policy document. Flows are validated one by one with `FlowDoc`."""

    version: Version
    name: PolicyName
    description: str | None = None
    timezone: TimeZoneName | None = None
    resolution: DurationValue | None = None
    actions: list[Name] | None = None
    kinds: list[Name] | None = None
    signals: list[Name] | None = None
    facts: dict[Name, FactDoc] | None = None
    events: list[Name] | None = None
    categories: list[Name] | None = None
    waive: list[LintName] | None = None
    templates: dict[Name, TemplateDoc] | None = None
    flows: dict[Name, Any] | None = None


class AppliesToDoc(_Doc):
    """`applies_to: {kind: [...]}`."""

    kind: NameOrList


class NoticeDoc(_Doc):
    """One item of a phase's `notices`."""

    at: NoticeTime
    to: Literal["admins", "members", "owner"]
    template: Name
    via: list[Literal["email", "webhook", "in_app"]] | None = None


class PhaseDoc(_Doc):
    """One item of a flow's `phases`."""

    name: Name
    lasts: DurationValue | None = None
    deny: list[Name] | None = None
    allow_only: list[Name] | None = None
    state: Literal["restricted", "locked", "suspended"] | None = None
    banner: str | None = None
    message: str | None = None
    notices: list[NoticeDoc] | None = None
    on_enter: list[Name] | None = None
    on_exit: list[Name] | None = None
    purge: list[Name] | None = None


class FlowDoc(_Doc):
    """`flows.<name>`. Conditions, outcome and address are compiled by hand."""

    title: str | None = None
    reason: str
    applies_to: AppliesToDoc | None = None
    starts_when: Any = None
    starts_on: NameOrList | None = None
    stops_when: Any = None
    stops_on: NameOrList | None = None
    irreversible: bool | None = None
    phases: list[PhaseDoc] | None = None
    outcome: Any = None
    address: Any = None
    on_close: list[Name] | None = None
    waive: list[LintName] | None = None


#: what stands in for a required value that is missing or invalid, so that the rest of the
#: flow can still be checked (see `salvage`); the compiler does not check a stand-in
STAND_INS: dict[type[BaseModel], dict[str, Any]] = {
    FlowDoc: {"reason": ""},
    AppliesToDoc: {"kind": []},
    PhaseDoc: {"name": "invalid"},
    NoticeDoc: {"at": "start", "to": "admins", "template": "invalid"},
}

Loc: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Salvaged:
    """What is left of a document once every value its model refused is taken out."""

    data: Any  # a copy of the document that the model accepts
    unread: frozenset[Loc]  # values refused (or missing): left out, or a stand-in put there
    kept: Mapping[Loc, tuple[int, ...]]  # lists some items of which were refused: where the
    # items left were in the document


def salvage(error: ValidationError, model: type[BaseModel], data: dict[str, Any]) -> Salvaged:
    """`data` without the values of `error` (which validating `data` with `model` raised), so
    that one invalid value does not hide the problems of every other value of the document.

    An unknown key is left out; an invalid item of a list of names, so the rest of the list is
    kept; an invalid optional value is left out; a missing or invalid required one, or an item
    of a list of mappings that is not a mapping, gets a stand-in (`STAND_INS`).
    """
    data = _copy(data)
    unread: set[Loc] = set()
    dropped: dict[Loc, set[int]] = {}
    for detail in error.errors(include_url=False):
        loc = tuple(detail["loc"])
        if detail["type"] == "extra_forbidden":
            _lookup(data, loc[:-1]).pop(loc[-1])
            continue
        where, in_names = _refused(model, loc)
        if in_names:
            dropped.setdefault(where[:-1], set()).add(int(where[-1]))
            continue
        parent, key = _lookup(data, where[:-1]), where[-1]
        unread.add(where)
        if isinstance(key, int):  # an item of a list of mappings
            item = _model_at(model, where)
            parent[key] = _copy(STAND_INS[item])
            continue
        stand_in = STAND_INS.get(_model_at(model, where[:-1]), {})
        if key in stand_in:
            parent[key] = _copy(stand_in[key])
        else:  # optional: as if not given
            del parent[key]
    kept = {}
    for path, indexes in dropped.items():
        items = _lookup(data, path)
        kept[path] = tuple(i for i in range(len(items)) if i not in indexes)
        items[:] = [items[i] for i in kept[path]]
    return Salvaged(data=data, unread=frozenset(unread), kept=kept)


def _refused(model: type[BaseModel], loc: Loc) -> tuple[Loc, bool]:
    """The value to take out for an error at `loc`, and whether it is an item of a list of
    names (or other plain values)."""
    annotation: Any = model
    for depth, part in enumerate(loc):
        annotation = _bare(annotation)
        if isinstance(part, int):
            annotation = _bare(get_args(annotation)[0])
            if not _is_model(annotation):
                return loc[: depth + 1], True
        else:
            annotation = annotation.model_fields[part].annotation
    return loc, False


def _bare(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` as X."""
    while True:
        unwrapped = _unwrap(annotation)
        if get_origin(unwrapped) is Annotated:
            unwrapped = get_args(unwrapped)[0]
        if unwrapped is annotation:
            return annotation
        annotation = unwrapped


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _lookup(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _copy(value: Any) -> Any:
    """A copy of the lists and mappings of a document, none shared (unlike `copy.deepcopy`,
    which keeps a value reached twice as one: each place must be mended on its own)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --- pydantic errors in our words -----------------------------------------------------------

_EXPECTED = {
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
}


def translate(
    error: ValidationError, model: type[BaseModel], source: Source, prefix: Sequence[str | int] = ()
) -> list[Problem]:
    """Problems for every error pydantic found validating `model` at the path `prefix`."""
    out = []
    for detail in error.errors(include_url=False):
        loc = tuple(detail["loc"])
        kind = detail["type"]
        found = show(detail.get("input"))
        if kind == "missing":
            path = source.existing((*prefix, *loc[:-1]))
            out.append(source.problem(path, f"missing required key {loc[-1]!r}"))
        elif kind == "extra_forbidden":
            path = source.existing((*prefix, *loc))
            keys = listing(_model_at(model, loc[:-1]).model_fields)
            message = f"unknown key {loc[-1]!r}; expected one of: {keys}"
            out.append(source.problem(path, message, at_key=True))
        elif loc and loc[-1] == "[key]":  # an invalid key of a dict such as `flows`
            path = source.existing((*prefix, *loc[:-1]))
            out.append(source.problem(path, detail["ctx"]["message"], at_key=True))
        else:
            path = source.existing((*prefix, *loc))
            if kind == "lapse":
                message = detail["ctx"]["message"]
            elif kind == "literal_error":
                message = f"expected {detail['ctx']['expected']}, found {found}"
            elif kind in _EXPECTED:
                message = f"{_EXPECTED[kind]}, found {found}"
            else:  # a pydantic error this module does not expect: keep pydantic's words
                message = f"{detail['msg']}, found {found}"
            out.append(source.problem(path, message))
    return out


@cache
def _unwrap(annotation: Any) -> Any:
    """`X | None` as X."""
    if get_origin(annotation) in (Union, UnionType):
        return next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel]:
    """The model that validates the mapping at `loc` (relative to `model`)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if origin is list:
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            annotation = annotation.model_fields[part].annotation
    annotation = _unwrap(annotation)
    if not _is_model(annotation):
        raise AssertionError(f"no model at {loc!r}")
    return annotation
