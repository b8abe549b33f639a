"""A hook's secrets stay write-only: they are not read back through a destination that echoes what it receives,
and they do not follow a hook to another destination unless sent again.

The echoing endpoint answers every request with what it received — headers and body, as JSON — like the public
request-inspection services an attacker would point a hook at.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web

from actionhooks.devtools.receiver import Receiver

from .support import Service, User, eventually

TOKEN = 'tok-"quoted"/+secret'  # JSON-escaped and percent-encoded, it looks different in an echo
PASSWORD = "pa55-word"
CLIENT_SECRET = "client-s3cret/+="
API_KEY = "key-7f3a9c"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENT = {
    "event_type": "deliv",
    "event_date": "2016-11-15T09:12:28.514388956Z",
    "list_id": 50,
    "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": 130},
}


class Echo:
    """An endpoint on loopback answering ``status`` with the request it got: ``{"headers", "body", "path"}``."""

    def __init__(self) -> None:
        self.status = 200
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _echo(self, request: web.Request) -> web.Response:
        seen = {
            "path": request.path,
            "headers": dict(request.headers),
            "body": (await request.read()).decode(),
        }
        return web.json_response(seen, status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    e = Echo()
    await e.start()
    yield e
    await e.stop()


def leaked(text: str | None, *secrets: str) -> list[str]:
    """The forms of ``secrets`` found in ``text``: as is, JSON-escaped, percent-encoded, base64 credentials."""
    forms = {s for secret in secrets for s in (secret, json.dumps(secret)[1:-1], quote(secret, safe=""))}
    forms.add(base64.b64encode(f"user:{PASSWORD}".encode()).decode())
    client = f"{quote_plus('acme', safe='')}:{quote_plus(CLIENT_SECRET, safe='')}"
    forms.add(base64.b64encode(client.encode()).decode())
    return sorted(f for f in forms if text and f in text)


async def create(service: Service, user: User, transport: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"name": "crm", "event_types": ["deliv"], "transport": transport, **extra}
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    return created


def http_with_secrets(url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": url,
        "max_batch_size": 1,
        "timeout_s": 0,
        "auth": {"type": "bearer", "token": TOKEN},
        "headers": {"X-Api-Key": API_KEY, "X-Tenant": "tenant-42"},
        "signing_secret": SIGNING_SECRET,
    }


# -- a secret does not follow the hook to another destination unasked -----------------------------------------


async def test_moving_a_hook_needs_every_secret_sent_again(service: Service, owner: User) -> None:
    async with Receiver() as receiver:
        hook = await create(service, owner, http_with_secrets(receiver.hook_url))
    path = f"/v1/hooks/{hook['id']}"
    elsewhere = "http://127.0.0.2:9/collect"

    status, answer, _ = await service.call("PATCH", path, owner, {"transport": {"url": elsewhere}})
    assert status == 422 and answer["field"] == "transport.auth.token"
    for secret in ("transport.headers.X-Api-Key", "transport.headers.X-Tenant", "transport.signing_secret"):
        assert secret in answer["error"]
    assert "transport.url changed" in answer["error"]

    # the API's "***" placeholders are not the secrets either
    shown = {"url": elsewhere, "auth": {"type": "bearer", "token": "***"}, "headers": {"X-Api-Key": "***"}}
    status, answer, _ = await service.call("PATCH", path, owner, {"transport": shown})
    assert status == 422 and answer["field"] == "transport.auth.token"
    assert "transport.headers.X-Api-Key" in answer["error"]

    _, unchanged, _ = await service.call("GET", path, owner)
    assert unchanged["transport"]["url"] != elsewhere

    resent = {
        "url": elsewhere,
        "auth": {"type": "bearer", "token": "new-token"},
        "headers": {"X-Api-Key": "new-key", "X-Tenant": "tenant-42"},
        "signing_secret": SIGNING_SECRET,
    }
    status, moved, _ = await service.call("PATCH", path, owner, {"transport": resent})
    assert status == 200, moved
    assert moved["transport"]["url"] == elsewhere and moved["transport"]["auth"]["token"] == "***"

    # staying where it is, the hook keeps its secrets without them
    status, renamed, _ = await service.call(
        "PATCH", path, owner, {"name": "renamed", "transport": {"timeout_s": 2}}
    )
    assert status == 200, renamed


async def test_a_hook_without_secrets_moves_freely(service: Service, owner: User) -> None:
    hook = await create(service, owner, {"type": "http", "url": "http://127.0.0.1:9/a"}, active=False)
    patch = {"transport": {"url": "http://127.0.0.2:9/b"}}
    status, answer, _ = await service.call("PATCH", f"/v1/hooks/{hook['id']}", owner, patch)
    assert status == 200, answer


async def test_a_new_token_url_needs_the_client_secret_again(service: Service, owner: User) -> None:
    auth = {"type": "oauth2", "token_url": "http://127.0.0.1:9/token", "client_id": "acme"}
    transport = {
        "type": "http",
        "url": "http://127.0.0.1:9/hook",
        "auth": {**auth, "client_secret": CLIENT_SECRET},
    }
    hook = await create(service, owner, transport, active=False)
    patch: dict[str, Any] = {"transport": {"auth": {"token_url": "http://127.0.0.2:9/token"}}}
    status, answer, _ = await service.call("PATCH", f"/v1/hooks/{hook['id']}", owner, patch)
    assert status == 422 and answer["field"] == "transport.auth.client_secret"
    assert "transport.auth.token_url changed" in answer["error"]
    patch["transport"]["auth"]["client_secret"] = CLIENT_SECRET
    status, answer, _ = await service.call("PATCH", f"/v1/hooks/{hook['id']}", owner, patch)
    assert status == 200, answer


async def test_new_kafka_brokers_need_the_sasl_password_again(service: Service, owner: User) -> None:
    transport = {
        "type": "kafka",
        "bootstrap_servers": "127.0.0.1:9092",
        "topic": "events",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": "app",
        "sasl_password": PASSWORD,
    }
    hook = await create(service, owner, transport, active=False)
    path = f"/v1/hooks/{hook['id']}"
    for change in ({"bootstrap_servers": "127.0.0.2:9092"}, {"security_protocol": "SASL_PLAINTEXT"}):
        status, answer, _ = await service.call("PATCH", path, owner, {"transport": change})
        assert status == 422 and answer["field"] == "transport.sasl_password", answer
    status, answer, _ = await service.call("PATCH", path, owner, {"transport": {"topic": "other"}})
    assert status == 200, answer


async def test_a_clone_sent_elsewhere_needs_the_secrets_again(service: Service, owner: User) -> None:
    hook = await create(service, owner, http_with_secrets("http://127.0.0.1:9/hook"), active=False)
    path = f"/v1/hooks/{hook['id']}/clone"
    status, answer, _ = await service.call("POST", path, owner, {"transport": {"url": "http://127.0.0.2:9/"}})
    assert status == 422 and answer["field"] == "transport.auth.token"
    status, answer, _ = await service.call("POST", path, owner)  # same destination: the secrets are copied
    assert status == 201, answer


async def test_a_refused_token_url_is_blamed_on_token_url(service: Service, owner: User) -> None:
    # the service allows loopback only: 10.0.0.1 is refused
    auth = {"type": "oauth2", "token_url": "http://10.0.0.1/token", "client_id": "a", "client_secret": "b"}
    transport = {"type": "http", "url": "http://127.0.0.1:9/", "auth": auth}
    body = {"name": "crm", "event_types": ["deliv"], "transport": transport}
    status, answer, _ = await service.call("POST", "/v1/hooks", owner, body)
    assert status == 422 and answer["field"] == "transport.auth.token_url", answer


# -- an echoing destination does not give the secrets back ----------------------------------------------------


async def test_the_test_event_does_not_echo_the_hooks_secrets(
    service: Service, owner: User, echo: Echo
) -> None:
    hook = await create(service, owner, http_with_secrets(f"{echo.url}/hook"))
    for status_code in (200, 500):  # a delivery's receipt and a failure's excerpt
        echo.status = status_code
        status, outcome, _ = await service.call("POST", f"/v1/hooks/{hook['id']}/test", owner)
        assert status == 200 and outcome["status"] == status_code
        excerpt = outcome["response_excerpt"]
        assert "X-Api-Key" in excerpt and "***" in excerpt  # the echo is there, its secrets are not
        assert leaked(excerpt, TOKEN, API_KEY, "tenant-42", SIGNING_SECRET) == []
        assert leaked(outcome.get("error"), TOKEN, API_KEY, SIGNING_SECRET) == []


async def test_basic_credentials_are_not_echoed(service: Service, owner: User, echo: Echo) -> None:
    auth = {"type": "basic", "username": "user", "password": PASSWORD}
    transport = {"type": "http", "url": f"{echo.url}/hook", "auth": auth}
    hook = await create(service, owner, transport)
    _, outcome, _ = await service.call("POST", f"/v1/hooks/{hook['id']}/test", owner)
    assert "Basic ***" in outcome["response_excerpt"]
    assert leaked(outcome["response_excerpt"], PASSWORD) == []


async def test_an_echoing_token_endpoint_does_not_give_the_client_secret_back(
    service: Service, owner: User, echo: Echo
) -> None:
    echo.status = 400
    auth = {
        "type": "oauth2",
        "token_url": f"{echo.url}/token",
        "client_id": "acme",
        "client_secret": CLIENT_SECRET,
    }
    hook = await create(service, owner, {"type": "http", "url": f"{echo.url}/hook", "auth": auth})
    _, outcome, _ = await service.call("POST", f"/v1/hooks/{hook['id']}/test", owner)
    assert outcome["delivered"] is False and outcome["status"] == 400
    assert outcome["error"].startswith("token endpoint answered 400")
    assert "/token" in outcome["response_excerpt"]
    assert leaked(outcome["response_excerpt"], CLIENT_SECRET) == []


async def test_the_oauth2_access_token_is_not_echoed(service: Service, owner: User, echo: Echo) -> None:
    async with Receiver(client_id="acme", client_secret=CLIENT_SECRET) as issuer:
        auth = {
            "type": "oauth2",
            "token_url": issuer.token_url,
            "client_id": "acme",
            "client_secret": CLIENT_SECRET,
        }
        hook = await create(service, owner, {"type": "http", "url": f"{echo.url}/hook", "auth": auth})
        _, outcome, _ = await service.call("POST", f"/v1/hooks/{hook['id']}/test", owner)
    assert outcome["delivered"] is True and issuer.token_requests == 1
    assert '"Authorization": "Bearer ***"' in outcome["response_excerpt"]


async def test_attempts_do_not_store_the_hooks_secrets(service: Service, owner: User, echo: Echo) -> None:
    echo.status = 503
    hook = await create(service, owner, http_with_secrets(f"{echo.url}/hook"))
    status, answer, _ = await service.call("POST", "/v1/events", owner, EVENT)
    assert status == 202, answer

    async def attempts() -> list[dict[str, Any]]:
        _, body, _ = await service.call("GET", f"/v1/hooks/{hook['id']}/attempts", owner)
        found: list[dict[str, Any]] = body["attempts"]
        return found

    recorded = await eventually(attempts)
    assert recorded[0]["status"] == 503 and "X-Api-Key" in recorded[0]["response_excerpt"]
    for attempt in recorded:
        assert leaked(attempt["response_excerpt"], TOKEN, API_KEY, "tenant-42", SIGNING_SECRET) == []
        assert leaked(attempt["error"], TOKEN, API_KEY, SIGNING_SECRET) == []
