"""lifecycle.delete_now: an administrator's "delete now", through a deleting flow's outcome."""

from __future__ import annotations

import pytest

from lapse.core.inputs import record_signal, set_kind
from lapse.core.lifecycle import (
    advance,
    apply_event,
    delete_now,
    deletion_flow,
    outcome_done,
    reactivate,
    set_legal_hold,
)
from lapse.core.model import Account, Case, DeleteEffect
from lapse.core.timeline import describe
from lapse.errors import CaseNotFound, Conflict, InvalidInput, IrreversibleCase
from lapse.policy.model import AddressRule

from .conftest import T0, account, audit_kinds, days, dispatch_all, kinds_of, policy

POLICY = policy(
    """
    idle:
      reason: no login for 30 days
      applies_to: {kind: [standard]}
      starts_when: {no_activity: [login], for: 30 days}
      phases:
        - name: grace
          lasts: 10 days
          notices:
            - {at: start, to: admins, template: started}
            - {at: 7 days before end, to: admins, template: final}
          on_exit: [resume]
        - name: eligible
      outcome: delete
      address: release
    lock:
      reason: locked
      applies_to: {kind: [standard]}
      starts_on: [note]
      stops_on: [contacted]
      phases:
        - name: locked
          lasts: 30 days
          notices: [{at: start, to: admins, template: locked}]
      outcome: delete
      address: {retire_for: 2 years}
    trial-end:
      reason: the trial ended
      applies_to: {kind: [trial]}
      starts_on: [note]
      outcome: delete
      waive: [deletion-without-notice]
    reminder:
      reason: nothing to delete
      applies_to: {kind: [test]}
      starts_on: [note]
      phases: [{name: only}]
    """
)
IDLE = T0 + days(30)  # when an untouched standard account's idle case opens


def idle(now=IDLE + days(1)) -> Account:
    """A standard account in the grace period of its idle case (notices created, not sent)."""
    return advance(account(POLICY), POLICY, now).account


def the_case(acct: Account, flow: str = "idle") -> Case:
    case = acct.case_for(flow)
    assert case is not None
    return case


def order(acct: Account, now=IDLE + days(2), **kwargs) -> Account:
    return delete_now(acct, POLICY, now, by="ops", reason="erasure request", **kwargs).account


def test_delete_now_jumps_a_case_to_its_deletion() -> None:
    now = IDLE + days(2)
    step = delete_now(idle(), POLICY, now, by="ops", reason="erasure request")
    assert kinds_of(step) == ["exit:resume", "delete"]
    assert step.effects[-1] == DeleteEffect(
        account_id="acct-1",
        case_id="idle#1",
        flow="idle",
        address=AddressRule(mode="release"),
        at=now,
    )
    assert audit_kinds(step) == ["delete.ordered", "phase.entered", "delete.requested"]
    assert dict(step.audit[0].detail) == {"by": "ops", "reason": "erasure request"}
    assert describe(step.audit[0], POLICY) == "idle: deletion ordered now by ops: erasure request"
    case = the_case(step.account)
    assert (case.phase_index, case.destruct, case.ordered) == (1, "requested", True)
    assert step.next_due_at is None  # it waits for the deletion to be carried out
    # the default stop (a login) would close an idle case; an ordered deletion stays
    active = record_signal(step.account, POLICY, "login", now + days(1))
    later = advance(active, POLICY, now + days(1))
    assert the_case(later.account).destruct == "requested"
    assert later.effects == ()
    # nor does a change of kind to one the flow does not apply to
    moved = advance(set_kind(later.account, POLICY, "trial"), POLICY, now + days(1))
    assert the_case(moved.account).ordered
    done = outcome_done(later.account, POLICY, now + days(2), case_id="idle#1")
    assert done.account.deleted_at == now + days(2)


def test_delete_now_opens_the_one_deleting_flow_when_no_case_is_open() -> None:
    trial = account(POLICY, kind="trial")
    step = delete_now(trial, POLICY, T0 + days(1), by="ops", reason="fraud")
    case = the_case(step.account, "trial-end")
    assert (case.opened_by, case.reason, case.ordered) == ("admin:ops", "fraud", True)
    assert audit_kinds(step) == ["case.opened", "delete.requested", "delete.ordered"]
    assert kinds_of(step) == ["delete"]
    # a standard account with a lock open: the lock's deletion (and its address rule)
    locked = apply_event(account(POLICY), POLICY, "note", T0, T0).account
    step = delete_now(locked, POLICY, T0 + days(1), by="ops", reason="chargebacks")
    effect = step.effects[-1]
    assert isinstance(effect, DeleteEffect)
    assert (effect.flow, effect.address.mode) == ("lock", "retire")


