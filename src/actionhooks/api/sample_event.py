"""``POST /v1/hooks/{id}/test``: send one sample event through a hook's transport now and report the outcome.

The sample is a realistic message of the chosen event type (default: the hook's first), marked ``is_test: true``,
with the hook's ``list_id`` and enrichment, sent once — no retry — straight to the destination. It does not enter the
log, move the cursor or count as an attempt: it answers "would this hook work?" before events rely on it.
"""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..demo_traffic import make_event
from ..dispatch.enrich import Enricher
from ..errors import DeliveryError
from ..events import ItemError, LoggedEvent, parse_event
from ..ids import new_id
from ..transports import Batch, open_transport
from .hooks import own_hook
from .responses import ApiError, json_response, read_optional_json


async def send_test_event(request: Request) -> Response:
    _, account_id, hook = await own_hook(request)
    options = await read_optional_json(request)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ApiError(422, 'the body must be a JSON object, e.g. {"event_type": "deliv"}')
    code = options.get("event_type", hook.spec.event_types[0])
    if code not in hook.spec.event_types:
        raise ApiError(422, f"event_type {code!r} is not one of the hook's event types", "event_type")
    sample: dict[str, Any] = make_event(code, random.Random(), list_ids=(hook.spec.list_id or 1,))
    sample.update(id=f"test-{new_id()}", is_test=True)
    parsed = parse_event(msgspec.json.encode(sample), 0, account_id)
    assert not isinstance(parsed, ItemError), parsed  # the generator makes valid events
    message = Enricher(hook.spec).message(
        LoggedEvent(0, parsed.id, parsed.event_type, parsed.list_id, parsed.profile_id, parsed.payload)
    )
    transport = open_transport(hook.spec.transport, request.app.state.context)
    started = time.perf_counter()
    outcome: dict[str, Any]
    try:
        receipt = await transport.send(Batch(hook.id, f"{hook.id}-test-{parsed.id}", [message]))
        outcome = {"delivered": True, "status": receipt.status, "response_excerpt": receipt.response_excerpt}
    except DeliveryError as err:
        outcome = {
            "delivered": False,
            "status": err.status,
            "response_excerpt": err.response_excerpt,
            "error": err.reason,
            "permanent": err.permanent,
        }
    finally:
        await transport.close()
    outcome["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    outcome["event"] = msgspec.Raw(message.body)
    return json_response(outcome)
