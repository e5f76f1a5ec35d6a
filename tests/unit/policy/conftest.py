"""Helpers for policy tests: a base document that flows are appended to, and problem strings."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

from lapse.policy import check_policy, load_policy
from lapse.policy.model import Policy

#: 15 lines; a flow snippet's first line is document line 16, and its columns shift by 2
BASE = """\
version: 1
name: test
actions: [login, view, send]
kinds: [standard, test]
signals: [login, sent]
facts:
  active: {type: bool, default: false}
  contacts: {type: number}
  limit: {type: number}
  plan: {type: string}
  expires: {type: timestamp}
events: [contacted]
categories: [reports, contacts]
waive: []
flows:
"""


def with_flows(snippet: str) -> str:
    """BASE with `snippet` (flows, written at column 1) indented under `flows:`."""
    body = textwrap.dedent(snippet).strip("\n")
    return BASE + "".join(f"  {line}\n" if line else "\n" for line in body.splitlines())


@pytest.fixture
def check() -> Callable[[str], list[str]]:
    """Problems, as printed, of BASE + a flow snippet (source name 'p.yaml')."""
    return lambda snippet: [str(p) for p in check_policy(with_flows(snippet), "p.yaml")]


@pytest.fixture
def check_doc() -> Callable[[str], list[str]]:
    """Problems, as printed, of a whole document (dedented; source name 'p.yaml')."""
    return lambda text: [str(p) for p in check_policy(textwrap.dedent(text).lstrip("\n"), "p.yaml")]


@pytest.fixture
def load() -> Callable[[str], Policy]:
    """The policy of BASE + a flow snippet; fails the test on any error."""
    return lambda snippet: load_policy(with_flows(snippet), "p.yaml")
