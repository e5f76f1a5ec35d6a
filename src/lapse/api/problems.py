"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

One table maps each `LapseError` subclass to an HTTP status; one handler turns any of them into
`{type, title, status, detail}`, where `type` is `https://lapse.dev/problems/<code>` and `detail`
is the error's own message (which says what was wrong and where). Request validation errors add
an `errors` list with the JSON path of each offending value (`body.signals[3].at`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lapse.errors import (
    AccountDeleted,
    AccountExists,
    AddressRetired,
    CaseNotFound,
    ConfigError,
    Conflict,
    DeliveryError,
    InvalidInput,
    IrreversibleCase,
    LapseError,
    NotFound,
    PolicyError,
    TooLarge,
    UnknownAccount,
    UnknownAction,
)
from lapse.store.base import StaleWrite, StoreError

log = structlog.get_logger("lapse.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://lapse.dev/problems/"


class Unauthorized(LapseError):
    """No valid bearer token was presented."""

    code = "unauthorized"


class Forbidden(LapseError):
    """The token is valid but lacks the scope the endpoint needs."""

    code = "forbidden"


class RequestInvalid(LapseError):
    """The request does not have the shape the endpoint documents; `errors` lists every spot."""

    code = "invalid-request"

    def __init__(self, message: str, errors: Sequence[Mapping[str, str]] = ()) -> None:
        super().__init__(message)
        self.errors = [dict(e) for e in errors]


#: most specific first is not needed: the handler walks the exception's MRO
STATUS: Mapping[type[LapseError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    UnknownAccount: 404,
    CaseNotFound: 404,
    NotFound: 404,
    AccountDeleted: 410,
    AccountExists: 409,
    AddressRetired: 409,
    Conflict: 409,
    IrreversibleCase: 409,
    StaleWrite: 409,
    TooLarge: 413,
    InvalidInput: 422,
    UnknownAction: 422,
    PolicyError: 422,
    RequestInvalid: 422,
    ConfigError: 500,
    DeliveryError: 502,
    StoreError: 503,
}

#: titles that read better than the code spelled out
TITLES: Mapping[str, str] = {
    "invalid-request": "Invalid request",
    "invalid-policy": "Invalid policy",
    "invalid-config": "Invalid configuration",
    "irreversible": "Irreversible case",
    "too-large": "Request too large",
    "delivery-failed": "Delivery failed",
    "store-error": "Database unavailable",
    "stale-write": "Concurrent change",
}


def status_of(exc: LapseError) -> int:
    """The HTTP status for a lapse error (400 for a subclass the table does not know)."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 400


def title_of(code: str) -> str:
    """'unknown-account' -> 'Unknown account'."""
    return TITLES.get(code) or code.replace("-", " ").capitalize()


def problem(
    status: int,
    code: str | None,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response; `code` None means a plain HTTP problem (`about:blank`)."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + code if code else "about:blank",
        "title": title or (title_of(code) if code else "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return Response(
        json.dumps(body, ensure_ascii=False, default=str),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def error_response(exc: LapseError, **extra: Any) -> Response:
    """The problem response for a lapse error."""
    status = status_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="lapse"'} if status == 401 else None
    errors = getattr(exc, "errors", None)
    if isinstance(exc, PolicyError):
        # a policy document sent in a body: each problem with its line and column
        errors = [
            {
                "path": p.path,
                "message": p.message,
                "type": p.code,
                "line": p.line,
                "column": p.column,
            }
            for p in exc.problems
        ]
    if errors:
        extra.setdefault("errors", errors)
    return problem(status, exc.code, str(exc), headers=headers, **extra)


def json_path(loc: Sequence[int | str]) -> str:
    """('body', 'signals', 3, 'at') -> 'body.signals[3].at'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: Mapping[str, Any]) -> str:
    """Pydantic's message, made specific for the mistakes people make with timestamps."""
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "timezone_aware":
        return (
            f"timestamp {value!s} has no time zone; add Z or an offset such as +02:00 "
            "(e.g. 2025-01-31T09:00:00Z)"
        )
    if kind.startswith(("datetime_", "date_")) and isinstance(value, str):
        return f"{value!r} is not an ISO 8601 timestamp (e.g. 2025-01-31T09:00:00Z)"
    if kind == "json_invalid":
        return f"the body is not valid JSON: {error.get('ctx', {}).get('error', 'parse error')}"
    if kind == "missing" and error["loc"] == ("body",):
        return "the request needs a JSON body"
    return str(error.get("msg", "invalid value"))


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> Response:
    """422 with every validation error and its JSON path."""
    items = [
        {"path": json_path(e.get("loc", ())), "message": _message(e), "type": e.get("type", "")}
        for e in errors
    ]
    first = items[0] if items else {"path": "body", "message": "invalid request"}
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return problem(
        422,
        RequestInvalid.code,
        f"{first['path']}: {first['message']}{more}",
        errors=items,
    )


def install(app: FastAPI) -> None:
    """Register the problem handlers on the app."""

    async def on_lapse_error(request: Request, exc: Exception) -> Response:
        """Any LapseError: its status from the table, its message as the detail."""
        assert isinstance(exc, LapseError)
        if status_of(exc) >= 500:
            log.error("request failed", path=request.url.path, error=str(exc), code=exc.code)
        return error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        """A request that does not have the documented shape."""
        assert isinstance(exc, RequestValidationError)
        return validation_problem(list(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> Response:
        """Routing errors (no such route, method not allowed) as plain HTTP problems."""
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}; see /openapi.json"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /openapi.json"
        else:
            detail = str(exc.detail)
        title = _PHRASES.get(exc.status_code, "Error")
        return problem(exc.status_code, None, detail, title=title, headers=exc.headers)

    async def on_crash(request: Request, exc: Exception) -> Response:
        """A bug: logged with its traceback, answered without details."""
        log.exception("unhandled error", path=request.url.path)
        return problem(
            500, "internal-error", "an unexpected error occurred; it was logged on the server"
        )

    app.add_exception_handler(LapseError, on_lapse_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


_PHRASES = {404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, before reading them.

    A declared Content-Length over the limit is refused at once. A chunked body is counted while
    it arrives and refused as soon as it passes the limit, so a client cannot make the server
    buffer more than the limit either way.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await self._refuse(send, 413, self._message(f"{int(declared)} bytes"))
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b""):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                await self._refuse(send, 413, self._message(f"more than {self.max_bytes} bytes"))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            """The buffered body once, then whatever the client sends next (a disconnect)."""
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _message(self, size: str) -> str:
        return (
            f"the request body ({size}) exceeds the limit of {self.max_bytes} bytes "
            "(LAPSE_MAX_BODY_BYTES); send smaller batches"
        )

    async def _refuse(self, send: Send, status: int, detail: str) -> None:
        code = TooLarge.code if status == 413 else RequestInvalid.code
        response = problem(status, code, detail, headers={"Connection": "close"})
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})
