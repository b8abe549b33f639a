"""Replays and dead-letter redrives (issue 12 §2, §3) on both engines, over real HTTP to a loopback receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actionhooks.client import AsyncClient
from actionhooks.devtools import procs
from actionhooks.devtools.receiver import Answer, Receiver
from actionhooks.errors import RequestFailed
from actionhooks.integrations.base import Batch, SideMark
from actionhooks.store import Store

from .support import Service, User, eventually, service_settings

ACTIONHOOKS = str(Path(sys.executable).parent / "actionhooks")
EVENT: dict[str, Any] = {
    "event_type": "deliv",
    "event_date": "2016-11-15T09:12:28.514388956Z",
    "list_id": 50,
    "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": 130},
    "custom_data": {"email": "user@example.com", "plan": "gold"},
}


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def make_hook(service: Service, user: User, transport: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "name": "crm",
        "event_types": ["deliv", "click"],
        "transport": {"type": "http", **transport},
        **extra,
    }
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    return created


async def post_events(service: Service, user: User, n: int, **fields: Any) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 1000):
        batch = [{**EVENT, **fields} for _ in range(min(1000, n - start))]
        status, answer, _ = await service.call("POST", "/v1/events", user, batch)
        assert status == 202, answer
        ids += answer["ids"]
    return ids


async def delivered_live(
    service: Service, user: User, receiver: Receiver, count: int, **transport: Any
) -> tuple[dict[str, Any], float, float]:
    """A hook to ``receiver``, then ``count`` events posted and delivered live: the hook, and when the posting began
    and ended (the span a replay of them is asked for)."""
    hook = await make_hook(service, user, {"url": receiver.hook_url, **transport})
    start = time.time()
    await post_events(service, user, count)
    end = time.time()
    await receiver.wait_for_events(count, timeout=30)
    return hook, start, end


def replayed(receiver: Receiver, replay_id: int) -> list[Any]:
    """The events of the requests marked as the replay's, in the order they arrived."""
    return [
        e
        for r in receiver.requests
        if r.headers.get("Actionhooks-Replay") == str(replay_id)
        for e in msgspec.json.decode(r.body)
    ]


def live(receiver: Receiver) -> list[Any]:
    return [
        e
        for r in receiver.requests
        if "Actionhooks-Replay" not in r.headers and "Actionhooks-Redrive" not in r.headers
        for e in msgspec.json.decode(r.body)
    ]


async def replay_state(service: Service, user: User, hook_id: int, replay_id: int) -> dict[str, Any]:
    status, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/replays/{replay_id}", user)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


async def finished(
    service: Service, user: User, hook_id: int, replay_id: int, timeout: float = 60
) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        state = await replay_state(service, user, hook_id, replay_id)
        return state if state["state"] != "running" else None

    result: dict[str, Any] = await eventually(done, timeout=timeout, interval=0.1)
    return result


