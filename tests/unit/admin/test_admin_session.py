"""Admin UI sessions: signatures bound to a purpose, expiry on the real clock, CSRF tokens, flash
messages; and the settings that give the key (required in production)."""

from __future__ import annotations

import pytest

from lapse.admin.session import Sessions, Signer
from lapse.errors import ConfigError
from lapse.runtime.settings import load_settings

KEY = b"k" * 32


class FakeTime:
    """Seconds since the epoch, moved by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_signatures_are_bound_to_their_key_and_purpose() -> None:
    signer = Signer(KEY)
    value = signer.sign("session", {"a": 1})
    assert signer.unsign("session", value) == {"a": 1}
    assert signer.unsign("flash", value) is None  # a flash cookie is never a session
    assert Signer(b"other" * 8).unsign("session", value) is None
    body, _, signature = value.partition(".")
    assert signer.unsign("session", body) is None
    assert signer.unsign("session", f"{body}.{signature[:-1]}A") is None
    assert signer.unsign("session", "bm90IGpzb24." + signer.mac("session", b"bm90IGpzb24")) is None
    array = "WzFd"  # base64url of [1]: signed, but not an object
    assert signer.unsign("session", f"{array}.{signer.mac('session', array.encode())}") is None


def test_a_session_names_its_token_and_expires_on_the_real_clock() -> None:
    clock = FakeTime()
    sessions = Sessions(KEY, seconds=3600, clock=clock)
    session, cookie = sessions.issue("tok_1")
    assert session.token_id == "tok_1"
    assert session.expires == clock.now + 3600
    assert cookie.count(".") == 1  # base64url JSON, then its signature
    assert sessions.read(cookie) == session
    clock.now += 3599
    assert sessions.read(cookie) == session
    clock.now += 1
    assert sessions.read(cookie) is None
    assert sessions.read(None) is None
    assert sessions.read("") is None
    assert sessions.read("garbage") is None
    other, _ = sessions.issue("tok_1")
    assert other.sid != session.sid  # every sign-in is its own session


def test_csrf_tokens_belong_to_one_session() -> None:
    sessions = Sessions(KEY, seconds=60)
    one, _ = sessions.issue("tok_1")
    two, _ = sessions.issue("tok_1")
    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(one, sessions.csrf(two))
    assert not sessions.csrf_ok(one, "")
    assert not sessions.csrf_ok(one, None)
    assert not Sessions(b"x" * 32, seconds=60).csrf_ok(one, sessions.csrf(one))


def test_flash_messages_are_signed_and_short_lived() -> None:
    clock = FakeTime()
    sessions = Sessions(KEY, seconds=60, clock=clock)
    value = sessions.flash("ok", "Legal hold placed.")
    assert sessions.read_flash(value) == ("ok", "Legal hold placed.")
    _, session_cookie = sessions.issue("tok_1")
    assert sessions.read_flash(session_cookie) is None
    assert sessions.read(value) is None
    clock.now += 61
    assert sessions.read_flash(value) is None
    assert sessions.read_flash(None) is None


def test_the_session_key_is_required_in_production_and_long_enough() -> None:
    production = {"env": "production", "smtp_host": "smtp.example"}
    with pytest.raises(ConfigError, match="LAPSE_ADMIN_SESSION_KEY is required in production"):
        load_settings(**production)
    assert load_settings(**production, admin_session_key="s" * 32).admin_session_key == "s" * 32
    with pytest.raises(ConfigError, match="LAPSE_ADMIN_SESSION_KEY: String should have at least"):
        load_settings(admin_session_key="short")
    assert load_settings().admin_session_key is None  # development: random per process
    assert load_settings().admin_session_seconds == 8 * 3600
    with pytest.raises(ConfigError, match="LAPSE_ADMIN_SESSION_SECONDS"):
        load_settings(admin_session_seconds=10)
