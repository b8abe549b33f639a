"""Schemathesis hooks for ``tests/test_openapi.py``'s run (loaded by the CLI through ``SCHEMATHESIS_HOOKS``).

- NDJSON bodies: the document gives them as a string; sent as its UTF-8 bytes.
- Hooks the fuzzer creates or edits deliver to the test's loopback receiver (``ACTIONHOOKS_FUZZ_RECEIVER``): a
  generated broker or URL destination would have the service connect to arbitrary hosts, and a test send to an
  unreachable Kafka waits out its delivery timeout. Settings the fuzzer makes are otherwise sent as generated.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

RECEIVER = os.environ.get("ACTIONHOOKS_FUZZ_RECEIVER", "http://127.0.0.1:9/hook")
HOOK_BODIES = {("POST", "/v1/hooks"), ("PATCH", "/v1/hooks/{hook_id}"), ("POST", "/v1/hooks/{hook_id}/clone")}
BATCHING = ("max_batch_size", "timeout_s")


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass")


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) not in HOOK_BODIES:
        return
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("transport"), dict):
        generated = body["transport"]
        body["transport"] = {
            "type": "http",
            "url": RECEIVER,
            **{k: generated[k] for k in BATCHING if k in generated},
        }
