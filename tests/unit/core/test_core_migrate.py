"""migrate.py: moving open cases to a new policy version (keep or re-plan), and the preview."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from lapse.core.decisions import deadline
from lapse.core.lifecycle import advance, apply_event, planned_end, set_legal_hold
from lapse.core.migrate import (
    CaseMigration,
    Migration,
    migrate_account,
    needs_migration,
    preview,
)
from lapse.core.model import Account, AuditEntry, Case, HostEffect
from lapse.core.timeline import describe
from lapse.errors import InvalidInput
from lapse.policy import load_policy
from lapse.policy.model import Policy

from .conftest import HEADER, T0, account, days, dispatch_all

GRACE = """
inactivity:
  reason: no campaign for 30 days
  starts_when: {{no_activity: [sent, api], for: 30 days}}
  stops_when: {{fact: active, is: true}}
  on_close: [resume_all]
  phases:
    - name: grace
      lasts: {grace}
      deny: [send]
      notices:
        - {{at: start, to: admins, template: started}}
        - {{at: 7 days before end, to: admins, template: final}}
      on_exit: [leave_grace]
    - name: locked
      lasts: {locked}
      allow_only: [login, view]
  outcome: delete
"""


def versioned(flows: str, version: int) -> Policy:
    """HEADER (with `version`) plus the flows snippet, as `conftest.policy` builds it."""
    body = textwrap.dedent(flows).strip("\n")
    indented = "".join(f"  {line}\n" if line else "\n" for line in body.splitlines())
    header = HEADER.format(timezone="UTC").replace("version: 7", f"version: {version}")
    return load_policy(header + "flows:\n" + indented, f"v{version}.yaml")


def grace(version: int, grace: str = "30 days", locked: str = "10 days") -> Policy:
    return versioned(GRACE.format(grace=grace, locked=locked), version)


V1 = grace(1)
V2 = grace(2, grace="14 days", locked="20 days")
OPENED = T0 + days(30)  # an untouched account's inactivity case opens then
NOW = OPENED + days(5)


def in_grace(pol: Policy = V1, now: datetime = NOW) -> Account:
    """An account whose case opened at OPENED under `pol`, notices dispatched, at `now`."""
    step = advance(account(pol), pol, now)
    return dispatch_all(step.account, pol, now).account


def only(acct: Account) -> Case:
    assert len(acct.cases) == 1
    return acct.cases[0]


def current_deadline(acct: Account, pol: Policy, now: datetime = NOW) -> datetime | None:
    case = only(acct)
    return deadline(case, pol.flows[case.flow], pol, now)


def test_keep_leaves_the_current_deadline_where_it_was() -> None:
    before = in_grace()
    assert current_deadline(before, V1) == OPENED + days(30)
    migration = migrate_account(before, V1, V2, NOW, mode="keep", by="ops")
    case = only(migration.account)
    assert case.policy_version == "2"
    assert case.phase_index == 0
    assert current_deadline(migration.account, V2) == OPENED + days(30)
    assert case.shift == days(16)
    assert case.adjustments[-1].kind == "migrated"
    assert case.adjustments[-1].delta == days(16)
    assert case.adjustments[-1].detail == "policy version 1 -> 2: the deadline was kept"
    # the phase after it follows the new durations: 20 days from the kept deadline
    assert planned_end(case, V2.flows["inactivity"], 1, V2) == OPENED + days(50)
    assert migration.cases == (
        CaseMigration(
            account_id="acct-1",
            case_id="inactivity#1",
            flow="inactivity",
            phase="grace",
            new_phase="grace",
            from_version="1",
            to_version="2",
            mode="keep",
            deadline_before=OPENED + days(30),
            deadline_after=OPENED + days(30),
        ),
    )
    assert migration.cases[0].moved == timedelta(0)
    (entry,) = migration.audit
    assert entry.kind == "case.migrated"
    assert entry.at == NOW
    assert entry.detail == {
        "from": "1",
        "to": "2",
        "mode": "keep",
        "by": "ops",
        "phase": "grace",
        "deadline_before": (OPENED + days(30)).isoformat(),
        "deadline_after": (OPENED + days(30)).isoformat(),
    }
    assert describe(entry, V2) == (
        "inactivity: moved from policy version 1 to 2 (deadline kept; deadline "
        f"{(OPENED + days(30)).isoformat()})"
    )
    assert migration.changed
    assert migration.blocked == ()
    assert not needs_migration(migration.account, V2)
    # new cases get the new durations
    fresh = advance(account(V2, account_id="new"), V2, NOW)
    assert current_deadline(fresh.account, V2) == OPENED + days(14)


def test_replan_computes_the_deadlines_again_from_the_case_start() -> None:
    migration = migrate_account(in_grace(), V1, V2, NOW, mode="replan")
    case = only(migration.account)
    assert case.shift == timedelta(0)
    assert case.adjustments == ()
    assert current_deadline(migration.account, V2) == OPENED + days(14)
    assert migration.cases[0].moved == -days(16)
    assert migration.audit[0].detail["mode"] == "replan"
    assert describe(migration.audit[0], V2).endswith(
        f"(re-planned; deadline {(OPENED + days(14)).isoformat()})"
    )


def test_replan_keeps_late_notice_pushes_and_drops_kept_deadlines() -> None:
    v3 = grace(3, grace="20 days")
    # the final warning went out 3 days late: the grace period ends 3 days later
    late = OPENED + days(26)
    acct = advance(account(V1), V1, late).account
    acct = dispatch_all(acct, V1, late).account
    assert current_deadline(acct, V1, late) == OPENED + days(33)
    kept = migrate_account(acct, V1, V2, late, mode="keep").account
    assert current_deadline(kept, V2, late) == OPENED + days(33)
    replanned = migrate_account(kept, V2, v3, late, mode="replan")
    case = only(replanned.account)
    # re-planned from the start under v3 (20 days); the kept 16 days are gone, and the dispatched
    # final warning still gives its 7 days: the end is the later of the two
    assert planned_end(case, v3.flows["inactivity"], 0, v3) == OPENED + days(20)
    assert current_deadline(replanned.account, v3, late) == OPENED + days(33)
    assert [a.kind for a in case.adjustments] == ["migrated", "migrated"]
    assert sum((a.delta for a in case.adjustments), timedelta(0)) == case.shift == timedelta(0)
    assert case.adjustments[-1].detail == (
        "policy version 3: re-planned, earlier kept deadline dropped"
    )


def test_a_shortened_phase_still_gives_its_notices_their_lead() -> None:
    # two days into grace under v1, then re-planned to 8 days: the final warning (7 days before
    # the end) is due at once, and the phase ends 7 days after it went out, not on day 8
    short = grace(2, grace="8 days")
    now = OPENED + days(2)
    migrated = migrate_account(in_grace(now=now), V1, short, now, mode="replan").account
    step = advance(migrated, short, now)
    assert [e.template for e in step.effects if hasattr(e, "template")] == ["final"]
    sent = now + timedelta(hours=1)
    after = dispatch_all(step.account, short, sent).account
    assert current_deadline(after, short, sent) == sent + days(7)


def test_phases_are_matched_by_name() -> None:
    inserted = versioned(
        GRACE.format(grace="30 days", locked="10 days").replace(
            "    - name: grace\n",
            "    - name: notice\n      lasts: 3 days\n    - name: grace\n",
        ),
        2,
    )
    migration = migrate_account(in_grace(), V1, inserted, NOW, mode="keep")
    case = only(migration.account)
    assert case.phase_index == 1
    assert migration.cases[0].new_phase == "grace"
    assert current_deadline(migration.account, inserted) == OPENED + days(30)
    replanned = migrate_account(in_grace(), V1, inserted, NOW, mode="replan")
    assert current_deadline(replanned.account, inserted) == OPENED + days(33)


OPEN_ENDED = """
inactivity:
  reason: no campaign for 30 days
  starts_when: {no_activity: [sent, api], for: 30 days}
  stops_when: {fact: active, is: true}
  phases:
    - name: grace
      deny: [send]
      notices:
        - {at: start, to: admins, template: started}
