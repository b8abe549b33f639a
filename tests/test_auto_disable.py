"""Auto-disable and operational events, on both engines, through the running service and real loopback receivers:
a hook failing without a success for the window (seconds here) is stopped with its reason and a ``hook.disabled``
notice; resume clears the reason; ``hook.recovered`` follows the first success after failures;
``hook.dead_lettered`` names the events; a hook never receives operational events about itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from actionhooks.config import Retention
from actionhooks.devtools.receiver import Answer, Receiver
from actionhooks.registry import HookRegistry
from actionhooks.store import Store
from actionhooks.store.base import Attempt

from .support import Service, User, service_settings
from .test_delivery_http import EVENT

SEND = {**EVENT, "event_type": "send"}
WINDOW_S = 1.0


@pytest.fixture
async def service(store: Store, db_url: str) -> AsyncIterator[Service]:
    """The service with a window of a second and background rounds every 50 ms."""
    settings = service_settings(db_url, retention=Retention(interval_s=0.05), disable_after_s=WINDOW_S)
    svc = Service(store, settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def hook(service: Service, user: User, url: str, types: list[str], **more: Any) -> dict[str, Any]:
    body = {
        "name": "h",
        "event_types": types,
        "transport": {"type": "http", "url": url, "timeout_s": 0},
        **more,
    }
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    return dict(created)


def notices(receiver: Receiver, event_type: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events if e["event_type"] == event_type]


async def test_a_hook_failing_for_the_window_is_disabled_with_its_reason_and_a_notice(
    service: Service, owner: User
) -> None:
    async with (
        Receiver(default=Answer(503)) as down,
        Receiver() as fine,
        Receiver() as watcher,
    ):
        failing = await hook(service, owner, down.hook_url, ["deliv"])
        healthy = await hook(service, owner, fine.hook_url, ["deliv"])
        watching = await hook(service, owner, watcher.hook_url, ["hook.disabled"])
        started = time.time()
        for _ in range(
            3
        ):  # keeps failing (503s, dead-lettered after the tests' short retry age) for the window
            assert (await service.call("POST", "/v1/events", owner, EVENT))[0] == 202
        await watcher.wait_for_events(1, timeout=15)
        disabled_after = time.time() - started

        (notice,) = notices(watcher, "hook.disabled")
        data = notice["event_data"]
        assert data["hook_id"] == failing["id"] and data["hook_name"] == "h"
        assert data["failed_attempts"] >= 1 and "503" in data["reason"]
        assert notice["account_id"] == owner.account_id and notice["is_test"] is False

        status, shown, _ = await service.call("GET", f"/v1/hooks/{failing['id']}", owner)
        assert status == 200 and shown["active"] is False
        assert "without a success" in shown["disabled_reason"] and shown["disabled_at"] is not None
        assert disabled_after >= WINDOW_S  # not before the window
        status, stats, _ = await service.call("GET", f"/v1/hooks/{failing['id']}/stats", owner)
        assert stats["state"] == "disabled"
        for other in (healthy, watching):  # delivering hooks are left alone
            status, shown, _ = await service.call("GET", f"/v1/hooks/{other['id']}", owner)
            assert shown["active"] is True and shown["disabled_reason"] is None

        status, resumed, _ = await service.call(
            "POST", f"/v1/hooks/{failing['id']}/resume", owner, {"from": "now"}
        )
        assert status == 200 and resumed["active"] is True
        assert resumed["disabled_reason"] is None and resumed["disabled_at"] is None
        status, stats, _ = await service.call("GET", f"/v1/hooks/{failing['id']}/stats", owner)
        assert stats["state"] != "disabled"


async def test_a_manual_stop_is_stopped_not_disabled(service: Service, owner: User) -> None:
    created = await hook(service, owner, "http://127.0.0.1:9/h", ["deliv"])
    status, stopped, _ = await service.call("PATCH", f"/v1/hooks/{created['id']}", owner, {"active": False})
    assert status == 200 and stopped["disabled_reason"] is None
    status, stats, _ = await service.call("GET", f"/v1/hooks/{created['id']}/stats", owner)
    assert stats["state"] == "stopped"


async def test_the_first_success_after_failures_writes_hook_recovered(service: Service, owner: User) -> None:
    async with Receiver() as flaky, Receiver() as watcher:
        flaky.answer(503, times=2)
        flaky_hook = await hook(service, owner, flaky.hook_url, ["deliv"])
        await hook(service, owner, watcher.hook_url, ["hook.recovered"])
        assert (await service.call("POST", "/v1/events", owner, EVENT))[0] == 202
        await flaky.wait_for_events(1)
        await watcher.wait_for_events(1)
        (notice,) = notices(watcher, "hook.recovered")
        data = notice["event_data"]
        assert data["hook_id"] == flaky_hook["id"]
        assert data["failed_attempts"] == 2 and "503" in data["last_error"]
        assert data["failing_since"] is not None
        assert (await service.call("POST", "/v1/events", owner, EVENT))[0] == 202
        await flaky.wait_for_events(2)
        await service.dispatcher.caught_up(flaky_hook["id"])
        assert len(notices(watcher, "hook.recovered")) == 1  # only the first success after failures


async def test_dead_lettered_events_are_named_in_hook_dead_lettered(service: Service, owner: User) -> None:
    async with Receiver(default=Answer(410)) as gone, Receiver() as watcher:
        gone_hook = await hook(service, owner, gone.hook_url, ["deliv"])
        await hook(service, owner, watcher.hook_url, ["hook.dead_lettered"])
        status, sent, _ = await service.call("POST", "/v1/events", owner, [EVENT, EVENT])
        assert status == 202
        await watcher.wait_for_events(1)
        (notice,) = notices(watcher, "hook.dead_lettered")
        data = notice["event_data"]
        assert data["hook_id"] == gone_hook["id"] and data["events"] == 2
        assert data["event_ids"] == sent["ids"] and "410" in data["reason"]
        assert data["first_seq"] < data["last_seq"]


async def test_a_hook_never_receives_operational_events_about_itself(service: Service, owner: User) -> None:
    """Two hooks, each subscribed to dead-letter notices, each dead-letters its first batch: each receives the
    other's notice, never its own — though the watcher shows both were written."""
    async with Receiver() as first, Receiver() as second, Receiver() as watcher:
        first.answer(410)
        second.answer(410)
        a = await hook(service, owner, first.hook_url, ["deliv", "hook.dead_lettered"])
        b = await hook(service, owner, second.hook_url, ["send", "hook.dead_lettered"])
        await hook(service, owner, watcher.hook_url, ["hook.dead_lettered"])
        assert (await service.call("POST", "/v1/events", owner, [EVENT, SEND]))[0] == 202
        await watcher.wait_for_events(2)
        assert {n["event_data"]["hook_id"] for n in notices(watcher, "hook.dead_lettered")} == {
            a["id"],
            b["id"],
        }
        await first.wait_for_events(1)
        await second.wait_for_events(1)
        for h in (a, b):
            await service.dispatcher.caught_up(h["id"])
        assert [n["event_data"]["hook_id"] for n in notices(first, "hook.dead_lettered")] == [b["id"]]
        assert [n["event_data"]["hook_id"] for n in notices(second, "hook.dead_lettered")] == [a["id"]]


