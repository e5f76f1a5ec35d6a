"""The scenario tests end to end: a real `lapse serve` process, real HTTP, real email.

`LapseServer` starts `lapse serve` for one preset on a manual clock, a fresh SQLite file, a real
SMTP server on loopback (`LAPSE_SMTP_HOST`), a real webhook receiver for host effects
(`LAPSE_HOST_WEBHOOK_URL`, signed) and a webhook data connector (`LAPSE_CONNECTORS`) to a
`DataHost` that counts and deletes the account's rows (one per category) when lapse asks, and
refuses deletions (503) while `busy`. `HttpEngine` is the part of `lapse.Engine` the scenario
tests use, spoken over the HTTP API, answering with the same result objects (`Status`,
`Decision`, `Timeline`... with parsed datetimes), so the same assertions run against both.

What the tests read comes from outside the server, as a host product would see it:

- `notices`: the emails the SMTP server received (template, case and deadline from the
  `X-Lapse-*` headers, the time from `Date`, which is lapse's clock). Emails that left at the
  same moment are put in outbox order: concurrent SMTP deliveries arrive in any order.
  `notices.down = True` makes the SMTP server refuse every message (451 at MAIL FROM).
- `host.calls`: the signed webhooks the receiver got (each verified), in the same order.
- `data.deleted` / `data.purged`: the audit log's `account.tombstoned` / `purge.receipt`.
- `store`: the audit log, in-app notifications, tombstones and the outbox, over the API.

Time: `run_until` is `POST /v1/clock {"to"}`, where the server itself stops at every due time on
the way (as the in-process `run_until` does); `run_due` and moving `clock` by hand are catch-up
moves (`"catch_up": true`: jump, then run what is due), which is what every test does right
after moving the clock by hand anyway. One server per preset serves a whole session:
`HttpEngine` starts each test with `POST /v1/clock/reset` (erase everything, clock back to the
start), which exists only on a manual clock.

Differences that remain, by nature: events reported without an id get a fresh unique id (the API
needs one for idempotency; a fresh one is never a duplicate, as no id in-process); admin actions
are made with a token named after `by` (the API records the token's name as `by`); `account()`
has no cases (the API's account lists case ids; `status` has them); `RunReport.skipped` is 0 (the
API does not report it).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httpx

from lapse import errors
from lapse.core.inputs import coerce_fact
from lapse.core.model import (
    Account,
    Adjustment,
    AuditEntry,
    CaseStatus,
    Decision,
    Denial,
    Explanation,
    FactEntry,
    FlowOutlook,
    HostEffect,
    LegalHold,
    Member,
    NoticeRecord,
    Status,
    Timeline,
    TimelineEvent,
)
from lapse.notify.webhooks import generate_secret, verify_webhook
from lapse.policy import load_preset
from lapse.policy.durations import Duration
from lapse.policy.model import FactValue, Policy
from lapse.runtime.channels import SentNotice
from lapse.runtime.engine import RunReport
from lapse.store.base import (
    AuditRecord,
    Notification,
    SignalBatchResult,
    Tombstone,
    key_digest,
)
from loopback_servers import (
    LapseProcess,
    Received,
    SmtpServer,
    WebhookServer,
    clean_env,
    free_port,
)

#: what the SMTP server answers while `notices.down` (MAIL FROM, so every message is refused)
SMTP_DOWN = "451 4.3.0 the mail system is down"

#: problem codes of the API -> the exceptions the in-process engine raises
ERRORS: dict[str, type[errors.LapseError]] = {
    cls.code: cls
    for cls in (
        errors.UnknownAccount,
        errors.AccountExists,
        errors.AccountDeleted,
        errors.AddressRetired,
        errors.UnknownAction,
        errors.InvalidInput,
        errors.CaseNotFound,
        errors.IrreversibleCase,
        errors.Conflict,
        errors.NotFound,
        errors.TooLarge,
    )
}


def iso(moment: datetime) -> str:
    """An aware datetime as the API reads it."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return moment.isoformat()


