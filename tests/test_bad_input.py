"""No input makes the service answer 5xx or keep what it refused: Hypothesis builds hostile bodies for the ingest
route and the hooks API, on both engines, and shrinks a failure to a minimal body.

Bodies are valid events and hooks taken apart — fields deleted, replaced by other JSON values, added under odd
names, transport types swapped or made up — then encoded, sometimes truncated, with a byte flipped, with a string
that is not UTF-8, a lone surrogate or a NUL; or hostile outright: nesting thousands deep, random bytes. Values
include integers past BIGINT, huge and tiny floats, long strings, NATS subjects with wildcards, URLs with
credentials. Every answer must be 2xx, or 4xx with a JSON object that says what is wrong; a refused item leaves
nothing behind (the account's events grow by exactly the number accepted, a refused hook is not created, a refused
edit leaves the hook as it was); and the service still answers a valid request afterwards.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

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
# stopped hooks: an accepted body must not start a worker per example (validation is the same either way)
HOOK: dict[str, Any] = {
    "name": "crm",
    "active": False,
    "event_types": ["deliv"],
    "filters": {"campaign_ids": [1]},
    "custom_data_fields": ["email"],
    "transport": {"type": "http", "url": "http://127.0.0.1:9/x", "max_batch_size": 10, "success_regex": "ok"},
}
HOOKS: list[dict[str, Any]] = [
    HOOK,
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
            "type": "rabbitmq_queue",
            "host": "127.0.0.1",
            "user": "u",
            "password": "p",
            "queue": "q",
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
            "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "auth": {
                "type": "oauth2",
                "token_url": "https://example.com/t",
                "client_id": "c",
                "client_secret": "s",
            },
        },
    },
]
CONTENT_TYPES = ["application/json", "application/x-ndjson", "text/plain", ""]

odd_strings = (
    st.sampled_from(
        [
            "",
            "\x00",
            "a\x00b",
            "💥",
            "2018-13-45T99:99:99Z",
            "deliv",
            "***",
            "ev.>",
            "ev.*.x",
            "a b",
            "{list_id}.{nope}",
            "amq.direct",
            "http://user:pw@example.com/",
            "ftp://example.com/",
            "http://169.254.169.254/latest",
            "X\r\nInjected: 1",
            "(unclosed",
            # transport and auth types, so that one kind's settings meet another's tag
            "http",
            "rabbitmq_queue",
            "rabbitmq_exchange",
            "kafka",
            "nats",
            "stub",
            "oauth2",
            "none",
        ]
    )
    | st.text(max_size=30)
    | st.integers(1000, 5000).map(lambda n: "x" * n)
)
beyond_bigint = st.integers(min_value=2**63) | st.integers(max_value=-(2**63) - 1)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-10, 10**6)
    | beyond_bigint
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_strings
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with one change somewhere inside: a key deleted, added or replaced, or (at the bottom) the value
    replaced by any JSON value."""
    if isinstance(value, dict) and value and depth < 4:
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        action = draw(st.sampled_from(["descend", "delete", "replace", "add"]))
        if action == "descend":
            out[key] = draw(mutated(out[key], depth + 1))
        elif action == "delete":
            del out[key]
        elif action == "replace":
            out[key] = draw(json_values)
        else:
            out[draw(st.sampled_from(["", "💥", "a" * 300, f"{key}_x", "type", "id", "account_id"]))] = draw(
                json_values
            )
        return out
    if isinstance(value, list) and value and depth < 4:
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], draw(mutated(value[index], depth + 1)), *value[index + 1 :]]
    return draw(json_values)


FIRST_STRING = re.compile(rb':"[^"\\]*"')


@st.composite
def encoded(draw: st.DrawFn, templates: list[dict[str, Any]]) -> bytes:
    value = draw(st.sampled_from(templates))
    for _ in range(draw(st.integers(1, 3))):
        value = draw(mutated(value))
    data = msgspec.json.encode(value)
    form = draw(
        st.sampled_from(
            [
                "as is",
                "in an array",
                "truncated",
                "byte flipped",
                "not UTF-8",
                "surrogate",
                "NUL",
                "nested",
                "bytes",
            ]
        )
    )
    if form == "in an array":
        return msgspec.json.encode([value, draw(st.sampled_from(templates)), value])
    if form == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if form == "byte flipped":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if form in {"not UTF-8", "surrogate", "NUL"}:
        string = {"not UTF-8": b'"\xff\xfe\xc3"', "surrogate": b'"\\ud800x"', "NUL": b'"a\\u0000b"'}[form]
        return FIRST_STRING.sub(b":" + string.replace(b"\\", b"\\\\"), data, count=1)
    if form == "nested":
        depth = draw(st.integers(1, 5000))
        return b"[" * depth + draw(st.sampled_from([b"", b"1", data])) + b"]" * draw(st.integers(0, depth))
    if form == "bytes":
        return draw(st.binary(max_size=200))
    return data


