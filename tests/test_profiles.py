"""Profiles over the API and enrichment at delivery from them (both engines)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any, cast

import msgspec
import pytest

from actionhooks.dispatch.enrich import Enricher, ProfileCache, _Read
from actionhooks.dispatch.feed import LogFeed, Subscription
from actionhooks.errors import StoreUnavailable
from actionhooks.events import LoggedEvent, NewEvent
from actionhooks.hooks import parse_hook
from actionhooks.profiles import Profile, StoredProfile, email_hashes, erase, write
from actionhooks.store import Store
from tests.stub import StubDestination

from .support import Service, User
from .test_dispatch import stub

PROFILE = {
    "list_id": 3,
    "email": "Anna@Example.com",
    "phone": "+10000000001",
    "fields": {"first_name": "Anna", "city": "Riga", "score": 7},
    "subscriptions": [
        {"channel": "email", "resource_id": 9, "status": "subscribed", "email": "anna@example.com"}
    ],
}


def event(profile: str | None = "p1", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_type": "deliv",
        "event_date": "2024-05-01T10:00:00.123456789Z",
        "list_id": 3,
        "event_data": {"message_id": 1, "campaign_id": 2, "segment_id": 0},
        **extra,
    }
    if profile is not None:
        out["profile_id"] = profile
    return out


async def test_put_get_patch_delete(service: Service, owner: User, outsider: User) -> None:
    status, body, _ = await service.call("PUT", "/v1/profiles/p1", owner, PROFILE)
    assert status == 200
    assert body["fields"] == PROFILE["fields"] and body["list_id"] == 3 and body["profile_id"] == "p1"
    status, _, _ = await service.call("GET", "/v1/profiles/p1", outsider)
    assert status == 404
    status, body, _ = await service.call(
        "PATCH", "/v1/profiles/p1", owner, {"fields": {"city": None, "plan": "gold"}, "phone": None}
    )
    assert status == 200
    assert body["fields"] == {"first_name": "Anna", "score": 7, "plan": "gold"}
    assert body["phone"] is None and body["email"] == "Anna@Example.com"
    status, body, _ = await service.call("PUT", "/v1/profiles/p1", owner, {"fields": {"x": 1}})
    assert status == 200 and body["fields"] == {"x": 1} and body["email"] is None
    status, _, _ = await service.call("DELETE", "/v1/profiles/p1", owner)
    assert status == 204
    for method in ("GET", "DELETE"):
        status, _, _ = await service.call(method, "/v1/profiles/p1", owner)
        assert status == 404


async def test_bad_profiles_are_refused(service: Service, owner: User) -> None:
    status, body, _ = await service.call("PUT", "/v1/profiles/p1", owner, {"fields": [1]})
    assert status == 422 and body["field"] == "fields"
    status, body, _ = await service.call(
        "PUT", "/v1/profiles/p1", owner, {"subscriptions": [{"channel": "email", "status": "gone"}]}
    )
    assert status == 422 and body["field"] == "subscriptions.0.status"
    status, body, _ = await service.call("PATCH", "/v1/profiles/p1", owner, [1])
    assert status == 422
    status, _, _ = await service.call("PUT", "/v1/profiles/p1", owner, raw=b"{nope")
    assert status == 400


async def test_bulk_upsert_json_and_ndjson(service: Service, owner: User) -> None:
    items = [{"profile_id": "a", "email": "a@x.io"}, {"profile_id": "b", "fields": {"k": 1}}, {"email": 5}]
    status, body, _ = await service.call("POST", "/v1/profiles", owner, items)
    assert status == 200 and body["upserted"] == 2
    assert [e["index"] for e in body["errors"]] == [2]
    ndjson = b'{"profile_id": "c", "phone": "1"}\n{"profile_id": "a", "email": "new@x.io"}\n'
    status, body, _ = await service.call(
        "POST", "/v1/profiles", owner, raw=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 200 and body["upserted"] == 2
    _, a, _ = await service.call("GET", "/v1/profiles/a", owner)
    assert a["email"] == "new@x.io"
    status, body, _ = await service.call("POST", "/v1/profiles", owner, [{"nope": 1}])
    assert status == 400


async def test_profiles_are_strict_json_like_events(service: Service, owner: User) -> None:
    """What a profile holds reaches receivers in delivered messages, so its JSON is refused where receivers would
    read it differently: a duplicated key (msgspec keeps the last, others the first), a number past a double, a
    lone surrogate — in PUT, PATCH and each bulk item; nothing refused is stored."""
    status, _, _ = await service.call("PUT", "/v1/profiles/s1", owner, {"fields": {"plan": "basic"}})
    assert status == 200
    refused = [
        b'{"fields": {"plan": "basic", "plan": "gold"}}',
        b'{"fields": {"score": 1e999}}',
        b'{"email": "\\ud800@x.io"}',
    ]
    for raw in refused:
        for method in ("PUT", "PATCH"):
            status, body, _ = await service.call(method, "/v1/profiles/s1", owner, raw=raw)
            assert status == 400, (method, raw, body)
            assert "JSON" in body["error"] or "Unicode" in body["error"], body
    _, stored, _ = await service.call("GET", "/v1/profiles/s1", owner)
    assert stored["fields"] == {"plan": "basic"} and stored["email"] is None
    ndjson = b"\n".join(
        [b'{"profile_id": "s2", "email": "b@x.io"}', *(b'{"profile_id": "s3",' + r[1:] for r in refused)]
    )
    status, body, _ = await service.call(
        "POST", "/v1/profiles", owner, raw=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 200 and body["upserted"] == 1, body
    assert [e["index"] for e in body["errors"]] == [1, 2, 3]
    status, _, _ = await service.call("GET", "/v1/profiles/s3", owner)
    assert status == 404


async def _hook(service: Service, owner: User, fields: list[str]) -> StubDestination:
    dest, transport = stub(max_batch_size=100, timeout_s=0.05)
    body = {"name": "crm", "event_types": ["deliv"], "transport": transport, "custom_data_fields": fields}
    status, _, _ = await service.call("POST", "/v1/hooks", owner, body)
    assert status == 201
    return dest


def delivered(dest: StubDestination) -> list[dict[str, Any]]:
    return [msgspec.json.decode(m.body) for b in dest.batches for m in b.messages]


async def test_enrichment_from_the_stored_profile(service: Service, owner: User) -> None:
    await service.call("PUT", "/v1/profiles/p1", owner, PROFILE)
    dest = await _hook(service, owner, ["first_name", "email", "missing", "plan"])
    await service.call(
        "POST",
        "/v1/events",
        owner,
        [
            event(),
            event(custom_data={"plan": "sent", "first_name": "Producer"}, _md5="0" * 32),
            event(profile="unknown", custom_data={"first_name": "X", "other": 1}),
            event(profile=None),
        ],
    )
    await dest.wait_for_events(4)
    plain, sent, unknown, anonymous = delivered(dest)
    md5, xxh = email_hashes("anna@example.com")
    assert plain["custom_data"] == {"first_name": "Anna", "email": "Anna@Example.com"}
    assert plain["_md5"] == md5 and plain["_xxh"] == xxh
    assert plain["subscription"] == PROFILE["subscriptions"]
    assert sent["custom_data"] == {"first_name": "Producer", "email": "Anna@Example.com", "plan": "sent"}
    assert sent["_md5"] == "0" * 32 and sent["_xxh"] == xxh  # what the producer sent wins
    assert unknown["custom_data"] == {"first_name": "X"}
    assert "custom_data" not in anonymous and "_md5" not in anonymous


async def test_hooks_of_different_types_share_one_profile_read_of_the_events_logged_together(
    service: Service, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hooks taking different events of one request: the profiles are read once, for all the events the feed
    read together — not once per hook for its own events — and each hook's messages are completed from it."""
    await service.call("PUT", "/v1/profiles/p1", owner, PROFILE)
    await service.call("PUT", "/v1/profiles/p2", owner, {**PROFILE, "email": "boris@example.com"})
    reads: list[set[str]] = []
    get_profiles = service.store.get_profiles

    async def counted(account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]:
        reads.append(set(profile_ids))
        return await get_profiles(account_id, profile_ids)

    monkeypatch.setattr(service.store, "get_profiles", counted)
    dests = []
    for event_type in ("deliv", "send"):
        dest, transport = stub(max_batch_size=100, timeout_s=0.05)
        body = {"name": event_type, "event_types": [event_type], "transport": transport}
        status, _, _ = await service.call("POST", "/v1/hooks", owner, body)
        assert status == 201
        dests.append(dest)
    status, _, _ = await service.call(
        "POST", "/v1/events", owner, [event("p1"), event("p2", event_type="send"), event("p3")]
    )
    assert status == 202
    for dest, count in zip(dests, (2, 1), strict=True):
        await dest.wait_for_events(count)
    deliv, send = (delivered(dest) for dest in dests)
    md5, _ = email_hashes("anna@example.com")
    assert [m["_md5"] for m in deliv if m["profile_id"] == "p1"] == [md5]
    assert send[0]["_md5"] == email_hashes("boris@example.com")[0]
    assert reads == [{"p1", "p2", "p3"}]


