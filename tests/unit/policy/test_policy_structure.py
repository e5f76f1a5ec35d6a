"""Structural problems: unknown and missing keys, wrong types, names, durations, time zones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel, ValidationError

from lapse.policy.schema import FlowDoc, _model_at, translate
from lapse.policy.source import read_yaml

Check = Callable[[str], list[str]]
NAME = "expected a name (lower case letters, digits, '_' and '-', starting with a letter)"


def test_top_level_problems(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 3.1
        name: Inactivity
        colour: red
        description: [a]
        timezone: Europe/Brusels
        resolution: one hour
        actions: login
        kinds: [Standard, test, test]
        facts:
          x: {type: integer}
          Y: {type: bool}
          z: {default: 1, colour: red}
        waive: [nope]
        flows: []
        """
    ) == [
        "p.yaml:1:10: version: expected a version: a string or an integer, found 3.1",
        "p.yaml:2:7: name: expected a policy name (lower case letters, digits and '-', starting "
        "with a letter or digit), found 'Inactivity'",
        "p.yaml:3:1: colour: unknown key 'colour'; expected one of: version, name, description, "
        "timezone, resolution, actions, kinds, signals, facts, events, categories, waive, "
        "templates, flows",
        "p.yaml:4:14: description: expected a string, found a list",
        "p.yaml:5:11: timezone: unknown time zone 'Europe/Brusels'; expected an IANA name such "
        "as 'Europe/Brussels' or 'UTC'",
        "p.yaml:6:13: resolution: expected a duration such as '30 days' or '1 month', found "
        "'one hour'",
        "p.yaml:7:10: actions: expected a list, found 'login'",
        "p.yaml:8:9: kinds[0]: expected a name (lower case letters, digits, '_' and '-', "
        "starting with a letter), found 'Standard'",
        "p.yaml:10:13: facts.x.type: expected 'bool', 'number', 'string' or 'timestamp', found "
        "'integer'",
        "p.yaml:11:3: facts.Y: expected a name (lower case letters, digits, '_' and '-', "
        "starting with a letter), found 'Y'",
        "p.yaml:12:6: facts.z: missing required key 'type'",
        "p.yaml:12:19: facts.z.colour: unknown key 'colour'; expected one of: type, default",
        "p.yaml:13:9: waive[0]: unknown lint 'nope'; expected one of: unknown-action, "
        "unreachable-phase, deletion-without-notice, notice-lead-exceeds-phase, "
        "irreversible-with-stop, banner-without-login",
        "p.yaml:14:8: flows: expected a mapping, found an empty list",
    ]


def test_template_problems(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: p
        templates:
          final:
            subject: "Last call {{ account_id }}"
            text: "  "
            html: 5
            body: x
          Bad Name: {subject: a, text: b, html: c}
          half: {subject: a}
        """
    ) == [
        "p.yaml:6:11: templates.final.text: a template part cannot be empty",
        "p.yaml:7:11: templates.final.html: expected the Jinja2 source of a template part (a "
        "string), found 5",
        "p.yaml:8:5: templates.final.body: unknown key 'body'; expected one of: subject, text, "
        "html",
        f"p.yaml:9:3: templates.Bad Name: {NAME}, found 'Bad Name'",
        "p.yaml:10:9: templates.half: missing required key 'text'",
        "p.yaml:10:9: templates.half: missing required key 'html'",
    ]


def test_missing_required_top_level_keys(check_doc: Check) -> None:
    assert check_doc("description: nothing else\n") == [
        "p.yaml:1:1: missing required key 'version'",
        "p.yaml:1:1: missing required key 'name'",
    ]


@pytest.mark.parametrize(
    ("version", "found"),
    [("true", "true"), ("''", "''"), ("2024-01-01", "2024-01-01"), ("~", "null")],
)
def test_bad_versions(check_doc: Check, version: str, found: str) -> None:
    assert check_doc(f"version: {version}\nname: a\n") == [
        f"p.yaml:1:10: version: expected a version: a string or an integer, found {found}"
    ]


@pytest.mark.parametrize(
    ("zone", "found"), [("Europe", "'Europe'"), ("/etc/passwd", "'/etc/passwd'"), ("3", "3")]
)
def test_bad_time_zones(check_doc: Check, zone: str, found: str) -> None:
    assert check_doc(f"version: 1\nname: a\ntimezone: {zone}\n") == [
        f"p.yaml:3:11: timezone: unknown time zone {found}; expected an IANA name such as "
        "'Europe/Brussels' or 'UTC'"
    ]


def test_duplicates_in_declarations(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: a
        actions: [login, view,
                  login]
        categories: [x, x]
        waive: [unreachable-phase, unreachable-phase]
        """
    ) == [
        "p.yaml:4:11: actions[2]: duplicate 'login' (first at line 3)",
        "p.yaml:5:17: categories[1]: duplicate 'x' (first at line 5)",
        "p.yaml:6:28: waive[1]: duplicate 'unreachable-phase' (first at line 6)",
    ]


