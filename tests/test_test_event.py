"""POST /v1/hooks/{id}/test: a sample event through the hook's transport, the outcome in the answer."""

from __future__ import annotations

import hashlib
from typing import Any

from actionhooks.devtools.receiver import Receiver

from .support import Service, User


async def make_hook(service: Service, user: User, url: str, **settings: Any) -> dict[str, Any]:
    body = {
        "name": "crm",
        "event_types": ["uclick", "deliv"],
        "list_id": 42,
        "transport": {"type": "http", "url": url, "max_batch_size": 10, "timeout_s": 5},
        **settings,
    }
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    return created


async def test_sample_event_reaches_the_destination_and_the_outcome_is_reported(
    service: Service, owner: User
) -> None:
    async with Receiver() as receiver:
        created = await make_hook(service, owner, receiver.hook_url, custom_data_fields=["email"])
        status, outcome, _ = await service.call("POST", f"/v1/hooks/{created['id']}/test", owner)
        assert status == 200
        assert outcome["delivered"] is True and outcome["status"] == 200
        (event,) = receiver.events
        assert event == outcome["event"]
        assert event["event_type"] == "uclick"
        assert event["is_test"] is True
        assert event["list_id"] == 42
        assert event["account_id"] == owner.account_id
        # custom_data narrowed to the hook's custom_data_fields: exactly the profile's email, the one hashed
        assert list(event["custom_data"]) == ["email"]
        assert hashlib.md5(event["custom_data"]["email"].encode()).hexdigest() == event["_md5"]
        # not logged, no cursor move, no attempt
        assert await service.store.count_events() == 0
        _, attempts, _ = await service.call("GET", f"/v1/hooks/{created['id']}/attempts", owner)
        assert attempts["attempts"] == []


async def test_sample_event_of_a_chosen_type(service: Service, owner: User) -> None:
    async with Receiver() as receiver:
        created = await make_hook(service, owner, receiver.hook_url)
        status, outcome, _ = await service.call(
            "POST", f"/v1/hooks/{created['id']}/test", owner, {"event_type": "deliv"}
        )
        assert status == 200 and outcome["delivered"] is True
        assert receiver.events[0]["event_type"] == "deliv"
        status, answer, _ = await service.call(
            "POST", f"/v1/hooks/{created['id']}/test", owner, {"event_type": "send"}
        )
        assert status == 422 and answer["field"] == "event_type"


async def test_failing_destination_is_reported_not_raised(service: Service, owner: User) -> None:
    async with Receiver() as receiver:
        receiver.answer(503, b"maintenance", times=1)
        created = await make_hook(service, owner, receiver.hook_url)
        status, outcome, _ = await service.call("POST", f"/v1/hooks/{created['id']}/test", owner)
        assert status == 200
        assert outcome["delivered"] is False
        assert outcome["status"] == 503 and outcome["permanent"] is False
        assert "maintenance" in outcome["response_excerpt"]
        receiver.answer(410, b"gone", times=1)
        _, outcome, _ = await service.call("POST", f"/v1/hooks/{created['id']}/test", owner)
        assert outcome["delivered"] is False and outcome["permanent"] is True


async def test_outsider_cannot_test_another_accounts_hook(
    service: Service, owner: User, outsider: User
) -> None:
    async with Receiver() as receiver:
        created = await make_hook(service, owner, receiver.hook_url)
        status, _, _ = await service.call("POST", f"/v1/hooks/{created['id']}/test", outsider)
        assert status == 404
        assert receiver.events == []