async def test_replay_of_a_range_arrives_complete_while_live_events_keep_flowing(
    service: Service, owner: User
) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    async with Receiver(secret=secret) as receiver:
        hook = await make_hook(
            service,
            owner,
            {"url": receiver.hook_url, "max_batch_size": 100, "timeout_s": 0.05, "signing_secret": secret},
            custom_data_fields=["email"],
        )
        await post_events(service, owner, 50)  # before the range
        await asyncio.sleep(0.01)
        start = time.time()
        in_range = await post_events(service, owner, 5000)
        end = time.time()
        await receiver.wait_for_events(5050, timeout=60)
        live_before = len(receiver.requests)

        receiver.default = Answer(
            delay=0.003
        )  # each request takes a moment: the replay spans many live posts
        during: list[str] = []
        flowing = True

        async def live_traffic() -> None:
            while flowing:
                during.extend(await post_events(service, owner, 20, event_type="click"))
                await asyncio.sleep(0.005)

        traffic = asyncio.create_task(live_traffic())
        await asyncio.sleep(0.05)
        status, replay, headers = await service.call(
            "POST", f"/v1/hooks/{hook['id']}/replays", owner, {"from": rfc3339(start), "to": rfc3339(end)}
        )
        assert status == 202, replay
        assert {"id", "state", "total", "sent"} <= replay.keys()
        assert replay["state"] == "running" and replay["total"] == 5000
        assert headers["Location"] == f"/v1/hooks/{hook['id']}/replays/{replay['id']}"
        state = await finished(service, owner, hook["id"], replay["id"])
        flowing = False
        await traffic
        assert state["state"] == "done" and state["sent"] == 5000 and state["error"] is None
        await receiver.wait_for_events(5050 + 5000 + len(during), timeout=60)
        assert receiver.verification_failures == []

        got = replayed(receiver, replay["id"])
        assert [e["id"] for e in got] == in_range  # complete, once each, in log order
        assert all(
            e["custom_data"] == {"email": "user@example.com"} for e in got
        )  # as live delivery sends now
        marked = [i for i, r in enumerate(receiver.requests) if "Actionhooks-Replay" in r.headers]
        between = receiver.requests[marked[0] : marked[-1]]
        assert any("Actionhooks-Replay" not in r.headers for r in between)  # live delivery went on meanwhile
        assert [e["id"] for e in live(receiver)][5050:] == during  # live delivery went on, in its order
        live_ids = {r.headers["webhook-id"] for r in receiver.requests[:live_before]}
        replay_ids = {r.headers["webhook-id"] for r in receiver.requests if "Actionhooks-Replay" in r.headers}
        assert len(replay_ids) == 50 and not live_ids & replay_ids


