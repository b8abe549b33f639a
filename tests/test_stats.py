"""``GET /v1/hooks/{id}/stats``: counts over the last minute, hour and day, lag, last success and error, state."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from actionhooks.errors import DeliveryError

from .support import Service, User, eventually
from .test_metrics import event, send, stub_hook
from .test_openapi import conforms


async def stats(service: Service, user: User, hook_id: int) -> dict[str, Any]:
    status, answer, _ = await service.call("GET", f"/v1/hooks/{hook_id}/stats", user)
    assert status == 200, answer
    conforms("HookStats", answer)
    result: dict[str, Any] = answer
    return result


async def test_a_caught_up_hook_shows_what_it_delivered(service: Service, owner: User) -> None:
    _, hook = await stub_hook(service, owner)
    fresh = await stats(service, owner, hook)
    assert fresh["state"] == "caught_up" and fresh["last_success_at"] is None
    assert fresh["delivered"] == {"minute": 0, "hour": 0, "day": 0}
    started = time.time()
    await send(service, owner, [event()] * 7 + [event("open")])
    await service.dispatcher.caught_up(hook)
    answer = await stats(service, owner, hook)
    assert answer["hook_id"] == hook and answer["state"] == "caught_up"
    assert answer["delivered"] == {"minute": 7, "hour": 7, "day": 7}
    assert answer["failed"] == answer["dead_lettered"] == {"minute": 0, "hour": 0, "day": 0}
    assert answer["lag_events"] == 0 and answer["lag_seconds"] == 0 and answer["expired_undelivered"] == 0
    success = datetime.fromisoformat(answer["last_success_at"]).timestamp()
    assert started - 1 <= success <= time.time()
    assert answer["last_error"] is None and answer["last_error_at"] is None


async def test_a_failing_hook_is_retrying_with_its_lag_and_error(service: Service, owner: User) -> None:
    dest, hook = await stub_hook(service, owner)
    dest.fail_next(DeliveryError("HTTP 503: busy", status=503), times=10_000)
    await send(service, owner, [event()] * 3)
    await dest.wait_for_calls(2)

    async def retrying() -> dict[str, Any] | None:
        answer = await stats(service, owner, hook)
        return answer if answer["failed"]["minute"] >= 6 else None

    answer = await eventually(retrying)
    assert answer["state"] == "retrying" and answer["delivered"]["day"] == 0
    assert answer["lag_events"] == 3 and answer["lag_seconds"] > 0
    assert answer["last_error"] == "HTTP 503: busy" and answer["last_error_at"] is not None


async def test_dead_letters_are_counted_and_a_stopped_hook_says_so(service: Service, owner: User) -> None:
    dest, hook = await stub_hook(service, owner)
    dest.fail_next(DeliveryError("HTTP 410", status=410, permanent=True))
    await send(service, owner, [event()] * 2)
    await service.dispatcher.caught_up(hook)
    answer = await stats(service, owner, hook)
    assert answer["dead_lettered"] == {"minute": 2, "hour": 2, "day": 2}
    assert answer["failed"]["minute"] == 2 and answer["state"] == "caught_up"
    status, _, _ = await service.call("PATCH", f"/v1/hooks/{hook}", owner, {"active": False})
    assert status == 200
    assert (await stats(service, owner, hook))["state"] == "stopped"


async def test_another_accounts_hook_has_no_stats(service: Service, owner: User, outsider: User) -> None:
    _, hook = await stub_hook(service, owner)
    for user, path in [(outsider, f"/v1/hooks/{hook}/stats"), (owner, "/v1/hooks/999999/stats")]:
        status, answer, _ = await service.call("GET", path, user)
        assert status == 404 and answer == {"error": "no such hook"}
    status, _, _ = await service.call("GET", f"/v1/hooks/{hook}/stats", None)
    assert status == 401
