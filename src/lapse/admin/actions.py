"""What staff do from the admin UI: extend a deadline, legal hold on and off, reactivate, lock,
suspend, delete now, retry a failed outbox row.

Each needs the `admin` scope, the session's CSRF token and a reason, and calls the same Engine
method as the HTTP API's admin route (lapse.api.routes.actions), so the audit log records the
token's name as `by`. Destructive actions (suspend, delete now) also need the account id typed
again. A refusal (any LapseError) changes nothing and is shown above the forms with the HTTP
status the API would answer; a success goes back to the account page with a message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from lapse.admin.format import Clock
from lapse.admin.pages import account_view, outbox_row_view
from lapse.admin.web import (
    StaffDep,
    admin_of,
    clock_of,
    error_message,
    quoted,
    redirect,
    require_action,
)
from lapse.api.deps import parse_duration
from lapse.api.problems import status_of
from lapse.errors import InvalidInput, LapseError
from lapse.runtime.engine import Engine

router = APIRouter()

Field = Annotated[str, Form()]

#: actions that cannot be undone: the account id must be typed to confirm them
DESTRUCTIVE = frozenset({"suspend", "delete"})
ACTIONS = ("extend", "hold", "release-hold", "reactivate", "lock", "suspend", "delete")


@router.post("/accounts/{account_id}/actions/{action}", name="act")
def act(
    request: Request,
    account_id: str,
    action: str,
    staff: StaffDep,
    csrf: Field = "",
    reason: Field = "",
    case: Field = "",
    duration: Field = "",
    until: Field = "",
    flow: Field = "",
    confirm: Field = "",
) -> Response:
    """Carry out one action on the account, or show why it was refused."""
    require_action(request, staff, {"csrf": csrf})
    form = {"action": action, "reason": reason, "case": case, "duration": duration}
    form.update(until=until, flow=flow)
    engine = admin_of(request).services.engine
    try:
        message = perform(
            engine,
            clock_of(request),
            account_id,
            action,
            by=staff.token.name,
            reason=reason,
            case=case.strip() or None,
            duration=duration.strip() or None,
            until=until.strip() or None,
            flow=flow.strip() or None,
            confirm=confirm.strip(),
        )
    except LapseError as exc:
        return account_view(
            request,
            staff,
            account_id,
            error=(action, error_message(exc)),
            status_code=status_of(exc),
            form=form,
        )
    return redirect(request, f"/accounts/{quoted(account_id)}", flash=("ok", message))


def perform(
    engine: Engine,
    clock: Clock,
    account_id: str,
    action: str,
    *,
    by: str,
    reason: str,
    case: str | None,
    duration: str | None,
    until: str | None,
    flow: str | None,
    confirm: str,
) -> str:
    """Carry out the action through the engine; returns what happened, in a sentence."""
    if action not in ACTIONS:
        known = ", ".join(ACTIONS)
        raise InvalidInput(f"there is no action {action!r}; the admin UI knows: {known}")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("give a reason: it goes into the audit log with your token's name")
    if action in DESTRUCTIVE and confirm != account_id:
        verb = "suspend" if action == "suspend" else "delete"
        raise InvalidInput(
            f"to {verb} this account, type its id ({account_id}) in the confirmation field: "
            "this cannot be undone"
        )
    if action == "extend":
        if case is None:
            raise InvalidInput("choose the case whose deadline to extend")
        if (duration is None) == (until is None):
            raise InvalidInput(
                "give either a duration (such as '14 days') or a new deadline, not both"
            )
        engine.extend(
            account_id,
            case_id=case,
            by=by,
            reason=reason,
            duration=parse_duration(duration, "duration") if duration else None,
            until=_local_time(until, clock) if until else None,
        )
        moved = next((c for c in engine.status(account_id).cases if c.id == case), None)
        if moved is None or moved.deadline is None:
            return f"The deadline of case {case} was extended."
        return (
            f"The deadline of {moved.title} is now {clock.when(moved.deadline)} "
            f"({clock.left(moved.deadline)})."
        )
    if action == "hold":
        engine.legal_hold(account_id, on=True, by=by, reason=reason)
        return "Legal hold placed: no deletion or purge of this account runs until it is lifted."
    if action == "release-hold":
        engine.legal_hold(account_id, on=False, by=by, reason=reason)
        return "Legal hold lifted: held deletions and purges go ahead (warned again if needed)."
    if action == "reactivate":
        engine.reactivate(account_id, by=by, reason=reason, case_id=case)
        what = f"case {case} is closed" if case else "its reversible cases are closed"
        return f"Reactivated: {what} and their restrictions lifted."
    if action == "lock":
        opened = engine.lock(account_id, by=by, reason=reason, flow=flow)
        return f"Locked: {engine.policy.flows[opened].title} opened."
    if action == "suspend":
        opened = engine.suspend(account_id, by=by, reason=reason, flow=flow)
        return f"Suspended: {engine.policy.flows[opened].title} opened; it cannot be undone."
    chosen = engine.delete_now(account_id, by=by, reason=reason, flow=flow)
    return (
        f"Deletion ordered through {engine.policy.flows[chosen].title}: the worker deletes the "
        "account's data and writes the receipt (see Receipts)."
    )


def _local_time(text: str, clock: Clock) -> datetime:
    """A form's date and time ('2026-04-08T09:00', a datetime-local field) in the policy's
    time zone; with an offset or Z it is taken as given."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"new deadline: {text!r} is not a date and time such as 2026-04-08T09:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=clock.zone)
    return moment


@router.post("/outbox/{row_id}/retry", name="retry")
def retry(request: Request, row_id: int, staff: StaffDep, csrf: Field = "") -> Response:
    """Put a failed row back to pending, due now; refused (409) unless it failed."""
    require_action(request, staff, {"csrf": csrf})
    engine = admin_of(request).services.engine
    try:
        engine.retry_outbox(row_id, by=staff.token.name)
    except LapseError as exc:
        return outbox_row_view(
            request, staff, row_id, error=error_message(exc), status_code=status_of(exc)
        )
    return redirect(
        request,
        f"/outbox/{row_id}",
        flash=("ok", f"Row {row_id} is pending again and will be delivered shortly."),
    )
