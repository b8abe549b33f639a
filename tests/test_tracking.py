"""Tracking tokens, the open pixel, the click redirect, the site collector and the visitor flags (both engines)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actionhooks.api.tracking import GIF
from actionhooks.capture import dwell, tokens, visitor
from actionhooks.catalog import catalog
from tests.stub import StubDestination

from .support import Service, User, eventually

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.0 Mobile/15E148 Safari/604.1"
)
# what /usr/bin/chromium --headless sends (tests/test_capture_browser.py sees the real one reach the pixel)
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0"
    " Safari/537.36"
)
WANTED = {
    "profile_id": "p1",
    "list_id": 3,
    "message_id": 7,
    "campaign_id": 1,
    "resource_id": 9,
    "channel": "email",
    "link_url": "https://shop.example.com/sale?x=1",
}


async def logged(service: Service, user: User) -> list[dict[str, Any]]:
    page = await service.store.read_events(
        user.account_id, list(catalog().codes), None, 0, 10_000, window=1_000_000
    )
    return [msgspec.json.decode(e.body) for e in page.events]


async def mint(service: Service, user: User, **changes: Any) -> dict[str, Any]:
    status, body, _ = await service.call("POST", "/v1/tracking-tokens", user, {**WANTED, **changes})
    assert status == 201, body
    return dict(body)


async def fetch(
    service: Service, method: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """A public request, redirects not followed."""
    assert service.session is not None
    async with service.session.request(method, target, headers=headers, allow_redirects=False) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


def path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def test_open_pixel_records_open_and_uopen(service: Service, owner: User) -> None:
    made = await mint(service, owner)
    assert made["open_url"].startswith(service.settings.public_url)
    for _ in range(2):
        status, body, headers = await service.call(
            "GET", path(made["open_url"]), None, headers={"User-Agent": IPHONE}
        )
        assert status == 200 and body == GIF and headers["Content-Type"] == "image/gif"
    messages = await logged(service, owner)
    assert [m["event_type"] for m in messages] == ["open", "uopen", "open"]
    data = messages[0]["event_data"]
    assert messages[0]["profile_id"] == "p1" and messages[0]["list_id"] == 3
    assert data["message_id"] == 7 and data["campaign_id"] == 1 and data["ip"] == "127.0.0.1"
    assert data["os"] == "iOS" and data["browser"] == "Mobile Safari" and data["device"] == "iPhone"
    assert data["machine_open"] is True  # fetched within seconds of the token's issue
    assert "country" not in data  # no GeoIP: never guessed


async def test_click_redirects_to_the_signed_link_only(service: Service, owner: User) -> None:
    made = await mint(service, owner)
    status, _, headers = await fetch(service, "GET", path(made["click_url"]), {"User-Agent": IPHONE})
    assert status == 302 and headers["Location"] == WANTED["link_url"]
    assert [m["event_type"] for m in await logged(service, owner)] == ["open", "uopen", "click", "uclick"]


def _tampered(token: str) -> list[str]:
    version, key_id, claims, mac = token.split(".")
    raw = msgspec.json.decode(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    raw["u"] = "https://evil.example.com/"
    evil = base64.urlsafe_b64encode(msgspec.json.encode(raw)).rstrip(b"=").decode()
    return [
        f"{version}.{key_id}.{evil}.{mac}",  # another link under the old signature
        f"{version}.{key_id}.{claims}.{mac[:-2]}AA",  # a changed signature
        f"{version}.{key_id}.{claims}",  # unsigned
        f"{version}.ffffffff.{claims}.{mac}",  # an unknown key
        "garbage",
        "v1.a.b.c",
    ]


async def test_tampered_tokens_answer_400_and_record_nothing(service: Service, owner: User) -> None:
    made = await mint(service, owner)
    for bad in _tampered(made["token"]):
        status, body, headers = await fetch(service, "GET", f"/t/click/{bad}")
        assert status == 400, bad
        assert "Location" not in headers
        status, body, _ = await service.call("GET", f"/t/open/{bad}", None)
        assert status == 200 and body == GIF
    assert await logged(service, owner) == []


async def test_key_rotation(service: Service, owner: User) -> None:
    old = await mint(service, owner)
    status, key, _ = await service.call("POST", "/v1/account/tracking-keys", owner)
    assert status == 201
    new = await mint(service, owner)
    assert new["token"].split(".")[1] == key["key_id"] != old["token"].split(".")[1]
    # a platform holding the key mints its own token
    secret = base64.urlsafe_b64decode(key["secret"] + "=" * (-len(key["secret"]) % 4))
    own = tokens.sign(key["key_id"], secret, tokens.Claims(a=owner.account_id, u="https://x.example/"))
    status, _, headers = await fetch(service, "GET", f"/t/click/{own}")
    assert status == 302 and headers["Location"] == "https://x.example/"
    status, _, _ = await fetch(service, "GET", path(old["click_url"]))
    assert status == 302  # the older key still verifies
    old_key = old["token"].split(".")[1]
    status, _, _ = await service.call("DELETE", f"/v1/account/tracking-keys/{old_key}", owner)
    assert status == 204
    service.app.state.tracking_keys._cache.clear()
    status, _, _ = await fetch(service, "GET", path(old["click_url"]))
    assert status == 400
    _, account, _ = await service.call("GET", "/v1/account", owner)
    assert [k["key_id"] for k in account["tracking_keys"]] == [key["key_id"], old_key]


async def test_another_accounts_key_does_not_verify(service: Service, owner: User, outsider: User) -> None:
    made = await mint(service, owner)
    other = await mint(service, outsider)
    claims = made["token"].split(".")[2]
    forged = f"v1.{other['token'].split('.')[1]}.{claims}.{other['token'].split('.')[3]}"
    status, _, _ = await fetch(service, "GET", f"/t/click/{forged}")
    assert status == 400


async def test_bad_token_requests(service: Service, owner: User) -> None:
    for body in ({"channel": "fax"}, {"link_url": "javascript:alert(1)"}, {"list_id": -1}):
        status, _, _ = await service.call("POST", "/v1/tracking-tokens", owner, body)
        assert status == 422, body


async def test_site_collector(service: Service, owner: User) -> None:
    made = await mint(service, owner, channel="site", pixel_id=5, link_url=None)
    status, script, headers = await service.call("GET", "/t/collector.js", None)
    assert status == 200 and b"pixel_open" in script and "javascript" in headers["Content-Type"]
    url = f"/t/collect/{made['token']}"
    text = {"Content-Type": "text/plain", "User-Agent": IPHONE}
    sent = {
        "event_type": "pixel_open",
        "visitor_id": "v1",
        "url": "https://shop.example/",
        "params": {"utm_a": "b"},
    }
    status, _, headers = await service.call("POST", url, None, raw=msgspec.json.encode(sent), headers=text)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    popup = {"event_type": "popup_post", "visitor_id": "v1", "popup_id": 3, "form_data": {"email": "a@b.c"}}
    status, _, _ = await service.call("POST", url, None, raw=msgspec.json.encode(popup), headers=text)
    assert status == 204
    status, _, _ = await service.call("POST", url, None, {"event_type": "popup_open", "visitor_id": "v1"})
    assert status == 422  # popup_id missing
    opened, posted = await logged(service, owner)
    assert opened["event_type"] == "pixel_open" and opened["event_data"]["pixel_id"] == 5
    assert opened["event_data"]["params"] == {"utm_a": "b"}
    assert posted["event_data"]["form_data"] == {"email": "a@b.c"}
    email = await mint(service, owner)
    status, _, _ = await service.call("POST", f"/t/collect/{email['token']}", None, sent)
    assert status == 400  # not a site token
    for _ in range(40):
        status, _, _ = await service.call("POST", url, None, raw=msgspec.json.encode(sent), headers=text)
    assert status == 429


@pytest.mark.parametrize(
    ("agent", "method", "age", "click", "expected"),
    [
        ("Mozilla/5.0", "GET", 3600.0, False, None),
        (IPHONE, "HEAD", 3600.0, True, "HEAD request"),
        ("python-requests/2.31", "GET", 3600.0, True, "scanner user agent (python-requests)"),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", "GET", 3600.0, False, "crawler user agent"),
        (IPHONE, "GET", 1.0, True, "clicked 1 s after the message was sent"),
        (IPHONE, "GET", 3600.0, True, None),
        (HEADLESS_CHROME, "GET", 3600.0, False, "headless browser user agent (headlesschrome)"),
        (
            "Mozilla/5.0 (Unknown; Linux x86_64) PhantomJS/2.1.1 Safari/538.1",
            "GET",
            3600.0,
            True,
            "headless browser user agent (phantomjs)",
        ),
    ],
)
def test_bot_flags(agent: str, method: str, age: float, click: bool, expected: str | None) -> None:
    assert visitor.suspected_bot(agent, method, age, click=click) == expected


def test_machine_open_flags() -> None:
    assert visitor.machine_open("Mozilla/5.0", 3600) == "Apple Mail Privacy Protection user agent"
    assert visitor.machine_open(IPHONE, 2.0) == "fetched 2 s after the message was sent"
    assert visitor.machine_open(IPHONE, 3600) is None


async def test_head_on_a_click_is_flagged(service: Service, owner: User) -> None:
    made = await mint(service, owner)
    status, _, _ = await fetch(service, "HEAD", path(made["click_url"]), {"User-Agent": IPHONE})
    assert status == 302
    click = next(m for m in await logged(service, owner) if m["event_type"] == "click")
    assert click["event_data"]["suspected_bot"] is True
    assert click["event_data"]["suspected_bot_reason"] == "HEAD request"


async def test_a_hook_can_exclude_flagged_events(service: Service, owner: User) -> None:
    destinations = {}
    hooks = {}
    for name, flags in (
        ("all", None),
        ("people", ["machine_open", "suspected_bot"]),
        ("no-bots", ["suspected_bot"]),
    ):
        destinations[name] = StubDestination(f"flags-{name}-{owner.account_id}")
        transport = {
            "type": "stub",
            "name": destinations[name].name,
            "max_batch_size": 100,
            "timeout_s": 0.05,
        }
        body = {"name": name, "event_types": ["open", "click"], "transport": transport}
        if flags is not None:
            body["filters"] = {"exclude_flags": flags}
        status, created, _ = await service.call("POST", "/v1/hooks", owner, body)
        assert status == 201, created
        assert created["filters"]["exclude_flags"] == flags
        hooks[name] = created["id"]
    plain = {"event_type": "open", "event_date": "2024-05-01T10:00:00Z", "event_data": {"message_id": 1}}
    sent = [
        plain,
        {
            **plain,
            "event_data": {"machine_open": True, "machine_open_reason": "Apple Mail Privacy Protection"},
        },
        {
            **plain,
            "event_type": "click",
            "event_data": {"suspected_bot": True, "suspected_bot_reason": "HEAD"},
        },
        {**plain, "event_data": {"machine_open": False, "suspected_bot": "yes"}},  # only `true` is a flag
    ]
    status, answer, _ = await service.call("POST", "/v1/events", owner, sent)
    assert status == 202, answer
    ids = answer["ids"]
    for hook_id in hooks.values():
        await service.dispatcher.caught_up(hook_id)
    assert destinations["all"].event_ids == ids
    assert destinations["people"].event_ids == [ids[0], ids[3]]
    assert destinations["no-bots"].event_ids == [ids[0], ids[1], ids[3]]


async def test_exclude_flags_names_known_flags_only(service: Service, owner: User) -> None:
    transport = {"type": "stub", "name": "unused"}
    body = {
        "name": "h",
        "event_types": ["open"],
        "transport": transport,
        "filters": {"exclude_flags": ["robot"]},
    }
    status, answer, _ = await service.call("POST", "/v1/hooks", owner, body)
    assert status == 422 and answer["field"] == "filters.exclude_flags.0", answer


def tokens_make(*args: str, public_url: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "actionhooks"), "tokens", "make", *args]
    env = {**os.environ, "ACTIONHOOKS_PUBLIC_URL": public_url}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


async def test_tokens_make_mints_what_the_service_verifies(
    service: Service, owner: User, db_url: str
) -> None:
    link = "https://shop.example.com/cli"
    done = await asyncio.to_thread(
        tokens_make,
        str(owner.account_id),
        *("--profile-id", "p9", "--message-id", "4", "--link-url", link, "--db", db_url),
        public_url=service.url,
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["open_url"] == f"{service.url}/t/open/{made['token']}"
    assert made["dwell_url"] == f"{service.url}/t/dwell/{made['token']}"
    status, _, headers = await fetch(service, "GET", path(made["click_url"]), {"User-Agent": IPHONE})
    assert status == 302 and headers["Location"] == link
    click = next(m for m in await logged(service, owner) if m["event_type"] == "click")
    assert click["profile_id"] == "p9" and click["event_data"]["message_id"] == 4

    for wrong in (
        ["999"],
        [str(owner.account_id), "--channel", "fax"],
        [str(owner.account_id), "--link-url", "x"],
    ):
        done = await asyncio.to_thread(tokens_make, *wrong, "--db", db_url, public_url=service.url)
        assert done.returncode != 0 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr


async def signed(service: Service, user: User) -> Any:
    """A signer of the account's own tokens issued an hour ago (no flag for a click right after the send)."""
    status, key, _ = await service.call("POST", "/v1/account/tracking-keys", user)
    assert status == 201
    secret = base64.urlsafe_b64decode(key["secret"] + "=" * (-len(key["secret"]) % 4))
    issued = int(time.time()) - 3600

    def sign(**claims: Any) -> str:
        return tokens.sign(key["key_id"], secret, tokens.Claims(a=user.account_id, t=issued, **claims))

    return sign


