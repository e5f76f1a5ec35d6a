"""Dependencies the routes declare: the wired services, the engine, the store, the settings,
and the bearer token with a scope. Routes take them as `Annotated` aliases."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable, Sized
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from lapse.api.problems import Forbidden, Unauthorized
from lapse.errors import InvalidInput, LapseError, TooLarge
from lapse.policy.durations import Duration, DurationSyntaxError
from lapse.runtime.bootstrap import Services
from lapse.runtime.engine import Engine
from lapse.runtime.settings import Settings
from lapse.store.base import Store, TokenInfo

log = structlog.get_logger("lapse.api")

#: what each scope lets a token do; `admin` includes the other two
SCOPES = {
    "read": "GET endpoints and capability checks",
    "write": "reports: accounts, members, signals, facts, events",
    "admin": "admin actions, outbox retries, tokens, the controlled clock; includes read and write",
}

bearer = HTTPBearer(
    auto_error=False,
    description="An API token, `Bearer lapse_...`; create one with `lapse token create`.",
)


async def get_services(request: Request) -> Services:
    """The services the app was created with."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

# the dependencies are `async def` although they do not await: FastAPI runs a plain `def`
# dependency in the thread pool, a hop that costs more than these functions themselves


async def get_engine(services: ServicesDep) -> Engine:
    """The engine (switched first to a policy another process applied, checked at most every
    second: an API without its own scheduler follows `lapse policy apply` too)."""
    engine = services.engine
    if engine.policy_versions.stale():
        try:
            await run_in_threadpool(engine.refresh_policy)
        except LapseError as exc:  # e.g. its templates are missing here: keep the old one
            log.error("cannot switch to the active policy", error=str(exc))
    return engine


async def get_store(services: ServicesDep) -> Store:
    """The store (for plain listings: tokens, outbox, audit, notifications)."""
    return services.store


async def get_settings(services: ServicesDep) -> Settings:
    """The settings the process runs with."""
    return services.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class TokenCache:
    """Tokens verified in the last `ttl` seconds, so a busy client costs no query per request.

    A token revoked through this process is forgotten at once; one revoked elsewhere (another
    API process, `lapse token revoke`) stops working here within `ttl` seconds.
    """

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[TokenInfo, float]] = {}

    def get(self, secret: str) -> TokenInfo | None:
        """The cached token for this secret, if verified less than `ttl` seconds ago."""
        entry = self._entries.get(secret)
        if entry is None or time.monotonic() >= entry[1]:
            return None
        return entry[0]

    def put(self, secret: str, token: TokenInfo) -> None:
        """Remember a verified token."""
        if len(self._entries) > 10_000:  # bounded: stale entries are dropped wholesale
            self._entries.clear()
        self._entries[secret] = (token, time.monotonic() + self.ttl)

    def forget(self, token_id: str) -> None:
        """Drop a revoked token."""
        for secret, (token, _) in list(self._entries.items()):
            if token.id == token_id:
                del self._entries[secret]


def has_scope(token: TokenInfo, scope: str) -> bool:
    """True if the token grants `scope` (`admin` grants everything)."""
    return scope in token.scopes or "admin" in token.scopes


def require(scope: str) -> Callable[[Request, Credentials], Awaitable[TokenInfo]]:
    """A dependency that returns the request's token if it is valid and grants `scope`."""

    async def dependency(request: Request, credentials: Credentials) -> TokenInfo:
        """The verified token (cached a few seconds), or 401/403."""
        if credentials is None:
            raise Unauthorized("this endpoint needs an `Authorization: Bearer <token>` header")
        secret = credentials.credentials
        cache: TokenCache = request.app.state.tokens
        token = cache.get(secret)
        if token is None:
            services: Services = request.app.state.services
            token = await run_in_threadpool(
                services.store.verify_token, secret, services.clock.now()
            )
            if token is None:
                raise Unauthorized("the bearer token is unknown or revoked")
            cache.put(secret, token)
        if not has_scope(token, scope):
            raise Forbidden(
                f"token {token.name!r} lacks the {scope!r} scope this endpoint needs "
                f"(it has: {', '.join(token.scopes) or 'none'})"
            )
        return token

    dependency.__name__ = f"require_{scope}"
    return dependency


async def metrics_access(request: Request, credentials: Credentials) -> None:
    """With LAPSE_METRICS_TOKEN set, `/metrics` needs it as the bearer token (401 otherwise);
    unset, it is open (settings allow that in production only on a loopback address)."""
    services: Services = request.app.state.services
    expected = services.settings.metrics_token
    if expected is None:
        return
    if credentials is None:
        raise Unauthorized("/metrics needs an `Authorization: Bearer <LAPSE_METRICS_TOKEN>` header")
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Unauthorized("the bearer token is not this server's LAPSE_METRICS_TOKEN")


ReadToken = Annotated[TokenInfo, Depends(require("read"))]
WriteToken = Annotated[TokenInfo, Depends(require("write"))]
AdminToken = Annotated[TokenInfo, Depends(require("admin"))]


def check_batch(name: str, items: Sized, settings: Settings) -> None:
    """Refuse a batch longer than LAPSE_MAX_BATCH (413, with the limit in the message)."""
    if len(items) > settings.max_batch:
        raise TooLarge(
            f"{name}: {len(items)} items; at most {settings.max_batch} per request "
            "(LAPSE_MAX_BATCH): split the batch"
        )


def encode_cursor(value: str | int) -> str:
    """An opaque cursor for the next page."""
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The value inside a cursor this API returned; InvalidInput otherwise."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = None
    if value is None or encode_cursor(value) != cursor:
        raise InvalidInput(f"cursor {cursor!r} is not a cursor this API returned")
    return value


def decode_int_cursor(cursor: str | None) -> int | None:
    """A numeric cursor (outbox ids, audit sequence numbers)."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidInput(f"cursor {cursor!r} is not a cursor this API returned")
    return int(value)


def parse_duration(text: str, where: str) -> Duration:
    """A duration such as '14 days'; InvalidInput naming the field otherwise."""
    try:
        return Duration.parse(text)
    except DurationSyntaxError as exc:
        raise InvalidInput(f"{where}: {exc}") from None
