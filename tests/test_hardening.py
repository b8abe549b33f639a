"""Hostile input is refused at the edge, and what slips into the log cannot stall a hook (issue 9 §4).

Each test names the class of input it closes: JSON that receivers read differently, bodies and headers without
bounds, ids that overflow 64 bits, addresses that hide IPv4 inside IPv6, settings that would fail every send.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actionhooks.devtools import procs
from actionhooks.events import NewEvent
from actionhooks.netguard import NetGuard
from actionhooks.store import Store, open_store

from .stub import StubDestination
from .support import Service, User, eventually

EVENT: dict[str, Any] = {
    "event_type": "deliv",
    "event_date": "2018-03-04T13:13:19.034315796Z",
    "list_id": 5,
    "event_data": {"message_id": 1, "campaign_id": 2},
    "custom_data": {"email": "a@example.com", "name": "Ann"},
}
GOOD = msgspec.json.encode(EVENT)


def with_data(data: bytes) -> bytes:
    """The good event with ``event_data`` replaced by these raw bytes."""
    return GOOD.replace(b'{"message_id":1,"campaign_id":2}', data)


async def post_items(service: Service, user: User, items: list[bytes]) -> dict[str, Any]:
    status, body, _ = await service.call("POST", "/v1/events", user, raw=b"[" + b",".join(items) + b"]")
    assert status in (202, 400), body
    result: dict[str, Any] = body
    return result


AMBIGUOUS = {
    "invalid UTF-8": with_data(b'{"name":"\xff\xfe"}'),
    "an encoded surrogate": with_data(b'{"name":"\xed\xa0\x80"}'),
    "a lone escaped surrogate": with_data(b'{"name":"\\ud800"}'),
    "a lone low surrogate in custom_data": GOOD.replace(b'"Ann"', b'"\\udc00"'),
    "a float beyond a double": with_data(b'{"x":1e999999}'),
    "a negative one": with_data(b'{"x":-1e400}'),
    "a 400-digit integer": with_data(b'{"x":1' + b"0" * 400 + b"}"),
    "a duplicate key in event_data": with_data(b'{"a":1,"a":2}'),
    "a duplicate key deep down": with_data(b'{"a":[{"b":1,"c":{"d":1,"d":1}}]}'),
    "account_id twice": GOOD[:-1] + b',"account_id":1,"account_id":2}',
    "id twice": GOOD[:-1] + b',"id":"a","id":"b"}',
}


async def test_json_that_receivers_would_read_differently_is_an_item_error(
    service: Service, owner: User
) -> None:
    for name, item in AMBIGUOUS.items():
        status, body, _ = await service.call("POST", "/v1/events", owner, raw=item)
        assert status == 400 and not body.get("ids"), (name, body)
    # in a batch they are item errors; the valid events around them are accepted
    result = await post_items(service, owner, [GOOD, AMBIGUOUS["a duplicate key in event_data"], GOOD])
    assert (result["accepted"], [e["index"] for e in result["errors"]]) == (2, [1]), result
    assert "duplicate key 'a'" in result["errors"][0]["error"]
    # the well-paired cases stay valid: a surrogate pair, a big but finite number, the same key in two objects
    fine = [with_data(b'{"e":"\\ud83d\\ude00","x":1e308,"n":' + b"9" * 300 + b',"a":{"k":1},"b":{"k":1}}')]
    assert (await post_items(service, owner, fine))["accepted"] == 1


async def test_an_event_a_worker_cannot_prepare_is_dead_lettered_and_later_ones_go(
    service: Service, owner: User, store: Store
) -> None:
    """Events already in the log (accepted before ingest was strict) must not stall a hook that enriches them."""
    destination = StubDestination("hardening-enrich")
    hook = {
        "name": "enriching",
        "event_types": ["deliv"],
        "custom_data_fields": ["email"],
        "transport": {"type": "stub", "name": "hardening-enrich", "timeout_s": 0, "max_batch_size": 1},
    }
    status, created, _ = await service.call("POST", "/v1/hooks", owner, hook)
    assert status == 201
    now = time.time()
    bad = NewEvent(owner.account_id, "bad-1", "deliv", 5, None, now, with_data(b'{"name":"\xff"}'))
    good = NewEvent(owner.account_id, "good-1", "deliv", 5, None, now, GOOD[:-1] + b',"id":"good-1"}')
    await store.append(owner.account_id, [bad, good], {"bad-1", "good-1"})
    await destination.wait_for_events(1)
    assert destination.event_ids == ["good-1"]

    async def letters() -> list[dict[str, Any]]:
        _, body, _ = await service.call("GET", f"/v1/hooks/{created['id']}/dead-letters", owner)
        found: list[dict[str, Any]] = body["dead_letters"]
        return found

    (letter,) = await eventually(letters)
    assert letter["event_id"] == "bad-1"
    assert "cannot prepare" in letter["reason"]
    _, attempts, _ = await service.call("GET", f"/v1/hooks/{created['id']}/attempts", owner)
    failed = [a for a in attempts["attempts"] if a["outcome"] == "failed"]
    assert len(failed) == 1 and "cannot prepare" in failed[0]["error"]
    await service.dispatcher.caught_up(created["id"])
    _, shown, _ = await service.call("GET", f"/v1/hooks/{created['id']}", owner)
    assert shown["last_error"] is None  # cleared by the good event's delivery, which came after


async def test_body_limit_holds_on_every_route_before_the_body_is_read(service: Service, owner: User) -> None:
    """A declared length over the limit is refused at once, without waiting for (or holding) the body."""
    status, created, _ = await service.call(
        "POST", "/v1/hooks", owner, {"name": "h", "event_types": ["deliv"], "transport": {"type": "stub"}}
    )
    assert status == 201
    for path in (
        "/v1/events",
        "/v1/hooks",
        f"/v1/hooks/{created['id']}/clone",
        f"/v1/hooks/{created['id']}/test",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {owner.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n{"
        )
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=3)
        assert b" 413 " in status_line, (path, status_line)
        writer.close()
    # and a chunked body (no declared length) is cut off at the limit
    big = b"[" + b" " * (2 * 1024 * 1024) + b"]"

    async def chunks() -> Any:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    assert service.session is not None
    for path in (f"/v1/hooks/{created['id']}/clone", f"/v1/hooks/{created['id']}/test"):
        async with service.session.post(path, data=chunks(), headers=owner.headers) as resp:
            assert resp.status == 413, path


async def test_ingest_counts_items_before_building_them(service: Service, owner: User) -> None:
    limit = service.settings.limits.max_items
    for raw, ctype in (
        (b"[" + b"0," * (limit * 200) + b"0]", "application/json"),
        (b"{}\n" * (limit * 100), "application/x-ndjson"),
    ):
        started = time.perf_counter()
        status, body, _ = await service.call(
            "POST", "/v1/events", owner, raw=raw, headers={"Content-Type": ctype}
        )
        assert status == 413, body
        assert f"the limit is {limit}" in body["error"]
    assert time.perf_counter() - started < 2


async def test_five_million_tiny_items_cost_no_more_than_the_limit(store: Store) -> None:
    """Items are counted before they are built: the 413 comes before millions of objects (old: 0.7 s of stall)."""
    from actionhooks.api.ingest import ingest
    from actionhooks.config import IngestLimits
    from actionhooks.errors import ApiError

    limits = IngestLimits(max_body_bytes=16 * 1024 * 1024, max_items=1000, max_pending=1)
    for body, ctype in (
        (b"[" + b"0," * 5_000_000 + b"0]", "application/json"),
        (b"0\n" * 5_000_000, "application/x-ndjson"),
    ):
        started = time.perf_counter()
        with pytest.raises(ApiError) as refused:
            await ingest(store, 1, body, ctype, limits)
        assert refused.value.status == 413
        assert time.perf_counter() - started < 0.3, ctype


async def test_ids_beyond_64_bits_or_not_plain_digits_are_404_or_422(service: Service, owner: User) -> None:
    for hook_id in ("99999999999999999999999", "9223372036854775808", "-1", "+1", "1_0", "%D9%A3", "%201"):
        status, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}", owner)
        assert status == 404, (hook_id, status, body)
    status, created, _ = await service.call(
        "POST", "/v1/hooks", owner, {"name": "h", "event_types": ["deliv"], "transport": {"type": "stub"}}
    )
    for before in ("9223372036854775808", "99999999999999999999999", "-9223372036854775809", "1e3"):
        for what in ("attempts", "dead-letters"):
            status, body, _ = await service.call(
                "GET", f"/v1/hooks/{created['id']}/{what}?before={before}", owner
            )
            assert status == 422, (before, status, body)
            assert body["field"] == "before"


async def test_a_client_gone_mid_body_is_not_an_unexpected_error(
    service: Service, owner: User, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        _, writer = await asyncio.open_connection("127.0.0.1", service.port)
        head = f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {owner.key}\r\nContent-Length: 1000\r\n\r\n["
        writer.write(head.encode())
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)
        status, _, _ = await service.call("GET", "/healthz", None)
        assert status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


@pytest.mark.parametrize(
    "address",
    [
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:0:127.0.0.1",  # IPv4-translated (RFC 2765)
        "::ffff:0:169.254.169.254",
        "64:ff9b::127.0.0.1",  # NAT64 well-known prefix
        "64:ff9b::10.1.2.3",
        "64:ff9b:1::192.168.0.1",  # NAT64 local-use prefix
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "fe80::1%eth0",
        "::",
    ],
)
def test_ipv6_forms_that_embed_a_refused_ipv4_are_refused(address: str) -> None:
    assert NetGuard().refusal(address), address


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::8.8.8.8", "2002:808:808::1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert NetGuard().refusal(address) is None


async def test_settings_with_control_characters_are_refused(service: Service, owner: User) -> None:
    base = {"name": "h", "event_types": ["deliv"]}
    for value in ("a\x01b", "a\x7fb", "a\x1bb", "\x00"):
        transport = {"type": "http", "url": "https://example.com/", "headers": {"X-Key": value}}
        status, body, _ = await service.call("POST", "/v1/hooks", owner, {**base, "transport": transport})
        assert status == 422, (value, body)
        assert body["field"] == "transport.headers.X-Key"
    status, body, _ = await service.call(
        "POST", "/v1/hooks", owner, {**base, "name": "a\x1b[2J", "transport": {"type": "stub"}}
    )
    assert (status, body["field"]) == (422, "name")
    transport = {"type": "http", "url": "https://example.com/", "headers": {"X-Key": "a\tb é"}}
    status, body, _ = await service.call("POST", "/v1/hooks", owner, {**base, "transport": transport})
    assert status == 201, body


async def test_duplicate_keys_in_hook_settings_are_refused(service: Service, owner: User) -> None:
    raw = b'{"name":"h","event_types":["deliv"],"transport":{"type":"stub","name":"a","name":"b"}}'
    status, body, _ = await service.call("POST", "/v1/hooks", owner, raw=raw)
    assert status == 400, body
    assert "duplicate key" in body["error"]


async def test_ids_dates_and_media_types_follow_their_specs(service: Service, owner: User) -> None:
    def ev(**changes: Any) -> bytes:
        return msgspec.json.encode({**EVENT, **changes})

    valid = [
        ev(event_date="2016-12-31T23:59:60Z"),  # a leap second
        ev(event_date="9999-12-31T23:59:59.999999999Z"),  # must not round into year 10000
        ev(event_date="9999-12-31T23:59:59+01:00"),
        ev(event_date="0001-01-01T00:00:00-01:00"),
        ev(event_date="2018-03-04t13:13:19z"),
    ]
    invalid = [
        ev(id="abc\n"),
        ev(event_date="9999-12-31T23:30:00-01:00"),  # year 10000 in UTC
        ev(event_date="0001-01-01T00:30:00+01:00"),  # year 0 in UTC
        ev(event_date="2018-03-04T13:13:19Z\n"),
        ev(event_date="2018-03-04T13:13:61Z"),
        ev(event_date="2018-03-04T13:13:19+01:75"),
        ev(event_date="٢٠١٨-03-04T13:13:19Z"),
        ev(profile_id="p\n\x00"),
    ]
    result = await post_items(service, owner, valid + invalid)
    assert result["accepted"] == len(valid), result["errors"]
    assert [e["index"] for e in result["errors"]] == list(range(len(valid), len(valid) + len(invalid)))
    stored = await service.store.read_events(owner.account_id, ["deliv"], None, 0, 100, 10_000_000)
    dates = [msgspec.json.decode(e.body)["event_date"] for e in stored.events]
    assert "9999-12-31T23:59:59.999999999Z" in dates and "2016-12-31T23:59:60Z" in dates
    for ctype in ("APPLICATION/X-NDJSON", "application/x-ndjson; charset=utf-8", " Application/JSONL "):
        status, body, _ = await service.call(
            "POST", "/v1/events", owner, raw=GOOD + b"\n" + GOOD + b"\n", headers={"Content-Type": ctype}
        )
        assert (status, body.get("accepted")) == (202, 2), (ctype, body)


async def test_hook_ids_are_never_reused_after_delete(store: Store) -> None:
    from actionhooks.hooks import parse_hook
    from actionhooks.registry import HookRegistry

    hooks = HookRegistry(store)
    await hooks.open()
    account = await store.create_account("a", "hash-a")
    spec = parse_hook({"name": "h", "event_types": ["deliv"], "transport": {"type": "stub"}})
    first = await hooks.create_hook(account, spec)
    second = await hooks.create_hook(account, spec)
    await hooks.delete_hook(account, second.id)
    third = await hooks.create_hook(account, spec)
    assert third.id > second.id > first.id


async def test_sqlite_upgrade_keeps_hooks_and_indexes_and_stops_reuse(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    initial = (
        resources.files("actionhooks.store").joinpath("migrations", "sqlite", "001_initial.sql").read_text()
    )
    with sqlite3.connect(path) as conn:
        conn.executescript(initial)
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        conn.execute("INSERT INTO accounts VALUES (1, 'a', 0)")
        for hook_id in (1, 2, 3):
            conn.execute(
                "INSERT INTO hooks (id, account_id, settings, active, cursor, created_at, updated_at)"
                " VALUES (?, 1, x'00', 1, 7, 0, 0)",
                (hook_id,),
            )
        conn.execute("DELETE FROM hooks WHERE id = 3")
    store = open_store(f"sqlite:///{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, cursor FROM hooks ORDER BY id").fetchall() == [(1, 7), (2, 7)]
        table_sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'hooks'").fetchone()[0]
        assert "AUTOINCREMENT" in table_sql
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'hooks'")}
        assert "hooks_account" in indexes
        conn.execute(
            "INSERT INTO hooks (account_id, settings, active, cursor, created_at, updated_at)"
            " VALUES (1, x'00', 1, 0, 0, 0)"
        )
        conn.execute("DELETE FROM hooks WHERE id = 3")
        conn.execute(
            "INSERT INTO hooks (account_id, settings, active, cursor, created_at, updated_at)"
            " VALUES (1, x'00', 1, 0, 0, 0)"
        )
        assert max(r[0] for r in conn.execute("SELECT id FROM hooks")) == 4


def _serve(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], int, str]:
    _, key = procs.create_account(f"sqlite:///{tmp_path / 'serve.db'}")
    port = procs.free_port()
    command = [
        str(Path(sys.executable).parent / "actionhooks"),
        "serve",
        "--no-dispatch",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(
        [*command, "--db", f"sqlite:///{tmp_path / 'serve.db'}", "--log-level", "warning", *options],
        env=procs.env(),
    )
    procs.wait_port(port)
    return server, port, key


async def _status_line(port: int, request: bytes, pause_after: int | None = None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request if pause_after is None else request[:pause_after])
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()


async def test_server_bounds_headers_and_slow_clients(tmp_path: Path) -> None:
    server, port, key = await asyncio.to_thread(
        _serve, tmp_path, "--head-timeout", "1", "--body-timeout", "1"
    )
    try:
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
        assert b" 431 " in await _status_line(port, huge)
        normal = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        assert b" 200 " in await _status_line(port, normal)
        started = time.monotonic()
        assert b" 408 " in await _status_line(port, normal, pause_after=10)  # the head never ends
        assert time.monotonic() - started < 5
        started = time.monotonic()
        slow_body = f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        line = await _status_line(port, slow_body.encode() + b"Content-Length: 100\r\n\r\n[{")
        assert b" 408 " in line  # the body stopped coming
        assert time.monotonic() - started < 5
    finally:
        server.terminate()
        server.wait(timeout=10)