def test_a_deletion_the_flow_already_requested_is_only_marked_ordered() -> None:
    acct = dispatch_all(idle(IDLE), POLICY, IDLE).account
    acct = dispatch_all(advance(acct, POLICY, IDLE + days(3)).account, POLICY, IDLE + days(3))
    reached = advance(acct.account, POLICY, IDLE + days(10))
    assert the_case(reached.account).destruct == "requested"
    step = delete_now(reached.account, POLICY, IDLE + days(11), by="ops", reason="now")
    assert step.effects == ()  # the deletion row exists already
    assert audit_kinds(step) == ["delete.ordered"]
    assert the_case(step.account).ordered
    # ordering it twice is refused
    with pytest.raises(Conflict, match=r"was already ordered \(case 'idle#1'\)"):
        order(step.account)


def test_an_outcome_waiting_for_re_sent_warnings_is_requested_at_once() -> None:
    acct = dispatch_all(idle(IDLE), POLICY, IDLE).account
    acct = dispatch_all(advance(acct, POLICY, IDLE + days(3)).account, POLICY, IDLE + days(3))
    held = set_legal_hold(acct.account, POLICY, IDLE + days(4), on=True, by="legal", reason="x")
    held = advance(held.account, POLICY, IDLE + days(10))
    assert the_case(held.account).destruct == "held"
    # lifted long after the last warning: the warnings would go out again first...
    lifted = set_legal_hold(held.account, POLICY, IDLE + days(60), on=False, by="legal", reason="y")
    assert the_case(lifted.account).destruct == "renotice"
    # ...but the administrator orders the deletion now
    step = delete_now(lifted.account, POLICY, IDLE + days(60), by="ops", reason="now")
    assert kinds_of(step) == ["delete"]
    assert the_case(step.account).destruct == "requested"


def test_delete_now_is_refused_under_a_legal_hold() -> None:
    acct = set_legal_hold(idle(), POLICY, IDLE + days(1), on=True, by="legal", reason="case 7")
    with pytest.raises(Conflict) as refused:
        order(acct.account)
    assert str(refused.value) == (
        "account 'acct-1' is under a legal hold (placed 2024-02-01 by legal: case 7); "
        "it cannot be deleted until the hold is lifted"
    )


def test_a_hold_placed_after_the_order_still_holds_the_deletion() -> None:
    ordered = order(idle())
    held = set_legal_hold(ordered, POLICY, IDLE + days(3), on=True, by="legal", reason="case 7")
    case = the_case(held.account)
    assert (case.destruct, case.ordered) == ("held", True)
    assert "outcome.held" in audit_kinds(held)


def test_nothing_but_a_hold_undoes_an_ordered_deletion() -> None:
    locked = apply_event(account(POLICY), POLICY, "note", T0, T0).account
    ordered = order(locked, T0 + days(1))
    stopped = apply_event(ordered, POLICY, "contacted", T0 + days(2), T0 + days(2))
    assert the_case(stopped.account, "lock").destruct == "requested"
    [ignored] = [e for e in stopped.audit if e.kind == "event.ignored"]
    assert ignored.detail["why"] == "an administrator ordered the deletion"
    with pytest.raises(IrreversibleCase, match="an administrator ordered its deletion"):
        reactivate(ordered, POLICY, T0 + days(2), by="ops", reason="oops", case_id="lock#1")
    with pytest.raises(IrreversibleCase):
        reactivate(ordered, POLICY, T0 + days(2), by="ops", reason="oops")


def test_which_flow_deletes() -> None:
    standard = account(POLICY)
    with pytest.raises(InvalidInput, match=r"several flows for its kind delete .* \(idle, lock\)"):
        deletion_flow(standard, POLICY)
    assert deletion_flow(standard, POLICY, "lock").name == "lock"
    both = apply_event(idle(), POLICY, "note", IDLE + days(1), IDLE + days(1)).account
    with pytest.raises(InvalidInput, match=r"several open cases delete"):
        deletion_flow(both, POLICY)
    with pytest.raises(CaseNotFound, match="the policy has no flow 'nope'"):
        deletion_flow(standard, POLICY, "nope")
    with pytest.raises(InvalidInput, match="flow 'reminder' does not delete accounts"):
        deletion_flow(account(POLICY, kind="test"), POLICY, "reminder")
    with pytest.raises(Conflict, match="flow 'trial-end' does not apply to accounts of kind"):
        deletion_flow(standard, POLICY, "trial-end")
    with pytest.raises(Conflict, match="no flow of policy 'core-test' deletes accounts of kind"):
        deletion_flow(account(POLICY, kind="test"), POLICY)