async def test_one_event_batches_are_enriched_with_the_profile_as_of_their_logging(
    service: Service, owner: User
) -> None:
    """A hook of one-event batches without ``custom_data_fields`` (the worker's pass-through path): events with a
    stored profile still get its hashes and subscriptions, others go out as logged, and a profile changed before an
    event was logged reaches it (the profiles read ahead for the buffer do not outlive the log-head rule)."""
    await service.call("PUT", "/v1/profiles/p1", owner, PROFILE)
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    body = {"name": "crm", "event_types": ["deliv"], "transport": transport}
    status, _, _ = await service.call("POST", "/v1/hooks", owner, body)
    assert status == 201
    await service.call(
        "POST", "/v1/events", owner, [event(), event(profile="p2"), event(profile=None), event()]
    )
    await dest.wait_for_events(4)
    await service.call("PUT", "/v1/profiles/p1", owner, {**PROFILE, "email": "new@example.com"})
    await service.call("POST", "/v1/events", owner, [event()])
    await dest.wait_for_events(5)
    assert [len(b.messages) for b in dest.batches] == [1] * 5
    messages = delivered(dest)
    old, new = email_hashes("anna@example.com")[0], email_hashes("new@example.com")[0]
    assert [m.get("_md5") for m in messages] == [old, None, None, old, new]
    assert messages[0]["subscription"] == PROFILE["subscriptions"] and "subscription" not in messages[1]