async def test_operational_events_are_subscribed_to_but_never_sent_by_producers(
    service: Service, owner: User
) -> None:
    url = "http://127.0.0.1:9/h"
    body = {"name": "h", "event_types": ["hook.disabled"], "transport": {"type": "http", "url": url}}
    status, answer, _ = await service.call("POST", "/v1/hooks", owner, {**body, "list_id": 5})
    assert status == 422 and answer["field"] == "event_types.0" and "list_id" in answer["error"]
    status, answer, _ = await service.call(
        "POST", "/v1/hooks", owner, {**body, "event_types": ["hook.other"]}
    )
    assert status == 422 and answer["field"] == "event_types.0"
    status, answer, _ = await service.call(
        "POST", "/v1/events", owner, {**EVENT, "event_type": "hook.disabled"}
    )
    assert status == 400  # ingest knows only the catalogue: notices cannot be forged
    status, answer, _ = await service.call("GET", "/v1/event-types", owner)
    assert len(answer["event_types"]) == 80  # the catalogue stays the seed's


async def test_the_test_event_of_an_operational_type_is_an_example_notice(
    service: Service, owner: User
) -> None:
    async with Receiver() as receiver:
        created = await hook(service, owner, receiver.hook_url, ["hook.recovered"])
        status, outcome, _ = await service.call("POST", f"/v1/hooks/{created['id']}/test", owner, {})
        assert status == 200 and outcome["delivered"] is True
        (sent,) = receiver.events
        assert sent["event_type"] == "hook.recovered" and sent["is_test"] is True
        assert sent["event_data"]["hook_id"] == created["id"]


