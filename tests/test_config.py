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
    monkeypatch.setenv("ACTIONHOOKS_RETRY_MAX_AGE_S", "3600")
    monkeypatch.setenv("ACTIONHOOKS_SHUTDOWN_TIMEOUT_S", "5")
    settings = Settings.from_env(db="postgresql://db/x")
    assert settings.db == "postgresql://db/x"
    assert settings.allow_nets == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16"))
    assert settings.limits.max_items == 50
    assert settings.retry.max_age_s == 3600
    assert settings.shutdown_timeout_s == 5


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
    # a ramp of 1, 2, 4, 8 s, then 10 s while failing for under 10 minutes, then a tenth of the time failing (from
    # 60 s, growing by a tenth per wait) up to 5 minutes, until the batch's first try is a day old
    assert schedule[:6] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    short = [w for elapsed, w in _elapsed(schedule) if elapsed < 600]
    assert max(short) == 10.0 and len(short) == 63
    assert schedule[63] == pytest.approx(60.5) and schedule[-1] == 300.0
    assert sum(schedule[:-1]) < policy.max_age_s <= sum(schedule)
    tries = len(schedule) + 1
    assert (tries, len(schedule)) == (359, 358)
    for text in (backoff.__doc__ or "", (DOCS / "delivery.md").read_text()):
        flat = " ".join(text.split())
        assert f"{tries} tries in all, {len(schedule)} waits" in flat


def _elapsed(schedule: list[float]) -> list[tuple[float, float]]:
    """Each wait with the time the batch had been failing when it began."""
    out, elapsed = [], 0.0
    for wait in schedule:
        out.append((elapsed, wait))
        elapsed += wait
    return out


@pytest.mark.parametrize("outage", [5.0, 30.0, 121.0, 599.0, 601.0, 1800.0, 3600.0, 6 * 3600.0])
def test_resumption_delay_is_bounded_by_the_outage(outage: float) -> None:
    """Delivery resumes within 10 s of a destination's recovery after an outage of up to 10 minutes, within a
    tenth of the outage (at most 5 minutes) after a longer one — whatever the jitter draws."""
    policy = RetryPolicy()
    for draw in (0.0, 0.5, 1.0):
        elapsed, failures = 0.0, 0
        while elapsed < outage:  # the destination is down: this try fails
            failures += 1
            elapsed += policy.delay(failures, elapsed, rng=Draw(draw))
        bound = 10.0 if outage <= 600 else min(0.1 * outage, 300.0)
        assert elapsed - outage <= bound, (outage, draw)


def test_jitter_draws_between_half_and_all_of_the_nominal_wait() -> None:
    policy = RetryPolicy()
    assert policy.delay(3, 0.0, rng=Draw(0.0)) == 2.0 and policy.delay(3, 0.0, rng=Draw(1.0)) == 4.0


class Draw(random.Random):
    """A random source that always draws ``value``: the ends of the jitter range."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_retry_after_is_honoured_up_to_the_longest_back_off() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, 0.0, retry_after=120.0) >= 120.0
    assert policy.delay(1, 0.0, retry_after=10**9) == policy.max_delay_s
