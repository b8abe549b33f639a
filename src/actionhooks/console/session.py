"""The console's session: who signed in, and the token every change must carry.

Signing in takes an API key (:func:`account_for_sign_in` decides whether that key may open the console) and answers
with a signed cookie (``itsdangerous``; ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS, path
``/console``). The cookie holds the account id, the SHA-256 of the key (what the store keeps — never the key as
typed) and the session's CSRF token; each request checks again that the key still opens that account, so a key
deleted from the store ends its sessions. Every change (a POST) must send the CSRF token as the form field
``csrf``; it is compared in constant time.

The signing key is kept in the store's ``meta`` table (generated on first use), so sessions survive a restart and
are valid on every process over the same database.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ..api.auth import Authenticator, hash_key
from ..store import Store

COOKIE = "ah_console"
COOKIE_PATH = "/console"
MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf"
_SALT = "actionhooks.console.session"


async def account_for_sign_in(auth: Authenticator, key: str) -> tuple[int, str] | None:
    """The account ``key`` opens the console of, and the key's hash; None when it may not sign in.

    The one place that decides who may sign in: a live ``admin`` key (an ``ingest`` key sends events only)."""
    key = key.strip()
    if not key:
        return None
    digest = hash_key(key)
    account_id = await _account_of(auth, digest)
    return (account_id, digest) if account_id is not None else None


async def _account_of(auth: Authenticator, digest: str) -> int | None:
    """Live admin keys only; checked again on every request (cached for ``ACTIONHOOKS_KEY_CACHE_S``), so a revoked
    key ends its console sessions within that time."""
    return await auth.account_for(digest, "admin")


@dataclass(frozen=True)
class Session:
    """What the cookie says: the CSRF token, and the account with the hash of the key that signed in (None
    before sign-in)."""

    csrf: str
    account_id: int | None = None
    key_hash: str | None = None

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32))

    def csrf_matches(self, sent: object) -> bool:
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), self.csrf.encode())


class Sessions:
    """Reads and writes the session cookie; the signing key is loaded from the store on first use."""

    def __init__(self) -> None:
        self._serializer: URLSafeTimedSerializer | None = None

    async def _signer(self, store: Store) -> URLSafeTimedSerializer:
        if self._serializer is None:
            secret = await store.meta_value("console_session_key", lambda: secrets.token_urlsafe(48))
            self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        return self._serializer

    async def read(self, request: Request, store: Store, auth: Authenticator) -> Session | None:
        """The request's session, or None when it has none (or a forged, expired or revoked one)."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            data = (await self._signer(store)).loads(cookie, max_age=MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        account_id, key_hash = data.get("a"), data.get("k")
        if account_id is None:
            return Session(csrf=data["c"])
        if not isinstance(account_id, int) or not isinstance(key_hash, str):
            return None
        if await _account_of(auth, key_hash) != account_id:
            return None  # the key was deleted, or no longer opens this account
        return Session(csrf=data["c"], account_id=account_id, key_hash=key_hash)

    async def write(self, response: Response, request: Request, store: Store, session: Session) -> None:
        data: dict[str, object] = {"c": session.csrf}
        if session.account_id is not None:
            data.update(a=session.account_id, k=session.key_hash)
        response.set_cookie(
            COOKIE,
            (await self._signer(store)).dumps(data),
            max_age=MAX_AGE_S,
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