async def test_deleted_profile_gives_custom_data_null(service: Service, owner: User) -> None:
    await service.call("PUT", "/v1/profiles/p1", owner, PROFILE)
    await service.call("DELETE", "/v1/profiles/p1", owner)
    dest = await _hook(service, owner, ["first_name"])
    await service.call("POST", "/v1/events", owner, [event(custom_data={"first_name": "Anna"})])
    await dest.wait_for_events(1)
    (message,) = delivered(dest)
    assert message["custom_data"] is None
    assert "_md5" not in message and "subscription" not in message


async def profile_of(service: Service, user: User, profile_id: str) -> dict[str, Any] | None:
    status, body, _ = await service.call("GET", f"/v1/profiles/{profile_id}", user)
    assert status in (200, 404), body
    return dict(body) if status == 200 else None


async def post_events(service: Service, user: User, *events: dict[str, Any]) -> None:
    status, body, _ = await service.call("POST", "/v1/events", user, list(events))
    assert status == 202, body


def moved(event_type: str, sources: list[str], targets: list[str]) -> dict[str, Any]:
    operation = "merge" if event_type == "profile_merge" else "split"
    return {
        "event_type": event_type,
        "event_date": "2024-05-01T10:00:00Z",
        "list_id": 1,
        "profile_id": targets[0] if operation == "merge" else sources[0],
        "event_data": {"operation": operation, "source_profile_ids": sources, "target_profile_ids": targets},
    }


