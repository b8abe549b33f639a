"""The service process: its parts built from the settings, and started and stopped together.

:func:`build` wires one process: the store (opened here unless one is given) and the hooks over it (settings sealed at rest), the transports' context with the
net guard, the dispatcher (unless ``dispatch=False``: an API-only process beside one that dispatches), the broker
consumers of ``settings.consume_file``, and the ASGI app over them (``api.create_app``, with the console's pages
at ``/console/``: ``console.mount``). The app's lifespan opens and closes them in order: store, background jobs
(``maintenance/``: retention, under a lease shared by the processes of one database), dispatcher, consumers up;
consumers, dispatcher, background jobs, store down.

Readiness (``GET /readyz``, :mod:`.readiness`): the lifespan adds the checks of the parts it starts — ``store``
(reachable and migrated), ``background_jobs`` (``Maintenance.health``: running, keeping up, not failing round
after round), ``dispatcher`` (only where one runs).

A database server that does not answer at startup (PostgreSQL not up yet, or restarting) is waited for
(:func:`_open_when_answering`): the process starts once it answers, or ends cleanly when asked to meanwhile. An
SQLite file that cannot be opened fails the start at once (a wrong path or a full disk is not waited out).

Graceful shutdown (:class:`Shutdown`): at SIGTERM the process stops taking connections and is no longer ready, the
dispatcher's workers finish and record the batches they are sending and send nothing new, requests in flight (their
commits) finish; all of it within ``settings.shutdown_timeout_s`` (``ACTIONHOOKS_SHUTDOWN_TIMEOUT_S``). What is
still unfinished then is cut off: an unanswered request was not acknowledged, a batch sent but not recorded is sent
again by the next process (at-least-once) — nothing acknowledged is lost either way.

:func:`serve` runs it under uvicorn (``actionhooks serve``); :func:`serving` runs an app in the current event loop
for the length of a block (the demo, the tests), leaving the signals to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from .api import create_app
from .api.server import server_config
from .config import Settings
from .console import mount as console_mount
from .consume.configured import Consumers, load_consumers
from .derive import Derivation
from .dispatch.dispatcher import Dispatcher
from .errors import StoreUnavailable
from .integrations import TransportContext
from .maintenance import Maintenance
from .netguard import NetGuard
from .readiness import Readiness
from .registry import HookRegistry
from .server_limits import ServerLimits
from .store import Store, open_store

log = logging.getLogger(__name__)


class Shutdown:
    """The process's graceful end: :meth:`begin` (at SIGTERM, or when the lifespan ends) starts the clock of
    ``timeout_s`` and tells the parts registered with :meth:`on_begin`; :meth:`remaining` is what is left of it."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._started: float | None = None
        self._begun = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    def on_begin(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def begin(self) -> None:
        if self._started is not None:
            return
        self._started = time.monotonic()
        self._begun.set()
        log.info("shutting down: finishing requests and batches in flight (at most %.0f s)", self.timeout_s)
        for listener in self._listeners:
            listener()

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the end to begin: whether it has."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._begun.wait(), seconds)
        return self._begun.is_set()

    def remaining(self) -> float:
        if self._started is None:
            return self.timeout_s
        return max(0.0, self.timeout_s - (time.monotonic() - self._started))


STORE_WAIT_S = 0.5  # at startup, between tries of a database server that does not answer yet


async def _open_when_answering(opening: Callable[[], Awaitable[None]], shutdown: Shutdown) -> bool:
    """Run ``opening`` once the database answers: while it raises ``StoreUnavailable``, try again every
    :data:`STORE_WAIT_S` seconds, with one log line when the wait begins and one when it ends. False when the
    process is asked to end meanwhile (nothing is open then)."""
    since: float | None = None
    while True:
        try:
            await opening()
        except StoreUnavailable as exc:
            if since is None:
                since = time.monotonic()
                log.warning("starting: waiting for the store (%s)", str(exc).removesuffix("; retry later"))
            if await shutdown.wait(STORE_WAIT_S):
                return False
            continue
        if since is not None:
            log.warning("starting: the store answers after %.1f s", time.monotonic() - since)
        return True


async def _store_check(store: Store) -> str | None:
    missing = await store.missing_migrations()
    return f"migrations not applied: {missing}" if missing else None


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
        readiness: Readiness = app.state.readiness
        shutdown: Shutdown = app.state.shutdown
        shutdown.on_begin(readiness.stopping)
        readiness.add("store", lambda: _store_check(the_store))

        async def opening() -> None:
            if own_store:
                await the_store.open()
            await registry.open()

        if the_store.engine == "sqlite":
            await opening()
        elif not await _open_when_answering(opening, shutdown):
            yield  # asked to end before the database answered: nothing was started
            return

        def hooks_changed() -> (
            None
        ):  # auto-disable stopped hooks: this process's dispatcher stops their workers
            if app.state.dispatcher is not None:
                app.state.dispatcher.hook_changed()

        maintenance = Maintenance(
            the_store, registry, settings.retention, settings.disable_after_s, hooks_changed=hooks_changed
        )
        app.state.maintenance = maintenance
        await maintenance.start()

        async def jobs_check() -> str | None:
            health = maintenance.health()
            return None if health.ok else health.detail

        readiness.add("background_jobs", jobs_check)
        dispatcher = Dispatcher(the_store, registry, context, settings.retry) if dispatch else None
        app.state.dispatcher = dispatcher
        if dispatcher is not None:
            await dispatcher.start()
            shutdown.on_begin(dispatcher.finish)
            running = dispatcher

            async def dispatcher_check() -> str | None:
                return None if running.running else "the dispatcher is not running"

            readiness.add("dispatcher", dispatcher_check)
        consumers = Consumers(consumer_specs, the_store, settings.limits, Derivation(settings.derive_ttl_s))
        consumers.start()
        try:
            yield
        finally:
            shutdown.begin()
            await consumers.stop()
            if dispatcher is not None:
                await dispatcher.stop(grace_s=max(shutdown.remaining(), 0.001))
            await maintenance.stop()
            if own_store:
                await the_store.close()

    app = create_app(settings, the_store, registry, context, lifespan=lifespan)
    app.state.shutdown = Shutdown(settings.shutdown_timeout_s)
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
    log), then end gracefully within ``settings.shutdown_timeout_s`` (:class:`Shutdown`; it is also the requests'
    ``graceful_shutdown_s``). ``own_logging``: uvicorn's loggers keep the handlers the caller set up
    (``--log-format json``) instead of its own."""
    app = build(settings, dispatch=dispatch)
    bounds = dataclasses.replace(
        limits or ServerLimits(), graceful_shutdown_s=max(1, round(settings.shutdown_timeout_s))
    )
    config = server_config(app, host, port, log_level, bounds, own_logging)
    _GracefulServer(config, app.state.shutdown).run()


class _GracefulServer(uvicorn.Server):
    """uvicorn's server telling the process's :class:`Shutdown` at once when a signal asks it to end; once started,
    what the process holds for good (modules, the catalogue, the app) is frozen out of garbage collection
    (``gc.freeze``): a request's thousands of decoded objects trigger collections, and a full one would walk all
    of it every time (measured: a fifth of the event loop's time in batch ingest, BENCHMARKS.md)."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self.ending = shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.collect()
        gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        with contextlib.suppress(RuntimeError):  # no loop yet: the lifespan's end begins it
            asyncio.get_running_loop().call_soon_threadsafe(self.ending.begin)


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
