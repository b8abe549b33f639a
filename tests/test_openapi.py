"""The published contract: /openapi.json covers every route and only those, its schemas describe what the service
answers, /docs is served from the installed package, and schemathesis finds nothing against the live service."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from starlette.routing import Route

from actionhooks.api.app import ROUTES
from actionhooks.api.openapi import document
from actionhooks.api.schema import TransportChoice
from actionhooks.devtools.receiver import Receiver
from actionhooks.integrations import transport_types

from . import stub
from .support import Service, User, eventually

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def documented() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in document()["paths"].items() for m in item if m in METHODS}


def routed(routes: list[Any]) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette adds HEAD to every GET
    }


def validator(component: str) -> Any:
    doc = document()
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    )


def conforms(component: str, value: Any) -> None:
    errors = [f"{e.instance_path}: {e.message}" for e in validator(component).iter_errors(value)]
    assert not errors, (component, errors, value)


def test_every_route_is_documented_and_every_operation_routed() -> None:
    assert routed(ROUTES) - documented() == set(), "routes the document lacks"
    assert documented() - routed(ROUTES) == set(), "operations without a route"
    # the comparison sees a route added without its operation, and an operation whose route went away
    extra = Route("/v1/hooks/{hook_id}", lambda request: None, methods=["PUT"])
    assert routed([*ROUTES, extra]) - documented() == {("PUT", "/v1/hooks/{hook_id}")}
    without_health = [r for r in ROUTES if getattr(r, "path", "") != "/healthz"]
    assert documented() - routed(without_health) == {("GET", "/healthz")}


def test_every_answer_has_a_concrete_status_and_schema() -> None:
    for path, item in document()["paths"].items():
        for method, op in item.items():
            assert op["operationId"] and op["summary"], (method, path)
            assert "default" not in op["responses"], (method, path)
            for status, answer in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status), (method, path, status)
                for media in answer.get("content", {}).values():
                    assert media["schema"], (method, path, status)
            if op.get("security") != []:
                assert {"401", "503"} <= set(op["responses"]), (method, path)


def test_every_reference_resolves() -> None:
    doc = document()
    text = msgspec.json.encode(doc).decode()
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert refs and refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    for name in doc["components"]["schemas"]:
        validator(name)  # each is a valid JSON Schema whose references resolve


def test_transports_are_the_registry() -> None:
    """Every built-in transport is in the document; the tests' own ``stub`` is not."""
    built_in = set(transport_types()) - set(stub.INTEGRATION.transport_types)
    tags = {str(t.__struct_config__.tag) for t in TransportChoice.__args__}
    assert tags == built_in
    mapping = document()["components"]["schemas"]["Transport"]["discriminator"]["mapping"]
    assert set(mapping) == built_in


