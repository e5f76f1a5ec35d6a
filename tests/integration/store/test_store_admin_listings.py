"""The listings behind the admin UI: accounts by phase and by search, open cases counted by flow
and phase, accounts due before a moment, the audit log newest first (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace

from lapse.core.model import Member
from lapse.store.base import Change

from .helpers import DAY, T0, account, case, create, draft, entry, notice, plain


def _accounts(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(account("acme"), due=T0 + 3 * DAY))  # inactivity, phase 0
        unit.write(
            create(
                account(
                    "beta",
                    address="Owner@Beta.example",
                    members=(Member(email="Jane.Doe@mail.example", role="admin"),),
                    cases=(case("beta", phase_index=1), case("beta", flow="payment", n=2)),
                ),
                due=T0 + DAY,
            )
        )
        unit.write(create(plain("gamma_100%"), due=None))
        unit.write(create(plain("delta"), due=T0 + 10 * DAY))


def test_accounts_by_flow_and_phase_position(any_store) -> None:
    _accounts(any_store)

    def ids(**filters: object) -> list[str]:
        return [s.id for s in any_store.list_accounts(**filters)]

    assert ids(positions=[("inactivity", 0)]) == ["acme"]
    assert ids(positions=[("inactivity", 1)]) == ["beta"]
    assert ids(positions=[("inactivity", 0), ("payment", 0)]) == ["acme", "beta"]
    assert ids(positions=[("inactivity", 2)]) == []
    assert ids(positions=[]) == []  # a phase no flow has: nothing, not everything
    assert ids(positions=[("inactivity", 0), ("inactivity", 1)], after="acme") == ["beta"]


def test_search_by_id_address_or_member_email_ignoring_case(any_store) -> None:
    _accounts(any_store)

    def ids(text: str) -> list[str]:
        return [s.id for s in any_store.list_accounts(search=text)]

    assert ids("ACM") == ["acme"]
    assert ids("beta.example") == ["beta"]  # the address, stored as Owner@Beta.example
    assert ids("jane.doe") == ["beta"]  # a member's email
    assert ids("example") == ["acme", "beta"]  # acme's address and members
    assert ids("100%") == ["gamma_100%"]  # LIKE wildcards are matched literally
    assert ids("a%0") == []  # would match as a LIKE pattern
    assert ids("m__1") == []
    assert ids("  delta ") == ["delta"]
    assert [s.id for s in any_store.list_accounts(search="a", state="active", limit=2)] == [
        "acme",
        "beta",
    ]


def test_open_cases_counted_by_flow_and_phase(any_store) -> None:
    _accounts(any_store)
    assert any_store.count_cases() == {
        ("inactivity", 0): 1,
        ("inactivity", 1): 1,
        ("payment", 0): 1,
    }
    with any_store.unit() as unit:  # cases closed: no longer counted
        beta = unit.load("beta")
        unit.write(Change(account=replace(beta, cases=()), next_due_at=None))
    assert any_store.count_cases() == {("inactivity", 0): 1}


def test_accounts_due_before_a_moment_earliest_first(any_store) -> None:
    _accounts(any_store)
    assert any_store.accounts_due(T0 + 5 * DAY) == [("beta", T0 + DAY), ("acme", T0 + 3 * DAY)]
    assert any_store.accounts_due(T0 + 30 * DAY, limit=2) == [
        ("beta", T0 + DAY),
        ("acme", T0 + 3 * DAY),
    ]
    assert [i for i, _ in any_store.accounts_due(T0 + 30 * DAY)] == ["beta", "acme", "delta"]
    assert any_store.accounts_due(T0) == []
    with any_store.unit() as unit:  # a deleted account is never listed
        unit.load("beta")
        gone = plain("beta", deleted_at=T0)
        unit.write(Change(account=gone, next_due_at=T0, state="deleted"))
    assert [i for i, _ in any_store.accounts_due(T0 + 30 * DAY)] == ["acme", "delta"]


def test_recent_audit_newest_first(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(create(plain("a1"), audit=[entry("a1", "one"), entry("a1", "two")]))
        unit.write(create(plain("a2"), audit=[entry("a2", "three")]))
    any_store.append_audit([entry("a1", "four")])
    kinds = [r.entry.kind for r in any_store.recent_audit()]
    assert kinds == ["four", "three", "two", "one"]
    page = any_store.recent_audit(limit=2)
    assert [r.entry.kind for r in page] == ["four", "three"]
    rest = any_store.recent_audit(before=page[-1].seq)
    assert [r.entry.kind for r in rest] == ["two", "one"]
    assert [r.entry.kind for r in any_store.recent_audit(account_id="a1", limit=2)] == [
        "four",
        "two",
    ]
    assert any_store.recent_audit(before=1) == []


def test_outbox_newest_first_paginated_by_before(any_store) -> None:
    drafts = [draft(notice("a1", key=f"grace/n{i}", at=T0 + i * DAY)) for i in range(4)]
    with any_store.unit() as unit:
        unit.write(create(plain("a1"), outbox=drafts))
    oldest = [item.id for item in any_store.outbox()]
    assert len(oldest) == 4
    newest = any_store.outbox(newest_first=True, limit=3)
    assert [item.id for item in newest] == oldest[::-1][:3]
    rest = any_store.outbox(newest_first=True, before=newest[-1].id)
    assert [item.id for item in rest] == [oldest[0]]
    assert [i.id for i in any_store.outbox(before=oldest[2])] == oldest[:2]
    assert any_store.outbox(newest_first=True, status="failed") == []
