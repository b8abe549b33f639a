"""Settings from the environment: defaults, overrides, and loud failures naming the variable."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from actionhooks import backoff
from actionhooks.backoff import RetryPolicy
from actionhooks.config import Settings
from actionhooks.errors import ConfigError

DOCS = Path(__file__).parent.parent / "docs"


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


def test_default_retry_schedule_is_the_documented_one() -> None:
    policy = RetryPolicy()
    schedule = policy.schedule()
    # 29 waits: 5 s doubling ten times (5 s … 2560 s, all under the cap), then the 1 h cap for the other 19
    assert schedule == [5.0 * 2**k for k in range(10)] + [3600.0] * 19
    nominal = sum(schedule)
    assert nominal == 5 * (2**10 - 1) + 19 * 3600 == 73_515
    with_jitter = nominal * 0.75  # each wait drawn uniformly between half and all of it
    for text in (backoff.__doc__ or "", (DOCS / "delivery.md").read_text()):
        flat = " ".join(text.split())
        assert "29 waits of 73 515 s" in flat
        assert f"about {nominal / 3600:.1f} hours" in flat
        assert f"about {with_jitter / 3600:.1f} hours" in flat


def test_jitter_draws_between_half_and_all_of_the_nominal_wait() -> None:
    policy = RetryPolicy()
    assert policy.delay(3, rng=Draw(0.0)) == 10.0 and policy.delay(3, rng=Draw(1.0)) == 20.0


class Draw(random.Random):
    """A random source that always draws ``value``: the ends of the jitter range."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_retry_after_is_honoured_up_to_the_longest_back_off() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, retry_after=120.0) >= 120.0
    assert policy.delay(1, retry_after=10**9) == policy.max_delay_s
