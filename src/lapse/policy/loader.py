"""Load a policy document: YAML to a validated, compiled, linted `Policy`, or all its problems."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from lapse.errors import PolicyError, Problem
from lapse.policy.compiler import FlowCompiler, compile_facts
from lapse.policy.conditions import Declared, unique
from lapse.policy.durations import Duration
from lapse.policy.lints import lint_flow
from lapse.policy.model import Flow, NoticeTemplate, Policy
from lapse.policy.schema import PolicyDoc, translate
from lapse.policy.source import Source, read_yaml, show

DEFAULT_RESOLUTION = Duration(hours=1)
_SECTIONS = ("actions", "kinds", "signals", "events", "categories")


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    """The result of checking a document: the policy if it has no errors, and every problem."""

    policy: Policy | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        """The problems that are errors (not waived lints)."""
        return tuple(p for p in self.problems if p.severity == "error")


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """Load a policy document; raises PolicyError listing every error if it has any."""
    result = inspect_policy(text, source)
    if result.policy is None:
        raise PolicyError(result.errors)
    return result.policy


def load_policy_file(path: str | PathLike[str]) -> Policy:
    """Load the policy document in the file at `path` (problems name the file)."""
    return load_policy(Path(path).read_text(encoding="utf-8"), source=str(path))


def check_policy(text: str, source: str = "<policy>") -> list[Problem]:
    """Every error and waived lint of a document; never raises for problems in the document."""
    return list(inspect_policy(text, source).problems)


def inspect_policy(text: str, source: str = "<policy>") -> PolicyCheck:
    """Check a document: the loaded policy (None if it has errors) and every problem found."""
    doc = read_yaml(text, source)
    read = len(doc.problems)  # problems of reading YAML; the rest come from checking values
    policy = None
    if doc.data is not None:
        if isinstance(doc.data, dict):
            policy = _compile(doc, text)
        else:
            doc.error("", f"expected a mapping at the top of the document, found {show(doc.data)}")
    problems = sorted(
        (p for i, p in enumerate(doc.problems) if i < read or not _repeats_unreadable(doc, p)),
        key=lambda p: (p.line or 0, p.column or 0, p.path),
    )
    if any(p.severity == "error" for p in problems):
        policy = None
    elif policy is not None:
        # waived lints travel with the policy so `lapse policy show` can list them
        policy = replace(policy, problems=tuple(problems))
    return PolicyCheck(policy=policy, problems=tuple(problems))


def _repeats_unreadable(doc: Source, problem: Problem) -> bool:
    """True for a problem at (or in) a value YAML could not read: it would only repeat that."""
    return any(
        problem.path == path or problem.path.startswith((f"{path}.", f"{path}["))
        for path in doc.unreadable
    )


def _root(doc: Source) -> tuple[PolicyDoc, set[str]]:
    """The validated top of the document and the names of its invalid sections."""
    data: dict[str, Any] = doc.data
    try:
        return PolicyDoc.model_validate(data), set()
    except ValidationError as exc:
        doc.problems.extend(translate(exc, PolicyDoc, doc))
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
    # validate what remains so that flows are still checked against the valid sections
    kept = {k: v for k, v in data.items() if k not in bad}
    kept.setdefault("version", "0")
    kept.setdefault("name", "invalid")
    return PolicyDoc.model_validate(kept), bad


def _compile(doc: Source, text: str) -> Policy:
    root, bad = _root(doc)

    def names(section: str) -> tuple[str, ...] | None:
        if section in bad:
            return None  # invalid: its problems are reported; do not check references to it
        return unique(doc, getattr(root, section) or [], section)

    sections = {section: names(section) for section in _SECTIONS}
    facts = None if "facts" in bad else compile_facts(doc, root.facts or {})
    declared = Declared(
        actions=sections["actions"],
        kinds=sections["kinds"],
        signals=sections["signals"],
        categories=sections["categories"],
        facts=facts,
    )
    policy_waive = frozenset(unique(doc, root.waive or [], "waive"))
    compiler = FlowCompiler(doc, declared)
    flows: dict[str, Flow] = {}
    raw_flows = doc.data.get("flows")
    for name, raw in (raw_flows if isinstance(raw_flows, dict) else {}).items():
        flow, lintable = compiler.compile(name, raw)
        if flow is None:
            continue
        flows[name] = flow
        if lintable:
            doc.problems.extend(
                lint_flow(flow, actions=declared.actions, policy_waive=policy_waive, locator=doc)
            )
    events = set(sections["events"] or ())
    for flow in flows.values():
        events |= flow.starts_on | flow.stops_on
    timezone = root.timezone or "UTC"
    actions = sections["actions"] or ()
    templates = {
        name: NoticeTemplate(subject=t.subject, text=t.text, html=t.html)
        for name, t in (root.templates or {}).items()
    }
    return Policy(
        name=root.name,
        version=root.version,
        description=root.description or "",
        timezone=ZoneInfo(timezone),
        timezone_name=timezone,
        resolution=DEFAULT_RESOLUTION if root.resolution is None else root.resolution,
        actions=frozenset(actions),
        action_order=actions,
        kinds=frozenset(sections["kinds"] or ()),
        signals=frozenset(sections["signals"] or ()),
        facts=facts or {},
        events=frozenset(events),
        categories=frozenset(sections["categories"] or ()),
        flows=flows,
        waive=policy_waive,
        templates=templates,
        source=doc.name,
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        text=text,
    )
