"""The service process: its parts built from the settings, and started and stopped together.

:func:`build` wires one process: the store (opened here unless one is given) and the hooks over it (settings sealed at rest), the transports' context with the
net guard, the dispatcher (unless ``dispatch=False``: an API-only process beside one that dispatches), the broker
consumers of ``settings.consume_file``, and the ASGI app over them (``api.create_app``, with the console's pages
at ``/console/``: ``console.mount``). The app's lifespan opens and closes them in order: store, background jobs
(``maintenance/``: retention, under a lease shared by the processes of one database), dispatcher, consumers up;
consumers, dispatcher, background jobs, store down.

:func:`serve` runs it under uvicorn (``actionhooks serve``); :func:`serving` runs an app in the current event loop
for the length of a block (the demo, the tests), leaving the signals to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette

from .api import create_app
from .api.server import server_config
from .config import Settings
from .console import mount as console_mount
from .consume.configured import Consumers, load_consumers
from .dispatch.dispatcher import Dispatcher
from .integrations import TransportContext
from .maintenance import Maintenance
from .netguard import NetGuard
from .registry import HookRegistry
from .server_limits import ServerLimits
from .store import Store, open_store


def build(settings: Settings, store: Store | None = None, *, dispatch: bool = True) -> Starlette:
    """The service's app with its parts. Pass ``store`` to share an already opened store (it is then neither
    opened nor closed here). A bad consumers file raises its ``ConfigError`` now, before anything starts."""
    own_store = store is None
    the_store: Store = store if store is not None else open_store(settings.db)
    registry = HookRegistry(the_store, settings.secret_key)
    context = TransportContext(net_guard=NetGuard(settings.allow_nets))
    consumer_specs = load_consumers(settings.consume_file) if settings.consume_file else ()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if own_store:
            await the_store.open()
        await registry.open()
        maintenance = Maintenance(the_store, registry, settings.retention)
        app.state.maintenance = maintenance
        await maintenance.start()
        dispatcher = Dispatcher(the_store, registry, context, settings.retry) if dispatch else None
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
            await maintenance.stop()
            if own_store:
                await the_store.close()

    app = create_app(settings, the_store, registry, context, lifespan=lifespan)
    app.router.routes.append(console_mount())  # the console's HTML pages at /console/ (not API operations)
    return app


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    dispatch: bool = True,
    own_logging: bool = False,
    limits: ServerLimits | None = None,
) -> None:
    """Run the service until SIGINT or SIGTERM (uvicorn's uvloop and httptools bounded by ``limits``, no access
    log). ``own_logging``: uvicorn's loggers keep the handlers the caller set up (``--log-format json``) instead of
    its own."""
    config = server_config(
        build(settings, dispatch=dispatch), host, port, log_level, limits or ServerLimits(), own_logging
    )
    uvicorn.Server(config).run()


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C and SIGTERM belong to the program that embeds the server


@contextlib.asynccontextmanager
async def serving(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """``app`` served in this event loop for the length of the block (lifespan included), with the same server
    limits as ``serve``; yields its base URL. ``port`` 0: a free one, chosen when the socket is bound."""
    config = server_config(app, host, port, "warning", ServerLimits())
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the service stopped while starting")
            await asyncio.sleep(0.01)
        bound: int = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task