def test_examples_conform() -> None:
    body = document()["paths"]["/v1/hooks"]["post"]["requestBody"]["content"]["application/json"]
    conforms("HookSettings", body["example"])
    events = document()["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    for event in events["example"]:
        conforms("Event", event)


async def test_document_and_docs_page_are_served(service: Service) -> None:
    status, doc, _ = await service.call("GET", "/openapi.json", None)
    assert status == 200 and doc == msgspec.json.decode(msgspec.json.encode(document()))
    status, page, headers = await service.call("GET", "/docs", None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = page.decode()
    assert "://" not in html.replace("http://www.w3.org", "")  # nothing from a CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "docs/assets/swagger-ui-bundle.js" in assets
    for asset in assets:
        status, content, _ = await service.call("GET", "/" + asset, None)
        assert status == 200 and len(content) > 0, asset


SECRET_TRANSPORTS: list[dict[str, Any]] = [
    {
        "type": "http",
        "url": "http://127.0.0.1:9/hook",
        "headers": {"X-Token": "t"},
        "auth": {"type": "basic", "username": "u", "password": "p"},
    },
    {"type": "rabbitmq_queue", "host": "127.0.0.1", "user": "u", "password": "p", "queue": "q"},
    {"type": "rabbitmq_exchange", "host": "127.0.0.1", "user": "u", "password": "p", "exchange": "x"},
    {
        "type": "kafka",
        "bootstrap_servers": ["127.0.0.1:9"],
        "topic": "t",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "u",
        "sasl_password": "p",
    },
    {"type": "nats", "servers": "nats://127.0.0.1:9", "subject": "s", "credentials": {"token": "t"}},
]


async def test_answers_conform_for_every_transport(service: Service, owner: User) -> None:
    for transport in SECRET_TRANSPORTS:
        settings = {
            "name": transport["type"],
            "event_types": ["deliv"],
            "active": False,
            "transport": transport,
        }
        conforms("HookSettings", settings)
        status, created, _ = await service.call("POST", "/v1/hooks", owner, settings)
        assert status == 201, created
        conforms("Hook", created)
        assert "p" not in {v for v in created["transport"].values() if isinstance(v, str)}
    status, listing, _ = await service.call("GET", "/v1/hooks", owner)
    conforms("HookList", listing)
    assert len(listing["hooks"]) == len(SECRET_TRANSPORTS)
    status, error, _ = await service.call("GET", "/v1/hooks/1", None)
    assert status == 401
    conforms("ErrorBody", error)
    status, types, _ = await service.call("GET", "/v1/event-types", owner)
    conforms("EventTypeList", types)


async def test_attempts_dead_letters_and_test_outcomes_conform(service: Service, owner: User) -> None:
    async with Receiver() as receiver:
        receiver.answer(410, b"gone", times=100)
        transport = {"type": "http", "url": receiver.hook_url, "max_batch_size": 1, "timeout_s": 0}
        settings = {"name": "gone", "event_types": ["deliv"], "transport": transport}
        status, hook, _ = await service.call("POST", "/v1/hooks", owner, settings)
        assert status == 201
        event = {"event_type": "deliv", "event_date": "2024-05-01T12:00:00Z", "event_data": {"message_id": 1}}
        status, result, _ = await service.call("POST", "/v1/events", owner, [event, {"event_type": "nope"}])
        assert status == 202
        conforms("IngestResult", result)

        async def letters() -> Any:
            _, page, _ = await service.call("GET", f"/v1/hooks/{hook['id']}/dead-letters", owner)
            return page if page["dead_letters"] else None

        conforms("DeadLetterList", await eventually(letters))
        _, attempts, _ = await service.call("GET", f"/v1/hooks/{hook['id']}/attempts", owner)
        assert attempts["attempts"]
        conforms("AttemptList", attempts)
        status, outcome, _ = await service.call("POST", f"/v1/hooks/{hook['id']}/test", owner)
        assert status == 200 and outcome["delivered"] is False
        conforms("TestOutcome", outcome)
        status, error, _ = await service.call(
            "POST", f"/v1/hooks/{hook['id']}/test", owner, {"event_type": 5}
        )
        assert status == 422 and error["field"] == "event_type"


FUZZ_CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,ignored_auth"


STATEFUL_SCENARIOS = "60"  # create → link chains; 15 (the other phases' budget) left a link out now and then


@pytest.mark.timeout(300)
async def test_schemathesis_finds_nothing(service: Service, owner: User, tmp_path: Path) -> None:
    """Every operation (examples, coverage, fuzzing) and the stateful links (create → get / patch / test /
    clone / delete), against the live service on each engine."""
    async with Receiver(keep_events=False) as receiver:
        examples = os.environ.get("ACTIONHOOKS_FUZZ_EXAMPLES", "15")
        code, report = await _schemathesis(
            service,
            owner,
            receiver,
            tmp_path,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            examples,
        )
        assert code == 0, report[-12000:]
        selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
        assert selected and len(set(selected.groups())) == 1 and int(selected[1]) >= 13, report[-4000:]
        code, report = await _schemathesis(
            service, owner, receiver, tmp_path, "--phases", "stateful", "--max-examples", STATEFUL_SCENARIOS
        )
        assert code == 0, report[-12000:]
    links = re.search(r"API Links:\s+(\d+) covered", report)
    assert links and int(links[1]) >= len(
        document()["paths"]["/v1/hooks"]["post"]["responses"]["201"]["links"]
    ), report[-4000:]


async def _schemathesis(
    service: Service, owner: User, receiver: Receiver, folder: Path, *options: str
) -> tuple[int | None, str]:
    """Schemathesis's CLI against the live service with ``options``: its exit code and its report."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SCHEMATHESIS_HOOKS": "tests.openapi_fuzz",
        "ACTIONHOOKS_FUZZ_RECEIVER": receiver.hook_url,
        "NO_COLOR": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{service.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {owner.key}",
        "--checks",
        FUZZ_CHECKS,
        *options,
        "--seed",
        os.environ.get("ACTIONHOOKS_FUZZ_SEED", "20240501"),
        "--request-timeout",
        "20",
        "--workers",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=folder,  # its cache (.schemathesis/) stays out of the checkout
    )
    out, _ = await proc.communicate()
    return proc.returncode, out.decode(errors="replace")