def dt(text: str) -> datetime:
    """A timestamp of a response (UTC, with Z)."""
    return datetime.fromisoformat(text)


def opt_dt(text: str | None) -> datetime | None:
    return None if text is None else dt(text)


# --- the host's data -----------------------------------------------------------------------


class DataHost:
    """The host end of a webhook data connector, for every server of the session: each account
    has one row at each location until lapse deletes it; while `busy`, deletions are refused
    (503: lapse retries them, as a lagging deletion queue). Requests are verified."""

    def __init__(self, receiver: WebhookServer) -> None:
        self.receiver = receiver
        self.secret = generate_secret()
        self.busy = False
        self._gone: set[tuple[str, str, str]] = set()  # (path, account, location)
        self._lock = threading.Lock()
        receiver.responder = self.answer

    def url(self, preset: str) -> str:
        """Where one preset's server sends its data requests."""
        return f"{self.receiver.url}/{preset}"

    def start_over(self) -> None:
        """Every account has its rows again (the servers start over too); not busy."""
        with self._lock:
            self._gone.clear()
            self.busy = False

    def answer(self, request: Received) -> tuple[int, Any]:
        """Count (`{"counts": ...}`) or delete (204; 503 while busy)."""
        sent = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
        body = verify_webhook(self.secret, request.headers, request.body, now=sent)
        data = body["data"]
        with self._lock:
            if body["type"] == "lapse.data.count":
                counts = {
                    name: 0 if (request.path, data["account_id"], name) in self._gone else 1
                    for name in data["locations"]
                }
                return 200, {"counts": counts}
            if body["type"] == "lapse.data.delete":
                if self.busy:
                    return 503, {"detail": "the deletion queue is busy"}
                self._gone.add((request.path, data["account_id"], data["location"]))
                return 204, None
        return 404, None


# --- the server process ---------------------------------------------------------------------


