"""Reading YAML: syntax errors, duplicate keys, aliases and merge keys, positions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lapse.policy import load_policy
from lapse.policy.source import MAX_VALUES, read_yaml, show

Check = Callable[[str], list[str]]


def test_syntax_error_points_at_the_problem(check_doc: Check) -> None:
    assert check_doc("version: 1\nflows: [a\n") == [
        "p.yaml:3:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"
    ]


def test_scanner_error_without_context(check_doc: Check) -> None:
    assert check_doc("version: 1\nname: a: b\n") == [
        "p.yaml:2:8: invalid YAML: mapping values are not allowed here"
    ]


def test_several_documents_are_refused(check_doc: Check) -> None:
    assert check_doc("version: 1\n---\nname: x\n") == [
        "p.yaml:2:1: invalid YAML: but found another document "
        "(expected a single document in the stream)"
    ]


def test_undefined_alias(check_doc: Check) -> None:
    assert check_doc("version: *nope\n") == [
        "p.yaml:1:10: invalid YAML: found undefined alias 'nope'"
    ]


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_document(check_doc: Check, text: str) -> None:
    assert check_doc(text) == [
        "p.yaml:1:1: the document is empty; expected a mapping with version, name and flows"
    ]


def test_top_level_must_be_a_mapping(check_doc: Check) -> None:
    assert check_doc("- version\n") == [
        "p.yaml:1:1: expected a mapping at the top of the document, found a list"
    ]


def test_duplicate_keys_are_errors_at_every_level(check_doc: Check) -> None:
    assert check_doc(
        """
        version: 1
        name: a
        version: 2
        flows:
          f:
            reason: r
            starts_on: go
            reason: again
        """
    ) == [
        "p.yaml:3:1: version: duplicate key 'version' (first at line 1)",
        "p.yaml:8:5: flows.f.reason: duplicate key 'reason' (first at line 6)",
    ]


def test_unsupported_tags(check_doc: Check) -> None:
    # the value reads as null: its problems would only repeat the tag problem, so none are shown
    assert check_doc(
        """
        version: !custom 1
        name: !!python/name:os.system a
        kinds: !!set {a, b}
        actions: !!omap [a: 1]
        events: [=]
        """
    ) == [
        "p.yaml:1:10: version: unsupported YAML tag '!custom'",
        "p.yaml:2:7: name: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'",
        "p.yaml:3:8: kinds: unsupported YAML tag 'tag:yaml.org,2002:set'",
        "p.yaml:4:10: actions: unsupported YAML tag 'tag:yaml.org,2002:omap'",
        "p.yaml:5:10: events[0]: expected a name (lower case letters, digits, '_' and '-', "
        "starting with a letter), found '='",
    ]


def test_invalid_date(check_doc: Check) -> None:
    assert check_doc("version: 2024-13-45\nname: a\n") == [
        "p.yaml:1:10: version: cannot read '2024-13-45': month must be in 1..12",
    ]


def test_complex_keys_are_refused(check_doc: Check) -> None:
    assert check_doc("? [a, b]\n: 1\n? {a: 1}\n: 2\nversion: 1\nname: a\n") == [
        "p.yaml:1:3: expected a plain key, found a list as a key",
        "p.yaml:3:3: expected a plain key, found a mapping as a key",
    ]


def test_recursive_alias(check_doc: Check) -> None:
    assert check_doc("version: 1\nname: a\nkinds: &k [*k]\n") == [
        "p.yaml:3:8: kinds[0]: an alias refers to a value that contains it"
    ]


def test_too_many_values_after_alias_expansion(check_doc: Check) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    assert check_doc("\n".join(lines) + "\n") == [
        f"p.yaml:1:1: the document is too large: more than {MAX_VALUES} values once aliases expand"
    ]


def test_aliases_and_merge_keys_share_definitions(load: Callable[[str], object]) -> None:
    policy = load(
        """
        a:
          reason: r
          starts_on: go
          phases:
            - &grace {name: grace, lasts: 30 days, deny: [send]}
        b:
          reason: r
          starts_on: [go]
          phases:
            - <<: *grace
              lasts: 10 days
            - {<<: [{name: ignored, lasts: 5 days}, *grace], name: last}
        """
    )
    b = policy.flows["b"]  # type: ignore[attr-defined]
    assert [(p.name, str(p.lasts), p.deny, p.allow_only) for p in b.phases] == [
        ("grace", "10 days", frozenset({"send"}), None),
        ("last", "5 days", frozenset({"send"}), None),
    ]


def test_merge_errors(check: Check) -> None:
    assert check(
        """
        f:
          <<: [reason]
          starts_on: go
          phases:
            - &p {name: a, <<: *p}
        """
    ) == [
        "p.yaml:17:5: flows.f: missing required key 'reason'",
        "p.yaml:17:10: flows.f: expected a mapping or a list of mappings after '<<', "
        "found 'reason'",
        "p.yaml:20:9: flows.f.phases[0]: an alias refers to a value that contains it",
    ]


def test_keys_are_kept_as_written(check_doc: Check) -> None:
    # YAML 1.1 reads `on` as true; as a key it is the name 'on'
    assert check_doc("version: 1\nname: a\non: 1\n") == [
        "p.yaml:3:1: on: unknown key 'on'; expected one of: version, name, description, "
        "timezone, resolution, actions, kinds, signals, facts, events, categories, waive, "
        "templates, flows"
    ]


def test_positions_and_paths() -> None:
    source = read_yaml("a:\n  b: [1, {c: x}]\n", "s")
    assert source.positions == {
        "": (1, 1),
        "a": (2, 3),
        "a.b": (2, 6),
        "a.b[0]": (2, 7),
        "a.b[1]": (2, 10),
        "a.b[1].c": (2, 14),
    }
    assert source.key_positions == {"a": (1, 1), "a.b": (2, 3), "a.b[1].c": (2, 11)}
    assert source.position("a.b[1].c.nothing[3]") == (2, 14)
    assert source.position("elsewhere") == (1, 1)
    assert source.existing(("a", "b", 7, "x")) == "a.b"
    assert source.item_path("a.b", 1) == "a.b[0]"
    assert source.item_path("a.b", 2) == "a.b"
    empty = read_yaml("", "s")
    assert empty.position("a") is None
    problem = empty.problem("a", "m")
    assert (problem.line, problem.column, str(problem)) == (None, None, "s: a: m")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        ("x", "'x'"),
        (3, "3"),
        (1.5, "1.5"),
        ([1], "a list"),
        ([], "an empty list"),
        ({"a": 1}, "a mapping"),
        ({}, "an empty mapping"),
    ],
)
def test_show(value: object, shown: str) -> None:
    assert show(value) == shown


def test_a_valid_document_loads(load: Callable[[str], object]) -> None:
    policy = load_policy("version: 1\nname: a\n")
    assert policy.flows == {}
