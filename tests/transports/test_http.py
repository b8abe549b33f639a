"""The HTTP JSON batch transport against the real loopback receiver (no mocks of aiohttp)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from actionhooks.devtools.procs import free_port
from actionhooks.devtools.receiver import Answer, Receiver
from actionhooks.errors import DeliveryError, DestinationRefused, ValidationError
from actionhooks.integrations import TransportContext, parse_settings
from actionhooks.integrations.base import Batch, Message
from actionhooks.integrations.http.resolver import GuardedResolver
from actionhooks.integrations.http.transport import MAX_RESPONSE_BYTES, Settings
from actionhooks.netguard import NetGuard, parse_nets
from tests.brokers import missing

from .conftest import OpenHttp

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
UNGUARDED = TransportContext(net_guard=NetGuard())  # no allow-list: loopback is refused


def make_batch(count: int = 3, batch_id: str = "batch-1") -> Batch:
    """Bodies in the producer's own formatting (spaces, escapes, non-ASCII, nanoseconds) to prove they pass
    through byte for byte."""
    messages = [
        Message(
            seq=i,
            id=f"ev-{i}",
            event_type="deliv",
            list_id=50,
            profile_id=None,
            body=(
                f'{{"id": "ev-{i}", "event_type":"deliv","event_date":"2016-11-15T09:12:28.514388956Z",'
                f'"event_data":{{"message_id":{i}, "segment_id":0}},"custom_data":{{"name":"Пётр \\u00e9"}}}}'
            ).encode(),
        )
        for i in range(count)
    ]
    return Batch(hook_id=1, batch_id=batch_id, messages=messages)


# -- delivery and the success rule -----------------------------------------------------------------------


def test_a_batch_of_one_or_many_is_one_json_array_of_the_bodies_as_logged() -> None:
    for n in (1, 2, 3):
        batch = make_batch(n)
        body = batch.json_array()
        assert body == b"[" + b",".join(m.body for m in batch.messages) + b"]"
        assert json.loads(body) == [json.loads(m.body) for m in batch.messages]
        assert [m.body for m in batch.messages] == [
            m.body for m in make_batch(n).messages
        ]  # left as they were


async def test_batch_is_posted_as_one_json_array_with_bodies_unchanged(
    receiver: Receiver, open_http: OpenHttp
) -> None:
    batch = make_batch(3)
    transport = await open_http(receiver.hook_url)
    receipt = await transport.send(batch)
    assert (receipt.status, receipt.response_excerpt) == (200, "ok")
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == b"[" + b",".join(m.body for m in batch.messages) + b"]"
    assert receiver.events == [json.loads(m.body) for m in batch.messages]
    assert "webhook-signature" not in request.headers and "Authorization" not in request.headers


async def test_success_regex_that_matches_the_body_delivers(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(200, '{"status": "accepted", "count": 2}')
    transport = await open_http(receiver.hook_url, success_regex=r'"status":\s*"accepted"')
    receipt = await transport.send(make_batch(2))
    assert receipt.status == 200
    assert receipt.response_excerpt == '{"status": "accepted", "count": 2}'


async def test_success_regex_runs_in_linear_time(receiver: Receiver, open_http: OpenHttp) -> None:
    # with backtracking (Python's re) this takes 2^28 steps: minutes; RE2 needs one pass
    receiver.answer(200, "a" * 28 + "!")
    transport = await open_http(receiver.hook_url, success_regex="^(a+)+$")
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert time.monotonic() - started < 1.0 and "did not match" in info.value.reason


async def test_a_long_match_runs_off_the_event_loop(receiver: Receiver, open_http: OpenHttp) -> None:
    # 4205 RE2 instructions (their DFA does not fit REGEX_MEMORY) over 64 KiB: ~0.5 s, linear but long
    receiver.answer(200, "a" * MAX_RESPONSE_BYTES)
    transport = await open_http(receiver.hook_url, success_regex="(?s).{300}.{300}z")
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticks() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - before)

    ticker = asyncio.create_task(ticks())
    started = time.monotonic()
    with pytest.raises(DeliveryError):
        await transport.send(make_batch(1))
    took = time.monotonic() - started
    ticker.cancel()
    assert took > 0.1, "the match should take long enough to show where it runs"
    assert max(gaps) < 0.1, f"the loop stalled {max(gaps):.3f} s during a {took:.3f} s send"


async def test_success_regex_mismatch_is_retryable(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(200, '{"status": "queue full"}')
    transport = await open_http(receiver.hook_url, success_regex=r'"status":\s*"accepted"')
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert not info.value.permanent
    assert info.value.reason == "response did not match success_regex"
    assert (info.value.status, info.value.response_excerpt) == (200, '{"status": "queue full"}')


async def test_secrets_are_cut_from_the_excerpt_before_it_is_capped(
    receiver: Receiver, open_http: OpenHttp
) -> None:
    token = "tok-0123456789abcdef"
    receiver.answer(500, "x" * 495 + token + " and more")  # the token straddles the 500th character
    transport = await open_http(receiver.hook_url, auth={"type": "bearer", "token": token})
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.response_excerpt == "x" * 495 + "*** a"


async def test_response_excerpt_is_capped(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(200, "x" * 5000)
    receipt = await (await open_http(receiver.hook_url)).send(make_batch(1))
    assert receipt.response_excerpt == "x" * 500


# -- failures: retryable or permanent ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504, 401, 404, 400])
async def test_other_non_2xx_answers_are_retryable_with_status_and_excerpt(
    receiver: Receiver, open_http: OpenHttp, status: int
) -> None:
    receiver.answer(status, "upstream broke")
    with pytest.raises(DeliveryError) as info:
        await (await open_http(receiver.hook_url)).send(make_batch(1))
    assert not info.value.permanent and info.value.retry_after is None
    assert (info.value.status, info.value.response_excerpt) == (status, "upstream broke")
    assert receiver.event_count == 0


async def test_429_honours_retry_after_in_seconds(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(429, "slow down", {"Retry-After": "17"})
    with pytest.raises(DeliveryError) as info:
        await (await open_http(receiver.hook_url)).send(make_batch(1))
    assert (info.value.permanent, info.value.status, info.value.retry_after) == (False, 429, 17.0)


async def test_503_honours_retry_after_as_http_date(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(503, "maintenance", {"Retry-After": formatdate(time.time() + 120, usegmt=True)})
    with pytest.raises(DeliveryError) as info:
        await (await open_http(receiver.hook_url)).send(make_batch(1))
    assert not info.value.permanent and info.value.status == 503
    assert info.value.retry_after is not None and 115 <= info.value.retry_after <= 120


async def test_retry_after_is_ignored_on_other_statuses(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(500, "", {"Retry-After": "30"})
    with pytest.raises(DeliveryError) as info:
        await (await open_http(receiver.hook_url)).send(make_batch(1))
    assert info.value.retry_after is None


async def test_410_gone_is_permanent(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(410, "hook deleted")
    with pytest.raises(DeliveryError) as info:
        await (await open_http(receiver.hook_url)).send(make_batch(1))
    assert info.value.permanent
    assert (info.value.status, info.value.response_excerpt) == (410, "hook deleted")


async def test_redirects_are_not_followed(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(307, "", {"Location": f"{receiver.url}/elsewhere"})
    with pytest.raises(DeliveryError) as info:
        await (await open_http(receiver.hook_url)).send(make_batch(1))
    assert not info.value.permanent and info.value.status == 307
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_timeout_is_retryable(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(200, "late", delay=2.0)
    transport = await open_http(receiver.hook_url, request_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert time.monotonic() - started < 1.5
    assert not info.value.permanent and "request_timeout_s" in info.value.reason
    await receiver.stop()  # no request is handled after this: the count is final
    assert receiver.event_count == 0  # the late answer never counted as taken


async def test_connection_refused_is_retryable(open_http: OpenHttp) -> None:
    transport = await open_http(f"http://127.0.0.1:{free_port()}/hook")
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert not info.value.permanent and info.value.status is None
    assert "cannot connect" in info.value.reason


async def test_dns_failure_is_retryable(open_http: OpenHttp) -> None:
    transport = await open_http("http://no-such-host.invalid/hook")
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert not info.value.permanent and "DNS lookup" in info.value.reason


async def test_a_transport_delivers_again_after_a_failure(receiver: Receiver, open_http: OpenHttp) -> None:
    receiver.answer(500)
    transport = await open_http(receiver.hook_url)
    batch = make_batch(2)
    with pytest.raises(DeliveryError):
        await transport.send(batch)
    assert (await transport.send(batch)).status == 200
    assert receiver.event_count == 2 and receiver.request_count == 2


# -- authorization -------------------------------------------------------------------------------------------


async def test_basic_auth_sends_the_credentials(receiver: Receiver, open_http: OpenHttp) -> None:
    auth = {"type": "basic", "username": "hook-user", "password": "pä:ss"}
    await (await open_http(receiver.hook_url, auth=auth)).send(make_batch(1))
    assert receiver.requests[0].headers["Authorization"] == "Basic aG9vay11c2VyOnDDpDpzcw=="


async def test_bearer_auth_sends_the_token(receiver: Receiver, open_http: OpenHttp) -> None:
    transport = await open_http(receiver.hook_url, auth={"type": "bearer", "token": "t0k.en-1"})
    await transport.send(make_batch(1))
    assert receiver.requests[0].headers["Authorization"] == "Bearer t0k.en-1"


async def test_custom_headers_are_sent(receiver: Receiver, open_http: OpenHttp) -> None:
    await (await open_http(receiver.hook_url, headers={"X-Api-Key": "k1", "X-Tenant": "7"})).send(
        make_batch(1)
    )
    headers = receiver.requests[0].headers
    assert (headers["X-Api-Key"], headers["X-Tenant"]) == ("k1", "7")
    assert headers["User-Agent"].startswith("actionhooks/")


async def test_a_user_agent_header_replaces_the_default(receiver: Receiver, open_http: OpenHttp) -> None:
    await (await open_http(receiver.hook_url, headers={"user-agent": "crm-connector"})).send(make_batch(1))
    assert receiver.requests[0].headers.getall("User-Agent") == ["crm-connector"]


def oauth2(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        "type": "oauth2",
        "token_url": receiver.token_url,
        "client_id": "acme",
        "client_secret": "s3cret/+=",
        **extra,
    }


@pytest.fixture
async def oauth_receiver() -> AsyncIterator[Receiver]:
    async with Receiver(client_id="acme", client_secret="s3cret/+=") as r:
        yield r


async def test_oauth2_token_is_fetched_once_and_cached_across_sends(
    oauth_receiver: Receiver, open_http: OpenHttp
) -> None:
    transport = await open_http(oauth_receiver.hook_url, auth=oauth2(oauth_receiver, scope="events:write"))
    for i in range(3):
        await transport.send(make_batch(2, batch_id=f"b{i}"))
    assert oauth_receiver.token_requests == 1 and transport.token_fetches == 1
    assert oauth_receiver.token_scopes == ["events:write"]
    assert oauth_receiver.event_count == 6
    tokens = {r.headers["Authorization"] for r in oauth_receiver.requests}
    assert len(tokens) == 1 and tokens.pop().startswith("Bearer ")


async def test_oauth2_concurrent_sends_fetch_one_token(oauth_receiver: Receiver, open_http: OpenHttp) -> None:
    transport = await open_http(oauth_receiver.hook_url, auth=oauth2(oauth_receiver))
    await asyncio.gather(*(transport.send(make_batch(1, batch_id=f"b{i}")) for i in range(5)))
    assert oauth_receiver.token_requests == 1 and oauth_receiver.event_count == 5


async def test_oauth2_token_is_refreshed_once_when_the_hook_answers_401(
    oauth_receiver: Receiver, open_http: OpenHttp
) -> None:
    transport = await open_http(oauth_receiver.hook_url, auth=oauth2(oauth_receiver))
    await transport.send(make_batch(1, batch_id="b1"))
    oauth_receiver.revoke_tokens()
    receipt = await transport.send(make_batch(1, batch_id="b2"))
    assert receipt.status == 200
    assert oauth_receiver.token_requests == 2
    statuses_seen = len(oauth_receiver.requests)
    assert statuses_seen == 3  # b1; b2 refused with the revoked token; b2 again with the new one
    first, refused, retried = (r.headers["Authorization"] for r in oauth_receiver.requests)
    assert first == refused != retried
    assert oauth_receiver.event_count == 2


async def test_oauth2_second_401_after_refresh_is_retryable_without_a_loop(
    receiver: Receiver, open_http: OpenHttp
) -> None:
    # this receiver issues tokens but does not check them; the hook refuses every request
    receiver.client_id, receiver.client_secret = "acme", "s3cret/+="
    receiver.default = Answer(401, "no")
    transport = await open_http(receiver.hook_url, auth=oauth2(receiver))
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert not info.value.permanent and info.value.status == 401
    assert receiver.token_requests == 2 and receiver.request_count == 2


async def test_oauth2_token_is_fetched_again_when_it_expires(open_http: OpenHttp) -> None:
    async with Receiver(client_id="acme", client_secret="s3cret/+=", token_ttl=1) as r:
        transport = await open_http(r.hook_url, auth=oauth2(r))
        await transport.send(make_batch(1, batch_id="b1"))
        await asyncio.sleep(1.0)  # cached for 0.9 s: expires_in minus a tenth
        await transport.send(make_batch(1, batch_id="b2"))
        assert r.token_requests == 2 and r.event_count == 2
        await transport.close()


async def test_oauth2_invalid_client_is_permanent(oauth_receiver: Receiver, open_http: OpenHttp) -> None:
    auth = {**oauth2(oauth_receiver), "client_secret": "wrong"}
    transport = await open_http(oauth_receiver.hook_url, auth=auth)
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and info.value.status == 401
    assert "invalid_client" in info.value.reason and "wrong" not in info.value.reason
    assert oauth_receiver.request_count == 0


async def test_oauth2_token_endpoint_failure_is_retryable(
    oauth_receiver: Receiver, open_http: OpenHttp
) -> None:
    oauth_receiver.token_answers.append(Answer(503, "token service down"))
    transport = await open_http(oauth_receiver.hook_url, auth=oauth2(oauth_receiver))
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert not info.value.permanent and info.value.status == 503
    assert info.value.reason.startswith("token endpoint")
    assert (await transport.send(make_batch(1))).status == 200  # the endpoint is back


async def test_request_timeout_bounds_the_whole_oauth2_send(
    oauth_receiver: Receiver, open_http: OpenHttp
) -> None:
    # POST, 401, a new token, POST again: each under request_timeout_s, together over it
    oauth_receiver.answer(401, "expired", delay=0.35)
    oauth_receiver.answer(200, "ok", delay=0.35)
    transport = await open_http(oauth_receiver.hook_url, auth=oauth2(oauth_receiver), request_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert time.monotonic() - started < 0.65
    assert (
        not info.value.permanent and info.value.reason == "hook: no complete answer within request_timeout_s"
    )


async def test_oauth2_unreachable_token_endpoint_is_retryable(
    receiver: Receiver, open_http: OpenHttp
) -> None:
    auth = {**oauth2(receiver), "token_url": f"http://127.0.0.1:{free_port()}/token"}
    with pytest.raises(DeliveryError) as info:
        await (await open_http(receiver.hook_url, auth=auth)).send(make_batch(1))
    assert not info.value.permanent and info.value.reason.startswith("token endpoint: cannot connect")


# -- signing -------------------------------------------------------------------------------------------------


async def test_requests_are_signed_as_standard_webhooks(receiver: Receiver, open_http: OpenHttp) -> None:
    batch = make_batch(2, batch_id="01J0BATCH")
    await (await open_http(receiver.hook_url, signing_secret=SECRET)).send(batch)
    [request] = receiver.requests
    headers = dict(request.headers)
    assert Webhook(SECRET).verify(request.body, headers) == [json.loads(m.body) for m in batch.messages]
    assert headers["webhook-id"] == "01J0BATCH"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(request.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace(b"deliv", b"click"), headers)


async def test_a_verifying_receiver_accepts_signed_batches_and_refuses_unsigned(open_http: OpenHttp) -> None:
    async with Receiver(secret=SECRET) as r:
        await (await open_http(r.hook_url, signing_secret=SECRET)).send(make_batch(2))
        assert r.event_count == 2 and r.verification_failures == []
        with pytest.raises(DeliveryError) as info:
            await (await open_http(r.hook_url)).send(make_batch(1))
        assert info.value.status == 400 and len(r.verification_failures) == 1
        assert r.event_count == 2


# -- the net guard -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_loopback_destinations_are_refused_without_an_allow_list(
    receiver: Receiver, open_http: OpenHttp, host: str
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    transport = await open_http(f"http://{host}:{port}/hook", context=UNGUARDED)
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "not public" in info.value.reason
    assert receiver.request_count == 0


async def test_a_name_resolving_to_loopback_is_refused_by_the_resolver(
    receiver: Receiver, open_http: OpenHttp
) -> None:
    name = socket.gethostname()
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        missing(f"a resolvable host name ({name!r} does not resolve)")
    if any(NetGuard().refusal(a) is None for a in addresses):
        missing(f"a host name resolving to loopback ({name!r} resolves to a public address)")
    assert NetGuard().host_refusal(name) is None  # so the refusal below comes from the resolver
    port = receiver.url.rsplit(":", 1)[1]
    transport = await open_http(f"http://{name}:{port}/hook", context=UNGUARDED)
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "not public" in info.value.reason
    assert receiver.request_count == 0


async def test_a_refused_token_endpoint_is_permanent(oauth_receiver: Receiver, open_http: OpenHttp) -> None:
    # the hook URL is public-looking (never reached); the token endpoint is on loopback
    auth = oauth2(oauth_receiver)
    transport = await open_http("https://hooks.example.com/in", auth=auth, context=UNGUARDED)
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "not public" in info.value.reason
    assert oauth_receiver.token_requests == 0


async def test_guarded_resolver_keeps_only_allowed_addresses() -> None:
    resolver = GuardedResolver(NetGuard(parse_nets("127.0.0.0/8")))
    try:
        kept = await resolver.resolve("localhost", 80, family=socket.AF_UNSPEC)
        assert kept and all(r["host"].startswith("127.") for r in kept)
        with pytest.raises(DestinationRefused):
            await GuardedResolver(NetGuard()).resolve("localhost", 80)
    finally:
        await resolver.close()


# -- settings ------------------------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = parse_settings({"type": "http", "url": "https://hooks.example.com/in"})
    assert isinstance(s, Settings)
    assert (s.max_batch_size, s.timeout_s, s.request_timeout_s, s.success_regex) == (100, 1.0, 30.0, "")
    assert s.headers == {} and s.signing_secret is None and s.public()["auth"] == {"type": "none"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"url": "ftp://hooks.example.com/"}, "transport.url"),
        ({"url": "http:///path-only"}, "transport.url"),
        ({"url": "https://user:pw@hooks.example.com/"}, "transport.url"),
        ({"url": 5}, "transport.url"),
        ({"success_regex": "(unclosed"}, "transport.success_regex"),
        ({"success_regex": "(?=ok)ok"}, "transport.success_regex"),  # look-around: RE2 has none
        ({"success_regex": r"(a)\1"}, "transport.success_regex"),  # backreference: RE2 has none
        ({"success_regex": "(?s).{1000}.{1000}z"}, "transport.success_regex"),  # over MAX_REGEX_PROGRAM
        ({"headers": {"Content-Type": "text/plain"}}, "transport.headers"),
        ({"headers": {"content-length": "5"}}, "transport.headers"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, "transport.headers"),
        ({"headers": {"Webhook-Signature": "v1,x"}}, "transport.headers"),
        ({"headers": {"X-Evil": "a\r\nHost: b"}}, "transport.headers"),
        ({"headers": {"Bad Name": "x"}}, "transport.headers"),
        ({"auth": {"type": "bearer", "token": "t"}, "headers": {"Authorization": "x"}}, "transport.headers"),
        ({"auth": {"type": "kerberos"}}, "transport.auth.type"),
        ({"auth": {"type": "basic", "username": "a:b", "password": "p"}}, "transport.auth.username"),
        ({"auth": {"type": "bearer", "token": ""}}, "transport.auth.token"),
        (
            {"auth": {"type": "oauth2", "token_url": "file:///x", "client_id": "a", "client_secret": "b"}},
            "transport.auth.token_url",
        ),
        ({"signing_secret": "not-a-secret"}, "transport.signing_secret"),
        ({"signing_secret": "whsec_c2hvcnQ="}, "transport.signing_secret"),
        ({"signing_secret": "whsec_!!!notbase64!!!"}, "transport.signing_secret"),
        ({"request_timeout_s": 0}, "transport.request_timeout_s"),
        ({"max_batch_size": 0}, "transport.max_batch_size"),
    ],
)
def test_invalid_settings_name_the_field(extra: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_settings({"type": "http", "url": "https://hooks.example.com/in", **extra})
    assert info.value.field == field


def test_hosts_are_the_url_and_token_url_hosts() -> None:
    s = parse_settings({"type": "http", "url": "https://hooks.example.com:8443/in"})
    assert s.hosts() == ["hooks.example.com"]
    auth = {
        "type": "oauth2",
        "token_url": "https://auth.example.net/token",
        "client_id": "a",
        "client_secret": "b",
    }
    s = parse_settings({"type": "http", "url": "http://[2001:db8::1]/in", "auth": auth})
    assert s.hosts() == ["2001:db8::1", "auth.example.net"]


def test_public_hides_every_secret() -> None:
    s = parse_settings(
        {
            "type": "http",
            "url": "https://hooks.example.com/in",
            "headers": {"X-Api-Key": "header-secret"},
            "signing_secret": SECRET,
            "auth": {
                "type": "oauth2",
                "token_url": "https://auth.example.net/token",
                "client_id": "acme",
                "client_secret": "client-secret",
            },
        }
    )
    assert isinstance(s, Settings)
    public = s.public()
    assert public["headers"] == {"X-Api-Key": "***"}
    assert public["signing_secret"] == "***"
    assert public["auth"] == {
        "type": "oauth2",
        "token_url": "https://auth.example.net/token",
        "client_id": "acme",
        "client_secret": "***",
        "scope": None,
    }
    for text in (json.dumps(public), repr(s), str(s), repr(s.auth)):
        assert not any(secret in text for secret in ("header-secret", SECRET, "client-secret")), text
    assert "https://hooks.example.com/in" in repr(s) and "acme" in repr(s.auth)
    basic = parse_settings(
        {
            "type": "http",
            "url": "https://h.example/",
            "auth": {"type": "basic", "username": "u", "password": "pw"},
        }
    )
    assert isinstance(basic, Settings)
    assert basic.public()["auth"] == {"type": "basic", "username": "u", "password": "***"}
    assert "pw" not in repr(basic) and "pw" not in repr(basic.auth)
    bearer = parse_settings(
        {"type": "http", "url": "https://h.example/", "auth": {"type": "bearer", "token": "tk"}}
    )
    assert isinstance(bearer, Settings)
    assert bearer.public()["auth"] == {"type": "bearer", "token": "***"}
    assert "tk" not in repr(bearer) and "tk" not in repr(bearer.auth)


async def test_close_without_a_send_and_twice_is_harmless(open_http: OpenHttp) -> None:
    transport = await open_http("https://hooks.example.com/in")
    await transport.close()
    await transport.close()


# -- the receiver as a process -------------------------------------------------------------------------------


async def test_receiver_process_appends_event_ids_to_a_file(tmp_path: Path, open_http: OpenHttp) -> None:
    ids_file = tmp_path / "ids.txt"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "actionhooks.devtools.receiver", "--port", "0", "--ids-file", str(ids_file),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()
        transport = await open_http(url + "/hook")
        await transport.send(make_batch(3, batch_id="b1"))
        await transport.send(make_batch(2, batch_id="b2"))
        assert ids_file.read_text().splitlines() == ["ev-0", "ev-1", "ev-2", "ev-0", "ev-1"]
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
