"""HTTP JSON batch transport (REFERENCE §3.1): a batch is POSTed to the hook's URL as one JSON array.

Success is an HTTP 2xx answer whose body, when ``success_regex`` is set, matches it. The pattern runs on RE2
(``google-re2``), whose matching time is linear in the body; a match that may take more than a moment runs in the
hook's own thread, never on the event loop, so one hook's pattern cannot delay another hook or ingest. Outcomes
are mapped here, at the edge (see ``docs/transports/http.md`` for the table): 410 is permanent; 429 and 503
carry ``Retry-After``; other answers, timeouts and network errors are retryable; a destination the net guard
refuses is permanent. Redirects are not followed (a 3xx is a failed attempt), so a hook cannot be bounced to a
refused address.

Every connection, to the hook and to an OAuth2 token endpoint, goes through one aiohttp session whose resolver
is the net guard's; IP-literal hosts, which aiohttp does not resolve, are checked before connecting. With
``signing_secret`` each request is signed as Standard Webhooks specify (``webhook-id`` is the batch id, the
same on every retry of the batch, so a receiver can drop duplicates).

``request_timeout_s`` bounds a whole ``send``: token fetches, the POST, the retry after a 401, the match. Response
excerpts and error texts never carry the hook's own secrets (header values, credentials, the signing secret, the
access token): each is replaced by ``***`` before anything is recorded or returned.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol
from urllib.parse import quote

import msgspec
import re2
from yarl import URL

from ... import __version__
from ...errors import DeliveryError, DestinationRefused, ValidationError
from ..base import Batch, BatchSize, BatchTimeout, Receipt, TransportContext, TransportSettings
from . import auth as http_auth
from .auth import Auth, NoAuth, OAuth2Auth, TokenSource, read_capped

if TYPE_CHECKING:
    import aiohttp

EXCERPT_CHARS = 500
MAX_RESPONSE_BYTES = 64 * 1024  # what success_regex is matched against; the rest of the body is ignored
# RE2 bounds: a pattern of at most MAX_REGEX_PROGRAM instructions, REGEX_MEMORY bytes for it and its DFA cache; a
# match then costs at most about one step per instruction per byte of the body (~0.5 s over 64 KiB, worst case)
MAX_REGEX_PROGRAM = 5000
REGEX_MEMORY = 1024 * 1024
# each batch in flight holds a connection of its own (NATS and RabbitMQ share one: up to base.MAX_IN_FLIGHT)
MAX_IN_FLIGHT = 16
_INLINE_MATCH_STEPS = 50_000  # body length × program size up to which a match may run on the event loop

# set by the transport itself, or meaningless end to end (RFC 9110 §7.6.1), or the signature's own
_RESERVED_HEADERS = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "host",
        "content-type", "content-length", "content-encoding",
        "webhook-id", "webhook-timestamp", "webhook-signature",
        "actionhooks-replay", "actionhooks-redrive",
    }
)  # fmt: skip
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")


class Settings(TransportSettings, tag="http", kw_only=True):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = (*http_auth.SECRET_FIELDS, "signing_secret", "headers")
    DESTINATION_FIELDS: ClassVar[tuple[str, ...]] = ("url", "auth.token_url")

    max_batch_size: BatchSize = 100
    timeout_s: BatchTimeout = 1.0
    url: Annotated[str, msgspec.Meta(max_length=2048)]
    success_regex: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    headers: dict[str, str] = {}  # noqa: RUF012 - msgspec copies mutable defaults per instance
    auth: Auth = msgspec.field(default_factory=NoAuth)
    signing_secret: str | None = None
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0
    # batches out at once; above 1, order holds only as far as docs/transports/http.md#batches-in-flight says
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=MAX_IN_FLIGHT)] = 1

    def check(self) -> None:
        _check_url(self.url, "url")
        if self.success_regex:
            try:
                compile_success_regex(self.success_regex)
            except ValueError as exc:
                raise ValidationError(str(exc), "success_regex") from None
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name):
                raise ValidationError(f"{name!r} is not a valid header name", "headers")
            if name.lower() in _RESERVED_HEADERS:
                raise ValidationError(
                    f"header {name} is set by the transport and cannot be overridden", "headers"
                )
            if name.lower() == "authorization" and not isinstance(self.auth, NoAuth):
                raise ValidationError("Authorization cannot be set both in headers and in auth", "headers")
            if any(c in value for c in "\r\n\0"):
                raise ValidationError(f"header {name} contains a line break or NUL", "headers")
        http_auth.check_auth(self.auth)
        if isinstance(self.auth, OAuth2Auth):
            _check_url(self.auth.token_url, "auth.token_url")
        if self.signing_secret is not None:
            _check_signing_secret(self.signing_secret)

    def sends_in_flight(self) -> int:
        return self.max_in_flight

    def hosts(self) -> list[str]:
        hosts = [URL(self.url).host or ""]
        if isinstance(self.auth, OAuth2Auth):
            hosts.append(URL(self.auth.token_url).host or "")
        return list(dict.fromkeys(h for h in hosts if h))

    def field_of_host(self, host: str) -> str | None:
        return "url" if host == URL(self.url).host else "auth.token_url"


class SuccessPattern(Protocol):
    """A compiled RE2 pattern (``google-re2`` ships no type information)."""

    def search(self, text: str) -> object | None: ...

    @property
    def programsize(self) -> int: ...


def compile_success_regex(pattern: str) -> SuccessPattern:
    """``pattern`` compiled by RE2, or ``ValueError`` saying why RE2 cannot run it: a syntax RE2 lacks
    (backreferences, look-around), or a program larger than ``MAX_REGEX_PROGRAM`` (large counted repetitions)."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print each refused pattern on stderr
    options.never_capture = True  # only "does it match" is asked: no submatch tracking
    options.max_mem = REGEX_MEMORY
    try:
        compiled: SuccessPattern = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"success_regex is not a regular expression RE2 can run: {reason}") from None
    if compiled.programsize > MAX_REGEX_PROGRAM:
        raise ValueError(
            f"success_regex is too complex ({compiled.programsize} RE2 instructions, at most "
            f"{MAX_REGEX_PROGRAM}): use smaller repetition counts"
        )
    return compiled