def test_flow_structure_problems(check: Check) -> None:
    assert check(
        """
        f:
          reason: 3
          colour: red
          irreversible: yes please
          applies_to: {kinds: [standard]}
          starts_on: Payment
          stops_on: [ok, 3]
          phases:
            - name: grace
              lasts: thirty days
              state: frozen
              deny: send
              notices:
                - {at: tomorrow, to: boss, template: t, via: [sms]}
                - {at: 3 dais before end, to: admins, template: u}
                - start
            - lasts: -1 days
              colour: blue
        Bad Flow: {}
        g: ~
        """
    ) == [
        "p.yaml:17:13: flows.f.reason: expected a string, found 3",
        "p.yaml:18:5: flows.f.colour: unknown key 'colour'; expected one of: title, reason, "
        "applies_to, starts_when, starts_on, stops_when, stops_on, irreversible, phases, "
        "outcome, address, on_close, waive",
        "p.yaml:19:19: flows.f.irreversible: expected true or false, found 'yes please'",
        "p.yaml:20:17: flows.f.applies_to: missing required key 'kind'",
        "p.yaml:20:18: flows.f.applies_to.kinds: unknown key 'kinds'; expected one of: kind",
        f"p.yaml:21:16: flows.f.starts_on: {NAME}, found 'Payment'",
        f"p.yaml:22:20: flows.f.stops_on[1]: {NAME}, found 3",
        "p.yaml:25:16: flows.f.phases[0].lasts: expected a duration such as '30 days' or "
        "'1 month', found 'thirty days'",
        "p.yaml:26:16: flows.f.phases[0].state: expected 'restricted', 'locked' or "
        "'suspended', found 'frozen'",
        "p.yaml:27:15: flows.f.phases[0].deny: expected a list, found 'send'",
        "p.yaml:29:18: flows.f.phases[0].notices[0].at: expected 'start', '<duration> after "
        "start' or '<duration> before end', found 'tomorrow'",
        "p.yaml:29:32: flows.f.phases[0].notices[0].to: expected 'admins', 'members' or "
        "'owner', found 'boss'",
        "p.yaml:29:57: flows.f.phases[0].notices[0].via[0]: expected 'email', 'webhook' or "
        "'in_app', found 'sms'",
        "p.yaml:30:18: flows.f.phases[0].notices[1].at: unknown unit 'dais' in '3 dais'; "
        "expected minutes, hours, days, weeks, months or years",
        "p.yaml:31:13: flows.f.phases[0].notices[2]: expected a mapping, found 'start'",
        "p.yaml:32:9: flows.f.phases[1]: missing required key 'name'",
        "p.yaml:32:16: flows.f.phases[1].lasts: durations cannot be negative, found '-1 days'",
        "p.yaml:33:9: flows.f.phases[1].colour: unknown key 'colour'; expected one of: name, "
        "lasts, deny, allow_only, state, banner, message, notices, on_enter, on_exit, purge",
        f"p.yaml:34:3: flows.Bad Flow: {NAME}, found 'Bad Flow'",
        "p.yaml:34:13: flows.Bad Flow: missing required key 'reason'",
        # the rest of a flow is still checked when some of its values are invalid
        "p.yaml:34:13: flows.Bad Flow: a flow needs one of starts_when or starts_on, found neither",
        "p.yaml:35:6: flows.g: expected a mapping, found null",
    ]


def test_null_means_omitted_for_optional_keys(load: Callable[[str], object]) -> None:
    policy = load(
        """
        f:
          title: ~
          reason: r
          starts_on: go
          stops_on:
          phases:
            - {name: a, lasts: ~, deny: ~, notices: ~}
          outcome: ~
          address: ~
        """
    )
    flow = policy.flows["f"]  # type: ignore[attr-defined]
    assert (flow.title, flow.stops_on, flow.outcome, flow.address.mode) == (
        "f",
        frozenset(),
        None,
        "release",
    )
    assert (flow.phases[0].lasts, flow.phases[0].deny, flow.phases[0].notices) == (
        None,
        frozenset(),
        (),
    )


def test_unexpected_pydantic_errors_keep_pydantic_words() -> None:
    class Numbers(BaseModel):
        count: int

    source = read_yaml("count: many\n", "n.yaml")
    with pytest.raises(ValidationError) as caught:
        Numbers.model_validate(source.data)
    assert [str(p) for p in translate(caught.value, Numbers, source)] == [
        "n.yaml:1:8: count: Input should be a valid integer, unable to parse string as an "
        "integer, found 'many'"
    ]


def test_model_lookup_fails_loudly_where_there_is_no_model() -> None:
    with pytest.raises(AssertionError, match="no model at"):
        _model_at(FlowDoc, ("reason",))