"""


def test_keep_without_a_deadline_to_keep_takes_the_new_plan() -> None:
    open_ended = versioned(OPEN_ENDED, 1)
    acct = in_grace(open_ended)
    assert current_deadline(acct, open_ended) is None
    timed = migrate_account(acct, open_ended, V2, NOW, mode="keep")
    assert timed.cases[0].deadline_before is None
    assert timed.cases[0].moved is None
    assert only(timed.account).shift == timedelta(0)
    assert current_deadline(timed.account, V2) == OPENED + days(14)
    back = migrate_account(in_grace(), V1, versioned(OPEN_ENDED, 3), NOW, mode="keep")
    assert back.cases[0].deadline_after is None
    assert back.audit[0].detail["deadline_after"] is None
    assert "deadline none)" in describe(back.audit[0], V1)


def settle(acct: Account, pol: Policy, *moments: datetime) -> Account:
    """Advance to each moment in turn, every notice dispatched as soon as it is created."""
    for moment in moments:
        acct = advance(acct, pol, moment).account
        acct = dispatch_all(acct, pol, moment).account
        acct = advance(acct, pol, moment).account
    return acct


def test_a_case_waiting_past_its_last_phase_stays_there() -> None:
    end = OPENED + days(41)
    held = set_legal_hold(account(V1), V1, OPENED - days(1), on=True, by="legal", reason="r")
    acct = settle(held.account, V1, OPENED, OPENED + days(23), end)
    case = only(acct)
    assert (case.phase_index, case.destruct) == (2, "held")
    migration = migrate_account(acct, V1, V2, end, mode="keep")
    moved = only(migration.account)
    assert (moved.phase_index, moved.destruct, moved.policy_version) == (2, "held", "2")
    assert migration.cases[0].phase is None
    assert migration.cases[0].new_phase is None
    assert migration.cases[0].deadline_after is None
    # a new version ending in an open-ended phase has no place for it
    open_last = versioned(
        GRACE.format(grace="30 days", locked="10 days").replace(
            "  outcome: delete\n", "    - name: kept\n  outcome: delete\n"
        ),
        2,
    )
    blocked = migrate_account(acct, V1, open_last, end, mode="keep")
    assert blocked.account is acct
    assert not blocked.changed
    assert [c.why for c in blocked.blocked] == [
        "its flow ends in an open-ended phase in version 2: a case past its last phase has no "
        "place in it"
    ]


LOCKS = """
payment-lock:
  reason: payment failed
  starts_on: [note]
  on_close: [resume_all, unlock]
  phases:
    - name: locked
      allow_only: [login]
      on_exit: [leave_lock]
