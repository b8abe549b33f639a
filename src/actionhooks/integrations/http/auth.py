"""Authorization for the HTTP transport: the ``auth`` settings (tagged by ``type``) and OAuth2 token cache.

``none`` (default) sends no ``Authorization``; ``basic`` and ``bearer`` send a fixed header; ``oauth2``
fetches an access token from ``token_url`` with the client-credentials grant (RFC 6749 §4.4; the client
authenticates with HTTP Basic, §2.3.1), caches it until shortly before ``expires_in`` runs out, and fetches a
new one when the hook answers 401 (:meth:`TokenSource.token` with ``stale=``). One fetch runs at a time.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import quote_plus

import msgspec

from ...errors import DeliveryError, ValidationError

if TYPE_CHECKING:
    import aiohttp

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class _Auth(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    SECRETS: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        # secrets never reach logs, even when the auth object is logged on its own
        shown = (
            f"{k}={'***' if k in self.SECRETS else v!r}" for k, v in msgspec.structs.asdict(self).items()
        )
        return f"{type(self).__name__}({', '.join(shown)})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [(k, "***" if k in self.SECRETS else v) for k, v in msgspec.structs.asdict(self).items()]


class NoAuth(_Auth, tag="none"):
    pass


class BasicAuth(_Auth, tag="basic"):
    SECRETS = frozenset({"password"})
    username: NonEmpty
    password: str


class BearerAuth(_Auth, tag="bearer"):
    SECRETS = frozenset({"token"})
    token: NonEmpty


class OAuth2Auth(_Auth, tag="oauth2"):
    SECRETS = frozenset({"client_secret"})
    token_url: NonEmpty
    client_id: NonEmpty
    client_secret: NonEmpty
    scope: str | None = None


Auth = NoAuth | BasicAuth | BearerAuth | OAuth2Auth

SECRET_FIELDS = ("auth.password", "auth.token", "auth.client_secret")

# OAuth2 errors (RFC 6749 §5.2) that no retry can fix: the client's own credentials or permissions are wrong
_PERMANENT_TOKEN_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


def check_auth(auth: Auth) -> None:
    """Rules beyond types; ``ValidationError`` fields are relative to the transport (``auth.…``)."""
    values: dict[str, str] = {}
    if isinstance(auth, BasicAuth):
        if ":" in auth.username:
            raise ValidationError("username must not contain ':' (RFC 7617)", "auth.username")
        values = {"username": auth.username, "password": auth.password}
    elif isinstance(auth, BearerAuth):
        values = {"token": auth.token}
    elif isinstance(auth, OAuth2Auth):
        values = {"client_id": auth.client_id, "client_secret": auth.client_secret, "scope": auth.scope or ""}
    for name, value in values.items():
        if any(c in value for c in "\r\n\0") or (name == "token" and any(c.isspace() for c in value)):
            raise ValidationError(f"{name} contains characters not allowed in an HTTP header", f"auth.{name}")


def secret_values(auth: Auth) -> list[str]:
    """The auth's secrets as they go out — the settings' values and the ``Authorization`` credentials made of
    them — for the transport to keep out of what it records (an echoing endpoint would show them)."""
    if isinstance(auth, BasicAuth):
        return [auth.password, _basic_credentials(auth.username, auth.password)]
    if isinstance(auth, BearerAuth):
        return [auth.token]
    if isinstance(auth, OAuth2Auth):
        secret = quote_plus(auth.client_secret, safe="")
        return [auth.client_secret, secret, _basic_credentials(quote_plus(auth.client_id, safe=""), secret)]
    return []


def _basic_credentials(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def static_authorization(auth: Auth) -> str | None:
    """The fixed ``Authorization`` value of ``basic`` and ``bearer``; None for the others."""
    if isinstance(auth, BasicAuth):
        return "Basic " + _basic_credentials(auth.username, auth.password)
    if isinstance(auth, BearerAuth):
        return f"Bearer {auth.token}"
    return None


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of a response body (a destination must not make us buffer without bound)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if resp.content.at_eof():  # the whole body came: no read just to hear the end
            break
    return b"".join(chunks)


class _TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str = "Bearer"
    expires_in: float | None = None


class _TokenError(msgspec.Struct):
    error: str = ""


_decode_token = msgspec.json.Decoder(_TokenResponse).decode
_decode_token_error = msgspec.json.Decoder(_TokenError).decode


class TokenSource:
    """An OAuth2 client-credentials token, cached. ``fetches`` counts requests to the token endpoint."""

    def __init__(self, auth: OAuth2Auth) -> None:
        self.auth = auth
        self.fetches = 0
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()
        client = (quote_plus(auth.client_id, safe=""), quote_plus(auth.client_secret, safe=""))
        self._client_authorization = "Basic " + _basic_credentials(*client)

    async def token(self, session: aiohttp.ClientSession, stale: str | None = None) -> str:
        """A valid access token; ``stale`` is one the hook refused, so a new one is fetched unless another
        caller already replaced it. Raises ``DeliveryError`` for answers of the token endpoint; network
        errors propagate as aiohttp raises them (the transport maps them at its edge)."""
        async with self._lock:
            if self._token is not None and self._token != stale and time.monotonic() < self._valid_until:
                return self._token
            self._token = None
            token, expires_in = await self._fetch(session)
            if expires_in is None or expires_in <= 0:
                self._valid_until = float("inf")  # no lifetime given: keep it until the hook answers 401
            else:
                self._valid_until = time.monotonic() + expires_in - min(60.0, expires_in / 10)
            self._token = token
            return token

    async def _fetch(self, session: aiohttp.ClientSession) -> tuple[str, float | None]:
        form = {"grant_type": "client_credentials"}
        if self.auth.scope:
            form["scope"] = self.auth.scope
        headers = {"Authorization": self._client_authorization, "Accept": "application/json"}
        self.fetches += 1
        async with session.post(
            self.auth.token_url, data=form, headers=headers, allow_redirects=False
        ) as resp:
            body = await read_capped(resp, 65536)
            status = resp.status
        excerpt = body.decode("utf-8", "replace")  # whole: the transport cuts it once secrets are out
        if status != 200:
            try:
                error = _decode_token_error(body).error
            except msgspec.DecodeError:
                error = ""
            permanent = status == 401 or error in _PERMANENT_TOKEN_ERRORS
            reason = f"token endpoint answered {status}" + (f" ({error})" if error else "")
            raise DeliveryError(reason, permanent=permanent, status=status, response_excerpt=excerpt)
        try:
            answer = _decode_token(body)
        except msgspec.DecodeError:
            raise DeliveryError(
                "token endpoint answered 200 without an access_token", status=status
            ) from None
        if answer.token_type.lower() != "bearer":
            raise DeliveryError(
                f"token endpoint issued a {answer.token_type!r} token; only Bearer is supported",
                permanent=True,
                status=status,
            )
        return answer.access_token, answer.expires_in
