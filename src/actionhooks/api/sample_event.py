"""``POST /v1/hooks/{id}/test``: send one sample event through a hook's transport now and report the outcome.

The sample is the catalogue's realistic message of the chosen event type (``catalog.samples``; default: the hook's
first type), marked ``is_test: true``, with the hook's ``list_id`` and enrichment, sent once — no retry — straight to
the destination. It does not enter the log, move the cursor or count as an attempt: it answers "would this hook
work?" before events rely on it.
"""

from __future__ import annotations

import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from .. import operational
from ..catalog.samples import sample
from ..dispatch.enrich import Enricher
from ..errors import ApiError, DeliveryError, field_error
from ..events import ItemError, LoggedEvent, parse_event
from ..ids import new_id
from ..integrations import Batch, TransportContext, open_for_sending
from ..registry import Hook
from .hooks import own_hook
from .responses import json_response, read_optional_json
from .schema import TestOptions, TestOutcome


async def send_test_event(request: Request) -> Response:
    _, account_id, hook = await own_hook(request)
    body = await read_optional_json(request)
    try:
        options = msgspec.convert({} if body is None else body, TestOptions)
    except msgspec.ValidationError as exc:
        wrong = field_error(exc)
        raise ApiError(
            422, f'{wrong.message}; the body is e.g. {{"event_type": "deliv"}}', wrong.field
        ) from None
    outcome = await deliver_sample(hook, account_id, options.event_type, request.app.state.context)
    return json_response(outcome)


async def deliver_sample(
    hook: Hook, account_id: int, event_type: str | None, context: TransportContext
) -> TestOutcome:
    """Send the sample of ``event_type`` (default: the hook's first type) through ``hook``'s transport once; the
    outcome says what was sent and what the destination answered. ``ApiError`` 422 when the hook lacks the type."""
    code = event_type or hook.spec.event_types[0]
    if code not in hook.spec.event_types:
        raise ApiError(422, f"event_type {code!r} is not one of the hook's event types", "event_type")
    if code in operational.OPERATIONAL_CODES:
        made = operational.sample(account_id, code, hook.id, hook.spec.name, time.time())
        body = msgspec.json.decode(made.payload)
        body.update(id=f"test-{new_id()}", is_test=True)
        message = LoggedEvent(0, body["id"], code, None, None, msgspec.json.encode(body))
    else:
        event = sample(code, list_ids=(hook.spec.list_id or 1,))
        event.update(id=f"test-{new_id()}", is_test=True)
        parsed = parse_event(msgspec.json.encode(event), 0, account_id)
        assert not isinstance(parsed, ItemError), parsed  # samples are valid messages
        message = Enricher(hook.spec).message(
            LoggedEvent(0, parsed.id, parsed.event_type, parsed.list_id, parsed.profile_id, parsed.payload)
        )
    transport = await open_for_sending(hook.spec.transport, context)
    started = time.perf_counter()
    try:
        receipt = await transport.send(Batch(hook.id, f"{hook.id}-test-{message.id}", [message]))
        delivered, status, excerpt = True, receipt.status, receipt.response_excerpt
        error, permanent = None, None
    except DeliveryError as err:
        delivered, status, excerpt = False, err.status, err.response_excerpt
        error, permanent = err.reason, err.permanent
    finally:
        await transport.close()
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return TestOutcome(
        delivered=delivered,
        status=status,
        response_excerpt=excerpt,
        error=error,
        permanent=permanent,
        latency_ms=latency_ms,
        event=msgspec.Raw(message.body),
    )
