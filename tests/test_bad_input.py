"""No input makes the service crash or answer 5xx: bodies mutated at random against every write route.

Deterministic (seeded) so a failure repeats: valid events and hooks are taken apart — truncated, bytes flipped,
values replaced by other JSON types, nested deeply, huge numbers, odd strings — and posted; every answer must be a
4xx or 2xx with a JSON body, and the service must still answer afterwards.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from .support import Service, User

EVENT: dict[str, Any] = {
    "event_type": "uclick",
    "event_date": "2018-03-04T13:13:19.034315796Z",
    "profile_id": "p1",
    "list_id": 5,
    "event_data": {"message_id": 1, "campaign_id": 2, "link_url": "https://example.com/"},
    "custom_data": {"email": "a@example.com"},
    "subscription": [{"channel": "email", "status": "subscribed"}],
}
HOOK: dict[str, Any] = {
    "name": "crm",
    "event_types": ["deliv"],
    "filters": {"campaign_ids": [1]},
    "transport": {"type": "http", "url": "http://127.0.0.1:9/x", "max_batch_size": 10, "success_regex": "ok"},
}
BROKER_HOOKS: list[dict[str, Any]] = [
    {
        **HOOK,
        "transport": {
            "type": "rabbitmq_exchange",
            "host": "127.0.0.1",
            "user": "u",
            "password": "p",
            "exchange": "ex",
            "exchange_type": "topic",
        },
    },
    {
        **HOOK,
        "transport": {
            "type": "kafka",
            "bootstrap_servers": "127.0.0.1:9092",
            "topic": "t",
            "key": "profile_id",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "u",
            "sasl_password": "p",
        },
    },
    {
        **HOOK,
        "transport": {
            "type": "nats",
            "servers": ["nats://127.0.0.1:4222"],
            "subject": "ev.{list_id}",
            "credentials": {"user": "u", "password": "p"},
        },
    },
    {
        **HOOK,
        "transport": {
            "type": "http",
            "url": "https://example.com/x",
            "headers": {"X-Key": "k"},
            "auth": {
                "type": "oauth2",
                "token_url": "https://example.com/t",
                "client_id": "c",
                "client_secret": "s",
            },
        },
    },
]
ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**70,
    1e308,
    -0.0,
    "",
    "x" * 5000,
    "\u0000\ud7ff\U0001f600",
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {"c": None}}},
    "2018-13-45T99:99:99Z",
    "deliv",
    [1, "a", None],
]


def mutate_value(value: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and depth < 4:
        out = dict(value)
        key = rng.choice(list(out))
        choice = rng.random()
        if choice < 0.3:
            del out[key]
        elif choice < 0.5:
            out[rng.choice(["", "💥", "a" * 300, key + "_x"])] = rng.choice(ODD_VALUES)
        else:
            out[key] = mutate_value(out[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and depth < 4:
        out_list = list(value)
        out_list[rng.randrange(len(out_list))] = mutate_value(out_list[0], rng, depth + 1)
        return out_list
    return rng.choice(ODD_VALUES)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.3:
        return data[: rng.randrange(len(data))]
    if choice < 0.6:
        raw = bytearray(data)
        for _ in range(rng.randint(1, 5)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if choice < 0.8:
        return b"[" * rng.randint(1, 3000) + b"]" * rng.randint(0, 3000)
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))


def bodies(seed: int, template: Any, count: int) -> list[tuple[bytes, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        value = template
        for _ in range(rng.randint(1, 3)):
            value = mutate_value(value, rng)
        data = msgspec.json.encode(value)
        if rng.random() < 0.3:
            data = mutate_bytes(data, rng)
        kind = rng.choice(["application/json", "application/x-ndjson", "text/plain", ""])
        if rng.random() < 0.2:
            data = msgspec.json.encode([value, template, value])
        out.append((data, kind))
    return out


async def post_all(
    service: Service, user: User, path: str, cases: list[tuple[bytes, str]], method: str = "POST"
) -> None:
    for data, kind in cases:
        headers = {"Content-Type": kind} if kind else {}
        status, body, _ = await service.call(method, path, user, raw=data, headers=headers)
        assert status < 500, (status, data[:200], body)
        assert 200 <= status < 500
        assert isinstance(body, dict), (status, body)


async def test_mutated_events_never_crash_ingest(service: Service, owner: User) -> None:
    await post_all(service, owner, "/v1/events", bodies(1, EVENT, 300))
    status, _, _ = await service.call("POST", "/v1/events", owner, EVENT)
    assert status == 202


async def test_mutated_hooks_never_crash_the_hooks_api(service: Service, owner: User) -> None:
    await post_all(service, owner, "/v1/hooks", bodies(2, HOOK, 200))
    status, created, _ = await service.call("POST", "/v1/hooks", owner, HOOK)
    assert status == 201
    path = f"/v1/hooks/{created['id']}"
    await post_all(service, owner, path, bodies(3, HOOK, 150), method="PATCH")
    await post_all(service, owner, path + "/clone", bodies(4, HOOK, 50))
    status, _, _ = await service.call("GET", path, owner)
    assert status == 200
    for seed, template in enumerate(BROKER_HOOKS, start=10):
        await post_all(service, owner, "/v1/hooks", bodies(seed, template, 150))
