"""The console: the web interface in which an account's master user configures and watches its hooks.

Served by the service itself under ``/console/`` (:func:`mount`, added by ``service.build``): pages rendered on
the server (Jinja2, ``templates/``), htmx and one small script of ours served from ``static/`` (no CDN, no build
step), plain CSS. Every answer carries a Content-Security-Policy that allows only the console's own scripts and
styles (htmx is configured not to evaluate code), ``X-Frame-Options: DENY`` and ``nosniff``.

Modules: ``session.py`` (sign-in and the signed cookie, CSRF), ``i18n.py`` (English and Russian),
``form.py`` (the hook editor's inputs, read from each transport's settings), ``chart.py`` (the detail page's
throughput chart, an SVG drawn on the server), ``views.py`` (the pages), ``operations.py`` (the hook page's replay,
redrive and discard).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .views import PREFIX, Console

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the console's security headers to every answer (and ``no-store`` to pages, which show account data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(f"{PREFIX}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount() -> Mount:
    """The console's routes under ``/console`` (a ``Mount``: the API's route checks skip it, being HTML)."""
    console = Console()
    hook = "/hooks/{hook_id}"
    routes = [
        Route("/", console.home),
        Route("/sign-in", console.sign_in_page, methods=["GET"]),
        Route("/sign-in", console.sign_in, methods=["POST"]),
        Route("/sign-out", console.sign_out, methods=["POST"]),
        Route("/language/{language}", console.language),
        Route("/hooks", console.hooks_page),
        Route("/hooks/new", console.new_page, methods=["GET"]),
        Route("/hooks/new", console.save, methods=["POST"]),
        Route(hook, console.detail_page),
        Route(f"{hook}/attempts", console.attempts_fragment),
        Route(f"{hook}/live", console.live_fragment),
        Route(f"{hook}/edit", console.edit_page, methods=["GET"]),
        Route(f"{hook}/edit", console.save, methods=["POST"]),
        Route(f"{hook}/state", console.set_state, methods=["POST"]),
        Route(f"{hook}/clone", console.clone, methods=["POST"]),
        Route(f"{hook}/delete", console.delete_page, methods=["GET"]),
        Route(f"{hook}/delete", console.delete, methods=["POST"]),
        Route(f"{hook}/test", console.test_event, methods=["POST"]),
        Route(f"{hook}/replay", console.operations.replay_fragment, methods=["GET"]),
        Route(f"{hook}/replays", console.operations.start_replay, methods=["POST"]),
        Route(f"{hook}/replays/{{replay_id}}/cancel", console.operations.cancel_replay, methods=["POST"]),
        Route(f"{hook}/dead-letters", console.operations.letters, methods=["POST"]),
        Route("/catalog", console.catalog_page),
        Route("/catalog/{code}", console.event_type_page),
        Mount("/static", StaticFiles(packages=[("actionhooks.console", "static")]), name="console-static"),
    ]
    return Mount(PREFIX, routes=routes, middleware=[Middleware(SecurityHeaders)])
