"""Schemathesis hooks for ``tests/test_openapi.py``'s run (loaded by the CLI through ``SCHEMATHESIS_HOOKS``).

- NDJSON bodies: the document gives them as a string; sent as its UTF-8 bytes.
- Hooks the fuzzer creates or edits deliver to the test's loopback receiver (``ACTIONHOOKS_FUZZ_RECEIVER``): a
  generated broker or URL destination would have the service connect to arbitrary hosts, and a test send to an
  unreachable Kafka waits out its delivery timeout. Settings the fuzzer makes are otherwise sent as generated.
- ``ast.parse`` one call at a time: Hypothesis parses the source of a filter's lambda to describe it, and CPython
  3.11 builds AST objects with a recursion counter shared by all threads (python/cpython#106905), so two workers
  parsing at once can fail with "SystemError: AST constructor recursion depth mismatch".
"""

from __future__ import annotations

import ast
import json
import os
import threading
from typing import Any

import schemathesis

RECEIVER = os.environ.get("ACTIONHOOKS_FUZZ_RECEIVER", "http://127.0.0.1:9/hook")
HOOK_BODIES = {("POST", "/v1/hooks"), ("PATCH", "/v1/hooks/{hook_id}"), ("POST", "/v1/hooks/{hook_id}/clone")}
BATCHING = ("max_batch_size", "timeout_s")

_parse = ast.parse
_parsing = threading.Lock()


def _parse_alone(*args: Any, **kwargs: Any) -> Any:
    with _parsing:
        return _parse(*args, **kwargs)


ast.parse = _parse_alone


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
