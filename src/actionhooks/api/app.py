"""The ASGI application: ingest and admin routes on Starlette over the parts it is given (store, transports'
context, settings); ``service.py`` builds those parts and starts and stops them with the app's lifespan."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from .. import metrics
from ..capture.dwell import Streams
from ..capture.geo import GeoLocator
from ..capture.tokens import TrackingKeys
from ..capture.visitor import ClickBursts
from ..catalog import catalog
from ..config import Settings
from ..derive import Derivation
from ..errors import ApiError, StoreUnavailable
from ..integrations import TransportContext
from ..readiness import Readiness
from ..registry import HookRegistry
from ..store import Store
from . import account, hooks, keys, observability, openapi, profiles, replays, tracking
from .auth import Authenticator
from .ingest import post_events
from .responses import json_response
from .sample_event import send_test_event
from .schema import EventTypeList, Health, ReadinessView

log = logging.getLogger(__name__)


async def event_types(request: Request) -> Response:
    await request.app.state.auth.account(request)
    return json_response(EventTypeList(list(catalog().types)))


async def health(request: Request) -> Response:
    return json_response(Health("ok"))


async def ready(request: Request) -> Response:
    """Readiness (no key): 200 when every check of the process says ``ok``, else 503 with ``Retry-After``."""
    readiness: Readiness = request.app.state.readiness
    report = await readiness.report()
    if report.ready:
        return json_response(ReadinessView("ready", report.checks))
    headers = {"Retry-After": str(max(1, report.retry_after))}
    return json_response(ReadinessView("not_ready", report.checks), 503, headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response(exc.as_dict(), exc.status, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """The database is down or was cut off: 503 and when to retry (the store logs the outage once, not here)."""
    assert isinstance(exc, StoreUnavailable)
    return json_response(
        {"error": "the store is unavailable; retry"}, 503, {"Retry-After": str(math.ceil(exc.retry_after))}
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response(
        {"error": "the service could not complete the request; retry"}, 503, {"Retry-After": "5"}
    )


# The busiest routes first: Starlette tries each route's pattern in turn (no two of these overlap), and the
# open pixel would otherwise be matched against some thirty patterns before its own.
ROUTES = [
    Route("/v1/events", post_events, methods=["POST"]),
    Route("/t/open/{token}", tracking.open_pixel, methods=["GET"]),
    Route("/t/dwell/{token}", tracking.dwell_pixel, methods=["GET"]),
    Route("/t/click/{token}", tracking.click_redirect, methods=["GET"]),
    Route("/healthz", health),
    Route("/readyz", ready),
    Route("/metrics", observability.metrics_page),
    Route("/openapi.json", openapi.openapi_json),
    Route("/docs", openapi.docs_page),
    Mount(openapi.DOCS_ASSETS, openapi.assets(), name="docs-assets"),
    Route("/v1/event-types", event_types),
    Route("/v1/hooks", hooks.create_hook, methods=["POST"]),
    Route("/v1/hooks", hooks.list_hooks, methods=["GET"]),
    Route("/v1/hooks/{hook_id}", hooks.get_hook, methods=["GET"]),
    Route("/v1/hooks/{hook_id}", hooks.patch_hook, methods=["PATCH"]),
    Route("/v1/hooks/{hook_id}", hooks.delete_hook, methods=["DELETE"]),
    Route("/v1/hooks/{hook_id}/clone", hooks.clone_hook, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/resume", hooks.resume_hook, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/test", send_test_event, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/attempts", hooks.list_attempts),
    Route("/v1/hooks/{hook_id}/dead-letters", hooks.list_dead_letters),
    Route("/v1/hooks/{hook_id}/dead-letters/redrive", replays.redrive_dead_letters, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/dead-letters/discard", replays.discard_dead_letters, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/replays", replays.start_replay, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/replays/{replay_id}", replays.get_replay, methods=["GET"]),
    Route("/v1/hooks/{hook_id}/replays/{replay_id}", replays.cancel_replay, methods=["DELETE"]),
    Route("/v1/hooks/{hook_id}/stats", observability.hook_stats),
    # capture (docs/capture.md)
    Route("/v1/profiles", profiles.upsert_profiles, methods=["POST"]),
    Route("/v1/profiles/{profile_id}", profiles.get_profile, methods=["GET"]),
    Route("/v1/profiles/{profile_id}", profiles.put_profile, methods=["PUT"]),
    Route("/v1/profiles/{profile_id}", profiles.patch_profile, methods=["PATCH"]),
    Route("/v1/profiles/{profile_id}", profiles.delete_profile, methods=["DELETE"]),
    Route("/v1/account", account.get_account, methods=["GET"]),
    Route("/v1/account", account.patch_account, methods=["PATCH"]),
    Route("/v1/account/tracking-keys", account.create_tracking_key, methods=["POST"]),
    Route("/v1/account/tracking-keys/{key_id}", account.retire_tracking_key, methods=["DELETE"]),
    Route("/v1/tracking-tokens", tracking.make_token, methods=["POST"]),
    Route("/t/collector.js", tracking.collector_js, methods=["GET"]),
    Route("/t/collect/{token}", tracking.collect, methods=["POST"]),
    Route("/v1/keys", keys.create_key, methods=["POST"]),
    Route("/v1/keys", keys.list_keys, methods=["GET"]),
    Route("/v1/keys/{key_id}", keys.revoke_key, methods=["DELETE"]),
]


def create_app(
    settings: Settings,
    store: Store,
    registry: HookRegistry,
    context: TransportContext,
    *,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
) -> Starlette:
    """The API over ``store`` and its hooks (opened by whoever gave them), delivering test events with ``context``. ``lifespan``
    starts and stops the process's other parts; it sets ``app.state.dispatcher`` when there is one, which the hooks
    routes tell about edits."""
    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            StoreUnavailable: _store_unavailable,
            Exception: _unexpected,
        },
    )
    state: Any = app.state
    state.settings = settings
    state.store = store
    state.hooks = registry
    state.context = context
    state.derivation = Derivation(settings.derive_ttl_s)
    state.tracking_keys = TrackingKeys(store, registry)
    state.visitor_limit = tracking.VisitorLimit()
    state.click_bursts = ClickBursts()
    state.geo = GeoLocator(settings.geoip_db) if settings.geoip_db else None  # ACTIONHOOKS_GEOIP_DB
    state.dwell_streams = Streams()
    state.auth = Authenticator(store, settings.key_cache_s)
    state.dispatcher = None
    state.readiness = Readiness()  # the process's parts add their checks as they start (``service.build``)
    state.maintenance = None  # the background jobs, set by ``lifespan`` (``maintenance.Maintenance``)
    state.exposition = metrics.Exposition()
    return app
