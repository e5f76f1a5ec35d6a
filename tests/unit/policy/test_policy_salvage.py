"""One invalid value hides nothing else: the rest of its flow is still compiled and linted."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapse.errors import PolicyError
from lapse.policy import check_policy
from lapse.policy.presets import preset_names
from lapse.policy.schema import STAND_INS, AppliesToDoc, FlowDoc, NoticeDoc, PhaseDoc

Check = Callable[[str], list[str]]
NAME = "expected a name (lower case letters, digits, '_' and '-', starting with a letter)"

FIVE = """
f:
  reason: r
  starts_when: {no_activity: [logn], for: 12 months}
  phases:
    - name: grace
      lasts: 3 fortnights
      deny: [sned]
      banner: "Deleted on {deadline:%d %B %Y}."
      notices:
        - {at: -3 days before end, to: admins, template: final}
    - name: grace
      lasts: 1 day
  outcome: destroy
"""


def test_every_error_of_a_flow_is_reported_at_once(
    check: Check, load: Callable[[str], object]
) -> None:
    expected = [
        "p.yaml:18:33: flows.f.starts_when.no_activity[0]: unknown signal 'logn'; declared "
        "signals: login, sent",
        "p.yaml:21:16: flows.f.phases[0].lasts: unknown unit 'fortnights' in '3 fortnights'; "
        "expected minutes, hours, days, weeks, months or years",
        "p.yaml:22:16: flows.f.phases[0].deny[0]: unknown action 'sned'; declared actions: "
        "login, view, send [unknown-action]",
        "p.yaml:25:18: flows.f.phases[0].notices[0].at: durations cannot be negative, found "
        "'-3 days'",
        "p.yaml:26:15: flows.f.phases[1].name: duplicate phase name 'grace' (first at line 20)",
        "p.yaml:28:14: flows.f.outcome: expected delete, none or {purge: [categories]}, found "
        "'destroy'",
    ]
    # (the unreadable length is not taken for an open-ended phase: no complaint about the
    # banner's deadline or the "before end" notice, and the next phase is not unreachable)
    assert check(FIVE) == expected
    with pytest.raises(PolicyError) as caught:
        load(FIVE)
    assert [str(p) for p in caught.value.problems] == expected


def test_a_list_keeps_its_valid_items_at_their_places(check: Check) -> None:
    assert check(
        """
        f:
          reason: r
          starts_on: [go, Go, go]
          outcome: delete
          waive: [deletion-without-notice, bogus]
          phases:
            - name: p
              deny: [Send, sned, view, sned]
              purge: [Reports]
              notices: [{at: start, to: admins, template: t, via: [sms]}]
        """
    ) == [
        f"p.yaml:18:21: flows.f.starts_on[1]: {NAME}, found 'Go'",
        "p.yaml:18:25: flows.f.starts_on[2]: duplicate 'go' (first at line 18)",
        # the valid waiver still holds
        "p.yaml:19:14: flows.f.outcome: waived: outcome delete runs without any notice before "
        "it [deletion-without-notice]",
        "p.yaml:20:38: flows.f.waive[1]: unknown lint 'bogus'; expected one of: unknown-action, "
        "unreachable-phase, deletion-without-notice, notice-lead-exceeds-phase, "
        "irreversible-with-stop, banner-without-login",
        f"p.yaml:23:16: flows.f.phases[0].deny[0]: {NAME}, found 'Send'",
        # the lint finds the item by its value, the duplicate by its place in the document
        "p.yaml:23:22: flows.f.phases[0].deny[1]: unknown action 'sned'; declared actions: "
        "login, view, send [unknown-action]",
        "p.yaml:23:34: flows.f.phases[0].deny[3]: duplicate 'sned' (first at line 23)",
        # emptied by the refused item: not also "expected at least one"
        f"p.yaml:24:17: flows.f.phases[0].purge[0]: {NAME}, found 'Reports'",
        "p.yaml:25:62: flows.f.phases[0].notices[0].via[0]: expected 'email', 'webhook' or "
        "'in_app', found 'sms'",
    ]


def test_stand_ins_are_not_compared_or_counted(check: Check) -> None:
    assert check(
        """
        f:
          starts_on: [3]
          phases:
            - lasts: 1 day
              notices:
                - {at: start, template: t}
                - start
                - {at: 1 day before end, to: admins, template: t}
            - {lasts: 2 days}
            - grace
            - {name: last, lasts: 1 day, notices: [{at: 12 hours before end, to: admins}]}
          outcome: delete
        """
    ) == [
        # no "needs one of starts_when or starts_on", no duplicates among stand-in names, no
        # unreachable phase after the one that is not a mapping
        "p.yaml:17:5: flows.f: missing required key 'reason'",
        f"p.yaml:17:17: flows.f.starts_on[0]: {NAME}, found 3",
        "p.yaml:19:9: flows.f.phases[0]: missing required key 'name'",
        "p.yaml:21:13: flows.f.phases[0].notices[0]: missing required key 'to'",
        "p.yaml:22:13: flows.f.phases[0].notices[1]: expected a mapping, found 'start'",
        "p.yaml:23:58: flows.f.phases[0].notices[2].template: duplicate template 't' (first at "
        "line 21)",
        "p.yaml:24:9: flows.f.phases[1]: missing required key 'name'",
        "p.yaml:25:9: flows.f.phases[2]: expected a mapping, found 'grace'",
        "p.yaml:26:46: flows.f.phases[3].notices[0]: missing required key 'template'",
    ]


def test_lints_wait_for_phases_notices_and_waivers_that_can_be_read(check: Check) -> None:
    # each of these would otherwise also say the deletion runs without any notice
    for broken in (
        "phases: grace",
        "phases: [{name: p, lasts: 1 day, notices: warn}]",
        "waive: deletion-without-notice",
    ):
        problems = check(f"f: {{reason: r, starts_on: go, outcome: delete, {broken}}}")
        assert len(problems) == 1, problems
        assert "[deletion-without-notice]" not in problems[0]


def test_every_required_key_of_a_flow_has_a_stand_in() -> None:
    for model in (FlowDoc, AppliesToDoc, PhaseDoc, NoticeDoc):
        required = {name for name, spec in model.model_fields.items() if spec.is_required()}
        assert set(STAND_INS[model]) == required, model
        model.model_validate(STAND_INS[model])


# --- whatever is wrong, checking a document never fails ---------------------------------------

JUNK = st.sampled_from([3, -1, 0.5, True, None, "Bad Name", "x", "-3 days", [], [3], {}, {"a": 1}])


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*path, index))
    return out


def _replace(doc: Any, path: tuple[Any, ...], junk: Any) -> Any:
    if not path:
        return junk
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], tuple(rest), junk)
    return copy


PRESET_DOCS = {
    name: yaml.safe_load(
        resources.files("lapse.policy.presets").joinpath(f"{name}.yaml").read_text()
    )
    for name in preset_names()
}


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_any_broken_value_of_a_preset_flow_is_reported_and_nothing_raises(
    data: st.DataObject,
) -> None:
    doc = PRESET_DOCS[data.draw(st.sampled_from(sorted(PRESET_DOCS)))]
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from([p for p in _paths(doc) if p[:1] == ("flows",)][2:]))
        doc = _replace(doc, path, data.draw(JUNK))
    text = textwrap.dedent(yaml.safe_dump(doc, sort_keys=False))
    problems = check_policy(text, "broken.yaml")
    assert all(p.line is not None for p in problems), problems
