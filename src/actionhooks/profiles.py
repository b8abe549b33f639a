"""Profiles: what actionhooks knows of a recipient, keyed by (account, ``profile_id``), for enrichment at delivery
and the subscription statuses derivation keeps (docs/capture.md#profiles).

A profile is ``list_id``, ``email``, ``phone``, ``fields`` (any JSON values: what a hook's ``custom_data_fields``
pick from) and ``subscriptions`` (REFERENCE §2's objects). It is stored as this JSON; a deleted profile keeps only
a tombstone (its id, ``list_id`` and when it was erased), so later messages carry ``custom_data: null``.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import xxhash

from .errors import ValidationError, field_error

Status = Literal["subscribed", "unsubscribed", "complainer", "hardbounced"]
STATUSES: tuple[str, ...] = ("subscribed", "unsubscribed", "complainer", "hardbounced")
ProfileId = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern="^[^\\x00]*$")]


class Subscription(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A profile's subscription to one channel of one resource (REFERENCE §2's ``subscription[]`` objects)."""

    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    resource_id: int | None = None
    email: str | None = None
    phone: str | None = None
    subscription_id: str | int | None = None
    provider: str | None = None
    priority: int | None = None
    status: Status | None = None
    ccsub: dict[str, Any] | None = None


class Profile(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A profile's data (the body of ``PUT /v1/profiles/{profile_id}``)."""

    list_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    subscriptions: list[Subscription] = msgspec.field(default_factory=list)

    def custom_data(self) -> dict[str, Any]:
        """What ``custom_data_fields`` pick from: the ``fields``, and ``email`` / ``phone`` unless a field of that
        name exists."""
        out: dict[str, Any] = {}
        if self.email is not None:
            out["email"] = self.email
        if self.phone is not None:
            out["phone"] = self.phone
        out.update(self.fields)
        return out


class ProfileItem(Profile, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One item of a bulk upsert: the profile with its id."""

    profile_id: ProfileId


class StoredProfile(NamedTuple):
    """A profile row: ``body`` is the profile's JSON, None for a deleted profile (a tombstone)."""

    profile_id: str
    list_id: int | None
    body: bytes | None
    updated_at: float


class ProfileWrite(NamedTuple):
    profile_id: str
    list_id: int | None
    body: bytes | None  # None erases (keeps a tombstone)


_decode_profile = msgspec.json.Decoder(Profile).decode
_decode_item = msgspec.json.Decoder(ProfileItem).decode
_encode = msgspec.json.Encoder().encode


def parse_profile(body: bytes) -> Profile:
    """A profile from request JSON; raises :class:`ValidationError` naming the field."""
    try:
        return _decode_profile(body)
    except ValueError as exc:
        raise field_error(exc) from None
    except RecursionError:
        raise ValidationError("profile is nested too deeply") from None


def profile_from_builtins(data: object) -> Profile:
    """A profile from decoded JSON (a merge patch's result); raises :class:`ValidationError`."""
    try:
        return msgspec.convert(data, Profile)
    except msgspec.ValidationError as exc:
        raise field_error(exc) from None


def parse_item(raw: bytes) -> ProfileItem:
    try:
        return _decode_item(raw)
    except ValueError as exc:
        raise field_error(exc) from None
    except RecursionError:
        raise ValidationError("profile is nested too deeply") from None


def load(stored: StoredProfile) -> Profile | None:
    """The stored profile's data; None for a tombstone."""
    if stored.body is None:
        return None
    profile = _decode_profile(stored.body)
    profile.list_id = stored.list_id
    return profile


def write(profile_id: str, profile: Profile) -> ProfileWrite:
    body = msgspec.structs.replace(profile, list_id=None)
    return ProfileWrite(profile_id, profile.list_id, _encode(body))


def erase(profile_id: str, list_id: int | None) -> ProfileWrite:
    return ProfileWrite(profile_id, list_id, None)


def to_builtins(profile_id: str, profile: Profile) -> dict[str, Any]:
    out: dict[str, Any] = {"profile_id": profile_id, **msgspec.to_builtins(profile)}
    out.setdefault("fields", {})
    out.setdefault("subscriptions", [])
    return out


@functools.lru_cache(maxsize=65_536)  # delivery hashes the same recipients' emails batch after batch
def email_hashes(email: str) -> tuple[str, str]:
    """``_md5`` and ``_xxh`` of an email: MD5 and xxHash64 (hex) of its lower-cased form (REFERENCE §2)."""
    data = email.strip().lower().encode()
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), xxhash.xxh64_hexdigest(data)


def set_status(profile: Profile, channel: str, resource_id: int | None, status: Status) -> bool:
    """Apply a subscription status event to ``profile`` (REFERENCE §4): the subscriptions of ``channel`` (and of
    ``resource_id`` when given; ``channel`` ``all``: every channel) take ``status``; a change *to* ``subscribed``
    counts only from one of the other three statuses. A channel with no subscription yet gets one. True when
    something changed."""
    changed = False
    matched = False
    for sub in profile.subscriptions:
        if channel != "all" and sub.channel != channel:
            continue
        if resource_id is not None and sub.resource_id is not None and sub.resource_id != resource_id:
            continue
        matched = True
        if sub.status == status:
            continue
        if status == "subscribed" and sub.status not in ("unsubscribed", "complainer", "hardbounced"):
            continue
        sub.status = status
        changed = True
    if not matched and channel != "all":
        profile.subscriptions.append(Subscription(channel=channel, resource_id=resource_id, status=status))
        changed = True
    return changed