async def test_replay_takes_the_hook_filters_and_chosen_types(
    service: Service, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actionhooks.store.side._COUNT_PAGE", 3)  # the filtered count reads pages of 3 events
    async with Receiver() as receiver:
        hook = await make_hook(
            service,
            owner,
            {"url": receiver.hook_url, "max_batch_size": 7, "timeout_s": 0},
            list_id=50,
            filters={"campaign_ids": [130]},
        )
        start = time.time()
        wanted = await post_events(service, owner, 20)
        await post_events(service, owner, 5, event_type="click")
        await post_events(service, owner, 5, list_id=51)
        await post_events(
            service, owner, 5, event_data={"message_id": 5, "segment_id": 0, "campaign_id": 131}
        )
        end = time.time()
        await receiver.wait_for_events(25, timeout=20)
        status, replay, _ = await service.call(
            "POST",
            f"/v1/hooks/{hook['id']}/replays",
            owner,
            {"from": rfc3339(start), "to": rfc3339(end), "event_types": ["deliv"]},
        )
        assert status == 202 and replay["total"] == 20, replay
        assert (await finished(service, owner, hook["id"], replay["id"]))["sent"] == 20
        assert [e["id"] for e in replayed(receiver, replay["id"])] == wanted


async def test_replay_refusals_one_at_a_time_and_cancel(service: Service, owner: User, store: Store) -> None:
    async with Receiver() as receiver:
        hook = await make_hook(
            service, owner, {"url": receiver.hook_url, "max_batch_size": 10, "timeout_s": 0}
        )
        path = f"/v1/hooks/{hook['id']}/replays"
        now = time.time()
        span = {"from": rfc3339(now - 60), "to": rfc3339(now + 60)}
        status, body, _ = await service.call("PATCH", f"/v1/hooks/{hook['id']}", owner, {"active": False})
        assert status == 200, body  # a stopped hook keeps its replay waiting: it runs once the hook resumes
        status, first, _ = await service.call("POST", path, owner, span)
        assert status == 202 and first["state"] == "running", first
        status, body, _ = await service.call("POST", path, owner, span)
        assert status == 409, body
        for wrong, field in [
            ({"from": span["to"], "to": span["from"]}, "to"),
            ({**span, "event_types": ["open"]}, "event_types"),
            ({**span, "event_types": []}, "event_types"),
            ({"from": "yesterday", "to": span["to"]}, "from"),
            ({"from": "2026-01-01T00:00:00", "to": span["to"]}, "from"),
            ({"to": span["to"]}, "from"),
            ({**span, "speed": 2}, "speed"),
        ]:
            status, body, _ = await service.call("POST", path, owner, wrong)
            assert (status, body.get("field")) == (422, field), (wrong, body)
        status, cancelled, _ = await service.call("DELETE", f"{path}/{first['id']}", owner)
        assert status == 200 and cancelled["state"] == "cancelled"
        status, body, _ = await service.call("GET", f"{path}/{first['id']}", owner)
        assert status == 200 and body["state"] == "cancelled" and body["sent"] == 0
        other = await service.user("other")
        for method in ("GET", "DELETE"):
            status, _, _ = await service.call(method, f"{path}/{first['id']}", other)
            assert status == 404
            status, _, _ = await service.call(method, f"{path}/{first['id'] + 1000}", owner)
            assert status == 404
        status, second, _ = await service.call("POST", path, owner, span)
        assert status == 202 and second["id"] != first["id"]

        await post_events(service, owner, 3)
        await store.prune_events(time.time() + 1, None, [], 100)  # retention removes them
        status, body, _ = await service.call("POST", path, owner, span)
        assert (status, body["field"]) == (422, "from"), body
        assert "retention" in body["error"]


async def test_a_restart_mid_replay_resumes_from_its_cursor(store: Store, db_url: str) -> None:
    async with Receiver(default=Answer(delay=0.05)) as receiver:
        first = Service(store, service_settings(db_url))
        await first.start()
        try:
            owner = await first.user("owner")
            hook = await make_hook(
                first, owner, {"url": receiver.hook_url, "max_batch_size": 10, "timeout_s": 0}
            )
            start = time.time()
            ids = await post_events(first, owner, 600)
            end = time.time()
            await receiver.wait_for_events(600, timeout=30)
            status, replay, _ = await first.call(
                "POST", f"/v1/hooks/{hook['id']}/replays", owner, {"from": rfc3339(start), "to": rfc3339(end)}
            )
            assert status == 202
            await eventually(lambda: len(replayed(receiver, replay["id"])) >= 300, timeout=30)
            await eventually(lambda: _sent(store, hook, replay), timeout=10)
        finally:
            await first.stop()
        saved = await store.get_side_delivery(hook["id"], replay["id"])
        assert saved is not None and saved.state == "running"
        before_restart = len(replayed(receiver, replay["id"]))
        assert before_restart < 600
        second = Service(store, service_settings(db_url))
        await second.start()
        try:
            state = await finished(second, owner, hook["id"], replay["id"])
        finally:
            await second.stop()
        got = [e["id"] for e in replayed(receiver, replay["id"])]
        assert state["state"] == "done" and set(got) == set(ids)
        # went on from its saved cursor (every event up to it sent), not from the start of the range
        assert ids.index(got[before_restart]) == saved.sent >= 100
        assert got[before_restart:] == ids[saved.sent :]


async def _sent(store: Store, hook: dict[str, Any], replay: dict[str, Any]) -> bool:
    side = await store.get_side_delivery(hook["id"], replay["id"])
    return side is not None and side.sent >= 100


async def dead_letters(service: Service, user: User, hook_id: int) -> list[dict[str, Any]]:
    _, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters?limit=1000", user)
    result: list[dict[str, Any]] = body["dead_letters"]
    return result


async def test_redrive_after_fixing_the_url_delivers_every_dead_letter_in_order(
    service: Service, owner: User
) -> None:
    async with Receiver(default=Answer(410, b"gone")) as broken, Receiver() as fixed:
        hook = await make_hook(service, owner, {"url": broken.hook_url, "max_batch_size": 4, "timeout_s": 0})
        ids = await post_events(service, owner, 30)
        await eventually(lambda: _count(dead_letters(service, owner, hook["id"]), 30), timeout=20)
        status, body, _ = await service.call(
            "PATCH", f"/v1/hooks/{hook['id']}", owner, {"transport": {"url": fixed.hook_url}}
        )
        assert status == 200, body
        path = f"/v1/hooks/{hook['id']}/dead-letters/redrive"
        status, body, _ = await service.call("POST", path, owner, {"all": True})
        assert (status, body) == (202, {"redriven": 30})
        await fixed.wait_for_events(30, timeout=20)
        assert [e["id"] for e in fixed.events] == ids  # every one, in the original order
        assert all(r.headers.get("Actionhooks-Redrive") for r in fixed.requests)
        await eventually(lambda: _count(dead_letters(service, owner, hook["id"]), 0), timeout=10)
        status, body, _ = await service.call("POST", path, owner, {"all": True})
        assert (status, body) == (202, {"redriven": 0})


async def _count(letters: Any, n: int) -> bool:
    return len(await letters) == n


async def test_redrive_failing_again_returns_letters_with_the_new_reason_and_discard_removes_them(
    service: Service, owner: User
) -> None:
    async with Receiver(default=Answer(410, b"gone")) as receiver:
        hook = await make_hook(
            service, owner, {"url": receiver.hook_url, "max_batch_size": 1, "timeout_s": 0}
        )
        await post_events(service, owner, 6)
        await eventually(lambda: _count(dead_letters(service, owner, hook["id"]), 6), timeout=20)
        letters = await dead_letters(service, owner, hook["id"])
        receiver.default = Answer(400, b"still refused")
        base = f"/v1/hooks/{hook['id']}/dead-letters"
        chosen = [letters[0]["id"], letters[1]["id"]]
        status, body, _ = await service.call("POST", f"{base}/redrive", owner, {"ids": chosen})
        assert (status, body) == (202, {"redriven": 2})

        async def returned() -> bool:
            now = {d["id"]: d for d in await dead_letters(service, owner, hook["id"])}
            return all("400" in now[i]["reason"] for i in chosen)

        await eventually(returned, timeout=20)
        marked = [r for r in receiver.requests if r.headers.get("Actionhooks-Redrive")]
        sent = {e["id"] for r in marked for e in msgspec.json.decode(r.body)}  # tried (and retried) marked
        assert sent == {d["event_id"] for d in letters[:2]}
        for wrong, field in [
            ({}, "ids"),
            ({"ids": []}, "ids"),
            ({"ids": chosen, "all": True}, "all"),
            ({"ids": ["x"]}, "ids.0"),
            ({"all": True, "failed_after": "now"}, "failed_after"),
            ({"all": True, "colour": "red"}, "colour"),
        ]:
            status, body, _ = await service.call("POST", f"{base}/discard", owner, wrong)
            assert (status, body.get("field")) == (422, field), (wrong, body)
        status, body, _ = await service.call("POST", f"{base}/discard", owner, {"ids": [letters[2]["id"]]})
        assert (status, body) == (200, {"discarded": 1})
        reason = letters[3]["reason"]
        status, body, _ = await service.call(
            "POST", f"{base}/discard", owner, {"all": True, "reason": reason}
        )
        assert (status, body) == (200, {"discarded": 3})  # the two redriven ones carry another reason now
        left = await dead_letters(service, owner, hook["id"])
        assert sorted(d["id"] for d in left) == sorted(chosen)
        other = await service.user("other")
        status, _, _ = await service.call("POST", f"{base}/discard", other, {"all": True})
        assert status == 404
        future = rfc3339(time.time() + 3600)
        status, body, _ = await service.call(
            "POST", f"{base}/discard", owner, {"all": True, "failed_after": future}
        )
        assert (status, body) == (200, {"discarded": 0})


def test_side_marks_make_transport_dedupe_ids_differ() -> None:
    from actionhooks.events import LoggedEvent

    message = LoggedEvent(1, "0190-a", "deliv", None, None, b"{}")
    live = Batch(1, "1-1-1", [message])
    replay = Batch(1, "1-replay-7-1-1", [message], SideMark("Actionhooks-Replay", "7"))
    redrive = Batch(1, "1-redrive-8-1-1", [message], SideMark("Actionhooks-Redrive", "8"))
    assert live.dedupe_id(message) == "0190-a"
    assert replay.dedupe_id(message) == "0190-a:replay-7"
    assert redrive.dedupe_id(message) == "0190-a:redrive-8"


async def cli(*args: str) -> tuple[int, str, str]:
    """``actionhooks`` in a child process, the event loop going on meanwhile (the service in this process
    sends what the command queues)."""
    child = await asyncio.create_subprocess_exec(
        ACTIONHOOKS, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=procs.env()
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_cli_replays_with_progress_redrives_and_discards(
    service: Service, owner: User, db_url: str
) -> None:
    async with Receiver(default=Answer(410, b"gone")) as receiver:
        hook = await make_hook(
            service, owner, {"url": receiver.hook_url, "max_batch_size": 5, "timeout_s": 0}
        )
        start = time.time()
        ids = await post_events(service, owner, 40)
        end = time.time()
        await eventually(lambda: _count(dead_letters(service, owner, hook["id"]), 40), timeout=20)
        letters = await dead_letters(service, owner, hook["id"])
        code, out, err = await cli(
            "hooks", "discard", str(hook["id"]), "--id", str(letters[0]["id"]), "--db", db_url
        )
        assert (code, json.loads(out)) == (0, {"discarded": 1}), err
        receiver.default = Answer()
        code, out, err = await cli("hooks", "redrive", str(hook["id"]), "--all", "--db", db_url)
        assert (code, json.loads(out)) == (0, {"redriven": 39}), err
        await eventually(lambda: _count(dead_letters(service, owner, hook["id"]), 0), timeout=20)
        redriven = [
            e["id"]
            for r in receiver.requests
            if "Actionhooks-Redrive" in r.headers
            for e in json.loads(r.body)
        ]
        assert redriven == [i for i in ids if i != letters[0]["event_id"]]

        code, out, err = await cli(
            "hooks", "replay", str(hook["id"]), "--from", rfc3339(start), "--to", rfc3339(end), "--db", db_url
        )
        assert code == 0, err
        replay = json.loads(out)
        assert (replay["state"], replay["total"], replay["sent"]) == ("done", 40, 40)
        assert f"replay {replay['id']}" in err and "40/40" in err  # the progress bar, on stderr
        assert [e["id"] for e in replayed(receiver, replay["id"])] == ids
        code, _, err = await cli(
            "hooks", "replay", str(hook["id"]), "--from", rfc3339(end), "--to", rfc3339(start), "--db", db_url
        )
        assert code == 1 and "to must be after from" in err
        code, _, err = await cli("hooks", "redrive", str(hook["id"]), "--db", db_url)
        assert code == 2 and "--id" in err
        code, _, err = await cli("hooks", "redrive", "999999", "--all", "--db", db_url)
        assert code == 1 and "no hook 999999" in err


async def test_the_client_starts_reads_and_cancels_a_replay_and_redrives_or_discards(
    service: Service, owner: User
) -> None:
    async with Receiver(default=Answer(410, b"gone")) as receiver:
        hook = await make_hook(
            service, owner, {"url": receiver.hook_url, "max_batch_size": 10, "timeout_s": 0}
        )
        await post_events(service, owner, 4)
        await eventually(lambda: _count(dead_letters(service, owner, hook["id"]), 4), timeout=20)
        letters = await dead_letters(service, owner, hook["id"])
        async with AsyncClient(service.url, owner.key) as client:
            await client.update_hook(hook["id"], {"active": False})  # the replay waits: it can be cancelled
            now = datetime.now(UTC)
            started = await client.start_replay(hook["id"], now - timedelta(hours=1), now, ["deliv"])
            assert (started.state, started.total, started.event_types) == ("running", 4, ["deliv"])
            assert (await client.replay(hook["id"], started.id)).id == started.id
            with pytest.raises(RequestFailed) as refused:
                await client.start_replay(hook["id"], now - timedelta(hours=1), now)
            assert refused.value.status == 409
            assert (await client.cancel_replay(hook["id"], started.id)).state == "cancelled"
            assert await client.discard_dead_letters(hook["id"], ids=[letters[0]["id"]]) == 1
            assert await client.redrive_dead_letters(hook["id"], all=True) == 3


async def test_a_replay_sends_what_live_delivery_would_send_now(service: Service, owner: User) -> None:
    """Enrichment is the replay's, not a copy of the first delivery: a profile changed since is what it sends."""
    async with Receiver() as receiver:
        hook = await make_hook(
            service,
            owner,
            {"url": receiver.hook_url, "max_batch_size": 10, "timeout_s": 0},
            custom_data_fields=["city"],
        )
        status, body, _ = await service.call("PUT", "/v1/profiles/p-1", owner, {"fields": {"city": "Omsk"}})
        assert status == 200, body
        start = time.time()
        ids = await post_events(service, owner, 3, profile_id="p-1")
        await post_events(service, owner, 1)  # no profile: custom_data narrowed to the hook's fields
        end = time.time()
        await receiver.wait_for_events(4, timeout=20)
        assert [e["custom_data"] for e in receiver.events[:3]] == [{"city": "Omsk"}] * 3
        status, body, _ = await service.call("PUT", "/v1/profiles/p-1", owner, {"fields": {"city": "Tomsk"}})
        assert status == 200, body
        status, replay, _ = await service.call(
            "POST", f"/v1/hooks/{hook['id']}/replays", owner, {"from": rfc3339(start), "to": rfc3339(end)}
        )
        assert status == 202 and replay["total"] == 4
        assert (await finished(service, owner, hook["id"], replay["id"]))["sent"] == 4
        got = replayed(receiver, replay["id"])
        assert [e["id"] for e in got[:3]] == ids  # the same events, the same ids
        assert [e["custom_data"] for e in got] == [{"city": "Tomsk"}] * 3 + [{}]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # pacing is the dispatcher's, not the store's
async def test_a_replay_keeps_the_hooks_rate_limit(service: Service, owner: User) -> None:
    """A replay sends through the hook's one limiter: 150 events at 50 a second take at least two seconds (the
    first second's batch goes at once), where the same replay unlimited takes a fraction of one."""
    async with Receiver() as receiver:
        hook, start, end = await delivered_live(
            service, owner, receiver, 150, max_batch_size=100, timeout_s=0.05
        )
        status, _, _ = await service.call(
            "PATCH", f"/v1/hooks/{hook['id']}", owner, {"max_events_per_second": 50}
        )
        assert status == 200
        await asyncio.sleep(1.0)  # the last live batch's time line is behind us
        began = time.monotonic()
        status, replay, _ = await service.call(
            "POST", f"/v1/hooks/{hook['id']}/replays", owner, {"from": rfc3339(start), "to": rfc3339(end)}
        )
        assert status == 202, replay
        state = await finished(service, owner, hook["id"], replay["id"])
        await eventually(lambda: len(replayed(receiver, replay["id"])) == 150, timeout=10, interval=0.05)
        took = time.monotonic() - began
        assert state["state"] == "done"
        assert took >= 1.9, f"150 events at 50/s replayed in {took:.2f} s"


async def test_a_replays_sends_wait_for_the_accounts_send_budget(service: Service, owner: User) -> None:
    """A replay's batches count in the account's bytes out at once, like live delivery's: while the budget is
    spent, the replay sends nothing; once it is given back, the replay goes on and completes."""
    async with Receiver() as receiver:
        hook, start, end = await delivered_live(service, owner, receiver, 30, max_batch_size=10, timeout_s=0)
        budget = service.dispatcher.budgets.of(owner.account_id)
        budget.limit = 1
        await budget.take(1)  # as a live send out would hold it
        status, replay, _ = await service.call(
            "POST", f"/v1/hooks/{hook['id']}/replays", owner, {"from": rfc3339(start), "to": rfc3339(end)}
        )
        assert status == 202, replay
        await asyncio.sleep(0.5)
        assert replayed(receiver, replay["id"]) == []
        budget.give(1)
        state = await finished(service, owner, hook["id"], replay["id"])
        assert state["state"] == "done" and len(replayed(receiver, replay["id"])) == 30
