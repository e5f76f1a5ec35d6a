"""Turn validated documents (`schema`) into the frozen model, checking what needs the whole policy.

Every problem is recorded on the Source and compiling carries on, so one run reports them all. A
flow with problems is still compiled as well as possible, so the safety lints can run on it too:
values its schema refused are left out or stood in for (`schema.salvage`), and the checks that
would only repeat them (a duplicate of a stand-in name, an empty list it emptied) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from string import Formatter
from typing import Any, cast

from pydantic import ValidationError

from lapse.policy.conditions import (
    ConditionCompiler,
    Declared,
    literal,
    literal_error,
    require_declared,
    unique,
)
from lapse.policy.durations import Duration, DurationSyntaxError
from lapse.policy.model import (
    AddressRule,
    Channel,
    Condition,
    FactSpec,
    Flow,
    NoticeRule,
    Outcome,
    Phase,
)
from lapse.policy.schema import (
    FactDoc,
    FlowDoc,
    Loc,
    PhaseDoc,
    name_error,
    parse_duration,
    salvage,
    translate,
)
from lapse.policy.source import Source, join, listing, show

BANNER_FIELDS = ("deadline", "time_left", "reason", "flow", "phase")
MESSAGE_FIELDS = (*BANNER_FIELDS, "action")
TIMED_FIELDS = ("deadline", "time_left")  # need a phase end: not in an open-ended phase
_SAMPLE_DEADLINE = datetime(2000, 1, 1, tzinfo=UTC)
#: stands in for a `lasts` that could not be read: a timed phase longer than any lead, so the
#: lints find nothing in a length nobody wrote (a policy with errors never loads anyway)
UNREAD_LENGTH = Duration(years=10_000)


def compile_facts(source: Source, facts: Mapping[str, FactDoc]) -> dict[str, FactSpec]:
    """FactSpecs, checking each default against its fact's type."""
    out = {}
    for name, doc in facts.items():
        default = None
        if doc.default is not None:
            default = literal(doc.default, doc.type)
            if default is None:
                context = f"as the default of a {doc.type} fact"
                source.error(
                    join(join("facts", name), "default"),
                    literal_error(doc.default, doc.type, context),
                )
        out[name] = FactSpec(name=name, type=doc.type, default=default)
    return out


def check_template(
    source: Source, text: str, path: str, allowed: Sequence[str], open_ended: bool
) -> None:
    """Report unknown or malformed placeholders in a banner or message format string."""
    try:
        fields = list(Formatter().parse(text))
    except ValueError as exc:
        source.error(path, f"invalid format string: {exc}")
        return
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        shown = _placeholder(field, conversion, spec)
        if field not in allowed:
            expected = listing("{" + f + "}" for f in allowed)
            source.error(path, f"unknown placeholder {shown!r}; expected one of: {expected}")
        elif open_ended and field in TIMED_FIELDS:
            source.error(
                path,
                f"placeholder {shown!r} needs a phase end; this phase is open-ended (no lasts)",
            )
        elif "{" in (spec or ""):
            source.error(path, f"nested placeholders are not supported: {shown!r}")
        else:
            # render once with a sample value: a bad conversion or format spec fails here, not
            # when the banner is first shown to a user
            sample: object = _SAMPLE_DEADLINE if field == "deadline" else "text"
            try:
                _placeholder("x", conversion, spec).format(x=sample)
            except ValueError as exc:
                source.error(path, f"invalid placeholder {shown!r}: {exc}")


