"""Tracking tokens: what an open pixel or click link records, signed with the account's tracking key.

Format (docs/capture.md#tokens), so a sending platform holding the key can mint tokens itself::

    v1.<key_id>.<claims>.<mac>

``claims`` is the base64url (no padding) of a compact JSON object: ``a`` account id, ``p`` profile id, ``l``
list id, ``m`` message id, ``c`` campaign id, ``r`` resource id, ``ch`` channel (default ``email``), ``u`` the link (clicks),
``t`` when it was issued (Unix seconds), ``x`` the site pixel's id (channel ``site``), each optional but ``a``; ``mac`` is the base64url (no padding) of
HMAC-SHA256(key, ``"v1.<key_id>.<claims>"``) with the key's 32 bytes. Every unretired key of the account
verifies (rotation: a new key signs, the old keeps verifying until retired).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Annotated, Protocol

import msgspec

from ..crypto import SettingsCipher
from ..errors import BadToken
from ..store.base import Store, TrackingKey

VERSION = "v1"
_KEY_CACHE_S = 10.0  # a rotation reaches other processes within this many seconds


class Claims(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """What a token says. The API's ``POST /v1/tracking-tokens`` body uses the long names (``TokenRequest``)."""

    a: int
    p: str | None = None
    l: int | None = None  # noqa: E741 - the documented short name of list_id
    m: int | str | None = None
    c: int | None = None
    r: int | None = None
    ch: str = "email"
    u: str | None = None
    t: int | None = None
    x: int | None = None  # the site pixel's id (channel ``site``)


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/tracking-tokens``: the recipient and message a pixel and link will record."""

    profile_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern="^[^\\x00]*$")] | None = (
        None
    )
    list_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    message_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    campaign_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    resource_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    channel: Annotated[str, msgspec.Meta(pattern="^(email|push|sms|viber|whatsapp|telegram_bot|site)$")] = (
        "email"
    )
    link_url: Annotated[str, msgspec.Meta(max_length=4096, pattern="^https?://[^\\s]+$")] | None = None
    pixel_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None  # channel ``site``

    def claims(self, account_id: int, now: float) -> Claims:
        return Claims(
            a=account_id,
            p=self.profile_id,
            l=self.list_id,
            m=self.message_id,
            c=self.campaign_id,
            r=self.resource_id,
            ch=self.channel,
            u=self.link_url,
            t=int(now),
            x=self.pixel_id,
        )


_encode = msgspec.json.Encoder().encode
_decode_claims = msgspec.json.Decoder(Claims).decode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key_id: str, key: bytes, claims: Claims) -> str:
    signed = f"{VERSION}.{key_id}.{_b64(_encode(claims))}"
    return signed + "." + _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())


def unverified(token: str) -> tuple[str, Claims]:
    """The key id and claims of ``token`` before any check of its signature (to find the key)."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise BadToken("not a v1 token")
    try:
        return parts[1], _decode_claims(_unb64(parts[2]))
    except (ValueError, msgspec.DecodeError) as exc:
        raise BadToken("unreadable claims") from exc


def verify(token: str, key: bytes) -> None:
    signed, _, mac = token.rpartition(".")
    try:
        given = _unb64(mac)
    except ValueError as exc:
        raise BadToken("unreadable signature") from exc
    expected = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise BadToken("bad signature")


class Sealing(Protocol):
    """Whoever holds the service's cipher once the store is open (the hook registry)."""

    @property
    def cipher(self) -> SettingsCipher: ...


class TrackingKeys:
    """The accounts' tracking keys, sealed in the store with the service's cipher, unsealed here (and kept a few
    seconds)."""

    def __init__(self, store: Store, sealing: Sealing) -> None:
        self.store = store
        self.sealing = sealing
        self._cache: dict[int, tuple[float, dict[str, bytes], str | None]] = {}

    async def rotate(self, account_id: int) -> tuple[str, bytes, float]:
        """A new signing key for the account: its id, the key, when made."""
        key_id, key, now = secrets.token_hex(4), secrets.token_bytes(32), time.time()
        await self.store.add_tracking_key(
            account_id, TrackingKey(key_id, self.sealing.cipher.seal(key), now, None)
        )
        self._cache.pop(account_id, None)
        return key_id, key, now

    async def retire(self, account_id: int, key_id: str) -> bool:
        self._cache.pop(account_id, None)
        return await self.store.retire_tracking_key(account_id, key_id)

    async def _keys(self, account_id: int) -> tuple[dict[str, bytes], str | None]:
        cached = self._cache.get(account_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        rows = [k for k in await self.store.tracking_keys(account_id) if k.retired_at is None]
        keys = {k.key_id: self.sealing.cipher.open(k.sealed) for k in rows}
        current = rows[0].key_id if rows else None
        if len(self._cache) > 10_000:  # tokens naming many accounts must not grow it without bound
            self._cache.clear()
        self._cache[account_id] = (time.monotonic() + _KEY_CACHE_S, keys, current)
        return keys, current

    async def mint(self, claims: Claims) -> str:
        """A token for ``claims`` signed with the account's newest key (one is made on first use)."""
        keys, current = await self._keys(claims.a)
        if current is None:
            current, key, _ = await self.rotate(claims.a)
            keys = {current: key}
        return sign(current, keys[current], claims)

    async def check(self, token: str) -> Claims:
        """The claims of a token signed by an unretired key of its account; raises :class:`BadToken`."""
        key_id, claims = unverified(token)
        if not 0 <= claims.a < 2**63:
            raise BadToken("no such account")
        keys, _ = await self._keys(claims.a)
        key = keys.get(key_id)
        if key is None:
            raise BadToken("unknown key")
        verify(token, key)
        return claims
