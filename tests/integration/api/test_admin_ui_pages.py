"""The admin UI's pages show what the engine and the store hold: dashboard, accounts (filters,
search, pages), one account, upcoming, outbox, receipts and audit; SQLite and PostgreSQL.

The world: the inactivity-cleanup preset on a manual clock at Friday 31 January 2025, 09:00 UTC;
`acme` idle for 12 months and 5 days (in its 30-day grace period, deletion on 25 February),
`qa-1` a test account 10 days old (deleted on its 30th day), `fresh` a new standard account.
"""

from __future__ import annotations

import re

import pytest
from admin_helpers import Staff, text
from api_helpers import Factory, Server

_TILE = re.compile(r'class="tile state-(\w+)".*?class="count">(\d+)<', re.S)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, make_server: Factory) -> Server:
    """The API with the admin UI and three accounts, on each database."""
    server = make_server(request.param, policy="inactivity-cleanup")
    server.account(
        "acme",
        created_at="2024-01-26T09:00:00Z",
        address="owner@acme.example",
        members=[
            {"email": "ann@acme.example", "role": "admin"},
            {"email": "bob@acme.example", "role": "member"},
        ],
    )
    server.account("qa-1", kind="test", created_at="2025-01-21T09:00:00Z")
    server.account("fresh")
    return server


def _tiles(page: str) -> dict[str, int]:
    return {state: int(count) for state, count in _TILE.findall(page)}


def test_dashboard_counts_accounts_by_state_and_phase(world: Server) -> None:
    staff = Staff(world).signed_in("read")
    page = staff.get("/")
    assert _tiles(page.text) == {
        "active": 2,
        "restricted": 1,
        "locked": 0,
        "suspended": 0,
        "deleted": 0,
    }
    assert 'href="/admin/accounts?flow=inactivity&amp;phase=grace">1</a>' in page.text
    seen = text(page.text)
    assert "3 accounts" in seen
    assert "Nothing in the next 7 days." in seen
    assert "0 rows waiting to be delivered" in seen
    world.advance("14 days")  # the final warning is due in 4 days, qa-1's deletion in 6
    soon = staff.page("/")
    assert "Email Inactivity clean-up: notice inactivity-final-warning to admins" in soon
    assert "Deletion Test account expiry: account deletion" in soon
    assert soon.index("inactivity-final-warning") < soon.index("Test account expiry")
    assert "All 2 upcoming warnings and deletions" in soon


def test_accounts_are_filtered_searched_and_paginated(world: Server) -> None:
    staff = Staff(world).signed_in("read")
    everyone = staff.page("/accounts")
    assert "acme standard restricted Inactivity clean-up · grace 25 February 2025" in everyone
    assert "(25 days left) Inactivity clean-up: grace ends" in everyone
    assert "fresh standard active none" in everyone
    assert "qa-1 test active" in everyone

    def ids(**filters: str) -> list[str]:
        page = staff.get("/accounts", **filters)
        assert page.status_code == 200, page.text
        return re.findall(r'<td><a href="/admin/accounts/([^"]+)">', page.text)

    assert ids() == ["acme", "fresh", "qa-1"]
    assert ids(state="restricted") == ["acme"]
    assert ids(state="active") == ["fresh", "qa-1"]
    assert ids(flow="inactivity") == ["acme"]
    assert ids(flow="inactivity", phase="grace") == ["acme"]
    assert ids(phase="grace") == ["acme"]
    assert ids(kind="test") == ["qa-1"]
    assert ids(q="BOB@acme") == ["acme"]  # a member's email, any case
    assert ids(q="owner@") == ["acme"]  # the address
    assert ids(q="qa") == ["qa-1"]
    assert ids(q="nobody") == []
    assert "No account matches." in staff.page("/accounts", q="nobody")
    for bad, message in (
        ({"state": "asleep"}, "state: unknown state 'asleep'"),
        ({"kind": "robot"}, "kind: the policy has no account kind 'robot'"),
        ({"flow": "nap"}, "flow: the policy has no flow 'nap'"),
        ({"phase": "nap"}, "phase: no flow of the policy has a phase 'nap'"),
    ):
        refused = staff.get("/accounts", **bad)
        assert refused.status_code == 422
        assert message in text(refused.text)
    for n in range(55):
        world.account(f"z-{n:02d}", members=[])
    first = ids()
    assert len(first) == 50
    assert first[:3] == ["acme", "fresh", "qa-1"]
    nxt = re.search(r'href="(/admin/accounts\?after=[^"]+)">Next page', staff.last.text)
    assert nxt is not None
    rest = staff.client.get(nxt.group(1).replace("&amp;", "&"))
    rest_ids = re.findall(r'<td><a href="/admin/accounts/([^"]+)">', rest.text)
    assert rest_ids == [f"z-{n:02d}" for n in range(47, 55)]
    assert "Next page" not in rest.text


