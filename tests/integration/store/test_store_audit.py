"""The audit log: one hash chain in commit order; verification finds every kind of tampering."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import insert, text

from lapse.store import bulk
from lapse.store.base import Change
from lapse.store.codec import audit_payload, canonical_json, encode_detail
from lapse.store.sql import SqlStore
from lapse.store.tables import audit

from .helpers import T0, create, entry, plain


def chain(store, count: int = 6) -> None:
    with store.unit() as unit:
        unit.write(create(plain("a1"), audit=[entry("a1", "account.created")]))
    for i in range(2, count + 1):
        with store.unit() as unit:
            unit.load("a1")
            unit.write(
                Change(
                    account=plain("a1"),
                    next_due_at=None,
                    audit=[entry("a1", "step", T0 + timedelta(hours=i), n=i, when=T0, ok=True)],
                )
            )


def test_chain_links_and_reads(any_store) -> None:
    chain(any_store)
    any_store.append_audit([entry("admin", "admin.login", who="ops")])
    records = any_store.audit()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert records[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert records[1].entry.detail == {"n": 2, "when": T0, "ok": True}
    assert [r.seq for r in any_store.audit(account_id="admin")] == [7]
    assert [r.seq for r in any_store.audit(after=5, limit=1)] == [6]
    result = any_store.verify_audit()
    assert result.ok
    assert result.checked == 7


def test_the_fast_hash_text_is_the_canonical_json() -> None:
    item = entry("a1", "k", T0, text='quote " and \\ and é', n=1.5, nested={"$x": [1, (2, 3)]})
    detail = encode_detail(item.detail)
    fast = bulk.chain_text(
        9,
        item.account_id,
        "2024-01-01T00:00:00+00:00",
        "2024-01-02T00:00:00+00:00",
        item.kind,
        item.case_id,
        None,
        canonical_json(detail).decode(),
    )
    payload = audit_payload(9, item, T0 + timedelta(days=1), detail)
    payload["flow"] = None
    assert fast.encode() == canonical_json(payload)


@pytest.mark.parametrize(
    "detail",
    [
        {"late": True},
        {"late": 1},  # equal to the one above, and not the same JSON
        {"late": 1.0},
        {"n": -0.0},
        {"at": T0},
        {"$tag": "x", "none": None},
        {"phase": "grace", "index": 0},
        {"index": 0, "phase": "grace"},
        {"list": [1, 2], "tuple": (True, 1)},
    ],
)
def test_detail_json_is_the_canonical_json_of_the_encoded_detail(detail) -> None:
    for _ in range(2):  # the second time from the cache where there is one
        assert bulk._detail_json(detail).encode() == canonical_json(encode_detail(detail))


def test_details_equal_in_python_keep_their_own_json(any_store) -> None:
    with any_store.unit() as unit:
        unit.write(
            create(
                plain("a1"),
                audit=[entry("a1", "x", late=True), entry("a1", "x", late=1), entry("a1", "x")],
            )
        )
    details = [r.entry.detail["late"] for r in any_store.audit() if r.entry.detail]
    assert [type(value) for value in details] == [bool, int]
    assert any_store.verify_audit().ok


def tamper(store: SqlStore, sql: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(sql))


def problems(store: SqlStore) -> list[tuple[int, str]]:
    return [(p.seq, p.problem) for p in store.verify_audit().problems]


def test_an_edited_row_is_found(store: SqlStore) -> None:
    chain(store)
    tamper(store, "UPDATE audit SET kind = 'nothing.happened' WHERE seq = 3")
    assert problems(store) == [(3, "edited")]


def test_an_edited_row_with_a_recomputed_hash_is_found(store: SqlStore) -> None:
    chain(store)
    record = store.audit(after=2, limit=1)[0]
    forged = record.entry.__class__(
        account_id="a1", at=record.entry.at, kind="forged", case_id=None, flow=None
    )
    payload = audit_payload(3, forged, record.recorded_at, {})
    digest = bulk.chain_hash(record.prev_hash, canonical_json(payload).decode())
    tamper(
        store,
        f"UPDATE audit SET kind = 'forged', case_id = NULL, flow = NULL, detail = '{{}}', "
        f"hash = '{digest}' WHERE seq = 3",
    )
    assert problems(store) == [(3, "edited")]


def test_a_removed_row_is_found(store: SqlStore) -> None:
    chain(store)
    tamper(store, "DELETE FROM audit WHERE seq = 4")
    assert problems(store) == [(4, "removed")]


def forge(store: SqlStore, seq: int, prev_hash: str, recorded_at, kind: str = "forged") -> None:
    """Insert an audit row that hashes correctly onto `prev_hash` (an attacker who knows how)."""
    item = entry("a1", kind, T0)
    detail = encode_detail(item.detail)
    digest = bulk.chain_hash(
        prev_hash, canonical_json(audit_payload(seq, item, recorded_at, detail)).decode()
    )
    with store.engine.begin() as conn:
        conn.execute(
            insert(audit).values(
                seq=seq,
                account_id=item.account_id,
                at=item.at,
                recorded_at=recorded_at,
                kind=item.kind,
                case_id=item.case_id,
                flow=item.flow,
                detail=detail,
                prev_hash=prev_hash,
                hash=digest,
            )
        )


def test_an_inserted_row_is_found(store: SqlStore) -> None:
    chain(store, 4)
    # an attacker makes room after seq 2 and slips in a row that links to it correctly
    tamper(store, "UPDATE audit SET seq = seq + 100 WHERE seq > 2")
    tamper(store, "UPDATE audit SET seq = seq - 99 WHERE seq > 100")
    second = store.audit(after=1, limit=1)[0]
    forge(store, 3, second.hash, second.recorded_at)
    # the rows pushed down were renumbered, so their own hashes no longer match either, and
    # the chain now runs one past its head
    assert problems(store) == [(3, "inserted"), (4, "edited"), (5, "edited"), (5, "inserted")]


def test_a_row_past_the_head_is_found(store: SqlStore) -> None:
    chain(store, 3)
    last = store.audit()[-1]
    forge(store, 4, last.hash, last.recorded_at)
    assert problems(store) == [(4, "inserted")]


def test_a_truncated_tail_is_found(store: SqlStore) -> None:
    chain(store)
    tamper(store, "DELETE FROM audit WHERE seq >= 5")
    result = store.verify_audit()
    assert [(p.seq, p.problem) for p in result.problems] == [(5, "head mismatch")]
    assert "seq 5 to 6 were removed" in result.problems[0].detail


def test_memory_store_verification_finds_edits() -> None:
    from lapse.store.memory import MemoryStore

    memory = MemoryStore()
    chain(memory)
    assert memory.verify_audit().ok
    records = memory._state.audit
    records[2] = records[2].__class__(
        seq=3,
        entry=entry("a1", "nothing.happened"),
        recorded_at=records[2].recorded_at,
        prev_hash=records[2].prev_hash,
        hash=records[2].hash,
    )
    del records[4]
    assert [(p.seq, p.problem) for p in memory.verify_audit().problems] == [
        (3, "edited"),
        (5, "removed"),
    ]


@pytest.mark.parametrize("count", [0, 1])
def test_empty_and_single_chains_verify(any_store, count: int) -> None:
    if count:
        any_store.append_audit([entry("x", "one")])
    assert any_store.verify_audit().ok


def test_verification_reports_its_progress(any_store) -> None:
    any_store.append_audit([entry("a1", "step", n=i) for i in range(4001)])
    seen: list[tuple[int, int]] = []
    result = any_store.verify_audit(progress=lambda done, total: seen.append((done, total)))
    assert result.ok
    assert seen == [(2000, 4001), (4000, 4001), (4001, 4001)]  # rows checked of the head's count
    assert any_store.verify_audit().checked == 4001  # and without a listener


def test_migrations_report_each_revision(database) -> None:
    from lapse.store.migrate import head_revision, migrate

    url = database("sqlite")  # already at the head: nothing to report
    steps: list[tuple[int, int, str]] = []
    migrate(url, progress=lambda done, total, revision: steps.append((done, total, revision)))
    assert steps == []
    fresh = url.rsplit("/", 1)[0] + "/fresh.db"
    migrate(fresh, progress=lambda done, total, revision: steps.append((done, total, revision)))
    count = int(head_revision() or 0)
    assert steps == [(n, count, f"{n:04d}") for n in range(1, count + 1)]
