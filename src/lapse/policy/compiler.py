"""Turn validated documents (`schema`) into the frozen model, checking what needs the whole policy.

Every problem is recorded on the Source and compiling carries on, so one run reports them all. A
flow with problems is still compiled as well as possible, so the safety lints can run on it too.
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
from lapse.policy.durations import DurationSyntaxError
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
from lapse.policy.schema import FactDoc, FlowDoc, PhaseDoc, name_error, parse_duration, translate
from lapse.policy.source import Source, join, listing, show

BANNER_FIELDS = ("deadline", "time_left", "reason", "flow", "phase")
MESSAGE_FIELDS = (*BANNER_FIELDS, "action")
TIMED_FIELDS = ("deadline", "time_left")  # need a phase end: not in an open-ended phase
_SAMPLE_DEADLINE = datetime(2000, 1, 1, tzinfo=UTC)


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

    def compile(self, name: str, raw: Any) -> Flow | None:
        """The flow, or None if its structure is invalid (problems are on the Source)."""
        path = join("flows", name)
        try:
            doc = FlowDoc.model_validate(raw)
        except ValidationError as exc:
            self.source.problems.extend(translate(exc, FlowDoc, self.source, ("flows", name)))
            return None
        starts_when = self._condition(doc.starts_when, join(path, "starts_when"))
        stops_when = self._condition(doc.stops_when, join(path, "stops_when"))
        starts_on = unique(self.source, doc.starts_on or [], join(path, "starts_on"))
        stops_on = unique(self.source, doc.stops_on or [], join(path, "stops_on"))
        has_start = (doc.starts_when is not None, bool(starts_on))
        if has_start == (True, True):
            self.source.error(
                join(path, "starts_on"),
                "a flow has exactly one of starts_when or starts_on, found both",
            )
        elif has_start == (False, False):
            self.source.error(path, "a flow needs one of starts_when or starts_on, found neither")
        phases = self._phases(doc, path)
        outcome, outcome_ok = self._outcome(doc.outcome, join(path, "outcome"))
        address = self._address(doc.address, join(path, "address"), outcome, outcome_ok)
        return Flow(
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
            on_close=unique(self.source, doc.on_close or [], join(path, "on_close")),
            waive=frozenset(unique(self.source, doc.waive or [], join(path, "waive"))),
            path=path,
        )

    def _condition(self, raw: Any, path: str) -> Condition | None:
        return None if raw is None else self.conditions.compile(raw, path)

    def _item(self, path: str, index: int) -> str:
        # `kind: standard` is short for `kind: [standard]`: then the item is the value itself
        item = join(path, index)
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
        kinds = unique(self.source, doc.applies_to.kind, kind_path)
        self._require(doc.applies_to.kind, self.declared.kinds, "kind", kind_path)
        return frozenset(kinds)

    def _phases(self, doc: FlowDoc, path: str) -> tuple[Phase, ...]:
        phases = []
        first: dict[str, str] = {}
        for index, phase_doc in enumerate(doc.phases or []):
            phase_path = join(join(path, "phases"), index)
            if phase_doc.name in first:
                self.source.duplicate(
                    join(phase_path, "name"), phase_doc.name, first[phase_doc.name], "phase name "
                )
            first.setdefault(phase_doc.name, join(phase_path, "name"))
            phases.append(self._phase(phase_doc, index, phase_path))
        return tuple(phases)

    def _phase(self, doc: PhaseDoc, index: int, path: str) -> Phase:
        if doc.deny is not None and doc.allow_only is not None:
            self.source.error(
                join(path, "allow_only"),
                "a phase has at most one of deny or allow_only, found both",
            )
        open_ended = doc.lasts is None
        if doc.banner is not None:
            check_template(self.source, doc.banner, join(path, "banner"), BANNER_FIELDS, open_ended)
        if doc.message is not None:
            check_template(
                self.source, doc.message, join(path, "message"), MESSAGE_FIELDS, open_ended
            )
        allow_only = None
        if doc.allow_only is not None:
            allow_only = frozenset(unique(self.source, doc.allow_only, join(path, "allow_only")))
        return Phase(
            name=doc.name,
            index=index,
            lasts=doc.lasts,
            deny=frozenset(unique(self.source, doc.deny or [], join(path, "deny"))),
            allow_only=allow_only,
            banner=doc.banner,
            message=doc.message,
            notices=self._notices(doc, path),
            on_enter=unique(self.source, doc.on_enter or [], join(path, "on_enter")),
            on_exit=unique(self.source, doc.on_exit or [], join(path, "on_exit")),
            purge=self._purge(doc.purge, join(path, "purge")),
            state=doc.state,
            path=path,
        )

    def _notices(self, doc: PhaseDoc, path: str) -> tuple[NoticeRule, ...]:
        notices = []
        first: dict[str, str] = {}
        for index, notice in enumerate(doc.notices or []):
            notice_path = join(join(path, "notices"), index)
            at, offset = notice.at
            if at == "before_end" and doc.lasts is None:
                self.source.error(
                    join(notice_path, "at"),
                    "a notice 'before end' needs a phase end; this phase is open-ended (no lasts)",
                )
            template_path = join(notice_path, "template")
            if notice.template in first:
                self.source.duplicate(
                    template_path, notice.template, first[notice.template], "template "
                )
            first.setdefault(notice.template, template_path)
            via = ["email"] if notice.via is None else notice.via
            if not via:
                self.source.error(join(notice_path, "via"), "expected at least one channel")
            notices.append(
                NoticeRule(
                    key=f"{doc.name}/{notice.template}",
                    at=at,
                    offset=offset,
                    to=notice.to,
                    template=notice.template,
                    via=cast(
                        tuple[Channel, ...], unique(self.source, via, join(notice_path, "via"))
                    ),
                    path=notice_path,
                )
            )
        return tuple(notices)

    def _purge(self, categories: list[str] | None, path: str) -> tuple[str, ...]:
        if categories is None:
            return ()
        if not categories:
            self.source.error(path, "expected at least one data category to purge")
        self._require(categories, self.declared.categories, "category", path)
        return unique(self.source, categories, path)

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