def test_the_account_page_explains_the_account(world: Server) -> None:
    staff = Staff(world).signed_in("read")
    status = world.admin.get("/v1/accounts/acme/status").json()
    page = staff.page("/accounts/acme")
    assert "acme restricted" in page
    assert "Kind standard · created 26 January 2024 · address owner@acme.example" in page
    assert "Deletion on 25 February 2025 (25 days left), if nothing changes." in page
    assert f"The banner the account holder sees {status['banner']}" in page
    assert "will be permanently deleted on 25 February 2025 (25 days left)" in page
    # the open case, in words
    assert "Phase grace (1 of 1), since 26 January 2025" in page
    assert "Why no campaign sent and no API request in the last 12 months" in page
    assert "Opened 26 January 2025, automatically: its start condition held" in page
    assert "Deadline 25 February 2025, 09:00 UTC (25 days left), then the deletion" in page
    assert "Restricts send campaign" in page
    assert "inactivity-grace-started (grace) 26 January 2025, 09:00 UTC 31 January 2025" in page
    # the projected timeline and why each flow starts
    assert "18 February 2025, 09:00 UTC in 18 days Email" in page
    assert "25 February 2025, 09:00 UTC in 25 days Deletion" in page
    assert "✓ holds: no campaign_sent or api_request for 12 months" in page
    assert "Test account expiry" not in page.split("Why each flow starts")[1].split("History")[0]
    # the past, the checks, the inputs
    assert "Case opened Inactivity clean-up starts" in page
    assert "registered as a standard account" in page
    check = world.admin.get("/v1/accounts/acme/check", params={"action": "send_campaign"}).json()
    assert f"denied send campaign {check['message']}" in page
    assert "allowed login, view, export" in page
    assert "ann@acme.example (admin: receives notices)" in page
    assert "bob@acme.example (member)" in page
    assert "subscription active no (the policy's default: not reported)" in page
    rows = world.admin.get("/v1/outbox", params={"account": "acme"}).json()["items"]
    assert rows
    for row in rows:
        assert f'href="/admin/outbox/{row["id"]}"' in staff.last.text
    assert "email inactivity-grace-started (grace) ann@acme.example delivered" in page
    # an account nobody knows
    missing = staff.get("/accounts/nobody")
    assert missing.status_code == 404
    assert "There is no account 'nobody'." in text(missing.text)


def test_a_deleted_account_shows_its_tombstone_and_receipt(world: Server) -> None:
    world.advance("21 days")  # qa-1 is 31 days old: deleted
    staff = Staff(world).signed_in("read")
    page = staff.page("/accounts/qa-1")
    [receipt] = world.admin.get("/v1/receipts", params={"account": "qa-1"}).json()["items"]
    assert "qa-1 deleted" in page
    assert "Deleted on 20 February 2025, 09:00 UTC by Test account expiry" in page
    assert "released: it may register again" in page
    assert f"deletion receipt {receipt['id']}" in page
    assert "Deletion receipt data deleted everywhere it is registered" in page
    assert _tiles(staff.get("/").text)["deleted"] == 1


def test_upcoming_lists_warnings_and_deletions_by_time(world: Server) -> None:
    staff = Staff(world).signed_in("read")
    page = staff.page("/upcoming", days="30")
    assert "3 events until 2 March 2025, 09:00 UTC" in page
    order = [
        "18 February 2025, 09:00 UTC in 18 days acme restricted Email",
        "20 February 2025, 09:00 UTC in 20 days qa-1 active Deletion",
        "25 February 2025, 09:00 UTC in 25 days acme restricted Deletion",
    ]
    positions = [page.index(line) for line in order]
    assert positions == sorted(positions)
    deletions = staff.page("/upcoming", days="30", what="deletions")
    assert "Email" not in deletions.split("Details")[-1]
    assert "qa-1 active Deletion" in deletions
    warnings = staff.page("/upcoming", days="30", what="warnings")
    assert "Deletion Test" not in warnings
    assert "acme restricted Email" in warnings
    assert "Nothing in this window." in staff.page("/upcoming", days="7")
    assert "Case opens" in staff.page("/upcoming", days="366", what="everything")
    assert staff.get("/upcoming", what="gossip").status_code == 422
    assert staff.get("/upcoming", days="0").status_code == 422


def test_the_audit_page_lists_newest_first_and_verifies_the_chain(world: Server) -> None:
    world.advance("21 days")
    staff = Staff(world).signed_in("read")
    page = staff.page("/audit")
    items = world.admin.get("/v1/audit", params={"limit": 1000}).json()["items"]
    newest = items[-1]
    assert page.index(f" {newest['seq']} ") < page.index(f" {items[0]['seq']} ")
    acme = staff.page("/audit", account="acme")
    assert "qa-1" not in acme.split("Details")[-1]
    verified = staff.post("/audit/verify")  # a read token may verify: it changes nothing
    assert verified.status_code == 200
    shown = text(verified.text)
    assert f"The chain is intact: {len(items)} audit entries checked, 1 receipt verified" in shown
    assert staff.post("/audit/verify", csrf="forged").status_code == 403


def test_receipts_list_and_verify_each_receipt(world: Server) -> None:
    world.advance("21 days")
    staff = Staff(world).signed_in("read")
    [receipt] = world.admin.get("/v1/receipts").json()["items"]
    listed = staff.page("/receipts")
    assert f"deletion qa-1 test-account-expiry 0 matches {receipt['id']}" in listed
    assert staff.page("/receipts", kind="purge").count("matches") == 0
    one = staff.page(f"/receipts/{receipt['id']}")
    assert "Verified: its content hashes to its stated hash" in one
    assert "Policy inactivity-cleanup v1" in one
    assert receipt["hash"] in one
    assert "Address released" in one
    # a receipt edited in the database no longer verifies (its audit entry keeps the hash)
    store = world.services.store
    from sqlalchemy import update

    from lapse.store.tables import receipts

    body = dict(receipt["body"], rows=7)
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(receipts).where(receipts.c.id == receipt["id"]).values(body=body))
    broken = staff.page(f"/receipts/{receipt['id']}")
    assert "This receipt does not verify" in broken
    assert "not to its stated hash" in broken
    assert "broken" in staff.page("/receipts")
    assert staff.get("/receipts/del_nope").status_code == 404
