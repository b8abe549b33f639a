"""POST /v1/events: formats, validation, idempotency, limits, authentication — on both engines."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msgspec

from actionhooks.config import IngestLimits
from actionhooks.events import parse_events
from actionhooks.store import Store

from .support import Service, User, eventually, service_settings

EVENT = {
    "event_type": "deliv",
    "event_date": "2018-03-04T13:13:19.034315796Z",
    "list_id": 50,
    "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": 130},
    "custom_data": {"email": "a@example.com"},
}


def ev(**changes: object) -> dict[str, object]:
    out = dict(EVENT)
    out.update(changes)
    return out


async def stored_payloads(service: Service, user: User) -> list[dict[str, object]]:
    page = await service.store.read_events(user.account_id, ["deliv", "send", "uopen"], None, 0, 10_000)
    return [msgspec.json.decode(e.body) for e in page.events]


async def test_single_event_is_committed_before_202(service: Service, owner: User) -> None:
    status, body, _ = await service.call("POST", "/v1/events", owner, ev())
    assert status == 202
    assert body["accepted"] == 1 and body["errors"] == [] and len(body["ids"]) == 1
    stored = await stored_payloads(service, owner)
    assert [s["id"] for s in stored] == body["ids"]


async def test_stored_message_keeps_what_the_producer_sent_and_adds_defaults(
    service: Service, owner: User
) -> None:
    extra = ev(custom_field={"x": [1, 2]}, sends_trying_num=2)
    status, body, _ = await service.call("POST", "/v1/events", owner, extra)
    assert status == 202
    (stored,) = await stored_payloads(service, owner)
    assert stored["event_date"] == "2018-03-04T13:13:19.034315796Z"
    assert stored["account_id"] == owner.account_id
    assert stored["is_test"] is False
    assert stored["id"] == body["ids"][0]
    for key, value in extra.items():
        assert stored[key] == value


async def test_array_and_ndjson_bodies(service: Service, owner: User) -> None:
    status, body, _ = await service.call("POST", "/v1/events", owner, [ev(), ev(event_type="send")])
    assert status == 202 and body["accepted"] == 2
    ndjson = b"\n".join(msgspec.json.encode(ev(event_type="uopen")) for _ in range(3)) + b"\n"
    status, body, _ = await service.call(
        "POST", "/v1/events", owner, raw=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 202 and body["accepted"] == 3
    assert len(await stored_payloads(service, owner)) == 5


async def test_ids_are_time_sortable_and_unique(service: Service, owner: User) -> None:
    _, body, _ = await service.call("POST", "/v1/events", owner, [ev() for _ in range(200)])
    ids = body["ids"]
    assert len(set(ids)) == 200
    assert ids == sorted(ids)


async def test_client_id_is_idempotent(service: Service, owner: User) -> None:
    first = await service.call("POST", "/v1/events", owner, [ev(id="order-1"), ev(id="order-2")])
    again = await service.call(
        "POST", "/v1/events", owner, [ev(id="order-1"), ev(id="order-3"), ev(id="order-3")]
    )
    assert first[0] == 202 and first[1]["accepted"] == 2
    assert again[0] == 202
    assert again[1]["accepted"] == 1 and again[1]["duplicates"] == 2
    assert sorted(s["id"] for s in await stored_payloads(service, owner)) == ["order-1", "order-2", "order-3"]


async def test_same_client_id_in_two_accounts_is_two_events(
    service: Service, owner: User, outsider: User
) -> None:
    assert (await service.call("POST", "/v1/events", owner, ev(id="same")))[1]["accepted"] == 1
    assert (await service.call("POST", "/v1/events", outsider, ev(id="same")))[1]["accepted"] == 1


async def test_invalid_items_are_named_and_valid_ones_accepted(service: Service, owner: User) -> None:
    items = [
        ev(),
        ev(event_type="nope"),
        ev(event_date="yesterday"),
        ev(event_data=[1]),
        ev(list_id="fifty"),
        ev(account_id=owner.account_id + 1000),
        {"event_type": "deliv"},
        ev(is_test="yes"),
        ev(event_date="2018-02-30T10:00:00Z"),
        ev(id="bad id with spaces"),
    ]
    status, body, _ = await service.call("POST", "/v1/events", owner, items)
    assert status == 202
    assert body["accepted"] == 1
    errors = {e["index"]: e for e in body["errors"]}
    assert sorted(errors) == list(range(1, 10))
    assert errors[1]["field"] == "event_type"
    assert errors[2]["field"] == "event_date"
    assert errors[3]["field"] == "event_data"
    assert errors[4]["field"] == "list_id"
    assert errors[5]["field"] == "account_id"
    assert "event_date" in errors[6]["error"] or "event_data" in errors[6]["error"]
    assert errors[7]["field"] == "is_test"
    assert errors[8]["field"] == "event_date"
    assert errors[9]["field"] == "id"


async def test_all_invalid_is_400_with_the_same_error_list(service: Service, owner: User) -> None:
    status, body, _ = await service.call("POST", "/v1/events", owner, [ev(event_type="nope")])
    assert status == 400
    assert body["accepted"] == 0 and body["errors"][0]["index"] == 0


async def test_malformed_json_is_400(service: Service, owner: User) -> None:
    status, body, _ = await service.call("POST", "/v1/events", owner, raw=b'[{"event_type": ')
    assert status == 400 and "JSON" in body["error"]
    status, body, _ = await service.call(
        "POST",
        "/v1/events",
        owner,
        raw=b'{"a": 1}\nnot json\n',
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert status == 400 and {e["index"] for e in body["errors"]} == {0, 1}


async def test_body_and_item_limits_answer_413(service: Service, owner: User) -> None:
    too_many = [ev() for _ in range(service.settings.limits.max_items + 1)]
    status, body, _ = await service.call("POST", "/v1/events", owner, too_many)
    assert status == 413 and "limit" in body["error"]
    big = ev(custom_data={"blob": "x" * service.settings.limits.max_body_bytes})
    status, body, _ = await service.call("POST", "/v1/events", owner, big)
    assert status == 413
    assert await stored_payloads(service, owner) == []


async def test_backlog_over_limit_answers_429_with_retry_after(store: Store, db_url: str) -> None:
    """While the store's writer is busy, appends queue up; past the pending limit ingest answers 429 at once."""
    limits = IngestLimits(max_body_bytes=1024 * 1024, max_items=1000, max_pending=5)
    svc = Service(store, service_settings(db_url, limits=limits))
    await svc.start()
    writer_busy = threading.Event()
    try:
        user = await svc.user("owner")
        writer_busy = store.faults.hold_writes()  # the next write waits: appends queue up behind it

        async def one_more_while_queued() -> tuple[int, Any, dict[str, str]]:
            await eventually(lambda: store.pending_appends >= 10)
            answer = await svc.call("POST", "/v1/events", user, ev())
            writer_busy.set()
            return answer

        (status, body, _), (late_status, late_body, late_headers) = await asyncio.gather(
            svc.call("POST", "/v1/events", user, [ev() for _ in range(10)]), one_more_while_queued()
        )
        assert late_status == 429
        assert late_headers["Retry-After"] == "1"
        assert "retry" in late_body["error"]
        assert status == 202 and body["accepted"] == 10
        status, _, _ = await svc.call("POST", "/v1/events", user, ev())
        assert status == 202
    finally:
        writer_busy.set()
        await svc.stop()


