"""Settings from the environment: defaults, overrides, and loud failures naming the variable."""

from __future__ import annotations

import ipaddress

import pytest

from actionhooks.backoff import RetryPolicy
from actionhooks.config import Settings
from actionhooks.errors import ConfigError


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ACTIONHOOKS_DB",
        "ACTIONHOOKS_ALLOW_NETS",
        "ACTIONHOOKS_MAX_ITEMS",
        "ACTIONHOOKS_SECRET_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.db == "sqlite:///actionhooks.db"
    assert settings.allow_nets == ()
    assert settings.limits.max_items == 10_000
    assert settings.secret_key is None


def test_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONHOOKS_ALLOW_NETS", "127.0.0.0/8, 10.1.0.0/16")
    monkeypatch.setenv("ACTIONHOOKS_MAX_ITEMS", "50")
    monkeypatch.setenv("ACTIONHOOKS_RETRY_MAX_ATTEMPTS", "4")
    settings = Settings.from_env(db="postgresql://db/x")
    assert settings.db == "postgresql://db/x"
    assert settings.allow_nets == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16"))
    assert settings.limits.max_items == 50
    assert settings.retry.max_attempts == 4


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ACTIONHOOKS_MAX_ITEMS", "many", "ACTIONHOOKS_MAX_ITEMS must be an integer"),
        ("ACTIONHOOKS_MAX_ITEMS", "0", "ACTIONHOOKS_MAX_ITEMS must be at least 1"),
        ("ACTIONHOOKS_RETRY_INITIAL_S", "soon", "ACTIONHOOKS_RETRY_INITIAL_S must be a number"),
        ("ACTIONHOOKS_ALLOW_NETS", "10.0.0.0/33", "is not a CIDR network"),
    ],
)
def test_bad_values_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env()


def test_default_retry_schedule_spans_about_a_day() -> None:
    policy = RetryPolicy()
    total = sum(policy.schedule())
    assert 20 * 3600 <= total <= 26 * 3600
    assert policy.schedule()[:3] == [5.0, 10.0, 20.0]
    assert max(policy.schedule()) == 3600.0
    assert policy.delay(1, retry_after=120.0) >= 120.0
    assert policy.delay(1, retry_after=10**9) == policy.max_delay_s
