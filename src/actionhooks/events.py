"""The event envelope (REFERENCE §2): decoding, validation and the stored message.

An accepted event is stored as the producer's own JSON object with three fields added when absent: ``id``
(a UUIDv7 unless the producer supplied one), ``account_id`` (from the API key) and ``is_test`` (false).
Everything else comes back to the receiver byte for byte as it was sent (``event_date`` keeps its
nanoseconds, unknown fields pass through).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import msgspec

from .catalog import catalog
from .errors import field_error
from .ids import new_id

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


class Envelope(msgspec.Struct, kw_only=True):
    """What ingest checks of an event. ``event_data`` and ``custom_data`` stay raw: they pass through."""

    event_type: str
    event_date: str
    event_data: msgspec.Raw
    id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)] | None = None
    account_id: int | None = None
    profile_id: str | None = None
    xxh: str | None = msgspec.field(default=None, name="_xxh")
    md5: str | None = msgspec.field(default=None, name="_md5")
    list_id: int | None = None
    sends_trying_num: Annotated[int, msgspec.Meta(ge=0)] | None = None
    is_test: bool | None = None
    is_static: bool | None = None
    subscription_hash_id: str | None = None
    custom_data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty when absent
    subscription: list[dict[str, Any]] | None = None


class NewEvent(msgspec.Struct, frozen=True):
    """An event ready to append to the log."""

    id: str
    event_type: str
    list_id: int | None
    profile_id: str | None
    received_at: float
    payload: bytes
    client_id: bool  # the producer chose the id, so it may repeat


class ItemError(msgspec.Struct, frozen=True, omit_defaults=True):
    index: int
    error: str
    field: str | None = None


_decode_envelope = msgspec.json.Decoder(Envelope).decode
_decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode


def _item_error(index: int, exc: msgspec.MsgspecError) -> ItemError:
    error = field_error(exc)
    return ItemError(index, error.message, error.field)


def valid_event_date(value: str) -> bool:
    m = _RFC3339.match(value)
    if not m:
        return False
    frac = (m.group(3) or "")[:7]
    try:
        datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{frac}{m.group(4).upper()}")
    except ValueError:
        return False
    return True


def _is_object(raw: msgspec.Raw) -> bool:
    return bytes(raw).lstrip()[:1] == b"{"


def split_body(body: bytes, content_type: str) -> Iterator[bytes]:
    """The items of a request body: one object, a JSON array, or NDJSON. Raises msgspec errors."""
    if content_type.startswith(("application/x-ndjson", "application/ndjson", "application/jsonl")):
        for line in body.split(b"\n"):
            if line.strip():
                yield line
        return
    head = body.lstrip()[:1]
    if head == b"[":
        yield from (bytes(r) for r in _decode_items(body))
    else:
        yield body


def parse_event(raw: bytes, index: int, account_id: int, now: float | None = None) -> NewEvent | ItemError:
    """Validate one event's JSON and build what the log stores, or say what is wrong with it."""
    try:
        env = _decode_envelope(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _item_error(index, exc)
    if env.event_type not in catalog().codes:
        return ItemError(index, f"unknown event_type {env.event_type!r}", "event_type")
    if not valid_event_date(env.event_date):
        return ItemError(
            index,
            "event_date must be an RFC 3339 date-time, e.g. 2018-03-04T13:13:19.034315796Z",
            "event_date",
        )
    if not _is_object(env.event_data):
        return ItemError(index, "event_data must be an object", "event_data")
    custom = bytes(env.custom_data).strip()
    if custom and custom != b"null" and custom[:1] != b"{":
        return ItemError(index, "custom_data must be an object", "custom_data")
    if env.account_id is not None and env.account_id != account_id:
        return ItemError(index, f"account_id {env.account_id} is not the API key's account", "account_id")
    prefix = []
    event_id = env.id
    if event_id is None:
        event_id = new_id()
        prefix.append(b'"id":"' + event_id.encode() + b'"')
    if env.account_id is None:
        prefix.append(b'"account_id":' + str(account_id).encode())
    if env.is_test is None:
        prefix.append(b'"is_test":false')
    body = raw.strip()
    if prefix:
        body = b"{" + b",".join(prefix) + b"," + body[1:]
    return NewEvent(
        id=event_id,
        event_type=env.event_type,
        list_id=env.list_id,
        profile_id=env.profile_id,
        received_at=time.time() if now is None else now,
        payload=body,
        client_id=env.id is not None,
    )