async def test_import_events_upsert_the_profile(service: Service, owner: User) -> None:
    sub = {"channel": "email", "resource_id": 4, "email": "ann@example.com", "status": "subscribed"}
    imported = {
        "event_type": "import_api",
        "event_date": "2024-05-01T10:00:00Z",
        "list_id": 2,
        "profile_id": "imp",
        "custom_data": {"email": "ann@example.com", "name": "Ann", "age": 31},
        "subscription": [sub],
        "event_data": {"import_id": 1, "source": "api", "created": True},
    }
    await post_events(service, owner, imported)
    profile = await profile_of(service, owner, "imp")
    assert profile is not None
    assert profile["list_id"] == 2 and profile["email"] == "ann@example.com"
    assert profile["fields"] == {"name": "Ann", "age": 31} and profile["subscriptions"] == [sub]

    again = {**imported, "custom_data": {"city": "Omsk", "age": 32}, "event_type": "import_file"}
    again["subscription"] = [{**sub, "status": "unsubscribed"}]
    again["event_data"] = {"import_id": 2, "source": "file", "created": False}
    bare = {
        **imported,
        "event_type": "import_manual",
        "profile_id": "nothing",
        "event_data": {"import_id": 3},
    }
    del bare["custom_data"], bare["subscription"]
    await post_events(service, owner, again, bare)
    profile = await profile_of(service, owner, "imp")
    assert profile is not None
    assert profile["fields"] == {"name": "Ann", "age": 32, "city": "Omsk"}  # given keys replace, others stay
    assert [s["status"] for s in profile["subscriptions"]] == ["unsubscribed"]  # same channel and resource
    assert await profile_of(service, owner, "nothing") is None  # no profile data: no profile


async def test_merge_moves_sources_into_the_target_and_split_copies_back(
    service: Service, owner: User
) -> None:
    sub = {"channel": "sms", "phone": "+79990000000", "status": "subscribed"}
    for pid, body in (
        ("a", {"list_id": 1, "email": "a@example.com", "fields": {"name": "A", "tier": 1}}),
        (
            "b",
            {
                "list_id": 1,
                "phone": "+79990000000",
                "fields": {"name": "B", "city": "Omsk"},
                "subscriptions": [sub],
            },
        ),
        ("target", {"list_id": 1, "fields": {"name": "T"}}),
    ):
        status, answer, _ = await service.call("PUT", f"/v1/profiles/{pid}", owner, body)
        assert status == 200, answer
    await post_events(service, owner, moved("profile_merge", ["a", "b"], ["target"]))
    target = await profile_of(service, owner, "target")
    assert target is not None
    assert target["email"] == "a@example.com" and target["phone"] == "+79990000000"
    assert target["fields"] == {"name": "T", "tier": 1, "city": "Omsk"}  # the target's own values win
    assert target["subscriptions"] == [sub]
    for source in ("a", "b"):  # merged away: erased, tombstones kept
        status, _, _ = await service.call("GET", f"/v1/profiles/{source}", owner)
        assert status in (404, 410)

    await post_events(service, owner, moved("profile_split", ["target"], ["c", "d"]))
    for pid in ("c", "d"):
        split = await profile_of(service, owner, pid)
        assert split is not None and split["fields"]["name"] == "T" and split["email"] == "a@example.com"
    assert await profile_of(service, owner, "target") is not None  # the source of a split stays
    # a merge into an erased profile does not bring it back
    await post_events(service, owner, moved("profile_merge", ["c"], ["a"]))
    assert await profile_of(service, owner, "c") is not None