"""


def test_removed_flows_and_phases_block_unless_closed() -> None:
    both = versioned(GRACE.format(grace="30 days", locked="10 days") + LOCKS, 1)
    acct = in_grace(both)
    acct = apply_event(acct, both, "note", NOW, NOW).account
    assert [c.flow for c in acct.cases] == ["inactivity", "payment-lock"]
    # v2 drops the lock flow and renames the grace phase
    v2 = versioned(GRACE.format(grace="14 days", locked="10 days").replace("grace", "warning"), 2)
    blocked = migrate_account(acct, both, v2, NOW, mode="replan")
    assert blocked.account is acct
    assert blocked.audit == ()
    assert [(c.case_id, c.outcome, c.why) for c in blocked.cases] == [
        ("inactivity#1", "blocked", "version 2 of its flow has no phase 'grace'"),
        ("payment-lock#2", "blocked", "version 2 has no flow 'payment-lock'"),
    ]
    assert blocked.cases[0].deadline_after == blocked.cases[0].deadline_before
    closed = migrate_account(acct, both, v2, NOW, mode="replan", close_removed=True, by="ops")
    assert closed.account.cases == ()
    assert [c.outcome for c in closed.cases] == ["closed", "closed"]
    assert closed.cases[0].deadline_after is None
    assert [(e.kind, e.case_id, e.detail) for e in closed.audit] == [
        (
            "case.closed",
            "inactivity#1",
            {
                "reason": "policy migration to version 2: version 2 of its flow has no phase "
                "'grace'",
                "by": "ops",
            },
        ),
        (
            "case.closed",
            "payment-lock#2",
            {
                "reason": "policy migration to version 2: version 2 has no flow 'payment-lock'",
                "by": "ops",
            },
        ),
    ]
    effects = [(e.case_id, e.trigger, e.name) for e in closed.effects if isinstance(e, HostEffect)]
    assert effects == [
        ("inactivity#1", "exit", "leave_grace"),
        ("inactivity#1", "close", "resume_all"),
        ("payment-lock#2", "exit", "leave_lock"),
        ("payment-lock#2", "close", "resume_all"),
        ("payment-lock#2", "close", "unlock"),
    ]
    # the flow that remains re-arms from the close; the removed one is not remembered
    assert closed.account.armed_from == {"inactivity": NOW}


def test_a_close_effect_another_open_case_lists_waits_for_it() -> None:
    both = versioned(GRACE.format(grace="30 days", locked="10 days") + LOCKS, 1)
    acct = apply_event(in_grace(both), both, "note", NOW, NOW).account
    only_grace = versioned(GRACE.format(grace="30 days", locked="10 days"), 2)
    migration = migrate_account(acct, both, only_grace, NOW, mode="keep", close_removed=True)
    assert [c.flow for c in migration.account.cases] == ["inactivity"]
    closing = [e.name for e in migration.effects if isinstance(e, HostEffect)]
    assert closing == ["leave_lock", "unlock"]  # resume_all waits for the inactivity case


def test_cases_of_unknown_versions_are_blocked() -> None:
    acct = in_grace()
    unknown = migrate_account(acct, {}, V2, NOW, mode="keep")
    assert [c.why for c in unknown.blocked] == ["it was opened under version 1, which is not known"]
    assert unknown.blocked[0].deadline_before is None
    other = versioned(LOCKS, 1)
    missing = migrate_account(acct, {"1": other}, V2, NOW, mode="keep")
    assert [c.why for c in missing.blocked] == ["version 1 has no flow 'inactivity'"]


def test_nothing_to_migrate() -> None:
    acct = in_grace()
    assert migrate_account(acct, V1, V1, NOW, mode="keep") == Migration(account=acct)
    assert migrate_account(acct, V1, V1, NOW, mode="keep").account is acct
    gone = replace(acct, deleted_at=NOW)
    assert migrate_account(gone, V1, V2, NOW, mode="keep").account is gone
    assert not needs_migration(account(V1), V2)
    assert needs_migration(acct, V2)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="aware datetime"):
        migrate_account(in_grace(), V1, V2, NOW.replace(tzinfo=None), mode="keep")
    with pytest.raises(InvalidInput, match="unknown migration mode 'later'"):
        migrate_account(in_grace(), V1, V2, NOW, mode="later")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="aware datetime"):
        preview([], V1, V2, NOW.replace(tzinfo=None))
    with pytest.raises(InvalidInput, match="expected keep, replan or both"):
        preview([], V1, V2, NOW, modes=())
    with pytest.raises(InvalidInput, match="expected keep, replan or both"):
        preview([], V1, V2, NOW, modes=["later"])  # type: ignore[list-item]


def test_describe_a_policy_application() -> None:
    entry = AuditEntry(
        account_id="",
        at=NOW,
        kind="policy.applied",
        detail={"name": "core-test", "version": "2", "by": "ops", "mode": "keep"},
    )
    assert describe(entry, V2) == "policy core-test v2 applied by ops, keep"
    plain = replace(entry, detail={"name": "core-test", "version": "2", "by": "ops"})
    assert describe(plain, V2) == "policy core-test v2 applied by ops"


# --- the preview --------------------------------------------------------------------------------

EXPIRY = """
test-expiry:
  reason: test accounts expire
  applies_to: {{kind: [test]}}
  starts_when: {{age: {age}}}
  waive: [deletion-without-notice]
  outcome: delete