async def test_every_link_clicked_at_once_is_flagged(service: Service, owner: User) -> None:
    sign = await signed(service, owner)
    links = [f"https://shop.example.com/{n}" for n in ("a", "b", "c")]
    for link in [links[0], links[0], links[1], links[2]]:  # the same link twice is not a burst
        status, _, _ = await fetch(
            service, "GET", f"/t/click/{sign(p='p1', m=7, u=link)}", {"User-Agent": IPHONE}
        )
        assert status == 302
    # another profile's click of the same message, and the same profile's of another message, stand alone
    for token in (sign(p="p2", m=7, u=links[1]), sign(p="p1", m=8, u=links[1])):
        status, _, _ = await fetch(service, "GET", f"/t/click/{token}", {"User-Agent": IPHONE})
        assert status == 302
    clicks = [m for m in await logged(service, owner) if m["event_type"] == "click"]
    flags = [
        (m["profile_id"], m["event_data"]["message_id"], m["event_data"].get("suspected_bot_reason"))
        for m in clicks
    ]
    assert flags == [
        ("p1", 7, None),
        ("p1", 7, None),
        ("p1", 7, "2 links of the message clicked within 5 s"),
        ("p1", 7, "3 links of the message clicked within 5 s"),
        ("p2", 7, None),
        ("p1", 8, None),
    ]
    assert all(m["event_data"]["suspected_bot"] is True for m in clicks[2:4])