def _check_url(text: str, field: str) -> None:
    try:
        url = URL(text)
        port = url.port
    except ValueError as exc:
        raise ValidationError(f"{field} is not a valid URL: {exc}", field) from None
    if url.scheme not in ("http", "https"):
        raise ValidationError(f"{field} must be an http or https URL", field)
    if not url.host or any(c.isspace() for c in url.host) or port is None:
        raise ValidationError(f"{field} must name a host", field)
    if url.user is not None or url.password is not None:
        raise ValidationError(f"{field} must not carry credentials; use auth", field)


def _check_signing_secret(secret: str) -> None:
    """Standard Webhooks secrets are ``whsec_`` + base64 of 24 to 64 random bytes."""
    prefix, _, encoded = secret.partition("_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if prefix != "whsec" or not 24 <= len(key) <= 64:
        raise ValidationError(
            "signing_secret must be whsec_ followed by base64 of 24 to 64 bytes", "signing_secret"
        )


@dataclass
class _Progress:
    """How far one ``send`` got: which endpoint it waits for, and the access tokens it sent (to redact)."""

    where: str = "hook"
    status: int | None = None
    tokens: list[str] = field(default_factory=list)


class HttpTransport:
    """Sends batches to one hook's URL. Its aiohttp session is created on the first ``send`` (inside the
    running loop) and closed by ``close``; so is the thread that runs its long ``success_regex`` matches."""

    def __init__(self, settings: Settings, context: TransportContext) -> None:
        from standardwebhooks import Webhook

        self.settings = settings
        self.guard = context.net_guard
        self._regex: SuccessPattern | None = None
        self._regex_refusal: str | None = None
        if settings.success_regex:
            try:
                self._regex = compile_success_regex(settings.success_regex)
            except ValueError as exc:  # saved before RE2 checked patterns: the hook must be edited
                self._regex_refusal = str(exc)
        self._matcher: ThreadPoolExecutor | None = None
        self._webhook = Webhook(settings.signing_secret) if settings.signing_secret else None
        self._tokens = TokenSource(settings.auth) if isinstance(settings.auth, OAuth2Auth) else None
        self._headers = {**settings.headers, "Content-Type": "application/json"}
        if not any(name.lower() == "user-agent" for name in self._headers):
            self._headers["User-Agent"] = f"actionhooks/{__version__}"
        authorization = http_auth.static_authorization(settings.auth)
        if authorization is not None:
            self._headers["Authorization"] = authorization
        self._secrets = [*settings.headers.values(), *http_auth.secret_values(settings.auth)]
        if settings.signing_secret:
            self._secrets.append(settings.signing_secret)
        urls = [settings.url] + ([self._tokens.auth.token_url] if self._tokens else [])
        refusals = (self.guard.host_refusal(URL(u).host or "") for u in urls)
        self._refusal = next((r for r in refusals if r is not None), None)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: Any = None

    @property
    def token_fetches(self) -> int:
        """How many times the OAuth2 token endpoint was asked for a token (0 without oauth2)."""
        return self._tokens.fetches if self._tokens else 0

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        from .resolver import GuardedResolver

        self._resolver = GuardedResolver(self.guard)
        # a connection per batch in flight, and one for an OAuth2 token endpoint
        limit = self.settings.max_in_flight + 1
        connector = aiohttp.TCPConnector(resolver=self._resolver, limit=limit, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_s),
        )
        return self._session

    async def send(self, batch: Batch) -> Receipt:
        """POST ``batch`` as a JSON array; a ``Receipt`` when the hook accepted it, else ``DeliveryError``.
        Either way within ``request_timeout_s``, and without the hook's secrets in its texts."""
        progress = _Progress()
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                receipt = await self._send(batch, progress)
        except DeliveryError as err:
            raise self._redacted(err, progress) from err.__cause__
        except TimeoutError as exc:
            if progress.where == "success_regex":
                error = DeliveryError(
                    "success_regex: no result within request_timeout_s", status=progress.status
                )
            else:
                error = DeliveryError(f"{progress.where}: no complete answer within request_timeout_s")
            raise self._redacted(error, progress) from exc
        except Exception as exc:
            raise self._redacted(_delivery_error(exc, progress.where), progress) from exc
        return Receipt(receipt.status, self._excerpt(receipt.response_excerpt, progress))

    async def _send(self, batch: Batch, progress: _Progress) -> Receipt:
        if self._refusal is not None:
            raise DeliveryError(self._refusal, permanent=True)
        if self._regex_refusal is not None:
            raise DeliveryError(self._regex_refusal, permanent=True)
        session = self._session or self._open_session()
        body = batch.json_array()
        headers = self._headers  # copied below before anything is added to it
        if batch.mark is not None or self._webhook is not None or self._tokens is not None:
            headers = dict(headers)
        if batch.mark is not None:
            headers[batch.mark.name] = batch.mark.value
        if self._webhook is not None:
            timestamp = datetime.now(UTC)
            headers["webhook-id"] = batch.batch_id
            headers["webhook-timestamp"] = str(int(timestamp.timestamp()))
            headers["webhook-signature"] = self._webhook.sign(batch.batch_id, timestamp, body.decode())
        token = None
        if self._tokens is not None:
            token = await self._token(session, progress)
            headers["Authorization"] = f"Bearer {token}"
        status, text, answer_headers = await self._post(session, body, headers, progress)
        if status == 401 and token is not None:
            headers["Authorization"] = f"Bearer {await self._token(session, progress, stale=token)}"
            status, text, answer_headers = await self._post(session, body, headers, progress)
        if 200 <= status < 300 and self._regex is not None:
            progress.where, progress.status = "success_regex", status
            if not await self._matches(self._regex, text):
                raise DeliveryError(
                    "response did not match success_regex", status=status, response_excerpt=text
                )
        return self._outcome(status, text, answer_headers)

    async def _token(
        self, session: aiohttp.ClientSession, progress: _Progress, stale: str | None = None
    ) -> str:
        assert self._tokens is not None
        progress.where = "token endpoint"
        token = await self._tokens.token(session, stale=stale)
        progress.tokens.append(token)
        return token

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str], progress: _Progress
    ) -> tuple[int, str, dict[str, str]]:
        progress.where = "hook"
        async with session.post(self.settings.url, data=body, headers=headers, allow_redirects=False) as resp:
            raw = await read_capped(resp, MAX_RESPONSE_BYTES)
            try:
                text = raw.decode(resp.charset or "utf-8", "replace")
            except LookupError:
                text = raw.decode("utf-8", "replace")
            return resp.status, text, {"Retry-After": resp.headers.get("Retry-After", "")}

    async def _matches(self, regex: SuccessPattern, text: str) -> bool:
        """``regex.search(text)``: on the loop when it is cheap for certain, else in this hook's own thread (RE2
        lets go of the GIL while it matches), so a costly pattern delays only its own hook."""
        if len(text) * regex.programsize <= _INLINE_MATCH_STEPS:
            return regex.search(text) is not None
        if self._matcher is None:
            self._matcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="success-regex")
        found = await asyncio.get_running_loop().run_in_executor(self._matcher, regex.search, text)
        return found is not None

    def _outcome(self, status: int, text: str, headers: dict[str, str]) -> Receipt:
        if 200 <= status < 300:
            return Receipt(status=status, response_excerpt=text)
        if status == 410:
            raise DeliveryError(
                "hook answered 410 Gone", permanent=True, status=status, response_excerpt=text
            )
        retry_after = parse_retry_after(headers["Retry-After"]) if status in (429, 503) else None
        raise DeliveryError(
            f"hook answered {status}", retry_after=retry_after, status=status, response_excerpt=text
        )

    def _excerpt(self, text: str | None, progress: _Progress) -> str | None:
        """The first ``EXCERPT_CHARS`` of an answer, secrets replaced before the cut (so no prefix of one stays)."""
        if text is None:
            return None
        return redact(text, [*self._secrets, *progress.tokens])[:EXCERPT_CHARS]

    def _redacted(self, error: DeliveryError, progress: _Progress) -> DeliveryError:
        error.reason = redact(error.reason, [*self._secrets, *progress.tokens])
        error.args = (error.reason,)
        error.response_excerpt = self._excerpt(error.response_excerpt, progress)
        return error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None
        if self._matcher is not None:
            self._matcher.shutdown(wait=False, cancel_futures=True)
            self._matcher = None


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``***`` — as is, JSON-escaped and percent-encoded, the ways
    an echoing endpoint commonly shows what it received; longest first, so a secret inside another goes too."""
    forms = {f for s in secrets if s for f in (s, msgspec.json.encode(s).decode()[1:-1], quote(s, safe=""))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _delivery_error(exc: Exception, where: str) -> DeliveryError:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, DestinationRefused):
            return DeliveryError(f"{where}: {exc.os_error.reason}", permanent=True)
        return DeliveryError(f"{where}: DNS lookup of {exc.host} failed: {exc.os_error}")
    if isinstance(exc, DestinationRefused):
        return DeliveryError(f"{where}: {exc.reason}", permanent=True)
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"{where}: no complete answer within request_timeout_s")
    if isinstance(exc, aiohttp.InvalidURL):
        return DeliveryError(f"{where}: invalid URL {exc}", permanent=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return DeliveryError(
            f"{where}: cannot connect to {exc.host}:{exc.port}: {exc.strerror or exc.os_error}"
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        return DeliveryError(f"{where}: {type(exc).__name__}: {exc}")
    return DeliveryError(f"{where}: unexpected {type(exc).__name__}: {exc}")


def open(settings: TransportSettings, context: TransportContext) -> HttpTransport:
    assert isinstance(settings, Settings)
    return HttpTransport(settings, context)
