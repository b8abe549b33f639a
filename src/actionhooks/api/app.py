"""The ASGI application: ingest and admin routes on Starlette, the store and (optionally) the dispatcher
started and stopped with the app's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..catalog import catalog
from ..config import Settings
from ..consume.configured import Consumers, load_consumers
from ..dispatch.dispatcher import Dispatcher
from ..integrations import TransportContext
from ..netguard import NetGuard
from ..store import Store, open_store
from . import hooks
from .auth import Authenticator
from .ingest import post_events
from .responses import ApiError, json_response
from .sample_event import send_test_event

log = logging.getLogger(__name__)


async def event_types(request: Request) -> Response:
    await request.app.state.auth.account(request)
    return json_response({"event_types": [msgspec.to_builtins(t) for t in catalog().types]})


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response(
        {"error": "the service could not complete the request; retry"}, 503, {"Retry-After": "5"}
    )


ROUTES = [
    Route("/healthz", health),
    Route("/v1/events", post_events, methods=["POST"]),
    Route("/v1/event-types", event_types),
    Route("/v1/hooks", hooks.create_hook, methods=["POST"]),
    Route("/v1/hooks", hooks.list_hooks, methods=["GET"]),
    Route("/v1/hooks/{hook_id}", hooks.get_hook, methods=["GET"]),
    Route("/v1/hooks/{hook_id}", hooks.patch_hook, methods=["PATCH"]),
    Route("/v1/hooks/{hook_id}", hooks.delete_hook, methods=["DELETE"]),
    Route("/v1/hooks/{hook_id}/clone", hooks.clone_hook, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/test", send_test_event, methods=["POST"]),
    Route("/v1/hooks/{hook_id}/attempts", hooks.list_attempts),
    Route("/v1/hooks/{hook_id}/dead-letters", hooks.list_dead_letters),
]


def create_app(settings: Settings, store: Store | None = None, *, dispatch: bool = True) -> Starlette:
    """The service. Pass ``store`` to share an already opened store (it is then not closed by the app)."""
    own_store = store is None
    the_store: Store = store if store is not None else open_store(settings.db, settings.secret_key)
    context = TransportContext(net_guard=NetGuard(settings.allow_nets))
    # read now: a bad consumers file stops the start-up with its error
    consumer_specs = load_consumers(settings.consume_file) if settings.consume_file else ()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if own_store:
            await the_store.open()
        dispatcher = Dispatcher(the_store, context, settings.retry) if dispatch else None
        app.state.dispatcher = dispatcher
        if dispatcher is not None:
            await dispatcher.start()
        consumers = Consumers(consumer_specs, the_store, settings.limits)
        consumers.start()
        try:
            yield
        finally:
            await consumers.stop()
            if dispatcher is not None:
                await dispatcher.stop()
            if own_store:
                await the_store.close()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected},
    )
    state: Any = app.state
    state.settings = settings
    state.store = the_store
    state.context = context
    state.auth = Authenticator(the_store)
    state.dispatcher = None
    return app