async def test_disabling_is_conditional_on_the_hooks_generation_and_streaks_start_after_success(
    store: Store,
) -> None:
    """The store's side, on both engines: the failure streak counts failed attempts after a moment; a hook edited
    since it was looked at is not disabled; an activation clears the reason."""
    from actionhooks.hooks import parse_hook

    registry = HookRegistry(store)
    await registry.open()
    account = await store.create_account("acme", "k" * 64)
    spec = parse_hook(
        {"name": "h", "event_types": ["deliv"], "transport": {"type": "http", "url": "http://x.test/"}}
    )
    created = await registry.create_hook(account, spec)

    def attempt(at: float, outcome: str) -> Attempt:
        return Attempt(
            hook_id=created.id, at=at, batch_id=f"b{at}", events=1, first_seq=1, last_seq=1, outcome=outcome
        )

    now = time.time()
    await store.finish_batch(attempt(now - 30, "retry"), created.generation, None, last_error="HTTP 503")
    await store.finish_batch(attempt(now - 20, "delivered"), created.generation, None)
    await store.finish_batch(attempt(now - 10, "retry"), created.generation, None, last_error="HTTP 503")
    await store.finish_batch(attempt(now - 5, "failed"), created.generation, None, last_error="HTTP 410")
    (failing,) = await store.failing_hooks()
    assert failing.id == created.id and failing.last_success_at == pytest.approx(now - 20)
    streak = await store.failure_streak(created.id, now - 20)
    assert streak.attempts == 2 and streak.first_at == pytest.approx(now - 10)

    edited = await registry.update_hook(account, created.id, msgspec.structs.replace(spec, name="renamed"))
    assert edited is not None
    assert await registry.disable_hook(created, "stale", now) is None  # its generation moved on
    disabled = await registry.disable_hook(edited, "failing", now)
    assert disabled is not None and not disabled.spec.active
    assert disabled.disabled_reason == "failing" and disabled.disabled_at == pytest.approx(now)
    assert await store.failing_hooks() == []  # stopped hooks are not looked at
    assert await registry.disable_hook(disabled, "again", now) is None  # not active
    resumed = await registry.update_hook(
        account, created.id, msgspec.structs.replace(disabled.spec, active=True), keep_cursor=True
    )
    assert resumed is not None and resumed.disabled_reason is None and resumed.disabled_at is None


async def test_only_the_background_jobs_lease_holder_disables(store: Store) -> None:
    """Two processes' background jobs on one database: the one without the lease stops nothing; the holder stops
    the hook once its streak is as old as the window, and writes one hook.disabled to the account's log."""
    from actionhooks.hooks import parse_hook
    from actionhooks.maintenance import Maintenance

    registry = HookRegistry(store)
    await registry.open()
    account = await store.create_account("acme", "k" * 64)
    spec = parse_hook(
        {"name": "h", "event_types": ["deliv"], "transport": {"type": "http", "url": "http://x.test/"}}
    )
    created = await registry.create_hook(account, spec)
    failed = Attempt(
        hook_id=created.id, at=time.time(), batch_id="b", events=1, first_seq=1, last_seq=1, outcome="retry"
    )
    assert await store.finish_batch(failed, created.generation, None, last_error="HTTP 503")
    holder = Maintenance(store, registry, Retention(), disable_after_s=60)
    other = Maintenance(store, registry, Retention(), disable_after_s=60)
    assert await holder.run_once() is not None and holder.disabled == []  # failing for a moment only
    later = time.time() + 61
    assert await other.run_once(now=later) is None and other.disabled == []
    assert (await registry.get_hook(account, created.id)).spec.active  # type: ignore[union-attr]
    assert await holder.run_once(now=later) is not None and holder.disabled == [created.id]
    stopped = await registry.get_hook(account, created.id)
    assert stopped is not None and not stopped.spec.active and stopped.disabled_reason is not None
    assert await store.count_events(account) == 1  # the hook.disabled notice
    assert await holder.run_once(now=later + 60) is not None and holder.disabled == [created.id]  # once
    await holder.stop()
