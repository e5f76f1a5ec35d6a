"""`WebhookConnector`: account data the host deletes and exports itself, asked over signed HTTP.

Every request is a POST of a Standard Webhooks envelope signed like lapse's other webhooks
(`webhook-id`, `webhook-timestamp`, `webhook-signature`; see `lapse.notify.webhooks`):

- `lapse.data.count`  `{account_id, locations: [names]}` -> 200 `{"counts": {name: rows}}`
- `lapse.data.delete` `{account_id, location, deletion, rows}` -> any 2xx once the host removed
  every row of the account there. The `webhook-id` is the same on every retry of one location's
  deletion, so the host can recognise a repeat; deleting what is already gone must succeed.
- `lapse.data.export` `{account_id, location}` -> 200 with NDJSON: a first line
  `{"columns": [...]}`, then one JSON array per row (streamed, in constant memory).

Exactly-once counting without the host keeping counters: the rows are counted before the first
delete request and the count is recorded in the ledger; the receipt shows that count, however
many times the request had to be repeated after failures or crashes. A timeout, a connection
error, a 408/425/429 or a 5xx is retried by the outbox with backoff; any other 4xx is permanent.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from lapse.data.base import ConnectorError, ExportTable, Ledger, Location
from lapse.errors import ConfigError
from lapse.notify.webhooks import WebhookSender, encode_body

COUNT_EVENT = "lapse.data.count"
DELETE_EVENT = "lapse.data.delete"
EXPORT_EVENT = "lapse.data.export"

_RETRY_STATUSES = frozenset({408, 425, 429})


class WebhookConnector:
    """A connector whose host deletes, counts and exports on signed webhook requests."""

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        locations: Sequence[tuple[str, str]] | Sequence[Location],
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        where = f"connector {name!r}"
        if not locations:
            raise ConfigError(f"{where}: no locations registered")
        try:
            self._sender = WebhookSender(url, secret, timeout)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        built: list[Location] = []
        for item in locations:
            if isinstance(item, Location):
                built.append(Location(connector=name, name=item.name, category=item.category))
            else:
                built.append(Location(connector=name, name=item[0], category=item[1]))
        names = [loc.name for loc in built]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{where}: location {dupes[0]!r} is registered twice")
        self.name = name
        self.url = url
        self.timeout = timeout
        self._locations = built
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def locations(self) -> Sequence[Location]:
        """The locations, in the order they were given (the deletion order)."""
        return list(self._locations)

    def check(self) -> None:
        """Nothing to reflect; the host is asked only when there is work (it may be down now)."""

    # --- requests ------------------------------------------------------------------------------

    def _post(self, event: str, data: Mapping[str, object], message_id: str) -> httpx.Response:
        now = datetime.now(UTC)  # receivers reject old timestamps: the attempt's own wall time
        body = encode_body(event, data, now)
        headers = self._sender.headers(message_id, now, body)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise ConnectorError(
                f"connector {self.name!r}: {event} to {self.url}: no answer within "
                f"{self.timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise ConnectorError(
                f"connector {self.name!r}: {event} to {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        self._check(event, response)
        return response

    def _check(self, event: str, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = f"connector {self.name!r}: {event} to {self.url}: HTTP {status}"
        text = response.text.strip()[:200] if not response.is_stream_consumed else ""
        if text:
            detail += f": {text}"
        permanent = 400 <= status < 500 and status not in _RETRY_STATUSES
        raise ConnectorError(detail, permanent=permanent)

    def _json(self, event: str, response: httpx.Response) -> dict[str, Any]:
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ConnectorError(
                f"connector {self.name!r}: {event} to {self.url}: the answer is not a JSON object"
            )
        return document

    # --- the connector contract ---------------------------------------------------------------

    def count(self, account_id: str, locations: Sequence[Location]) -> dict[str, int]:
        """Ask the host how many rows the account has at each location."""
        names = [loc.name for loc in locations]
        if not names:
            return {}
        response = self._post(
            COUNT_EVENT, {"account_id": account_id, "locations": names}, _fresh_id()
        )
        counts = self._json(COUNT_EVENT, response).get("counts")
        out: dict[str, int] = {}
        for name in names:
            value = counts.get(name) if isinstance(counts, dict) else None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConnectorError(
                    f"connector {self.name!r}: {COUNT_EVENT}: the answer has no row count for "
                    f'location {name!r} (expected {{"counts": {{"{name}": <rows>}}}})',
                    permanent=True,
                )
            out[name] = value
        return out

    def delete(self, account_id: str, location: Location, ledger: Ledger) -> None:
        """Count (once), record the count, ask the host to delete, confirm the count."""
        pending = ledger.in_flight
        counted = pending.get("rows") if isinstance(pending, dict) else None
        if isinstance(counted, int):
            rows = counted
        else:
            rows = self.count(account_id, [location])[location.name]
            if rows == 0:
                return
            ledger.step(add=0, in_flight={"rows": rows})
        message_id = (
            "del_"
            + hashlib.sha256(
                f"{ledger.run}\x1f{self.name}\x1f{location.name}".encode()
            ).hexdigest()[:32]
        )
        self._post(
            DELETE_EVENT,
            {
                "account_id": account_id,
                "location": location.name,
                "category": location.category,
                "deletion": ledger.run,
                "rows": rows,
            },
            message_id,
        )
        ledger.step(add=rows, in_flight=None)

    def export(self, account_id: str, locations: Sequence[Location]) -> Iterator[ExportTable]:
        """Each location's rows as the host streams them (NDJSON)."""
        for location in locations:
            stream = self._export_stream(account_id, location)
            columns = next(stream)
            assert isinstance(columns, tuple)
            yield ExportTable(location=location, columns=columns, rows=_rest(stream))

    def _export_stream(self, account_id: str, location: Location) -> Iterator[Any]:
        """First the column names, then each row, read line by line from the response."""
        where = f"connector {self.name!r}: {EXPORT_EVENT} {location.name!r}"
        now = datetime.now(UTC)
        body = encode_body(EXPORT_EVENT, {"account_id": account_id, "location": location.name}, now)
        headers = self._sender.headers(_fresh_id(), now, body)
        try:
            with self._client.stream("POST", self.url, content=body, headers=headers) as response:
                if not 200 <= response.status_code < 300:
                    response.read()
                    self._check(EXPORT_EVENT, response)
                lines = response.iter_lines()
                head = _parse(next(lines, ""), where, 1)
                columns = head.get("columns") if isinstance(head, dict) else None
                if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                    raise ConnectorError(
                        f'{where}: the first line must be {{"columns": [names]}}', permanent=True
                    )
                yield tuple(columns)
                for number, line in enumerate(lines, start=2):
                    if not line.strip():
                        continue
                    row = _parse(line, where, number)
                    if not isinstance(row, list) or len(row) != len(columns):
                        raise ConnectorError(
                            f"{where}: line {number} is not an array of {len(columns)} values"
                        )
                    yield row
        except httpx.HTTPError as exc:
            raise ConnectorError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def _fresh_id() -> str:
    return "msg_" + uuid.uuid4().hex


def _parse(line: str, where: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise ConnectorError(f"{where}: line {number} is not JSON") from None


def _rest(stream: Iterator[Any]) -> Iterator[Sequence[object]]:
    yield from stream
