"""Derived events (derive.py) on both engines: unique, implied, confirm, dwell, subscription status; ids and
``derived_from``; the account's switch; a restart inside the uniqueness window; concurrent sources."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from actionhooks.catalog import catalog
from actionhooks.config import IngestLimits
from actionhooks.consume.base import Ingester
from actionhooks.derive import Derivation, derived_id, dwell_type
from actionhooks.events import parse_events
from actionhooks.integrations.source import Incoming
from actionhooks.store import Store, open_store
from actionhooks.store.base import AccountSettings

from .support import Service, User

DERIVE = Derivation()


def event(event_type: str, profile: str = "p1", message: int = 7, **data: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_date": "2024-05-01T10:00:00.123456789Z",
        "list_id": 3,
        "profile_id": profile,
        "event_data": {"message_id": message, "campaign_id": 1, **data},
    }


async def logged(store: Store, account_id: int) -> list[dict[str, Any]]:
    page = await store.read_events(account_id, list(catalog().codes), None, 0, 10_000, window=1_000_000)
    return [msgspec.json.decode(e.body) for e in page.events]


async def post(store: Store, account_id: int, *items: dict[str, Any]) -> list[bool]:
    chosen: set[str] = set()
    events, errors = parse_events([msgspec.json.encode(i) for i in items], account_id, None, chosen)
    assert not errors
    return await store.append(account_id, events, chosen, DERIVE)


def types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["event_type"] for m in messages]


async def account(store: Store, name: str = "a") -> int:
    return await store.create_account(name, name + "-key")


async def test_first_open_yields_uopen_once(store: Store) -> None:
    a = await account(store)
    await post(store, a, event("open"), event("open"))
    await post(store, a, event("open"))
    assert types(await logged(store, a)) == ["open", "uopen", "open", "open"]


async def test_scope_is_profile_message_launch_and_list(store: Store) -> None:
    a = await account(store)
    await post(
        store,
        a,
        event("open"),
        event("open", profile="p2"),
        event("open", message=8),
        event("open", launch_id="L2"),
        {**event("open"), "list_id": 4},
        event("open", launch_id="L2"),
    )
    assert types(await logged(store, a)).count("uopen") == 5


async def test_click_without_open_implies_open_and_uopen_once(store: Store) -> None:
    a = await account(store)
    await post(store, a, event("click", link_url="https://a.example"))
    await post(store, a, event("click", link_url="https://b.example"), event("open"))
    assert types(await logged(store, a)) == ["open", "uopen", "click", "uclick", "click", "open"]


async def test_first_confirm_yields_click_and_its_chain(store: Store) -> None:
    a = await account(store)
    await post(store, a, event("confirm"), event("confirm"))
    assert types(await logged(store, a)) == ["confirm", "open", "uopen", "click", "uclick", "confirm"]


async def test_push_and_messenger_uniques(store: Store) -> None:
    a = await account(store)
    await post(store, a, event("click_push"), event("viber_click"), event("viber_click"), event("click_sms"))
    assert types(await logged(store, a)) == [
        "open_push",
        "uopen_push",
        "click_push",
        "uclick_push",
        "viber_click",
        "viber_uclick",
        "viber_click",
        "click_sms",
        "uclick_sms",
    ]


async def test_dwell_yields_one_of_three(store: Store) -> None:
    assert [dwell_type(s) for s in (0, 3.99, 4, 7.9, 8, 60)] == [
        "glanced",
        "glanced",
        "skimmed",
        "skimmed",
        "read",
        "read",
    ]
    a = await account(store)
    await post(store, a, event("open", dwell_s=5.5), event("open", dwell_s=12))
    assert types(await logged(store, a)) == ["open", "uopen", "skimmed", "open", "read"]


async def test_derived_ids_and_reposted_source(store: Store) -> None:
    a = await account(store)
    source = {**event("click"), "id": "crm-click-1"}
    flags = await post(store, a, source)
    assert flags == [True]  # the producer's item only
    again = await post(store, a, source)
    assert again == [False]
    messages = await logged(store, a)
    assert types(messages) == ["open", "uopen", "click", "uclick"]
    for m in messages:
        if m["id"] != "crm-click-1":
            assert m["derived_from"] == "crm-click-1"
            assert m["id"] == derived_id("crm-click-1", m["event_type"])
            assert len(m["id"]) <= 64
    # re-posted under a new id: the marks say the open and the click were recorded
    await post(store, a, {**source, "id": "crm-click-2"})
    assert types(await logged(store, a))[4:] == ["click"]


async def test_derivation_switched_off_per_account(store: Store) -> None:
    a, b = await account(store, "a"), await account(store, "b")
    await store.set_account_settings(a, AccountSettings(derive=False))
    await post(store, a, event("click"))
    await post(store, b, event("click"))
    assert types(await logged(store, a)) == ["click"]
    assert types(await logged(store, b)) == ["open", "uopen", "click", "uclick"]


async def test_restart_inside_the_window_keeps_uniqueness(db_url: str) -> None:
    first = open_store(db_url)
    await first.open()
    a = await account(first)
    await post(first, a, event("open"))
    await first.close()
    second = open_store(db_url)
    await second.open()
    try:
        await post(second, a, event("open"), event("click"))
        assert types(await logged(second, a)) == ["open", "uopen", "open", "click", "uclick"]
    finally:
        await second.close()


async def test_expired_marks_count_again(store: Store) -> None:
    a = await account(store)
    short = Derivation(ttl_s=0.0)
    chosen: set[str] = set()
    events, _ = parse_events([msgspec.json.encode(event("open"))], a, None, chosen)
    await store.append(a, events, chosen, short)
    await asyncio.sleep(0.01)
    pruned = await store.prune_derive_marks(time.time(), 100)
    assert pruned.rows == 1
    await post(store, a, event("open"))
    assert types(await logged(store, a)) == ["open", "uopen", "open", "uopen"]


async def test_concurrent_opens_from_two_stores_give_one_uopen(db_url: str) -> None:
    """Two stores on one database stand for two API processes (on PostgreSQL: two connections racing)."""
    one, two = open_store(db_url), open_store(db_url)
    await one.open()
    await two.open()
    try:
        a = await account(one)
        for round_ in range(10):
            opens = [event("open", message=round_) for _ in range(4)]
            await asyncio.gather(*(post(s, a, o) for s, o in zip([one, two, one, two], opens, strict=True)))
        messages = await logged(one, a)
        assert types(messages).count("uopen") == 10
        assert types(messages).count("open") == 40
    finally:
        await one.close()
        await two.close()


async def test_subscription_status_follows_status_events(service: Service, owner: User) -> None:
    profile = {
        "list_id": 3,
        "email": "Anna@Example.com",
        "subscriptions": [
            {"channel": "email", "resource_id": 9, "status": "subscribed"},
            {"channel": "sms", "resource_id": 9, "status": "subscribed"},
        ],
    }
    status, _, _ = await service.call("PUT", "/v1/profiles/p1", owner, profile)
    assert status == 200

    async def statuses() -> dict[str, str]:
        _, body, _ = await service.call("GET", "/v1/profiles/p1", owner)
        return {s["channel"]: s["status"] for s in body["subscriptions"]}

    await service.call("POST", "/v1/events", owner, [event("confirmsub", resource_id=9)])
    assert await statuses() == {"email": "subscribed", "sms": "subscribed"}
    await service.call("POST", "/v1/events", owner, [event("unsub_sms", resource_id=9)])
    assert await statuses() == {"email": "subscribed", "sms": "unsubscribed"}
    await service.call("POST", "/v1/events", owner, [event("hbounce", resource_id=9)])
    assert await statuses() == {"email": "hardbounced", "sms": "unsubscribed"}
    await service.call("POST", "/v1/events", owner, [event("complain", resource_id=9)])
    assert await statuses() == {"email": "complainer", "sms": "unsubscribed"}
    await service.call("POST", "/v1/events", owner, [event("confirmsub", resource_id=9)])
    assert await statuses() == {"email": "subscribed", "sms": "unsubscribed"}


async def test_ingest_answer_counts_the_producers_items_only(service: Service, owner: User) -> None:
    status, answer, _ = await service.call("POST", "/v1/events", owner, [event("confirm")])
    assert status == 202
    assert answer["accepted"] == 1 and len(answer["ids"]) == 1
    assert types(await logged(service.store, owner.account_id)) == [
        "confirm",
        "open",
        "uopen",
        "click",
        "uclick",
    ]
    status, settings, _ = await service.call("PATCH", "/v1/account", owner, {"derive": False})
    assert status == 200 and settings["derive"] is False
    await service.call("POST", "/v1/events", owner, [event("open", message=99)])
    assert types(await logged(service.store, owner.account_id))[-1] == "open"
    _, settings, _ = await service.call("GET", "/v1/account", owner)
    assert settings["derive"] is False


async def test_broker_consumers_derive_like_the_api(store: Store) -> None:
    a = await account(store)
    off = await account(store, "off")
    await store.set_account_settings(off, AccountSettings(derive=False))
    for account_id in (a, off):
        ingester = Ingester(store, account_id, IngestLimits())
        body = msgspec.json.encode([event("click"), event("open")])
        checked = ingester.check([Incoming(body, "application/json", None)])
        assert await ingester.append(checked) == (2, 0)  # the producer's events only are counted
    assert types(await logged(store, a)) == ["open", "uopen", "click", "uclick", "open"]
    assert types(await logged(store, off)) == ["click", "open"]


async def test_appends_committed_together_derive_as_one_after_another(store: Store) -> None:
    """Appends that share a commit (group commit) are derived, deduplicated and stored exactly as if committed one
    after the other: a uniqueness scope claimed once, a chosen id repeated across requests stored once, and a
    chosen id equal to an id derived earlier in the group refused as a duplicate (never a failed commit)."""
    a = await account(store)
    b = await account(store, "b")

    def with_id(event_id: str, item: dict[str, Any]) -> dict[str, Any]:
        return {**item, "id": event_id}

    requests = [
        (a, [with_id("s1", event("open"))]),
        (a, [with_id(derived_id("s1", "uopen"), event("deliv"))]),
        (a, [event("open")]),
        (b, [event("click")]),
        (a, [event("click", profile="p2")]),
        (a, [with_id("s1", event("open")), event("open", profile="p3")]),
        (b, [event("click")]),
        (a, [event("confirm", profile="p4")]),
    ]
    results = await asyncio.gather(*(post(store, acc, *items) for acc, items in requests))
    assert results == [[True], [False], [True], [True], [True], [False, True], [True], [True]]
    in_a = await logged(store, a)
    assert types(in_a) == [
        *("open", "uopen"),  # s1
        "open",
        *("open", "uopen", "click", "uclick"),  # p2's click implies its open
        *("open", "uopen"),  # p3 (s1 again is a duplicate)
        *("confirm", "open", "uopen", "click", "uclick"),  # p4
    ]
    assert in_a[1]["id"] == derived_id("s1", "uopen") and in_a[1]["derived_from"] == "s1"
    assert types(await logged(store, b)) == ["open", "uopen", "click", "uclick", "click"]