requests = st.tuples(st.sampled_from(CONTENT_TYPES), encoded([EVENT]))
hook_requests = st.tuples(st.sampled_from(CONTENT_TYPES), encoded(HOOKS))
BOUNDED = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def call(
    service: Service, user: User, method: str, path: str, request: tuple[str, bytes]
) -> tuple[int, Any]:
    kind, data = request
    headers = {"Content-Type": kind} if kind else {}
    status, body, _ = await service.call(method, path, user, raw=data, headers=headers)
    if currently_in_test_context():
        event(f"{method} {status}")  # the spread of answers, in --hypothesis-show-statistics
    assert status < 500, (status, body)
    assert 200 <= status < 500
    assert isinstance(body, dict), (status, body)
    if status >= 400:
        assert says_what_is_wrong(body), body
    return status, body


def says_what_is_wrong(body: dict[str, Any]) -> bool:
    """A refusal's JSON names the problem: ``{"error": …}``, or ingest's per-item ``{"errors": [{"index",
    "error"}, …]}`` when no event was valid."""
    if isinstance(body.get("error"), str) and body["error"]:
        return True
    errors = body.get("errors")
    return (
        isinstance(errors, list)
        and bool(errors)
        and all(isinstance(e.get("error"), str) and e["error"] for e in errors)
    )


@BOUNDED
@given(request=requests)
async def test_hostile_events_are_refused_and_not_stored(
    service: Service, owner: User, request: tuple[str, bytes]
) -> None:
    before = await service.store.count_events(owner.account_id)
    status, body = await call(service, owner, "POST", "/v1/events", request)
    stored = await service.store.count_events(owner.account_id) - before
    if status == 202:
        assert stored == body["accepted"] == len(body["ids"]) - body["duplicates"]
        assert all(isinstance(e["index"], int) and e["error"] for e in body["errors"])
    else:
        assert stored == 0


@BOUNDED
@given(request=hook_requests)
async def test_hostile_hooks_are_refused_and_not_created(
    service: Service, owner: User, request: tuple[str, bytes]
) -> None:
    before = len(await service.store.list_hooks(owner.account_id))
    status, _ = await call(service, owner, "POST", "/v1/hooks", request)
    created = len(await service.store.list_hooks(owner.account_id)) - before
    assert created == (1 if status == 201 else 0)


@settings(BOUNDED, max_examples=50)
@given(request=hook_requests)
async def test_hostile_edits_clones_and_tests_leave_the_hook_as_it_was(
    service: Service, owner: User, request: tuple[str, bytes]
) -> None:
    status, hook, _ = await service.call("POST", "/v1/hooks", owner, HOOK)
    assert status == 201
    path = f"/v1/hooks/{hook['id']}"
    status, _ = await call(service, owner, "PATCH", path, request)
    _, now, _ = await service.call("GET", path, owner)
    if status != 200:
        assert now == hook
    count = len(await service.store.list_hooks(owner.account_id))
    status, _ = await call(service, owner, "POST", path + "/clone", request)
    cloned = len(await service.store.list_hooks(owner.account_id)) - count
    assert cloned == (1 if status == 201 else 0)
    await call(service, owner, "POST", path + "/test", request)  # a hostile test-event request: never 5xx


async def test_the_service_still_works_after_hostile_input(service: Service, owner: User) -> None:
    for data in (b"[" * 100_000, b"\xff" * 1000, b'{"event_type": "deliv", "list_id": 99999999999999999999}'):
        await call(service, owner, "POST", "/v1/events", ("application/json", data))
    status, _, _ = await service.call("POST", "/v1/events", owner, EVENT)
    assert status == 202
    status, _, _ = await service.call("POST", "/v1/hooks", owner, HOOK)
    assert status == 201
