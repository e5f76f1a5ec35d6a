"""LAPSE_METRICS_TOKEN: optional anywhere, required in production off loopback."""

from __future__ import annotations

import pytest

from lapse.errors import ConfigError
from lapse.runtime.settings import load_settings, loopback

PRODUCTION = {"env": "production", "smtp_host": "smtp.example", "admin_session_key": "s" * 32}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "localhost"])
def test_production_on_loopback_may_leave_metrics_open(host: str) -> None:
    assert loopback(host)
    assert load_settings(**PRODUCTION, host=host).metrics_token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "lapse.internal"])
def test_production_off_loopback_needs_a_metrics_token(host: str) -> None:
    assert not loopback(host)
    with pytest.raises(ConfigError) as refused:
        load_settings(**PRODUCTION, host=host)
    assert (
        f"LAPSE_METRICS_TOKEN is required in production when LAPSE_HOST ({host}) is not a "
        "loopback address: /metrics would be open to whoever reaches it"
    ) in str(refused.value)
    settings = load_settings(**PRODUCTION, host=host, metrics_token="t" * 16)
    assert settings.metrics_token == "t" * 16


def test_development_off_loopback_may_leave_metrics_open() -> None:
    assert load_settings(host="0.0.0.0").metrics_token is None


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="LAPSE_METRICS_TOKEN: String should have at least 16"):
        load_settings(metrics_token="short")