async def test_one_accounts_flood_gets_429_while_another_account_is_accepted(
    store: Store, db_url: str
) -> None:
    """Past its own pending limit an account's requests get 429 with Retry-After — counted exactly, even for
    requests arriving together — while another account's requests are still queued for commit (and stored)."""
    limits = IngestLimits(
        max_body_bytes=1024 * 1024, max_items=1000, max_pending=100_000, max_pending_per_account=50
    )
    svc = Service(store, service_settings(db_url, limits=limits))
    await svc.start()
    writer_busy = threading.Event()
    try:
        flooder, other = await svc.user("flooder"), await svc.user("other")
        writer_busy = store.faults.hold_writes()  # the next write waits: appends queue up behind it
        flood = [
            asyncio.create_task(svc.call("POST", "/v1/events", flooder, [ev() for _ in range(20)]))
            for _ in range(5)
        ]
        await eventually(lambda: sum(1 for f in flood if f.done()) == 3)  # refused at once, not queued
        refused = [f.result() for f in flood if f.done()]
        assert [status for status, _, _ in refused] == [429] * 3
        assert all(h["Retry-After"] == "1" and "account" in b["error"] for _, b, h in refused)
        assert store.pending_appends_of(flooder.account_id) == 40  # two of 20: a third would pass 50
        others = [asyncio.create_task(svc.call("POST", "/v1/events", other, [ev() for _ in range(30)]))]
        await eventually(lambda: store.pending_appends_of(other.account_id) == 30)  # queued, not refused
        writer_busy.set()
        status, body, _ = await others[0]
        assert status == 202 and body["accepted"] == 30
        assert sorted([(await f)[0] for f in flood]) == [202, 202, 429, 429, 429]
        assert store.pending_appends_of(flooder.account_id) == 0 == store.pending_appends
        status, _, _ = await svc.call("POST", "/v1/events", flooder, ev())
        assert status == 202
    finally:
        writer_busy.set()
        await svc.stop()