class LapseServer(LapseProcess):
    """`lapse serve` for one preset: manual clock at `start`, a fresh SQLite file in
    `directory`, email to `smtp`, host effects (signed) to `webhooks`, data requests (one
    location per category of the policy) to `data_host`."""

    def __init__(
        self,
        preset: str,
        *,
        directory: Path,
        start: datetime,
        smtp: SmtpServer,
        webhooks: WebhookServer,
        data_host: DataHost,
    ) -> None:
        self.preset = preset
        self.start = start
        self.smtp = smtp
        self.webhooks = webhooks
        self.data_host = data_host
        self.domain = f"{preset}.lapse.test"  # the sender's domain: in every Message-ID
        self.hooks_url = f"{webhooks.url}/{preset}"
        self.secret = generate_secret()
        self.tokens: dict[str, str] = {}  # token name (an admin action's `by`) -> secret
        connectors = directory / f"{preset}-connectors.json"
        locations = [{"name": c, "category": c} for c in sorted(load_preset(preset).categories)]
        host = {
            "name": "host",
            "kind": "webhook",
            "url": data_host.url(preset),
            "secret": data_host.secret,
            "locations": locations,
        }
        connectors.write_text(json.dumps({"version": 1, "connectors": [host]}))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = clean_env(
            LAPSE_DATABASE_URL=f"sqlite:///{directory / f'{preset}.db'}",
            LAPSE_POLICY=preset,
            LAPSE_CLOCK="manual",
            LAPSE_CLOCK_START=iso(start),
            LAPSE_SMTP_HOST=smtp.host,
            LAPSE_SMTP_PORT=str(smtp.port),
            LAPSE_SMTP_TIMEOUT="5",
            LAPSE_MAIL_FROM=f"lapse@{self.domain}",
            LAPSE_HOST_WEBHOOK_URL=self.hooks_url,
            LAPSE_WEBHOOK_SECRET=self.secret,
            LAPSE_CONNECTORS=str(connectors),
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)  # closed by stop()
        super().__init__(["serve", "--port", str(port)], env, port, timeout=60)
        token = self.token()
        if token is None:
            self.stop()
            raise AssertionError(f"lapse serve printed no admin token:\n{self.output}")
        self.client.headers["Authorization"] = f"Bearer {token}"

    def request(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request (with `token` instead of the admin token if given)."""
        if token is not None:
            kwargs["headers"] = {"Authorization": f"Bearer {token}"}
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            tail = "\n".join(self.lines[-30:])
            raise AssertionError(f"{method} {path}: {exc!r}; lapse serve printed:\n{tail}") from exc

    def stop(self) -> int:
        """Close the client, then stop the process."""
        self.client.close()
        return super().stop()


# --- what the tests read ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row as the API lists it (no effect: see `GET /v1/outbox/{id}`)."""

    id: int
    account_id: str
    case_id: str
    kind: str
    name: str
    template: str | None
    channel: str
    recipient: str | None
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Carried:
    """A deletion (categories empty) or purge lapse carried out, from its audit entry."""

    account_id: str
    flow: str
    case_id: str
    categories: tuple[str, ...] = ()


class HttpStore:
    """The store's reads the tests use, over the API."""

    def __init__(self, engine: HttpEngine) -> None:
        self._engine = engine

    def _pages(self, path: str, params: Mapping[str, Any], limit: int) -> Iterator[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v is not None}
        count = 0
        while count < limit:
            page = self._engine._call(
                "GET", path, params={**query, "limit": min(1000, limit - count)}
            )
            for item in page["items"]:
                count += 1
                yield item
            if page["next_cursor"] is None:
                return
            query["cursor"] = page["next_cursor"]

    def audit(
        self, *, account_id: str | None = None, after: int | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Audit records in chain order (`after` is not offered by the API: None only)."""
        assert after is None, "the API pages with cursors"
        return [
            AuditRecord(
                seq=item["seq"],
                entry=AuditEntry(
                    account_id=item["account"],
                    at=dt(item["at"]),
                    kind=item["kind"],
                    case_id=item["case"],
                    flow=item["flow"],
                    detail=item["detail"],
                ),
                recorded_at=dt(item["recorded_at"]),
                prev_hash=item["prev_hash"],
                hash=item["hash"],
            )
            for item in self._pages("/v1/audit", {"account": account_id}, limit)
        ]

    def outbox(
        self,
        *,
        account_id: str | None = None,
        status: str | None = None,
        limit: int = 100_000,
    ) -> list[OutboxRow]:
        """Outbox rows, oldest first."""
        return [
            OutboxRow(
                id=item["id"],
                account_id=item["account"],
                case_id=item["case"],
                kind=item["kind"],
                name=item["name"],
                template=item["template"],
                channel=item["channel"],
                recipient=item["recipient"],
                status=item["status"],
                attempts=item["attempts"],
                created_at=dt(item["created_at"]),
                next_attempt_at=opt_dt(item["next_attempt_at"]),
                delivered_at=opt_dt(item["delivered_at"]),
                last_error=item["last_error"],
                idempotency_key=item["idempotency_key"],
            )
            for item in self._pages("/v1/outbox", {"account": account_id, "status": status}, limit)
        ]

    def retry_outbox(self, item_id: int) -> None:
        """Put a failed row back to pending, due now (`POST /v1/outbox/{id}/retry`)."""
        self._engine._call("POST", f"/v1/outbox/{item_id}/retry")

    def notifications(self, account_id: str, *, unread_only: bool = False) -> list[Notification]:
        """The account's in-app notifications, newest first."""
        body = self._engine._call(
            "GET",
            f"/v1/accounts/{_seg(account_id)}/notifications",
            params={"unread": unread_only},
        )
        return [
            Notification(
                id=n["id"],
                account_id=account_id,
                case_id=n["case"],
                template=n["template"],
                subject=n["subject"],
                body=n["body"],
                created_at=dt(n["created_at"]),
                read_at=opt_dt(n["read_at"]),
            )
            for n in body["items"]
        ]

    def tombstone(self, account_id: str) -> Tombstone | None:
        """What remains of a deleted account (None if it was not deleted)."""
        try:
            t = self._engine._call("GET", f"/v1/accounts/{_seg(account_id)}/tombstone")
        except errors.NotFound:
            return None
        return Tombstone(
            account_id=t["account"],
            deleted_at=dt(t["deleted_at"]),
            flow=t["flow"],
            case_id=t["case"],
            address_hash=t["address_hash"],
            address_mode=t["address_mode"],
            retired_until=opt_dt(t["retired_until"]),
            receipt=t["receipt"],
        )

    def idempotency_order(self) -> dict[str, int]:
        """Outbox row id per idempotency key (a webhook's webhook-id) and per its digest (what
        an email's Message-ID is made of)."""
        order: dict[str, int] = {}
        for row in self.outbox():
            order[row.idempotency_key] = order[key_digest(row.idempotency_key)] = row.id
        return order


class HttpNotices:
    """The notices the SMTP server received during this test, as `SentNotice`s."""

    def __init__(self, engine: HttpEngine, first: int) -> None:
        self._engine = engine
        self._first = first  # messages before this one belong to earlier tests

    @property
    def down(self) -> bool:
        """True while the SMTP server refuses every message."""
        return self._engine.server.smtp.sink.refuse_mail is not None

    @down.setter
    def down(self, value: bool) -> None:
        self._engine.server.smtp.sink.refuse_mail = SMTP_DOWN if value else None

    def emails(self) -> list[EmailMessage]:
        """Every email this server sent during this test, in arrival order."""
        suffix = f"@{self._engine.server.domain}>"
        messages = self._engine.server.smtp.messages[self._first :]
        return [m for m in messages if str(m["Message-ID"]).endswith(suffix)]

    @property
    def sent(self) -> list[SentNotice]:
        """Every notice emailed, in order (same moment: outbox order)."""
        order = self._engine.store.idempotency_order()
        notices = [_sent_notice(m) for m in self.emails()]
        return sorted(notices, key=lambda n: (n.at, order[n.idempotency_key]))

    def for_account(self, account_id: str) -> list[SentNotice]:
        """Notices emailed for one account, in order."""
        return [n for n in self.sent if n.account_id == account_id]

    def text(self, account_id: str, template: str, recipient: str) -> str:
        """The plain text of the one email of `template` sent to `recipient`."""
        (message,) = [
            m
            for m in self.emails()
            if m["X-Lapse-Account"] == account_id
            and m["X-Lapse-Template"] == template
            and m["To"] == recipient
        ]
        part = message.get_body(preferencelist=("plain",))
        assert isinstance(part, EmailMessage)
        return str(part.get_content()).replace("\r\n", "\n")


def _sent_notice(message: EmailMessage) -> SentNotice:
    case_id = str(message["X-Lapse-Case"])
    key = str(message["X-Lapse-Notice"])
    message_id = str(message["Message-ID"])
    deadline = message["X-Lapse-Deadline"]
    return SentNotice(
        at=parsedate_to_datetime(str(message["Date"])).astimezone(UTC),
        account_id=str(message["X-Lapse-Account"]),
        case_id=case_id,
        flow=case_id.rpartition("#")[0],
        phase=key.partition("/")[0],
        key=key,
        template=str(message["X-Lapse-Template"]),
        recipient=str(message["To"]),
        channel="email",
        deadline=dt(str(deadline)) if deadline is not None else None,
        idempotency_key=message_id.strip().strip("<>").partition("@")[0],
    )


class HttpHost:
    """The host effects the webhook receiver got during this test (signatures verified)."""

    def __init__(self, engine: HttpEngine, first: int) -> None:
        self._engine = engine
        self._first = first

    @property
    def calls(self) -> list[tuple[datetime, HostEffect]]:
        """(lifecycle time, effect) in delivery order (same moment: outbox order)."""
        server = self._engine.server
        path = urlsplit(server.hooks_url).path
        received = []
        for request in server.webhooks.requests[self._first :]:
            if request.path != path:
                continue
            sent = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
            body = verify_webhook(server.secret, request.headers, request.body, now=sent)
            data = body["data"]
            effect = HostEffect(
                account_id=data["account_id"],
                case_id=data["case_id"],
                flow=data["flow"],
                phase=data["phase"],
                name=data["effect"],
                trigger=data["trigger"],
                at=dt(data["at"]),
            )
            received.append((sent, request.headers["webhook-id"], effect))
        order = self._engine.store.idempotency_order()
        received.sort(key=lambda r: (r[0], order[r[1]]))
        return [(effect.at, effect) for _, _, effect in received]

    def names(self, account_id: str) -> list[str]:
        """The effect names sent for one account, in order."""
        return [e.name for _, e in self.calls if e.account_id == account_id]


class HttpData:
    """Deletions and purges lapse carried out, from the audit log."""

    def __init__(self, engine: HttpEngine) -> None:
        self._engine = engine

    def _carried(self, kind: str) -> list[tuple[datetime, Carried]]:
        return [
            (
                r.entry.at,
                Carried(
                    account_id=r.entry.account_id,
                    flow=r.entry.flow or "",
                    case_id=r.entry.case_id or "",
                    categories=tuple(cast(list[str], r.entry.detail.get("categories", []))),
                ),
            )
            for r in self._engine.store.audit(limit=1_000_000)
            if r.entry.kind == kind
        ]

    @property
    def deleted(self) -> list[tuple[datetime, Carried]]:
        """(when, deletion) of every account deleted."""
        return self._carried("account.tombstoned")

    @property
    def purged(self) -> list[tuple[datetime, Carried]]:
        """(when, purge) of every purge carried out."""
        return self._carried("purge.receipt")


class HttpClock:
    """The server's manual clock. Moving it by hand runs what is due at once (catch-up)."""

    def __init__(self, engine: HttpEngine) -> None:
        self._engine = engine

    def now(self) -> datetime:
        return self._engine._now

    def set(self, moment: datetime) -> datetime:
        self._engine._move({"to": iso(moment), "catch_up": True})
        return self.now()

    def advance(self, by: Duration | timedelta | str) -> datetime:
        if isinstance(by, timedelta):
            return self.set(self.now() + by)
        self._engine._move({"advance": str(by), "catch_up": True})
        return self.now()


# --- the engine over HTTP ---------------------------------------------------------------------


class HttpEngine:
    """The Engine API of the scenario tests, spoken to a `LapseServer`; starts the server over
    (`POST /v1/clock/reset` to its start) when created."""

    def __init__(self, server: LapseServer, policy: Policy) -> None:
        self.server = server
        self.policy = policy
        moved = self._call("POST", "/v1/clock/reset", json={"to": iso(server.start)})
        self._now = dt(moved["now"])
        server.data_host.start_over()
        self.clock = HttpClock(self)
        self.store = HttpStore(self)
        self.notices = HttpNotices(self, len(server.smtp.messages))
        self.host = HttpHost(self, len(server.webhooks.requests))
        self.data = HttpData(self)

    # --- plumbing ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, by: str | None = None, **kwargs: Any) -> Any:
        """The JSON answer; a problem document raises the engine's exception for its code."""
        token = self._token(by) if by is not None else None
        response = self.server.request(method, path, token=token, **kwargs)
        if response.status_code >= 400:
            raise _problem(method, path, response)
        return response.json() if response.content else None

    def _token(self, name: str) -> str:
        """An admin token named `name`, so the audit log records actions by that name."""
        if name not in self.server.tokens:
            created = self._call("POST", "/v1/tokens", json={"name": name, "scopes": ["admin"]})
            self.server.tokens[name] = created["secret"]
        return self.server.tokens[name]

    def _move(self, body: dict[str, Any]) -> RunReport:
        moved = self._call("POST", "/v1/clock", json=body)
        self._now = dt(moved["now"])
        return RunReport(
            processed=moved["processed"], delivered=moved["delivered"], failed=moved["failed"]
        )

    # --- accounts ---------------------------------------------------------------------------

    def add_account(
        self,
        account_id: str,
        *,
        kind: str,
        created_at: datetime | None = None,
        address: str | None = None,
        members: Sequence[Member | tuple[str, str]] = (),
    ) -> Account:
        body: dict[str, Any] = {"id": account_id, "kind": kind, "address": address}
        if created_at is not None:
            body["created_at"] = iso(created_at)
        body["members"] = [
            {"email": m.email, "role": m.role}
            if isinstance(m, Member)
            else {"email": m[0], "role": m[1]}
            for m in members
        ]
        return self._account(self._call("POST", "/v1/accounts", json=body))

    def account(self, account_id: str) -> Account:
        return self._account(self._call("GET", f"/v1/accounts/{_seg(account_id)}"))

    def _account(self, a: dict[str, Any]) -> Account:
        hold = a["legal_hold"]
        return Account(
            id=a["id"],
            kind=a["kind"],
            created_at=dt(a["created_at"]),
            address=a["address"],
            members=tuple(Member(email=m["email"], role=m["role"]) for m in a["members"]),
            signals={name: dt(at) for name, at in a["signals"].items()},
            facts={
                name: FactEntry(
                    value=coerce_fact(name, self.policy.facts[name].type, f["value"]),
                    changed_at=dt(f["changed_at"]),
                )
                for name, f in a["facts"].items()
            },
            legal_hold=_hold(hold),
        )

    def add_member(self, account_id: str, email: str, role: str = "member") -> None:
        path = f"/v1/accounts/{_seg(account_id)}/members/{_seg(email)}"
        self._call("PUT", path, json={"role": role})

    def remove_member(self, account_id: str, email: str) -> None:
        self._call("DELETE", f"/v1/accounts/{_seg(account_id)}/members/{_seg(email)}")

    def set_kind(self, account_id: str, kind: str) -> None:
        self._call("PATCH", f"/v1/accounts/{_seg(account_id)}", json={"kind": kind})

    # --- reports ----------------------------------------------------------------------------

    def signal(self, account_id: str, name: str, at: datetime | None = None) -> None:
        self.report_signals([(account_id, name, at or self._now)])

    def report_signals(self, reports: Sequence[tuple[str, str, datetime]]) -> SignalBatchResult:
        body = {"signals": [{"account": a, "name": n, "at": iso(at)} for a, n, at in reports]}
        result = self._call("POST", "/v1/signals", json=body)
        return SignalBatchResult(
            received=result["received"], written=result["written"], woken=result["woken"]
        )

    def set_fact(
        self, account_id: str, name: str, value: FactValue | None, at: datetime | None = None
    ) -> None:
        self.set_facts(account_id, {name: value}, at=at)

    def set_facts(
        self,
        account_id: str,
        facts: Mapping[str, FactValue | None],
        at: datetime | None = None,
    ) -> None:
        body = {k: iso(v) if isinstance(v, datetime) else v for k, v in facts.items()}
        params = {"at": iso(at)} if at is not None else {}
        self._call("PATCH", f"/v1/accounts/{_seg(account_id)}/facts", json=body, params=params)

    def event(
        self,
        account_id: str,
        name: str,
        *,
        at: datetime | None = None,
        event_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Report an event; False if its id was already applied. Without an id, a fresh one."""
        item: dict[str, Any] = {
            "id": event_id or f"no-id-{uuid.uuid4().hex}",
            "account": account_id,
            "name": name,
        }
        if at is not None:
            item["at"] = iso(at)
        if reason is not None:
            item["reason"] = reason
        result = self._call("POST", "/v1/events", json={"events": [item]})
        return bool(result["results"][0]["status"] == "applied")

    # --- administrators ---------------------------------------------------------------------

    def _act(self, account_id: str, action: str, by: str, body: dict[str, Any]) -> None:
        path = f"/v1/accounts/{_seg(account_id)}/actions/{action}"
        self._call("POST", path, by=by, json={k: v for k, v in body.items() if v is not None})

    def reactivate(
        self,
        account_id: str,
        *,
        by: str,
        reason: str,
        case_id: str | None = None,
        snooze_until: datetime | None = None,
    ) -> None:
        until = iso(snooze_until) if snooze_until is not None else None
        body = {"reason": reason, "case": case_id, "snooze_until": until}
        self._act(account_id, "reactivate", by, body)

    def extend(
        self,
        account_id: str,
        *,
        case_id: str,
        by: str,
        reason: str,
        duration: Duration | str | None = None,
        until: datetime | None = None,
    ) -> None:
        body = {
            "reason": reason,
            "case": case_id,
            "duration": str(duration) if duration is not None else None,
            "until": iso(until) if until is not None else None,
        }
        self._act(account_id, "extend", by, body)

    def legal_hold(self, account_id: str, *, on: bool, by: str, reason: str) -> None:
        self._act(account_id, "legal-hold" if on else "release-hold", by, {"reason": reason})

    def lock(self, account_id: str, *, by: str, reason: str, flow: str | None = None) -> str:
        self._act(account_id, "lock", by, {"reason": reason, "flow": flow})
        return flow or self._opened_by_hand(account_id)

    def suspend(self, account_id: str, *, by: str, reason: str, flow: str | None = None) -> str:
        self._act(account_id, "suspend", by, {"reason": reason, "flow": flow})
        return flow or self._opened_by_hand(account_id)

    def open_case(self, account_id: str, *, flow: str, by: str, reason: str | None = None) -> None:
        irreversible = self.policy.flows[flow].irreversible
        action = self.suspend if irreversible else self.lock
        action(account_id, by=by, reason=reason or "opened by hand", flow=flow)

    def _opened_by_hand(self, account_id: str) -> str:
        opened = [c for c in self.status(account_id).cases if c.opened_by.startswith("admin:")]
        return max(opened, key=lambda c: c.started_at).flow

    # --- time ---------------------------------------------------------------------------------

    def run_due(self) -> RunReport:
        """Process what is due now (a catch-up move to now)."""
        return self._move({"to": iso(self._now), "catch_up": True})

    def run_until(self, moment: datetime | Duration | str) -> RunReport:
        """Move the server's clock to `moment` (or by a duration), stopping at every due time
        on the way: the server runs `Engine.run_until` itself. A moment already past only
        runs what is due, as in-process."""
        if isinstance(moment, Duration | str):
            return self._move({"advance": str(moment)})
        return self._move({"to": iso(max(moment, self._now))})

    # --- answers ------------------------------------------------------------------------------

    def check(self, account_id: str, action: str) -> Decision:
        d = self._call("GET", f"/v1/accounts/{_seg(account_id)}/check", params={"action": action})
        return _decision(d)

    def check_many(self, pairs: Sequence[tuple[str, str]]) -> list[Decision]:
        body = {"checks": [{"account": a, "action": x} for a, x in pairs]}
        return [_decision(d) for d in self._call("POST", "/v1/check", json=body)["results"]]

    def status(self, account_id: str) -> Status:
        s = self._call("GET", f"/v1/accounts/{_seg(account_id)}/status")
        return Status(
            account_id=s["account"],
            as_of=dt(s["as_of"]),
            state=s["state"],
            kind=s["kind"],
            cases=tuple(_case(c) for c in s["cases"]),
            denied=tuple(s["denied"]),
            banner=s["banner"],
            legal_hold=_hold(s["legal_hold"]),
            next_due_at=opt_dt(s["next_due_at"]),
            deleted_at=opt_dt(s["deleted_at"]),
        )

    def timeline(self, account_id: str) -> Timeline:
        t = self._call("GET", f"/v1/accounts/{_seg(account_id)}/timeline")
        return Timeline(
            account_id=t["account"],
            as_of=dt(t["as_of"]),
            events=tuple(_event(e) for e in t["projected"]),
            flows=tuple(_outlook(f) for f in t["flows"]),
            truncated=t["truncated"],
            past=tuple(_event(e) for e in t["past"]),
        )


# --- JSON -> core values -----------------------------------------------------------------------


def _seg(text: str) -> str:
    """One URL path segment."""
    return quote(text, safe="")


def _problem(method: str, path: str, response: httpx.Response) -> Exception:
    """The engine's exception for a problem document (an AssertionError for anything else)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = str(body.get("type", "")).rpartition("/")[2]
    error = ERRORS.get(code)
    if error is None:
        return AssertionError(f"{method} {path}: {response.status_code} {response.text}")
    return error(body["detail"])


def _hold(h: dict[str, Any] | None) -> LegalHold | None:
    return None if h is None else LegalHold(since=dt(h["since"]), by=h["by"], reason=h["reason"])


def _decision(d: dict[str, Any]) -> Decision:
    return Decision(
        action=d["action"],
        allowed=d["allowed"],
        denials=tuple(
            Denial(
                case_id=x["case"],
                flow=x["flow"],
                phase=x["phase"],
                reason=x["reason"],
                message=x["message"],
                until=opt_dt(x["until"]),
            )
            for x in d["denials"]
        ),
        message=d["message"],
        until=opt_dt(d["until"]),
    )


def _case(c: dict[str, Any]) -> CaseStatus:
    return CaseStatus(
        id=c["id"],
        flow=c["flow"],
        title=c["title"],
        phase=c["phase"],
        phase_number=c["phase_number"],
        phase_count=c["phase_count"],
        state=c["state"],
        reason=c["reason"],
        opened_by=c["opened_by"],
        started_at=dt(c["started_at"]),
        phase_started_at=dt(c["phase_started_at"]),
        deadline=opt_dt(c["deadline"]),
        planned_deadline=opt_dt(c["planned_deadline"]),
        time_left=c["time_left"],
        adjustments=tuple(
            Adjustment(
                kind=a["kind"],
                at=dt(a["at"]),
                delta=timedelta(seconds=a["seconds"]),
                phase=a["phase"],
                detail=a["detail"],
            )
            for a in c["adjustments"]
        ),
        denied=tuple(c["denied"]),
        banner=c["banner"],
        waiting=tuple(c["waiting"]),
        notices=tuple(
            NoticeRecord(
                key=n["key"],
                phase=n["phase"],
                template=n["template"],
                to=n["to"],
                recipients=tuple(n["recipients"]),
                via=tuple(n["via"]),
                due_at=dt(n["due_at"]),
                created_at=dt(n["created_at"]),
                dispatched_at=opt_dt(n["dispatched_at"]),
            )
            for n in c["notices"]
        ),
        outcome=c["outcome"],
        destruct=c["destruct"],
        irreversible=c["irreversible"],
        policy_version=c["policy_version"],
    )


def _event(e: dict[str, Any]) -> TimelineEvent:
    return TimelineEvent(
        at=dt(e["at"]),
        kind=e["kind"],
        flow=e["flow"],
        case_id=e["case"],
        phase=e["phase"],
        text=e["text"],
    )


def _explanation(e: dict[str, Any]) -> Explanation:
    return Explanation(
        text=e["text"],
        holds=e["holds"],
        since=opt_dt(e["since"]),
        holds_at=opt_dt(e["holds_at"]),
        parts=tuple(_explanation(p) for p in e["parts"]),
    )


def _outlook(f: dict[str, Any]) -> FlowOutlook:
    return FlowOutlook(
        flow=f["flow"],
        title=f["title"],
        applies=f["applies"],
        open_case=f["open_case"],
        starts_on=tuple(f["starts_on"]),
        start=_explanation(f["start"]) if f["start"] is not None else None,
        armed_from=opt_dt(f["armed_from"]),
    )
