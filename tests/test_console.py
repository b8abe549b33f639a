"""The console over plain HTTP: security headers, the session cookie, CSRF, write-only secrets, languages, and the
strings catalogue (the browser walks through the pages in ``test_console_browser.py``)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from actionhooks.console.i18n import STRINGS, choose
from actionhooks.errors import DeliveryError
from actionhooks.events import NewEvent
from actionhooks.store import Store, open_store
from actionhooks.store.base import LAG_COUNT_CAP, HookQuery
from actionhooks.store.sql import _LAG_TAIL as LAG_TAIL

from .support import Service, User, eventually, service_settings
from .test_metrics import event, send, stub_hook

TEMPLATES = Path(__file__).parents[1] / "src" / "actionhooks" / "console" / "templates"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    db = f"sqlite:///{tmp_path}/console.db"
    store = open_store(db)
    await store.open()
    running = Service(store, service_settings(db))
    await running.start()
    yield running
    await running.stop()
    await store.close()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found[1]


async def _browser(service: Service, user: User | None = None) -> tuple[aiohttp.ClientSession, str]:
    """A cookie-keeping client, signed in as ``user`` when given; and its CSRF token."""
    http = aiohttp.ClientSession(service.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get("/console/sign-in") as answer:
        csrf = _csrf(await answer.text())
    if user is not None:
        async with http.post("/console/sign-in", data={"csrf": csrf, "key": user.key}) as answer:
            assert answer.status == 200 and answer.url.path == "/console/hooks"
            csrf = _csrf(await answer.text())
    return http, csrf


async def test_pages_carry_the_security_headers_and_no_inline_script(service: Service) -> None:
    owner = await service.user("owner")
    http, _ = await _browser(service, owner)
    async with http:
        for path in ("/console/sign-in", "/console/hooks", "/console/hooks/new", "/console/catalog"):
            async with http.get(path) as answer:
                page = await answer.text()
                assert answer.status == 200, path
                policy = answer.headers["Content-Security-Policy"]
                assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
                assert "frame-ancestors 'none'" in policy
                assert answer.headers["X-Frame-Options"] == "DENY"
                assert answer.headers["Cache-Control"] == "no-store"
            assert not re.search(r"<script(?![^>]*\bsrc=)", page), path  # every script is a file
            assert not re.search(r"\son[a-z]+=", page), path  # no inline event handlers
            assert "<style" not in page and " style=" not in page, path
        async with http.get("/console/static/htmx.min.js") as answer:
            assert answer.status == 200 and "Zero-Clause BSD" in (await answer.text())[:1000]


async def test_the_session_cookie_is_signed_httponly_strict_and_never_holds_the_key(service: Service) -> None:
    owner = await service.user("owner")
    async with aiohttp.ClientSession(service.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get("/console/sign-in") as answer:
            csrf = _csrf(await answer.text())
        async with http.post(
            "/console/sign-in", data={"csrf": csrf, "key": owner.key}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
            cookie = answer.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert owner.key not in cookie and owner.key[3:] not in cookie
        # a tampered cookie is no session
        value = cookie.split(";")[0].split("=", 1)[1]
        http.cookie_jar.clear()
        forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
        async with http.get(
            "/console/hooks", headers={"Cookie": f"ah_console={forged}"}, allow_redirects=False
        ) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/console/sign-in"


async def test_a_change_without_the_csrf_token_is_refused(service: Service) -> None:
    owner = await service.user("owner")
    status, hook, _ = await service.call(
        "POST",
        "/v1/hooks",
        owner,
        {"name": "h", "event_types": ["send"], "transport": {"type": "http", "url": "http://127.0.0.1:9/"}},
    )
    assert status == 201
    http, csrf = await _browser(service, owner)
    async with http:
        for sent in ({}, {"csrf": "wrong", "active": "0"}):
            async with http.post(f"/console/hooks/{hook['id']}/state", data=sent) as answer:
                assert answer.status == 403
        assert (await service.hooks.get_hook(owner.account_id, hook["id"])).spec.active  # type: ignore[union-attr]
        async with http.post(
            f"/console/hooks/{hook['id']}/state", data={"csrf": csrf, "active": "0"}
        ) as answer:
            assert answer.status == 200
        assert not (await service.hooks.get_hook(owner.account_id, hook["id"])).spec.active  # type: ignore[union-attr]
        async with http.post("/console/sign-in", data={"key": owner.key}) as answer:
            assert answer.status == 403  # sign-in too needs the token of the page it came from


async def test_secrets_are_write_only_and_kept_on_an_edit(service: Service) -> None:
    owner = await service.user("owner")
    token = "bearer-token-that-must-never-show"
    transport = {
        "type": "http",
        "url": "http://127.0.0.1:9/hook",
        "auth": {"type": "bearer", "token": token},
        "headers": {"X-Api-Key": "header-secret-value"},
    }
    status, hook, _ = await service.call(
        "POST", "/v1/hooks", owner, {"name": "h", "event_types": ["send"], "transport": transport}
    )
    assert status == 201
    http, csrf = await _browser(service, owner)
    async with http:
        async with http.get(f"/console/hooks/{hook['id']}/edit") as answer:
            page = await answer.text()
        assert token not in page and "header-secret-value" not in page
        assert 'data-secret="set"' in page and "X-Api-Key: ***" in page
        form = {
            "csrf": csrf,
            "name": "renamed",
            "database": "all",
            "event_types": "send",
            "transport.type": "http",
            "http.url": "http://127.0.0.1:9/hook",
            "http.auth": "bearer",
            "http.auth.bearer.token": "",
            "http.headers": "X-Api-Key: ***",
        }
        async with http.post(f"/console/hooks/{hook['id']}/edit", data=form) as answer:
            assert answer.status == 200 and answer.url.path == f"/console/hooks/{hook['id']}"
        saved = await service.hooks.get_hook(owner.account_id, hook["id"])
        assert saved is not None and saved.spec.name == "renamed"
        assert saved.spec.transport.auth.token == token  # type: ignore[attr-defined]
        assert saved.spec.transport.headers == {"X-Api-Key": "header-secret-value"}  # type: ignore[attr-defined]

        # sent somewhere else, the secrets must come along again (the API's rule), named next to their input
        async with http.post(
            f"/console/hooks/{hook['id']}/edit", data={**form, "http.url": "http://127.0.0.2:9/elsewhere"}
        ) as answer:
            page = await answer.text()
            assert answer.status == 422
        assert re.search(r'data-field="http\.auth\.bearer\.token".*?field-error', page, re.S) or re.search(
            r'data-field="http\.headers".*?field-error', page, re.S
        )


async def test_an_edit_in_the_console_keeps_the_hooks_exclude_flags(service: Service) -> None:
    """Issue 13: a hook created through the API with ``filters.exclude_flags`` kept them only until its first save
    in the console (the editor had no input for them). The editor shows them ticked, a save keeps them, and
    unticking one removes it."""
    owner = await service.user("owner")
    settings = {
        "name": "opens",
        "event_types": ["read"],
        "filters": {"campaign_ids": [7], "exclude_flags": ["machine_open", "suspected_bot"]},
        "transport": {"type": "http", "url": "http://127.0.0.1:9/hook"},
    }
    status, hook, _ = await service.call("POST", "/v1/hooks", owner, settings)
    assert status == 201
    http, csrf = await _browser(service, owner)
    async with http:
        async with http.get(f"/console/hooks/{hook['id']}") as answer:
            assert answer.status == 200  # the detail page names the flags too
        async with http.get(f"/console/hooks/{hook['id']}/edit") as answer:
            page = await answer.text()
        for flag in ("machine_open", "suspected_bot"):
            assert re.search(rf'value="{flag}" id="f-flag-{flag}" checked', page), flag
        fields = [
            ("csrf", csrf),
            ("name", "renamed"),
            ("database", "all"),
            ("event_types", "read"),
            ("filters.campaign_ids", "7"),
            ("filters.exclude_flags", "machine_open"),
            ("filters.exclude_flags", "suspected_bot"),
            ("transport.type", "http"),
            ("http.url", "http://127.0.0.1:9/hook"),
            ("http.auth", "none"),
        ]
        async with http.post(f"/console/hooks/{hook['id']}/edit", data=aiohttp.FormData(fields)) as answer:
            assert answer.status == 200 and answer.url.path == f"/console/hooks/{hook['id']}"
        status, saved, _ = await service.call("GET", f"/v1/hooks/{hook['id']}", owner)
        assert saved["name"] == "renamed"
        assert saved["filters"]["exclude_flags"] == ["machine_open", "suspected_bot"]
        assert saved["filters"]["campaign_ids"] == [7]

        fewer = aiohttp.FormData([(k, v) for k, v in fields if v != "suspected_bot"])
        async with http.post(f"/console/hooks/{hook['id']}/edit", data=fewer) as answer:
            assert answer.status == 200
        status, saved, _ = await service.call("GET", f"/v1/hooks/{hook['id']}", owner)
        assert saved["filters"]["exclude_flags"] == ["machine_open"]


async def test_the_editor_sets_shows_and_removes_the_rate_limit(service: Service) -> None:
    owner = await service.user("owner")
    http, csrf = await _browser(service, owner)
    form = {
        "csrf": csrf,
        "name": "paced",
        "database": "all",
        "event_types": "send",
        "max_events_per_second": "12.5",
        "transport.type": "http",
        "http.url": "http://127.0.0.1:9/hook",
        "http.auth": "none",
    }
    async with http:
        async with http.post("/console/hooks/new", data=form) as answer:
            assert answer.status == 200
            hook_id = int(answer.url.path.rsplit("/", 1)[1])
        status, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", owner)
        assert status == 200 and hook["max_events_per_second"] == 12.5
        async with http.get(f"/console/hooks/{hook_id}/edit") as answer:
            page = await answer.text()
        assert re.search(r'name="max_events_per_second" id="f-max_events_per_second" value="12.5"', page)
        async with http.post(
            f"/console/hooks/{hook_id}/edit", data={**form, "max_events_per_second": "0"}
        ) as answer:
            page = await answer.text()
            assert answer.status == 422
        assert re.search(r'f-max_events_per_second".*?field-error', page, re.S)
        async with http.post(
            f"/console/hooks/{hook_id}/edit", data={**form, "max_events_per_second": ""}
        ) as answer:
            assert answer.status == 200
        status, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", owner)
        assert status == 200 and hook["max_events_per_second"] is None


async def test_an_auto_disabled_hook_shows_why_and_the_editor_keeps_operational_types(
    service: Service,
) -> None:
    owner = await service.user("owner")
    settings = {
        "name": "watcher",
        "event_types": ["deliv", "hook.disabled"],
        "transport": {"type": "http", "url": "http://127.0.0.1:9/hook"},
    }
    status, created, _ = await service.call("POST", "/v1/hooks", owner, settings)
    assert status == 201
    hook = await service.hooks.get_hook(owner.account_id, created["id"])
    assert hook is not None
    assert await service.hooks.disable_hook(
        hook, "deliveries failed without a success for 259200 s", time.time()
    )
    http, csrf = await _browser(service, owner)
    async with http:
        async with http.get(f"/console/hooks/{hook.id}") as answer:
            page = await answer.text()
        assert 'data-state="disabled"' in page and "deliveries failed without a success" in page
        async with http.get(f"/console/hooks/{hook.id}/edit") as answer:
            page = await answer.text()
        assert re.search(r'value="hook\.disabled" checked', page)
        form = {
            "csrf": csrf,
            "name": "watcher",
            "database": "all",
            "event_types": ["deliv", "hook.disabled"],
            "transport.type": "http",
            "http.url": "http://127.0.0.1:9/hook",
            "http.auth": "none",
        }
        fields = [(k, v) for k, vs in form.items() for v in (vs if isinstance(vs, list) else [vs])]
        async with http.post(f"/console/hooks/{hook.id}/edit", data=aiohttp.FormData(fields)) as answer:
            assert answer.status == 200
        status, saved, _ = await service.call("GET", f"/v1/hooks/{hook.id}", owner)
        assert saved["event_types"] == ["deliv", "hook.disabled"]
        assert saved["disabled_reason"] is not None  # an edit of a stopped hook keeps why it was stopped
        async with http.get("/console/catalog") as answer:
            assert (
                answer.status == 200 and "hook.disabled" not in await answer.text()
            )  # the catalogue page is the catalogue's 80


async def test_a_hook_of_another_account_is_not_found(service: Service) -> None:
    owner, outsider = await service.user("owner"), await service.user("outsider")
    status, hook, _ = await service.call(
        "POST",
        "/v1/hooks",
        owner,
        {
            "name": "mine",
            "event_types": ["send"],
            "transport": {"type": "http", "url": "http://127.0.0.1:9/"},
        },
    )
    assert status == 201
    http, csrf = await _browser(service, outsider)
    async with http:
        for method, path in (
            ("GET", ""),
            ("GET", "/edit"),
            ("GET", "/delete"),
            ("POST", "/delete"),
            ("POST", "/clone"),
            ("POST", "/state"),
            ("POST", "/test"),
        ):
            async with http.request(
                method, f"/console/hooks/{hook['id']}{path}", data={"csrf": csrf}
            ) as answer:
                assert answer.status == 404, (method, path)
                assert "mine" not in await answer.text()
    assert await service.hooks.get_hook(owner.account_id, hook["id"]) is not None
    assert len(await service.hooks.list_hooks(owner.account_id)) == 1


def test_the_language_is_the_cookie_then_accept_language_then_english() -> None:
    assert choose("ru", "en") == "ru"
    assert choose(None, "de-DE,ru;q=0.8,en;q=0.5") == "ru"
    assert choose(None, "en-GB,en;q=0.9,ru;q=0.8") == "en"
    assert choose(None, "ru;q=0,en;q=0.1") == "en"
    assert choose("xx", None) == "en"


def test_both_languages_have_every_string_the_templates_use() -> None:
    assert set(STRINGS["en"]) == set(STRINGS["ru"])
    used = {
        key
        for path in TEMPLATES.glob("*.html")
        for key in re.findall(r"""\bt\(\s*["']([a-z_.]+)["']\s*\)""", path.read_text())
    }
    assert len(used) > 50
    assert sorted(used - set(STRINGS["en"])) == []


async def test_the_lags_of_many_hooks_at_once_are_each_hooks_lag(store: Store) -> None:
    """``hook_lags`` (one read for the hooks page) counts what ``hook_lag`` (one hook, the stats) counts, up to the
    cap; on both engines."""
    account = await store.create_account("lags", "hash-of-lags")
    other = await store.create_account("other", "hash-of-other")
    now = time.time()
    rows = [
        NewEvent(account, f"a{i}", ("deliv", "open", "click")[i % 3], i % 2, None, now - 100 + i, b"{}")
        for i in range(30)
    ]
    await store.append(other, [NewEvent(other, f"o{i}", "deliv", 1, None, now, b"{}") for i in range(5)])
    await store.append(account, rows)
    head = await store.head()
    queries = [
        (HookQuery(1, account, ("deliv",), None), 0),
        (HookQuery(2, account, ("deliv", "open"), 1), 0),
        (HookQuery(3, account, ("click",), None), head - 10),
        (HookQuery(4, account, ("deliv", "open", "click"), None), head),  # caught up
        (HookQuery(5, account, ("unsub",), None), 0),  # a type never sent
        (HookQuery(6, other, ("deliv",), 1), 0),
        (HookQuery(7, account, (), None), 0),
    ]
    lags = await store.hook_lags(queries, cap=1000)
    assert lags == [await store.hook_lag(q, cursor) for q, cursor in queries]
    assert [lag.events for lag in lags] == [10, 10, 4, 0, 0, 5, 0]
    capped = await store.hook_lags(queries[:1], cap=4)
    assert capped[0].events == 4
    assert await store.hook_lags([], cap=10) == []

    # hooks further behind than the account's newest positions the store reads at once are counted in SQL
    more = [NewEvent(account, f"b{i}", "open", i % 2, None, now, b"{}") for i in range(LAG_TAIL + 10)]
    await store.append(account, more)
    far = [*queries, (HookQuery(8, account, ("open",), 1), await store.head() - 5)]
    lags = await store.hook_lags(far, cap=LAG_COUNT_CAP)
    assert lags == [await store.hook_lag(q, cursor) for q, cursor in far]
    assert [lag.events for lag in lags] == [10, 10 + (LAG_TAIL + 10) // 2, 4, LAG_TAIL + 10, 0, 5, 0, 3]


async def test_the_hooks_page_shows_each_hooks_lag_and_last_success(service: Service) -> None:
    owner = await service.user("owner")
    stuck, stuck_hook = await stub_hook(service, owner)
    stuck.fail_next(DeliveryError("HTTP 503: busy", status=503), times=10_000)
    _, healthy_hook = await stub_hook(service, owner, event_types=["open"])
    await send(service, owner, [event("deliv")] * 3 + [event("open")])
    await service.dispatcher.caught_up(healthy_hook)
    await stuck.wait_for_calls(1)
    http, _ = await _browser(service, owner)
    async with http, http.get("/console/hooks") as answer:
        page = await answer.text()
    stuck_row = re.search(rf'<tr id="hook-{stuck_hook}".*?</tr>', page, re.S)
    healthy_row = re.search(rf'<tr id="hook-{healthy_hook}".*?</tr>', page, re.S)
    assert stuck_row and healthy_row
    assert 'data-lag="3"' in stuck_row[0] and "waiting" in stuck_row[0]
    assert 'data-lag="0"' in healthy_row[0] and "caught up" in healthy_row[0]
    success = re.search(r'class="last-success nowrap">([^<]+)<', healthy_row[0])
    assert success and success[1].startswith(time.strftime("%Y-%m-%d", time.gmtime()))
    assert re.search(r'class="last-success nowrap">—<', stuck_row[0])


async def test_the_live_fragment_shows_state_lag_and_a_throughput_chart(service: Service) -> None:
    owner = await service.user("owner")
    stuck, stuck_hook = await stub_hook(service, owner)
    stuck.fail_next(DeliveryError("HTTP 503: busy", status=503), times=10_000)
    _, healthy_hook = await stub_hook(service, owner)
    await send(service, owner, [event("deliv")] * 5)
    await service.dispatcher.caught_up(healthy_hook)
    await stuck.wait_for_calls(2)
    http, _ = await _browser(service, owner)
    async with http:
        async with http.get(f"/console/hooks/{healthy_hook}/live") as answer:
            healthy = await answer.text()
        async with http.get(f"/console/hooks/{stuck_hook}/live") as answer:
            stuck_page = await answer.text()
        async with http.get(f"/console/hooks/{healthy_hook}") as answer:
            detail = await answer.text()
    assert 'hx-trigger="every 5s"' in healthy and 'id="live"' in detail  # the page holds it and polls it
    assert 'data-state="caught_up"' in healthy and 'data-lag="0"' in healthy
    assert re.search(r'<rect class="delivered"[^>]*height="(?!0")', healthy)
    assert "delivered 5 · failed 0" in healthy
    assert 'data-state="retrying"' in stuck_page and 'data-lag="5"' in stuck_page
    assert '<rect class="failed"' in stuck_page and '<rect class="delivered"' not in stuck_page
    assert "<script" not in healthy


async def test_a_stopped_hook_resumes_from_where_it_stopped_or_from_now(service: Service) -> None:
    owner = await service.user("owner")
    dest, hook_id = await stub_hook(service, owner)
    http, csrf = await _browser(service, owner)
    async with http:

        async def post_state(**fields: str) -> str:
            async with http.post(
                f"/console/hooks/{hook_id}/state",
                data={"csrf": csrf, "view": "state", **fields},
                headers={"HX-Request": "true"},  # the fragment htmx swaps in
            ) as answer:
                assert answer.status == 200
                return await answer.text()

        stopped = await post_state(active="0")
        assert 'id="resume-cursor"' in stopped and 'id="resume-now"' in stopped
        await send(service, owner, [event()] * 2)
        await post_state(active="1", **{"from": "cursor"})
        await service.dispatcher.caught_up(hook_id)
        assert len(dest.event_ids) == 2  # what came in while it was stopped
        await post_state(active="0")
        await send(service, owner, [event()] * 3)
        running = await post_state(active="1", **{"from": "now"})
        assert 'id="stop-hook"' in running
        await service.dispatcher.caught_up(hook_id)
        assert len(dest.event_ids) == 2  # skipped


async def test_the_hook_page_replays_with_progress_cancels_and_redrives_or_discards_dead_letters(
    service: Service,
) -> None:
    owner = await service.user("owner")
    dest, hook_id = await stub_hook(service, owner)
    dest.fail_next(DeliveryError("HTTP 410", status=410, permanent=True), times=1)
    started = time.time() - 1
    await send(service, owner, [event()] * 3)
    await service.dispatcher.caught_up(hook_id)
    letters = await service.store.list_dead_letters(hook_id)
    assert len(letters) == 3
    http, csrf = await _browser(service, owner)
    page_path = f"/console/hooks/{hook_id}"
    async with http:
        async with http.get(page_path) as answer:
            page = await answer.text()
        assert 'id="start-replay"' in page and 'id="no-replay"' in page
        assert page.count('name="letter"') == 3 and 'id="redrive-all"' in page

        async def letters_action(**fields: str | list[str]) -> str:
            data = [("csrf", csrf)] + [
                (k, v) for k, vs in fields.items() for v in (vs if isinstance(vs, list) else [vs])
            ]
            async with http.post(f"{page_path}/dead-letters", data=data) as answer:
                assert (
                    answer.status == 200 and answer.url.path == page_path
                )  # back on the page after the change
                return await answer.text()

        async with http.post(f"{page_path}/dead-letters", data={"action": "redrive_all"}) as answer:
            assert answer.status == 403  # no CSRF token
        assert "Select dead letters first" in await letters_action(action="redrive")
        redriven = await letters_action(action="redrive", letter=[str(letters[0].id)])
        assert re.search(r'id="letters-note">Dead letters sent again: <strong>1</strong>', redriven)
        await dest.wait_for_events(1)
        assert dest.batches[-1].mark is not None and dest.batches[-1].mark.name == "Actionhooks-Redrive"
        assert dest.event_ids == [letters[0].event_id]
        discarded = await letters_action(action="discard_all")
        assert re.search(r"Dead letters discarded: <strong>\d</strong>", discarded)
        assert await service.store.list_dead_letters(hook_id) == [] or (
            [d.id for d in await service.store.list_dead_letters(hook_id)]
            == [letters[0].id]  # not yet delivered
        )

        async def replay_form(**fields: str) -> tuple[int, str]:
            async with http.post(
                f"{page_path}/replays", data={"csrf": csrf, **fields}, headers={"HX-Request": "true"}
            ) as answer:
                return answer.status, await answer.text()

        status, refused = await replay_form(**{"from": "yesterday", "to": "2026-01-01T00:00:00Z"})
        assert status == 200 and re.search(r'id="replay-error"><code>from</code>: an RFC 3339 time', refused)
        assert 'value="yesterday"' in refused  # what was typed stays
        status, running = await replay_form(
            **{"from": datetime.fromtimestamp(started, UTC).isoformat(), "to": "2099-01-01T00:00:00Z"}
        )
        assert status == 200 and 'id="replay-state"' in running and "replay-error" not in running

        async def progress() -> str | None:
            async with http.get(f"{page_path}/replay", headers={"HX-Request": "true"}) as answer:
                fragment = await answer.text()
            return fragment if "replay-done" in fragment else None

        done = await eventually(progress)
        assert 'id="replay-sent">3<' in done and 'id="replay-total">3<' in done
        assert (
            'hx-trigger="every 1s"' not in done and 'hx-trigger="every 1s"' in running
        )  # polls while running
        marked = [b for b in dest.batches if b.mark is not None and b.mark.name == "Actionhooks-Replay"]
        assert sorted(m.id for b in marked for m in b.messages) == sorted(d.event_id for d in letters)

        status, body, _ = await service.call("PATCH", f"/v1/hooks/{hook_id}", owner, {"active": False})
        assert status == 200, body  # a stopped hook's replay waits: it can be cancelled
        status, waiting = await replay_form(
            **{"from": datetime.fromtimestamp(started, UTC).isoformat(), "to": "2099-01-01T00:00:00Z"}
        )
        found = re.search(r'action="/console/hooks/\d+/replays/(\d+)/cancel"', waiting)
        assert found and 'id="cancel-replay"' in waiting
        async with http.post(
            f"{page_path}/replays/{found[1]}/cancel", data={"csrf": csrf}, headers={"HX-Request": "true"}
        ) as answer:
            cancelled = await answer.text()
        assert "replay-cancelled" in cancelled and 'id="cancel-replay"' not in cancelled
        other = await service.user("other")
        stranger, stranger_csrf = await _browser(service, other)
        async with (
            stranger,
            stranger.post(
                f"{page_path}/dead-letters", data={"csrf": stranger_csrf, "action": "discard_all"}
            ) as answer,
        ):
            assert answer.status == 404


async def test_the_editor_shows_and_keeps_batches_in_flight(service: Service) -> None:
    owner = await service.user("owner")
    transport = {"type": "http", "url": "http://127.0.0.1:9/hook", "max_batch_size": 1, "max_in_flight": 8}
    status, hook, _ = await service.call(
        "POST", "/v1/hooks", owner, {"name": "fast", "event_types": ["send"], "transport": transport}
    )
    assert status == 201
    http, csrf = await _browser(service, owner)
    async with http:
        async with http.get(f"/console/hooks/{hook['id']}/edit") as answer:
            page = await answer.text()
        assert "Batches in flight (1: strict order)" in page
        shown = re.search(r'<input[^>]*name="http\.max_in_flight"[^>]*>', page)
        assert shown is not None and 'value="8"' in shown.group(0), shown
        form = {
            "csrf": csrf,
            "name": "fast",
            "database": "all",
            "event_types": "send",
            "transport.type": "http",
            "http.url": "http://127.0.0.1:9/hook",
            "http.max_batch_size": "1",
            "http.max_in_flight": "4",
            "http.auth": "none",
        }
        async with http.post(f"/console/hooks/{hook['id']}/edit", data=form) as answer:
            assert answer.status == 200 and answer.url.path == f"/console/hooks/{hook['id']}"
        _, saved, _ = await service.call("GET", f"/v1/hooks/{hook['id']}", owner)
        assert saved["transport"]["max_in_flight"] == 4
        async with http.post(
            f"/console/hooks/{hook['id']}/edit", data={**form, "http.max_in_flight": "17"}
        ) as answer:
            page = await answer.text()
            assert answer.status == 422
        assert re.search(r'data-field="http\.max_in_flight".*?field-error', page, re.S)
