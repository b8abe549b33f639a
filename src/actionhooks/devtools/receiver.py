"""A loopback receiver: the other end of the HTTP transport, for tests, benchmarks and ``actionhooks demo``.

Any path but ``/token`` is the hook: a POSTed JSON array of events is accepted (2xx) or refused as scripted.
``/token`` is an OAuth2 client-credentials token endpoint; when the receiver is given ``client_id`` and
``client_secret``, hook requests must carry one of the tokens it issued (``revoke_tokens`` makes them 401). With a
Standard Webhooks ``secret`` every hook request is verified and refused with 400 when its signature is wrong.

Events count as received only when the hook answers 2xx: a scripted 500 means "not taken", as a real receiver's
would. ``keep_events=False`` keeps just the count (the body is split into raw items, not parsed into objects) —
what benchmarks use.

As a process, for tests that kill the service::

    python -m actionhooks.devtools.receiver --port 8099 --ids-file /tmp/ids.txt

appends the ``id`` of every received event to the file, one per line, flushed after each request, and prints
its URL on the first line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import signal
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import unquote_plus

import msgspec
from aiohttp import web
from multidict import CIMultiDict

TOKEN_PATH = "/token"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the hook answers to one request; ``delay`` (seconds) passes before it does."""

    status: int = 200
    body: bytes | str = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


class _EventId(msgspec.Struct):
    id: str | None = None


_decode_any = msgspec.json.Decoder(list[Any]).decode
_decode_raw = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_ids = msgspec.json.Decoder(list[_EventId]).decode


class Receiver:
    """A hook endpoint on loopback. ``async with Receiver() as r`` starts it on a free port and stops it."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_ttl: float = 3600.0,
        keep_events: bool = True,
        keep_requests: bool = True,
        ids_file: str | None = None,
        default: Answer | None = None,
    ) -> None:
        self.default = default or Answer()
        self.answers: deque[Answer] = deque()
        self.token_answers: deque[Answer] = deque()
        self.events: list[Any] = []
        self.event_count = 0
        self.requests: list[ReceivedRequest] = []
        self.request_count = 0
        self.open_requests = 0  # hook requests being answered now
        self.most_at_once = 0  # the most hook requests answered at one time
        self.verification_failures: list[str] = []
        self.token_requests = 0
        self.token_scopes: list[str | None] = []
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.keep_events = keep_events
        self.keep_requests = keep_requests
        self._tokens: dict[str, float] = {}
        self._ids_path = ids_file
        self._ids: IO[str] | None = None
        self._webhook: Any = None
        if secret is not None:
            from standardwebhooks import Webhook

            self._webhook = Webhook(secret)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- control ----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Receiver:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_route("*", "/{tail:.*}", self._hook)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
        self._open_ids_file()
        return self

    def _open_ids_file(self) -> None:
        # a local file, written with a flush per request: blocking for microseconds, by design
        if self._ids_path is not None:
            self._ids = open(self._ids_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by stop()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._ids is not None:
            self._ids.close()
            self._ids = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    @property
    def token_url(self) -> str:
        return f"{self.url}{TOKEN_PATH}"

    def answer(
        self,
        status: int = 200,
        body: bytes | str = b"ok",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        *,
        times: int = 1,
    ) -> None:
        """Queue the hook's next answer(s); when the queue is empty ``default`` answers."""
        self.answers.extend([Answer(status, body, headers or {}, delay)] * times)

    def revoke_tokens(self) -> None:
        """Forget every issued token: the next hook request carrying one is answered 401."""
        self._tokens.clear()

    async def wait_for_events(self, count: int, timeout: float = 10.0) -> None:
        """Return once ``count`` events were received; ``TimeoutError`` after ``timeout`` seconds."""
        await self._wait(lambda: self.event_count >= count, timeout)

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        await self._wait(lambda: self.request_count >= count, timeout)

    async def _wait(self, done: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    # -- the hook ---------------------------------------------------------------------------------------

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        self.open_requests += 1
        self.most_at_once = max(self.most_at_once, self.open_requests)
        try:
            return await self._answer(request)
        finally:
            self.open_requests -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.request_count += 1
        if self.keep_requests:
            self.requests.append(
                ReceivedRequest(request.method, request.path, CIMultiDict(request.headers), body)
            )
        self._changed.set()
        if self.client_id is not None and not self._authorized(request):
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return web.json_response({"error": "invalid_token"}, status=401, headers=headers)
        if self._webhook is not None:
            try:
                self._webhook.verify(body, dict(request.headers), json_parse=False)
            except Exception as exc:
                self.verification_failures.append(f"{type(exc).__name__}: {exc}")
                return web.Response(status=400, text="signature verification failed")
        try:
            items: list[Any] = _decode_any(body) if self.keep_events else _decode_raw(body)
        except msgspec.DecodeError:
            return web.Response(status=400, text="body is not a JSON array")
        answer = self.answers.popleft() if self.answers else self.default
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if 200 <= answer.status < 300:
            self._accept(body, items)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    def _accept(self, body: bytes, items: list[Any]) -> None:
        if self.keep_events:
            self.events.extend(items)
        if self._ids is not None:
            ids = [e.id or "" for e in _decode_ids(body)]
            if ids:
                self._ids.write("\n".join(ids) + "\n")
                self._ids.flush()
        self.event_count += len(items)
        self._changed.set()

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires = self._tokens.get(token) if scheme.lower() == "bearer" else None
        return expires is not None and asyncio.get_running_loop().time() < expires

    # -- the OAuth2 token endpoint (RFC 6749 §4.4) ------------------------------------------------------

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.token_requests += 1
        form = await request.post()
        self._changed.set()
        if self.token_answers:
            answer = self.token_answers.popleft()
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(credentials, validate=True).decode()
            except ValueError:
                pair = ""
            user, _, password = pair.partition(":")
            client_id, client_secret = unquote_plus(user), unquote_plus(password)
        if self.client_id is None or (client_id, client_secret) != (self.client_id, self.client_secret):
            headers = {"WWW-Authenticate": 'Basic realm="token"'}
            return web.json_response({"error": "invalid_client"}, status=401, headers=headers)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        scope = form.get("scope")
        self.token_scopes.append(scope if isinstance(scope, str) else None)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = asyncio.get_running_loop().time() + self.token_ttl
        issued = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        return web.json_response(issued, headers={"Cache-Control": "no-store"})


async def _serve(args: argparse.Namespace) -> None:
    receiver = Receiver(keep_events=False, keep_requests=False, ids_file=args.ids_file, secret=args.secret)
    await receiver.start(args.host, args.port)
    print(receiver.url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await receiver.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m actionhooks.devtools.receiver", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--ids-file", help="append the id of every received event to this file")
    parser.add_argument("--secret", help="verify Standard Webhooks signatures with this whsec_ secret")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
