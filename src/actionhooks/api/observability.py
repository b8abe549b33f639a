"""What operators and users watch: ``GET /metrics`` (Prometheus text, no API key: protect it at the network or
proxy, docs/operations.md#metrics) and a hook's ``GET /v1/hooks/{id}/stats``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import metrics, stats
from .hooks import own_hook
from .responses import json_response
from .schema import HookStatsView


async def metrics_page(request: Request) -> Response:
    state: Any = request.app.state
    snapshot = await stats.snapshot(state.store, state.hooks)
    return Response(state.exposition.render(snapshot), media_type=metrics.CONTENT_TYPE)


async def hook_stats(request: Request) -> Response:
    hooks, _, hook = await own_hook(request)
    return json_response(HookStatsView.of(hook.id, await stats.hook_stats(hooks.store, hook)))