def test_click_bursts_end_with_their_window() -> None:
    bursts = visitor.ClickBursts(window_s=5.0, limit=2)
    assert bursts.click(1, "p1", 7, "https://a.example/", 100.0) is None
    assert (
        bursts.click(1, "p1", 7, "https://b.example/", 104.0) == "2 links of the message clicked within 5 s"
    )
    assert bursts.click(1, "p1", 7, "https://c.example/", 110.0) is None  # a and b are older than 5 s
    assert bursts.click(2, "p1", 7, "https://d.example/", 110.0) is None  # another account
    assert bursts.click(1, None, 7, "https://e.example/", 110.0) is None  # no profile: not compared
    assert bursts.click(1, "p9", 7, "https://a.example/", 120.0) is None  # over the limit: old keys swept
    assert len(bursts.recent) <= 2


async def _view(service: Service, url: str, seconds: float | None) -> bytes:
    """A mail client showing the dwell pixel: reads the stream for ``seconds`` then drops the connection (None:
    until the server ends it)."""
    assert service.session is not None
    received = b""
    async with service.session.get(url, headers={"User-Agent": IPHONE}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/gif"
        assert resp.headers["Cache-Control"] == "no-store, max-age=0"
        if seconds is None:
            return await resp.read()
        received = await resp.content.readany()  # the first frame comes at once
        await asyncio.sleep(seconds)
        resp.close()  # the message is closed: the client drops the image's connection
    return received


async def test_dwell_pixel_measures_how_long_the_message_stayed_open(service: Service, owner: User) -> None:
    sign = await signed(service, owner)
    urls = {name: f"/t/dwell/{sign(p=name, l=3, m=7)}" for name in ("glance", "skim", "read")}
    first, _, whole = await asyncio.gather(
        _view(service, urls["glance"], 1.0),
        _view(service, urls["skim"], 5.0),
        _view(service, urls["read"], None),
    )
    assert first == dwell.HEADER + dwell.FRAME  # an image at once: the message lays out
    assert whole.startswith(dwell.HEADER + dwell.FRAME) and whole.endswith(dwell.TRAILER)
    assert 8 <= whole.count(dwell.FRAME) <= 11  # a frame a second until MAX_S

    async def recorded() -> list[dict[str, Any]] | None:
        messages = await logged(service, owner)
        return messages if sum(m["event_type"] == "open" for m in messages) == 3 else None

    messages = await eventually(recorded)
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        by_profile.setdefault(m["profile_id"], []).append(m)
    expected = {"glance": ("glanced", 1.0, 3.0), "skim": ("skimmed", 5.0, 7.0), "read": ("read", 10.0, 10.0)}
    for name, (kind, low, high) in expected.items():
        events = by_profile[name]
        assert [m["event_type"] for m in events] == ["open", "uopen", kind]  # exactly one dwell event
        opened = events[0]
        assert low <= opened["event_data"]["dwell_s"] <= high, (name, opened["event_data"])
        assert opened["event_data"]["os"] == "iOS" and "machine_open" not in opened["event_data"]
        assert events[2]["derived_from"] == opened["id"]


async def test_dwell_pixel_without_a_stream(service: Service, owner: User) -> None:
    sign = await signed(service, owner)
    status, body, _ = await fetch(service, "GET", f"/t/dwell/{sign(p='p1', m=7)}x")  # tampered
    assert status == 200 and body == GIF
    status, body, _ = await fetch(service, "HEAD", f"/t/dwell/{sign(p='p1', m=7)}", {"User-Agent": IPHONE})
    assert status == 200  # nothing to hold open: the open is recorded at once, without a dwell
    service.app.state.dwell_streams.held = service.app.state.dwell_streams.limit  # every stream taken
    status, body, _ = await fetch(service, "GET", f"/t/dwell/{sign(p='p2', m=7)}", {"User-Agent": IPHONE})
    service.app.state.dwell_streams.held = 0
    assert status == 200 and body == GIF
    messages = await logged(service, owner)
    assert [(m["profile_id"], m["event_type"]) for m in messages] == [
        ("p1", "open"),
        ("p1", "uopen"),
        ("p2", "open"),
        ("p2", "uopen"),
    ]
    assert all("dwell_s" not in m["event_data"] for m in messages)
    assert messages[0]["event_data"]["suspected_bot_reason"] == "HEAD request"
