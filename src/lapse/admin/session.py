"""Admin UI sessions: signed cookies, CSRF tokens and one-shot flash messages.

A session cookie holds the API token's id (never its secret), a random session id and an expiry,
as base64url JSON followed by an HMAC-SHA256 of it under LAPSE_ADMIN_SESSION_KEY. Each signature
is bound to a purpose, so a flash cookie can never pass for a session. Every request looks the
token up again (lapse.admin.views), so a revoked token ends its sessions at once and the scopes
are always the stored ones. A session's CSRF token is an HMAC of its session id: every form that
acts carries it and every POST checks it.

Expiry is measured on the real clock, not lapse's: a manual or accelerated clock moving months
ahead must not log staff out (nor keep them in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SESSION_COOKIE = "lapse_admin"
FLASH_COOKIE = "lapse_admin_flash"
FLASH_SECONDS = 60  # a flash message is shown by the next page, or never


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 signatures bound to a purpose ("session", "flash", "csrf")."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, data: bytes) -> str:
        """The signature of `data` for `purpose`."""
        return _b64(hmac.new(self._key, purpose.encode() + b"\x1f" + data, hashlib.sha256).digest())

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        """`payload` as a cookie value: base64url JSON, a dot, its signature."""
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self.mac(purpose, body.encode())}"

    def unsign(self, purpose: str, value: str) -> dict[str, Any] | None:
        """The payload of a value `sign` made for `purpose`; None if forged or malformed."""
        body, dot, signature = value.partition(".")
        if not dot or not hmac.compare_digest(signature, self.mac(purpose, body.encode())):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (binascii.Error, ValueError):
            return None
        return payload if isinstance(payload, dict) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A signed-in member of staff: which API token they signed in with, until when."""

    token_id: str
    sid: str  # random, names this session (its CSRF token derives from it)
    expires: float  # real time, seconds since the epoch


class Sessions:
    """Issues and reads session cookies, CSRF tokens and flash messages."""

    def __init__(self, key: bytes, *, seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.signer = Signer(key)
        self.seconds = seconds
        self.clock = clock

    def issue(self, token_id: str) -> tuple[Session, str]:
        """A new session for the token, and its cookie value."""
        session = Session(
            token_id=token_id, sid=secrets.token_urlsafe(16), expires=self.clock() + self.seconds
        )
        value = self.signer.sign(
            "session", {"tid": session.token_id, "sid": session.sid, "exp": session.expires}
        )
        return session, value

    def read(self, value: str | None) -> Session | None:
        """The session in a cookie value; None if absent, forged, malformed or expired."""
        payload = self.signer.unsign("session", value) if value else None
        if payload is None:
            return None
        token_id, sid, expires = payload.get("tid"), payload.get("sid"), payload.get("exp")
        if not (isinstance(token_id, str) and isinstance(sid, str)):
            return None
        if not isinstance(expires, int | float) or expires <= self.clock():
            return None
        return Session(token_id=token_id, sid=sid, expires=float(expires))

    def csrf(self, session: Session) -> str:
        """The CSRF token the session's forms carry."""
        return self.signer.mac("csrf", session.sid.encode())

    def csrf_ok(self, session: Session, value: object) -> bool:
        """True if `value` is the session's CSRF token."""
        return isinstance(value, str) and hmac.compare_digest(value, self.csrf(session))

    def flash(self, kind: str, text: str) -> str:
        """A cookie value carrying a message for the next page ("ok" or "error")."""
        return self.signer.sign(
            "flash", {"kind": kind, "text": text, "exp": self.clock() + FLASH_SECONDS}
        )

    def read_flash(self, value: str | None) -> tuple[str, str] | None:
        """(kind, text) of a flash cookie value; None if absent, forged or stale."""
        payload = self.signer.unsign("flash", value) if value else None
        if payload is None:
            return None
        kind, text, expires = payload.get("kind"), payload.get("text"), payload.get("exp")
        if not (isinstance(kind, str) and isinstance(text, str)):
            return None
        if not isinstance(expires, int | float) or expires <= self.clock():
            return None
        return kind, text
