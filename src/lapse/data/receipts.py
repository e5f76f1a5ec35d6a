"""Deletion and purge receipts: what was removed where, when, under which policy, and a hash.

A receipt is a JSON object. Its `hash` is the SHA-256 (hex) of the receipt without the `hash`
key, serialised with sorted keys, no insignificant whitespace and UTF-8 (`json.dumps(body,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)`), so anyone can recompute it with
any JSON library. The same hash is written into the audit entry that records the deletion or
purge (`account.tombstoned` / `purge.receipt`), which the audit chain protects: a receipt edited
afterwards no longer matches its entry, and an entry edited afterwards breaks the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lapse.store.base import Store

RECEIPT_EVENTS = frozenset({"account.tombstoned", "purge.receipt"})


def receipt_id(kind: str, account_id: str, case_id: str, phase: str | None = None) -> str:
    """The id of the run and receipt of a deletion (one per account) or a purge (one per case
    and phase): stable, so a restarted run finds its progress again."""
    parts = [kind, account_id] if kind == "delete" else [kind, account_id, case_id, phase or ""]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return ("del_" if kind == "delete" else "prg_") + digest


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z and microseconds: one spelling per instant, for hashing."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes the hash covers: the body without `hash`, sorted keys, compact, UTF-8."""
    content = {k: v for k, v in body.items() if k != "hash"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(body: Mapping[str, Any]) -> str:
    """The SHA-256 of the receipt's canonical form."""
    return hashlib.sha256(canonical(body)).hexdigest()


def seal(body: Mapping[str, Any]) -> dict[str, Any]:
    """The receipt with its `hash` set."""
    sealed = {k: v for k, v in body.items() if k != "hash"}
    sealed["hash"] = digest(sealed)
    return sealed


def build(
    *,
    kind: str,
    account_id: str,
    case_id: str,
    flow: str,
    categories: Sequence[str],
    policy: Mapping[str, str],
    started_at: datetime,
    finished_at: datetime,
    data: Mapping[str, object],
    lapse: Mapping[str, int] | None = None,
    address: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """A sealed receipt from what the data handler reported (`data`) and what lapse erased."""
    raw_locations = data.get("locations")
    locations: list[dict[str, Any]] = (
        [dict(item) for item in raw_locations if isinstance(item, Mapping)]
        if isinstance(raw_locations, list)
        else []
    )
    started = data.get("started_at")
    body: dict[str, Any] = {
        "id": data.get("id") or receipt_id(kind, account_id, case_id),
        "kind": kind,
        "account": account_id,
        "case": case_id,
        "flow": flow,
        "categories": list(categories),
        "policy": dict(policy),
        "started_at": started if isinstance(started, str) else iso(started_at),
        "finished_at": iso(finished_at),
        "locations": locations,
        "rows": sum(int(item.get("rows", 0)) for item in locations),
        "verified": bool(data.get("verified", not locations)),
    }
    if lapse is not None:
        body["lapse"] = dict(lapse)
    if address is not None:
        body["address"] = dict(address)
    return seal(body)


def check(body: Mapping[str, Any], audit_hash: str | None = None) -> list[str]:
    """What is wrong with a stored receipt (empty if nothing): its hash does not match its
    content, or (given the hash its audit entry carries) it is not the receipt that was audited."""
    problems = []
    stated = body.get("hash")
    actual = digest(body)
    if stated != actual:
        problems.append(f"its content hashes to {actual}, not to its stated hash {stated}")
    if audit_hash is not None and audit_hash != stated:
        problems.append(f"its audit entry carries the hash {audit_hash}, not {stated}")
    return problems


def verify_store(store: Store, *, page: int = 5000) -> tuple[int, list[str]]:
    """Check every stored receipt: its hash matches its content and the hash its audit entry
    carries, and every audited receipt is stored. Returns (receipts checked, problems)."""
    audited: dict[str, str] = {}
    after: int | None = None
    while True:
        records = store.audit(after=after, limit=page)
        for record in records:
            entry = record.entry
            if entry.kind in RECEIPT_EVENTS:
                rid, rhash = entry.detail.get("receipt"), entry.detail.get("receipt_hash")
                if isinstance(rid, str) and isinstance(rhash, str):
                    audited[rid] = rhash
        if len(records) < page:
            break
        after = records[-1].seq
    problems: list[str] = []
    checked = 0
    seen: set[str] = set()
    cursor: int | None = None
    while True:
        batch = store.receipts(after=cursor, limit=page)
        for receipt in batch:
            checked += 1
            seen.add(receipt.id)
            where = f"receipt {receipt.id} (account {receipt.account_id})"
            if receipt.id not in audited:
                problems.append(f"{where}: no audit entry records it")
            issues = check(receipt.body, audited.get(receipt.id))
            if receipt.hash != receipt.body.get("hash"):
                issues.append(f"its stored hash {receipt.hash} is not the one in its body")
            problems.extend(f"{where}: {issue}" for issue in issues)
        if len(batch) < page:
            break
        cursor = batch[-1].seq
    for rid in sorted(set(audited) - seen):
        problems.append(f"receipt {rid}: recorded in the audit log but missing from the store")
    return checked, problems