async def test_missing_or_wrong_key_is_401(service: Service, owner: User) -> None:
    status, _, headers = await service.call("POST", "/v1/events", None, ev())
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = await service.call(
        "POST", "/v1/events", None, ev(), headers={"Authorization": "Bearer ah_wrong"}
    )
    assert status == 401
    status, _, _ = await service.call("GET", "/v1/hooks", None, headers={"Authorization": "Basic eDp5"})
    assert status == 401


async def test_event_types_endpoint_lists_the_catalogue(service: Service, owner: User) -> None:
    status, body, _ = await service.call("GET", "/v1/event-types", owner)
    assert status == 200
    codes = [t["code"] for t in body["event_types"]]
    assert len(codes) == 80 and "deliv" in codes and "popup_custom" in codes


async def test_custom_data_is_optional_but_must_be_an_object(service: Service, owner: User) -> None:
    plain = {k: v for k, v in EVENT.items() if k != "custom_data"}
    status, body, _ = await service.call("POST", "/v1/events", owner, [plain, {**plain, "custom_data": [1]}])
    assert status == 202 and body["accepted"] == 1
    assert body["errors"] == [{"index": 1, "error": "custom_data must be an object", "field": "custom_data"}]


def test_ids_stay_sorted_and_unique_past_4096_in_a_millisecond() -> None:
    from actionhooks.ids import new_id, new_ids

    ids = new_ids(10_000) + new_ids(3) + [new_id() for _ in range(100)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)  # UUID version 7, RFC 9562 variant


def test_event_date_is_judged_in_the_envelopes_conversion_with_the_same_words() -> None:
    """``event_date`` is read as a datetime within the envelope's conversion; what that refuses (or may fall
    outside years 1 to 9999 in UTC) gets the RFC 3339 path's verdict, on the field ``event_date``."""
    base = {"event_type": "deliv", "event_data": {}}
    cases: list[tuple[object, str | None]] = [
        ("2024-05-01T10:00:00.123456789Z", None),
        ("2016-12-31T23:59:60Z", None),  # a leap second: refused by msgspec, valid RFC 3339
        ("9999-12-31T23:59:59.9999999Z", None),  # msgspec would round it into year 10000
        ("2024-05-01T10:00:00", "event_date must carry a time zone offset"),
        ("9999-12-31T23:30:00-01:00", "event_date must fall in years 1 to 9999 in UTC"),
        ("2024-02-30T10:00:00Z", "event_date is not a valid date-time"),
        ("yesterday", "event_date must be an RFC 3339 date-time"),
        (20240501, "Expected `str`, got `int`"),
    ]
    items = [msgspec.json.encode({**base, "event_date": date}) for date, _ in cases]
    events, errors = parse_events(items, 1)
    assert len(events) == sum(why is None for _, why in cases)
    refused = {e.index: e for e in errors}
    for index, (date, why) in enumerate(cases):
        if why is None:
            assert index not in refused, (date, refused.get(index))
        else:
            assert refused[index].field == "event_date" and refused[index].error.startswith(why), (
                date,
                refused[index],
            )