class CountingSource:
    """The store, counting the profile reads delivery makes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads: list[set[str]] = []

    async def head(self) -> int:
        return await self.store.head()

    async def get_profiles(self, account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]:
        self.reads.append(set(profile_ids))
        return await self.store.get_profiles(account_id, profile_ids)


async def test_profile_cache_sees_every_change_made_before_an_event_was_logged(store: Store) -> None:
    account_id = await store.create_account("cache", "hash")
    source = CountingSource(store)
    cache = ProfileCache(source)

    async def put(email: str | None) -> None:
        row = erase("p1", 3) if email is None else write("p1", Profile(list_id=3, email=email))
        await store.put_profiles(account_id, [row])

    async def log(n: int) -> list[LoggedEvent]:
        new = [
            NewEvent(account_id, f"e{n}-{i}", "deliv", 3, pid, time.time(), b"{}")
            for i, pid in enumerate(["p1", "p2"])  # p2 is never stored
        ]
        await store.append(account_id, new)
        page = await store.read_events(account_id, ["deliv"], None, 0, 100)
        return [e for e in page.events if e.id.startswith(f"e{n}-")]

    async def email(events: list[LoggedEvent]) -> str | None:
        found = await cache.profiles(account_id, events)
        assert "p2" not in found
        profile = found["p1"]
        return None if profile is None else profile.email

    await put("a@example.com")
    first = await log(1)
    assert await email(first) == "a@example.com"
    assert await email(first) == "a@example.com"  # logged before the read: kept
    assert source.reads == [{"p1", "p2"}]  # an unknown profile is remembered as unknown too
    await put("b@example.com")
    second = await log(2)
    assert await email(second) == "b@example.com"  # logged after the change: read again
    assert await email(first) == "b@example.com"  # the newer read serves the older event as well
    await put(None)
    third = await log(3)
    assert (await cache.profiles(account_id, third))["p1"] is None  # deleted: custom_data null
    assert len(source.reads) == 3
    cache.keep_s = 0.0  # nothing read is used past keep_s
    await cache.profiles(account_id, third)
    assert len(source.reads) == 4


def test_profile_cache_stays_within_its_size() -> None:
    cache = ProfileCache(CountingSource(None), size=8)  # type: ignore[arg-type]
    for i in range(8):
        cache.reads[(1, f"p{i}")] = _Read(None, False, 0, 0.0)
    cache._drop(1)
    assert list(cache.reads) == [(1, f"p{i}") for i in range(2, 8)]  # the oldest quarter


async def test_profile_cache_reads_a_buffer_ahead_in_one_query(store: Store) -> None:
    """A hook of one-event batches passes its buffer as ``ahead``: one query serves the whole buffer, and each call
    answers only its own batch's profiles."""
    account_id = await store.create_account("ahead", "hash")
    source = CountingSource(store)
    cache = ProfileCache(source)
    rows = [write(f"p{i}", Profile(list_id=3, email=f"{i}@example.com")) for i in range(5)]
    await store.put_profiles(account_id, rows)
    new = [NewEvent(account_id, f"e{i}", "deliv", 3, f"p{i}", time.time(), b"{}") for i in range(6)]
    await store.append(account_id, new)  # p5 is never stored
    buffer = (await store.read_events(account_id, ["deliv"], None, 0, 100)).events
    assert [e.profile_id for e in buffer] == [f"p{i}" for i in range(6)]
    answers = [await cache.profiles(account_id, buffer[i : i + 1], buffer[i:]) for i in range(6)]
    assert source.reads == [{f"p{i}" for i in range(6)}]  # the first batch's query read the buffer's profiles
    for i, found in enumerate(answers[:5]):
        profile = found[f"p{i}"]
        assert list(found) == [f"p{i}"] and profile is not None and profile.email == f"{i}@example.com"
    assert answers[5] == {}  # not stored: remembered as such
    await store.put_profiles(account_id, [write("p1", Profile(list_id=3, email="new@example.com"))])
    await store.append(account_id, [NewEvent(account_id, "later", "deliv", 3, "p1", time.time(), b"{}")])
    later = (await store.read_events(account_id, ["deliv"], None, buffer[-1].seq, 100)).events
    found = await cache.profiles(account_id, later, later)  # logged after the read: read again
    profile = found["p1"]
    assert profile is not None and profile.email == "new@example.com" and len(source.reads) == 2