def _placeholder(name: str, conversion: str | None, spec: str | None) -> str:
    """A placeholder as written, from the parts `Formatter.parse` splits it into."""
    return (
        "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    )


class FlowCompiler:
    """Compiles `flows.<name>` documents against the policy's declarations."""

    def __init__(self, source: Source, declared: Declared) -> None:
        self.source = source
        self.declared = declared
        self.conditions = ConditionCompiler(source, declared)
        # of the flow being compiled: paths of refused values, and where the items left of a
        # list with refused items were in the document
        self.unread: frozenset[str] = frozenset()
        self.kept: dict[str, tuple[int, ...]] = {}

    def compile(self, name: str, raw: Any) -> tuple[Flow | None, bool]:
        """The flow (None if it is not even a mapping), and whether its lints can be trusted:
        its phases, their notices and its waivers could be read. Problems are on the Source."""
        path = join("flows", name)
        self.unread, self.kept = frozenset(), {}
        try:
            doc = FlowDoc.model_validate(raw)
        except ValidationError as exc:
            self.source.problems.extend(translate(exc, FlowDoc, self.source, ("flows", name)))
            if not isinstance(raw, dict):
                return None, False
            # the rest of the flow is still checked: one invalid value hides nothing else
            saved = salvage(exc, FlowDoc, raw)
            doc = FlowDoc.model_validate(saved.data)
            self.unread = frozenset(_path(path, loc) for loc in saved.unread)
            self.kept = {_path(path, loc): kept for loc, kept in saved.kept.items()}
        starts_when = self._condition(doc.starts_when, join(path, "starts_when"))
        stops_when = self._condition(doc.stops_when, join(path, "stops_when"))
        starts_on = self._unique(doc.starts_on or [], join(path, "starts_on"))
        stops_on = self._unique(doc.stops_on or [], join(path, "stops_on"))
        has_start = (doc.starts_when is not None, bool(starts_on))
        if has_start == (True, True):
            self.source.error(
                join(path, "starts_on"),
                "a flow has exactly one of starts_when or starts_on, found both",
            )
        elif has_start == (False, False) and self._whole(join(path, "starts_on")):
            self.source.error(path, "a flow needs one of starts_when or starts_on, found neither")
        phases = self._phases(doc, path)
        outcome, outcome_ok = self._outcome(doc.outcome, join(path, "outcome"))
        address = self._address(doc.address, join(path, "address"), outcome, outcome_ok)
        lintable = all(self._read(join(path, key)) for key in ("phases", "waive")) and all(
            self._read(join(phase.path, "notices")) for phase in phases
        )
        flow = Flow(
            name=name,
            title=doc.title if doc.title is not None else name,
            reason=doc.reason,
            applies_to=self._applies_to(doc, path),
            starts_when=starts_when,
            starts_on=frozenset(starts_on),
            stops_when=stops_when,
            stops_on=frozenset(stops_on),
            irreversible=bool(doc.irreversible),
            phases=phases,
            outcome=outcome,
            address=address,
            on_close=self._unique(doc.on_close or [], join(path, "on_close")),
            waive=frozenset(self._unique(doc.waive or [], join(path, "waive"))),
            path=path,
        )
        return flow, lintable

    def _read(self, path: str) -> bool:
        """Whether the value at `path` was read: neither it nor a value around it was refused."""
        return not any(
            path == bad or path.startswith((f"{bad}.", f"{bad}[")) for bad in self.unread
        )

    def _whole(self, path: str) -> bool:
        """Whether the value at `path` was read whole: also none of its items was refused."""
        return self._read(path) and path not in self.kept

    def _unique(self, names: Sequence[str], path: str) -> tuple[str, ...]:
        return unique(self.source, names, path, self.kept.get(path))

    def _condition(self, raw: Any, path: str) -> Condition | None:
        return None if raw is None else self.conditions.compile(raw, path)

    def _item(self, path: str, index: int) -> str:
        # `kind: standard` is short for `kind: [standard]`: then the item is the value itself
        kept = self.kept.get(path)
        item = join(path, index if kept is None else kept[index])
        return item if item in self.source.positions else path

    def _require(
        self, names: Sequence[str], declared: Sequence[str] | None, what: str, path: str
    ) -> None:
        for index, name in enumerate(names):
            require_declared(self.source, name, declared, what, self._item(path, index))

    def _applies_to(self, doc: FlowDoc, path: str) -> frozenset[str] | None:
        if doc.applies_to is None:
            return None
        kind_path = join(join(path, "applies_to"), "kind")
        kinds = self._unique(doc.applies_to.kind, kind_path)
        self._require(doc.applies_to.kind, self.declared.kinds, "kind", kind_path)
        return frozenset(kinds)

    def _phases(self, doc: FlowDoc, path: str) -> tuple[Phase, ...]:
        phases = []
        first: dict[str, str] = {}
        for index, phase_doc in enumerate(doc.phases or []):
            phase_path = join(join(path, "phases"), index)
            name_path = join(phase_path, "name")
            if self._read(name_path):  # not a stand-in
                if phase_doc.name in first:
                    self.source.duplicate(
                        name_path, phase_doc.name, first[phase_doc.name], "phase name "
                    )
                first.setdefault(phase_doc.name, name_path)
            phases.append(self._phase(phase_doc, index, phase_path))
        return tuple(phases)

    def _phase(self, doc: PhaseDoc, index: int, path: str) -> Phase:
        if doc.deny is not None and doc.allow_only is not None:
            self.source.error(
                join(path, "allow_only"),
                "a phase has at most one of deny or allow_only, found both",
            )
        lasts = doc.lasts if self._read(join(path, "lasts")) else UNREAD_LENGTH
        open_ended = lasts is None
        if doc.banner is not None:
            check_template(self.source, doc.banner, join(path, "banner"), BANNER_FIELDS, open_ended)
        if doc.message is not None:
            check_template(
                self.source, doc.message, join(path, "message"), MESSAGE_FIELDS, open_ended
            )
        allow_only = None
        if doc.allow_only is not None:
            allow_only = frozenset(self._unique(doc.allow_only, join(path, "allow_only")))
        return Phase(
            name=doc.name,
            index=index,
            lasts=lasts,
            deny=frozenset(self._unique(doc.deny or [], join(path, "deny"))),
            allow_only=allow_only,
            banner=doc.banner,
            message=doc.message,
            notices=self._notices(doc, path, open_ended),
            on_enter=self._unique(doc.on_enter or [], join(path, "on_enter")),
            on_exit=self._unique(doc.on_exit or [], join(path, "on_exit")),
            purge=self._purge(doc.purge, join(path, "purge")),
            state=doc.state,
            path=path,
        )

    def _notices(self, doc: PhaseDoc, path: str, open_ended: bool) -> tuple[NoticeRule, ...]:
        notices = []
        first: dict[str, str] = {}
        for index, notice in enumerate(doc.notices or []):
            notice_path = join(join(path, "notices"), index)
            at, offset = notice.at
            if at == "before_end" and open_ended:
                self.source.error(
                    join(notice_path, "at"),
                    "a notice 'before end' needs a phase end; this phase is open-ended (no lasts)",
                )
            template_path = join(notice_path, "template")
            if self._read(template_path):  # not a stand-in
                if notice.template in first:
                    self.source.duplicate(
                        template_path, notice.template, first[notice.template], "template "
                    )
                first.setdefault(notice.template, template_path)
            via = ["email"] if notice.via is None else notice.via
            via_path = join(notice_path, "via")
            if not via and self._whole(via_path):
                self.source.error(via_path, "expected at least one channel")
            notices.append(
                NoticeRule(
                    key=f"{doc.name}/{notice.template}",
                    at=at,
                    offset=offset,
                    to=notice.to,
                    template=notice.template,
                    via=cast(tuple[Channel, ...], self._unique(via, via_path)),
                    path=notice_path,
                )
            )
        return tuple(notices)

    def _purge(self, categories: list[str] | None, path: str) -> tuple[str, ...]:
        if categories is None:
            return ()
        if not categories and self._whole(path):
            self.source.error(path, "expected at least one data category to purge")
        self._require(categories, self.declared.categories, "category", path)
        return self._unique(categories, path)

    def _outcome(self, raw: Any, path: str) -> tuple[Outcome | None, bool]:
        if raw is None or raw == "none":
            return None, True
        if raw == "delete":
            return Outcome(kind="delete", path=path), True
        if isinstance(raw, dict) and "purge" in raw:
            extra = [k for k in raw if k != "purge"]
            for key in extra:
                self.source.error(
                    join(path, key), f"unknown key {key!r}; expected one of: purge", at_key=True
                )
            purge_path = join(path, "purge")
            categories = raw["purge"]
            if not isinstance(categories, list):
                self.source.error(
                    purge_path, f"expected a list of data categories, found {show(categories)}"
                )
                return None, False
            names_ok = True
            for index, item in enumerate(categories):
                if message := name_error(item):
                    self.source.error(join(purge_path, index), message)
                    names_ok = False
            if not names_ok:
                return None, False
            purged = self._purge(categories, purge_path)
            return Outcome(kind="purge", categories=purged, path=path), not extra
        self.source.error(
            path, f"expected delete, none or {{purge: [categories]}}, found {show(raw)}"
        )
        return None, False

    def _address(
        self, raw: Any, path: str, outcome: Outcome | None, outcome_ok: bool
    ) -> AddressRule:
        if raw is None:
            return AddressRule(mode="release")
        if outcome_ok and (outcome is None or outcome.kind != "delete"):
            self.source.error(path, "address applies only to a flow whose outcome is delete")
        if raw in ("release", "retire"):
            return AddressRule(mode=raw)
        if isinstance(raw, dict) and list(raw) == ["retire_for"]:
            try:
                return AddressRule(mode="retire", duration=parse_duration(raw["retire_for"]))
            except DurationSyntaxError as exc:
                self.source.error(join(path, "retire_for"), str(exc))
                return AddressRule(mode="release")
        self.source.error(
            path, f"expected release, retire or {{retire_for: <duration>}}, found {show(raw)}"
        )
        return AddressRule(mode="release")


def _path(base: str, loc: Loc) -> str:
    for part in loc:
        base = join(base, part)
    return base
