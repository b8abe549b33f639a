"""The whole pipeline over real HTTP: ingest → log → dispatcher → HTTP transport → loopback receiver."""

from __future__ import annotations

import base64
import os
from typing import Any

import msgspec
from standardwebhooks import Webhook

from actionhooks.devtools.receiver import Answer, Receiver
from actionhooks.store import Store

from .support import Service, User, eventually, service_settings

EVENT = {
    "event_type": "deliv",
    "event_date": "2016-11-15T09:12:28.514388956Z",
    "list_id": 50,
    "_xxh": "a1b2c3",
    "_md5": "0cc175b9c0f1b6a831c399e269772661",
    "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": 130},
    "custom_data": {"email": "user@example.com"},
}


async def dead_letters(service: Service, user: User, hook_id: int) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]]:
        _, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters", user)
        result: list[dict[str, Any]] = body["dead_letters"]
        return result

    letters: list[dict[str, Any]] = await eventually(listed)
    return letters


async def make_hook(service: Service, user: User, transport: dict[str, Any]) -> dict[str, Any]:
    body = {"name": "crm", "event_types": ["deliv"], "transport": {"type": "http", **transport}}
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    return created


async def test_receiver_gets_the_documented_message_signed(service: Service, owner: User) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    async with Receiver(secret=secret) as receiver:
        await make_hook(
            service,
            owner,
            {"url": receiver.hook_url, "max_batch_size": 2, "timeout_s": 5, "signing_secret": secret},
        )
        status, answer, _ = await service.call("POST", "/v1/events", owner, [EVENT, EVENT])
        assert status == 202
        await receiver.wait_for_events(2, timeout=10)
        assert receiver.verification_failures == []
        (request,) = receiver.requests
        assert request.headers["Content-Type"] == "application/json"
        Webhook(secret).verify(request.body, dict(request.headers))
        delivered = msgspec.json.decode(request.body)
        assert [m["id"] for m in delivered] == answer["ids"]
        for message in delivered:
            assert message["account_id"] == owner.account_id
            assert message["is_test"] is False
            assert {k: message[k] for k in EVENT} == EVENT


async def test_regex_mismatch_is_retried_until_the_receiver_agrees(service: Service, owner: User) -> None:
    async with Receiver() as receiver:
        receiver.answer(200, b'{"status": "busy"}', times=2)
        created = await make_hook(
            service,
            owner,
            {"url": receiver.hook_url, "max_batch_size": 1, "timeout_s": 0, "success_regex": "ok"},
        )
        await service.call("POST", "/v1/events", owner, EVENT)
        await eventually(lambda: receiver.request_count >= 3)

        async def outcomes() -> list[str]:
            _, body, _ = await service.call("GET", f"/v1/hooks/{created['id']}/attempts", owner)
            got = [a["outcome"] for a in reversed(body["attempts"])]
            return got if len(got) == 3 else []

        assert await eventually(outcomes) == ["retry", "retry", "delivered"]


async def test_gone_receiver_dead_letters_and_later_batches_still_go(service: Service, owner: User) -> None:
    async with Receiver() as receiver:
        receiver.answer(410, b"gone")
        created = await make_hook(
            service, owner, {"url": receiver.hook_url, "max_batch_size": 1, "timeout_s": 0}
        )
        _, first, _ = await service.call("POST", "/v1/events", owner, EVENT)
        _, second, _ = await service.call("POST", "/v1/events", owner, EVENT)
        await receiver.wait_for_events(1, timeout=10)
        assert [e["id"] for e in receiver.events] == second["ids"]
        (letter,) = await dead_letters(service, owner, created["id"])
        assert letter["event_id"] == first["ids"][0]
        assert "410" in letter["reason"]


async def test_oauth2_token_is_fetched_and_used(service: Service, owner: User) -> None:
    async with Receiver(client_id="crm", client_secret="s3cret") as receiver:
        auth = {
            "type": "oauth2",
            "token_url": receiver.token_url,
            "client_id": "crm",
            "client_secret": "s3cret",
        }
        await make_hook(
            service, owner, {"url": receiver.hook_url, "max_batch_size": 1, "timeout_s": 0, "auth": auth}
        )
        await service.call("POST", "/v1/events", owner, [EVENT, EVENT, EVENT])
        await receiver.wait_for_events(3, timeout=10)
        assert receiver.token_requests == 1


async def test_destination_refused_at_delivery_when_the_allow_list_closes(store: Store, db_url: str) -> None:
    """The guard applies when connecting, not only when saving: a hook saved while loopback was allowed is refused
    once the operator closes the allow-list; its events go to dead letters with the reason, none reach the host."""
    async with Receiver() as receiver:
        opened = Service(store, service_settings(db_url))
        await opened.start()
        try:
            user = await opened.user("owner")
            created = await make_hook(opened, user, {"url": receiver.hook_url, "timeout_s": 0})
        finally:
            await opened.stop()
        closed = Service(store, service_settings(db_url, allow_nets=()))
        await closed.start()
        try:
            await closed.call("POST", "/v1/events", user, EVENT)

            (letter,) = await dead_letters(closed, user, created["id"])
            assert "not public" in letter["reason"]
            assert receiver.request_count == 0
        finally:
            await closed.stop()


async def test_producer_bytes_reach_the_receiver_unchanged(service: Service, owner: User) -> None:
    raw = (
        b'{ "event_type" : "deliv", "event_date": "2016-11-15T09:12:28.514388956+03:00",\n'
        b' "event_data": {"message_id": 5, "price": 1.50, "name": "\\u041f\\u0451\\u0442\\u0440"}, "x": [ ] }'
    )
    async with Receiver() as receiver:
        await make_hook(service, owner, {"url": receiver.hook_url, "max_batch_size": 1, "timeout_s": 0})
        status, answer, _ = await service.call("POST", "/v1/events", owner, raw=raw)
        assert status == 202, answer
        await receiver.wait_for_events(1, timeout=10)
        (request,) = receiver.requests
        event_id = answer["ids"][0]
        prefix = f'[{{"id":"{event_id}","account_id":{owner.account_id},"is_test":false,'.encode()
        assert request.body == prefix + raw[1:] + b"]"


async def test_batches_in_flight_reach_the_receiver_over_several_connections_at_once(
    service: Service, owner: User
) -> None:
    async with Receiver(default=Answer(delay=0.2)) as receiver:
        await make_hook(
            service,
            owner,
            {"url": receiver.hook_url, "max_batch_size": 1, "timeout_s": 0, "max_in_flight": 4},
        )
        status, answer, _ = await service.call("POST", "/v1/events", owner, [EVENT] * 12)
        assert status == 202
        await receiver.wait_for_events(12, timeout=20)
        assert receiver.most_at_once == 4  # four one-event batches out at once, never a fifth
        assert sorted(e["id"] for e in receiver.events) == sorted(answer["ids"])  # each once