class GatedSource(CountingSource):
    """The store, whose profile reads wait for ``gate`` (so a query can be held under way)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.gate = asyncio.Event()
        self.fail = False

    async def get_profiles(self, account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]:
        self.reads.append(set(profile_ids))
        await self.gate.wait()
        if self.fail:
            self.fail = False
            raise StoreUnavailable("the store went away")
        return await self.store.get_profiles(account_id, profile_ids)


async def test_hooks_asking_for_the_same_profiles_at_once_share_one_query(store: Store) -> None:
    """Many hooks take the same events and ask for their profiles at about the same time: a hook that needs what a
    query under way reads, at a head at or past its events, waits for that query — unless the query's head is
    below its events (it could miss a change made before they were logged), or the query fails."""
    account_id = await store.create_account("joined", "hash")
    await store.put_profiles(account_id, [write("p1", Profile(list_id=3, email="a@example.com"))])
    new = [
        NewEvent(account_id, f"e{i}", "deliv", 3, pid, time.time(), b"{}")
        for i, pid in enumerate(["p1", "p2"])
    ]
    await store.append(account_id, new)
    events = (await store.read_events(account_id, ["deliv"], None, 0, 100)).events
    source = GatedSource(store)
    cache = ProfileCache(source)
    first = asyncio.create_task(cache.profiles(account_id, events))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.profiles(account_id, events[:1]))  # p1 only: what the first one reads
    await asyncio.sleep(0.01)
    assert source.reads == [{"p1", "p2"}]  # the second waits for the first's query
    source.gate.set()
    for found in await asyncio.gather(first, second):
        profile = found["p1"]
        assert profile is not None and profile.email == "a@example.com" and "p2" not in found
    assert len(source.reads) == 1

    # a change, then an event logged after it: a query under way from before the event cannot serve it
    await store.put_profiles(account_id, [write("p1", Profile(list_id=3, email="b@example.com"))])
    await store.append(account_id, [NewEvent(account_id, "later", "deliv", 3, "p1", time.time(), b"{}")])
    (later,) = (await store.read_events(account_id, ["deliv"], None, events[-1].seq, 100)).events
    cache.keep_s = 0.0  # everything kept is too old: each call asks
    source.gate.clear()
    early = asyncio.create_task(cache.profiles(account_id, events[:1]))  # a query at the old head
    await asyncio.sleep(0.01)
    late = asyncio.create_task(cache.profiles(account_id, [later]))
    await asyncio.sleep(0.01)
    assert len(source.reads) == 3  # both under way: ``later`` is past the head of the one before it
    source.gate.set()
    found_late = await late
    await early
    profile = found_late["p1"]
    assert profile is not None and profile.email == "b@example.com"

    # the query waited for fails: the hook waiting asks on its own
    source.gate.clear()
    source.reads.clear()
    source.fail = True
    failing = asyncio.create_task(cache.profiles(account_id, events[:1]))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(cache.profiles(account_id, events[:1]))
    await asyncio.sleep(0.01)
    source.gate.set()
    with pytest.raises(StoreUnavailable):
        await failing
    profile = (await waiting)["p1"]
    assert profile is not None and profile.email == "b@example.com" and len(source.reads) == 2


async def test_a_query_made_after_a_hook_read_further_serves_the_events_up_to_there(store: Store) -> None:
    """A hook that read the log up to a position tells the cache (``committed``): a query made after that, for
    any hook, is at that head — so the events another hook is about to send, up to there, are served from it."""
    account_id = await store.create_account("committed", "hash")
    await store.put_profiles(account_id, [write("p1", Profile(list_id=3, email="a@example.com"))])
    new = [NewEvent(account_id, f"e{i}", "deliv", 3, "p1", time.time(), b"{}") for i in range(3)]
    await store.append(account_id, new)
    page = await store.read_events(account_id, ["deliv"], None, 0, 100)
    source = CountingSource(store)
    cache = ProfileCache(source)
    cache.head_at = time.monotonic()  # the head was read just now (it was 0): no query of the head meanwhile
    cache.committed(page.scanned_to)  # one hook read up to the head
    await cache.profiles(account_id, page.events[:1])  # another hook's first event
    found = await cache.profiles(account_id, page.events[1:])  # a third hook's later events
    profile = found["p1"]
    assert profile is not None and profile.email == "a@example.com"
    assert len(source.reads) == 1
    without = ProfileCache(CountingSource(store))
    without.head_at = time.monotonic()
    await without.profiles(account_id, page.events[:1])
    await without.profiles(account_id, page.events[1:])
    assert len(cast(CountingSource, without.source).reads) == 2  # the check can fail: without it, two queries


async def test_hooks_taking_events_the_feed_holds_read_their_profiles_once_per_chunk(store: Store) -> None:
    """The profiles of the events the feed holds are read once per chunk for every hook: all the profile ids the
    account's events in it name, in one read that hooks asking meanwhile wait for, kept ``keep_s`` seconds; a
    read that fails gives None (the hook reads on its own) and the next one asking reads again; a batch not all in
    memory is not served this way, and a sparse hook has no chunk read for it (but takes what others had read)."""
    account_id = await store.create_account("spans", "hash")
    other = await store.create_account("other", "hash2")
    await store.put_profiles(account_id, [write("p1", Profile(list_id=3, email="a@example.com"))])
    await store.append(other, [NewEvent(other, "o1", "deliv", 3, "q1", time.time(), b"{}")])
    start = await store.head()
    pids = ["p1", "p2", "p3", "p1", "p4", "p5"]  # p1 stored, the others not
    await store.append(
        account_id,
        [NewEvent(account_id, f"e{i}", "deliv", 3, pid, time.time(), b"{}") for i, pid in enumerate(pids)],
    )
    feed = LogFeed(store, chunk=3)
    feed.high = feed.low = start
    while not feed._at_head:
        await feed._read_more()
    events = (await store.read_events(account_id, ["deliv"], None, start, 100)).events
    spans = feed.spans(events[0].seq, events[-1].seq)
    assert spans is not None and len(spans) == 2
    assert (
        feed.spans(events[2].seq, events[3].seq) == spans
    )  # the last event of one chunk, the first of the next
    assert feed.spans(events[2].seq, events[2].seq) == spans[:1]
    assert feed.spans(start - 1, events[-1].seq) is None  # the other account's event is before the memory
    source = GatedSource(store)
    cache = ProfileCache(source)
    cache.span_density = 2
    # a sparse hook (fewer than 1/2 of the chunks' 6 events) has no chunk read for it: it reads by profile id
    assert await cache.of_spans(account_id, spans, 2) is None and source.reads == []
    first = asyncio.create_task(cache.of_spans(account_id, spans, 6))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.of_spans(account_id, spans[1:], 3))
    await asyncio.sleep(0.01)
    assert sorted(map(sorted, source.reads)) == [
        ["p1", "p2", "p3"],
        ["p1", "p4", "p5"],
    ]  # both chunks at once…
    source.gate.set()
    answers = await asyncio.gather(first, second)
    assert len(source.reads) == 2  # …once each: the second hook waited for the first's read
    for found in answers:
        assert found is not None and set(found) == {"p1"}
        profile = found["p1"]
        assert profile is not None and profile.email == "a@example.com"
    assert await cache.of_spans(account_id, spans, 6) is not None and len(source.reads) == 2  # kept
    assert (
        await cache.of_spans(account_id, spans, 1) is not None
    )  # read already: a sparse hook takes them too

    cache.keep_s = 0.0  # too old: read again, once
    source.gate.clear()
    source.fail = True
    failing = asyncio.create_task(cache.of_spans(account_id, spans[:1], 3))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(cache.of_spans(account_id, spans[:1], 3))
    await asyncio.sleep(0.01)
    source.gate.set()
    assert await failing is None and await waiting is None  # each then reads on its own (by profile id)
    assert len(source.reads) == 3
    found = await cache.of_spans(account_id, spans[:1], 3)  # the next one asking reads the chunk again
    assert found is not None and set(found) == {"p1"} and len(source.reads) == 4


async def test_hooks_without_custom_data_fields_share_one_completed_message_per_event(store: Store) -> None:
    """An event leaves the same way for every hook that takes its profile whole: the message is completed once
    (the same object for each) and again only when the profile is read again; a hook with ``custom_data_fields``
    completes its own."""
    account_id = await store.create_account("shared", "hash")
    await store.put_profiles(account_id, [write("p1", Profile(list_id=3, email="a@example.com"))])
    body = b'{"event_type":"deliv","profile_id":"p1","custom_data":{"city":"Omsk"}}'
    await store.append(account_id, [NewEvent(account_id, "e1", "deliv", 3, "p1", time.time(), body)])
    (event,) = (await store.read_events(account_id, ["deliv"], None, 0, 100)).events
    source = CountingSource(store)
    cache = ProfileCache(source)

    def hook(**settings: Any) -> Enricher:
        spec = parse_hook({"name": "h", "event_types": ["deliv"], "transport": {"type": "stub"}, **settings})
        enricher = Enricher(spec, source, account_id)
        enricher.cache = cache
        return enricher

    first, second, narrowed = hook(), hook(), hook(custom_data_fields=["email"])
    sent = [h.message(event, await h.profiles([event])) for h in (first, second, narrowed)]
    assert sent[0] is sent[1]  # made once
    assert msgspec.json.decode(sent[0].body)["_md5"] == email_hashes("a@example.com")[0]
    assert msgspec.json.decode(sent[0].body)["custom_data"] == {"city": "Omsk"}
    assert msgspec.json.decode(sent[2].body)["custom_data"] == {"email": "a@example.com"}  # its own
    cache.keep_s = 0.0  # the profile is read again: the message is made again, from the new read
    again = first.message(event, await first.profiles([event]))
    assert again is not sent[0] and again.body == sent[0].body and len(source.reads) == 2


async def test_a_sparse_hook_reads_the_chunks_the_accounts_hooks_together_take(store: Store) -> None:
    """A hook of rare events has its chunks read — all their profiles, once for every hook — when the account's
    hooks together take enough of the chunks' events (they would have them read anyway, after it); alone among
    hooks that take little of them it reads its own by profile id."""
    account_id = await store.create_account("sparse", "hash")
    await store.put_profiles(account_id, [write("p1", Profile(list_id=3, email="a@example.com"))])
    start = await store.head()
    kinds = ["open", "deliv", "deliv", "deliv", "deliv", "deliv"]  # the sparse hook takes the one open
    await store.append(
        account_id,
        [NewEvent(account_id, f"e{i}", kind, 3, "p1", time.time(), b"{}") for i, kind in enumerate(kinds)],
    )
    for others, read in ((("click",), False), (("deliv",), True)):  # the other hooks' types
        feed = LogFeed(store)
        feed.subscribe(Subscription(account_id, ("open",), None, asyncio.Event()))  # the sparse hook
        feed.subscribe(Subscription(account_id, others, None, asyncio.Event()))
        feed.high = feed.low = start
        while not feed._at_head:
            await feed._read_more()
        spans = feed.spans(start + 1, start + len(kinds))
        assert spans is not None
        source = CountingSource(store)
        cache = ProfileCache(source)
        cache.span_density = 2
        found = await cache.of_spans(account_id, spans, 1)  # its batch: the one open
        if read:  # the deliv hook takes 5 of the 6: the chunk is read, and serves both
            assert found is not None and set(found) == {"p1"} and source.reads == [{"p1"}]
            assert await cache.of_spans(account_id, spans, 5) is found and len(source.reads) == 1
        else:  # nobody takes enough of it: the sparse hook reads by profile id
            assert found is None and source.reads == []