"""


def test_the_preview_of_a_shorter_grace_period() -> None:
    early = account(V1, account_id="early")
    stepped = advance(early, V1, NOW)
    accounts = [
        in_grace(),  # in grace for 5 days: replan moves the deadline 16 days earlier
        dispatch_all(stepped.account, V1, NOW).account,
        account(V1, account_id="young", created=NOW - days(1)),  # no case
        replace(in_grace(), id="gone", deleted_at=NOW),  # deleted: left out
    ]
    result = preview(accounts, V1, V2, NOW)
    assert (result.accounts, result.open_cases, result.affected) == (3, 2, 2)
    assert result.current.version == "1"
    assert result.proposed.version == "2"
    assert result.proposed.digest == V2.digest
    keep, replan = result.mode("keep"), result.mode("replan")
    assert keep.migrated == replan.migrated == 2
    (line,) = keep.phases
    assert (line.flow, line.phase, line.cases, line.moved) == ("inactivity", "grace", 2, 0)
    assert (line.earliest, line.latest) == (None, None)
    assert [s.account_id for s in line.samples] == ["acct-1", "early"]
    (line,) = replan.phases
    assert (line.cases, line.moved, line.earliest, line.latest) == (2, 2, -days(16), -days(16))
    assert {s.moved for s in line.samples} == {-days(16)}
    assert keep.notices == replan.notices == {}  # the final warning is due on day 7 of 14
    assert replan.opening == keep.opening == {}
    assert replan.outcomes == {}
    assert (replan.blocked, replan.closing) == (0, 0)
    with pytest.raises(KeyError):
        preview([], V1, V2, NOW, modes=["keep"]).mode("replan")


def test_the_preview_shows_the_deadline_a_notice_due_at_once_gives() -> None:
    later = OPENED + days(10)
    replan = preview([in_grace(now=later)], V1, V2, later, modes=["replan"]).mode("replan")
    # day 10 of a grace period cut to 14 days: the final warning goes out at once, and its
    # 7 days make the deadline day 17, not day 14
    assert replan.notices == {"inactivity/final": 1}
    (sample,) = replan.phases[0].samples
    assert sample.deadline_after == later + days(7)
    assert sample.moved == -days(13)


def test_the_preview_counts_openings_closings_outcomes_and_blocked_cases() -> None:
    v1 = versioned(
        GRACE.format(grace="30 days", locked="10 days") + EXPIRY.format(age="60 days"), 1
    )
    # v2: test accounts expire after 20 days (and are deleted at once); the grace phase is gone
    v2 = versioned(
        GRACE.format(grace="30 days", locked="10 days").replace("grace", "warning")
        + EXPIRY.format(age="20 days"),
        2,
    )
    tester = account(v1, kind="test", account_id="tester", created=NOW - days(25))
    accounts = [in_grace(v1), tester]
    result = preview(accounts, v1, v2, NOW)
    for impact in result.modes:
        assert impact.blocked == 1
        assert [(c.case_id, c.why) for c in impact.blocked_samples] == [
            ("inactivity#1", "version 2 of its flow has no phase 'grace'")
        ]
        assert impact.opening == {"test-expiry": 1}
        assert impact.opening_samples == {"test-expiry": ("tester",)}
        assert impact.outcomes == {"test-expiry: delete": 1}
        assert impact.closing == 0
    closing = preview(accounts, v1, v2, NOW, modes=["keep"], close_removed=True).mode("keep")
    assert closing.blocked == 0
    assert closing.closing == 1
    (closed,) = closing.closing_samples
    assert (closed.account_id, closed.case_id) == ("acct-1", "inactivity#1")
    assert closed.reason.startswith("policy migration: version 2 of its flow has no phase")
    (line,) = closing.phases
    assert (line.phase, line.cases, line.moved) == ("grace", 1, 0)
    # a case the first evaluation under the new version closes (its flow no longer applies)
    narrowed = versioned(
        GRACE.format(grace="30 days", locked="10 days").replace(
            "  reason:", "  applies_to: {kind: [trial]}\n  reason:", 1
        ),
        2,
    )
    stopping = preview([in_grace(v1)], v1, narrowed, NOW, modes=["replan"]).mode("replan")
    assert stopping.closing == 1
    assert stopping.closing_samples[0].reason == "the flow no longer applies to standard"
