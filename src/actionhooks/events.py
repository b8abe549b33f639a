"""The event envelope (REFERENCE §2): decoding, validation and the stored message.

An accepted event is stored as the producer's own JSON object with three fields added when absent: ``id``
(a UUIDv7 unless the producer supplied one), ``account_id`` (from the API key) and ``is_test`` (false).
Everything else comes back to the receiver byte for byte as it was sent (``event_date`` keeps its
nanoseconds, unknown fields pass through).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, NamedTuple

import msgspec

from . import strict_json
from .catalog import catalog
from .errors import StrictJsonError, TooManyItems, field_error
from .ids import ID_PATTERN, new_ids

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})


class Envelope(msgspec.Struct, kw_only=True):
    """What ingest checks of an event (converted from the item's one decoding, which the strict check also reads);
    the stored message is the producer's bytes, so ``event_data`` and ``custom_data`` pass through as sent."""

    event_type: str
    event_date: str  # checked by event_date_error, passed on exactly as sent
    event_data: Any  # must be an object (checked with a message of its own)
    id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)] | None = None
    account_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    profile_id: Annotated[str, msgspec.Meta(max_length=256, pattern="^[^\\x00]*$")] | None = None
    xxh: str | None = msgspec.field(default=None, name="_xxh")
    md5: str | None = msgspec.field(default=None, name="_md5")
    list_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None  # a BIGINT column
    sends_trying_num: Annotated[int, msgspec.Meta(ge=0)] | None = None
    is_test: bool | None = None
    is_static: bool | None = None
    subscription_hash_id: str | None = None
    custom_data: Any = msgspec.UNSET  # an object or null when present
    subscription: list[dict[str, Any]] | None = None


class NewEvent(NamedTuple):
    """An event ready to append to the log; its fields are the log's columns, in order."""

    account_id: int
    id: str
    event_type: str
    list_id: int | None
    profile_id: str | None
    received_at: float
    payload: bytes


class LoggedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as the log holds it and as it leaves for a destination: ``body`` is the message JSON (a hook's
    enrichment may replace it), ``seq`` its log position, ``received_at`` when it was accepted (Unix seconds).

    Never tracked by the garbage collector (``gc=False``: its fields hold no references back): the dispatcher's
    feed keeps up to 100 000 of them, and as a named tuple each one was walked by every full collection — 90 000
    tracked objects, ~100 ms of the event loop per collection, about one a second while a hook drained a backlog
    (BENCHMARKS.md)."""

    seq: int
    id: str
    event_type: str
    list_id: int | None
    profile_id: str | None
    body: bytes
    received_at: float = 0.0


class ItemError(msgspec.Struct, frozen=True, omit_defaults=True):
    index: int
    error: str
    field: str | None = None


_decode_item = msgspec.json.Decoder().decode
_decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode


def _item_error(index: int, exc: ValueError) -> ItemError:
    error = field_error(exc)
    return ItemError(index, error.message, error.field)


def media_type(content_type: str) -> str:
    """``type/subtype`` of a Content-Type header, lower case, without parameters (RFC 9110 §8.3.1)."""
    return content_type.partition(";")[0].strip().lower()


def split_body(body: bytes, content_type: str, max_items: int | None = None) -> Iterator[bytes]:
    """The items of a request body: one object, a JSON array, or NDJSON. Raises msgspec errors, or
    :class:`TooManyItems` as soon as more than ``max_items`` are seen (before building them all)."""
    limit = len(body) + 1 if max_items is None else max_items
    if media_type(content_type) in NDJSON_TYPES:
        count, start = 0, 0
        while start < len(body):
            end = body.find(b"\n", start)
            end = len(body) if end < 0 else end
            line = body[start:end]
            start = end + 1
            if line.strip():
                count += 1
                if count > limit:
                    raise TooManyItems(limit)
                yield line
        return
    head = body.lstrip()[:1]
    if head == b"[":
        if body.count(b",") >= _COMMAS_PER_ITEM * limit:
            # so many commas that the items could be tiny and countless: count them, stopping past the limit,
            # before building any (a body of 5 M zeros costs what the limit's worth of items costs)
            _count_array_items(body, limit)
        items = _decode_items(body)  # at most _COMMAS_PER_ITEM × limit values: cheap to build, then counted
        if len(items) > limit:
            raise TooManyItems(limit)
        yield from (bytes(r) for r in items)
    else:
        yield body


_COMMAS_PER_ITEM = (
    64  # a typical event has 10–30 commas; past 64 a body's values are scanned and counted first
)
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


_scan_value = json.JSONDecoder().raw_decode


def _count_array_items(body: bytes, max_items: int) -> None:
    """Raise :class:`TooManyItems` when the JSON array ``body`` holds more than ``max_items`` values; the scan
    stops there, so a body of millions of tiny values costs no more than ``max_items`` of them."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return  # the decode proper reports it
    pos = _skip_space(text, text.index("[") + 1)
    count = 0
    try:
        while pos < len(text) and text[pos] != "]":
            _, pos = _scan_value(text, pos)
            count += 1
            if count > max_items:
                raise TooManyItems(max_items)
            pos = _skip_space(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos = _skip_space(text, pos + 1)
    except TooManyItems:
        raise
    except (ValueError, RecursionError):
        return  # malformed: the decode proper reports it


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))\Z"
)


def event_date_error(text: str) -> str | None:
    """Why ``text`` is not an RFC 3339 date-time with an offset whose UTC instant lies in years 1 to 9999, or None.

    A leap second (``:60``) is valid, and fractions of a second are not rounded (``23:59:59.9999999Z`` stays in
    its second)."""
    try:  # the fast path (C); refuses leap seconds and rounds fractions
        parsed = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        pass
    else:
        if parsed.tzinfo is None:
            return "event_date must carry a time zone offset (Z or ±hh:mm)"
        if parsed.year not in (1, 9999):
            return None
    match = _RFC3339.match(text)
    if match is None:
        return "event_date must be an RFC 3339 date-time with a time zone offset, e.g. 2024-01-31T12:00:00Z"
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    sign, off_h, off_m = match.groups()[6:]
    try:
        offset = timedelta(hours=int(off_h), minutes=int(off_m)) if sign else timedelta(0)
        zone = timezone(-offset if sign == "-" else offset)
        if second > 60 or int(off_m or 0) > 59:
            raise ValueError("second must be in 0..60 and offset minutes in 0..59")
        local = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=zone)
    except ValueError as exc:
        return f"event_date is not a valid date-time: {exc}"
    try:
        local.astimezone(UTC)
    except OverflowError:
        return "event_date must fall in years 1 to 9999 in UTC"
    return None


class _Dated(Envelope, kw_only=True):
    """:class:`Envelope` with ``event_date`` read as msgspec's datetime (C): the fast path of
    :func:`event_date_error`, taken in the same conversion."""

    event_date: Annotated[datetime, msgspec.Meta(tz=True)]  # type: ignore[assignment]


class _Checked(NamedTuple):
    """What the second pass of :func:`parse_events` needs of a valid item (scalars only: the decoded objects are
    dropped as soon as they are checked, so a request's thousands of them never reach the garbage collector's
    older generations)."""

    raw: bytes
    id: str | None
    event_type: str
    list_id: int | None
    profile_id: str | None
    account_id: int | None
    is_test: bool | None


def _envelope(value: Any) -> tuple[Envelope, str | None]:
    """``value`` as an envelope and what is wrong with its ``event_date`` (None: nothing); raises msgspec's
    ValidationError for the other fields."""
    try:
        dated = _convert(value, _Dated)
    except msgspec.ValidationError:
        env = _convert(value, Envelope)  # the error of another field, or an event_date the slow path judges
        return env, event_date_error(env.event_date)
    if dated.event_date.year in (1, 9999):  # its UTC instant may fall outside years 1 to 9999
        return dated, event_date_error(value["event_date"])
    return dated, None


_convert = msgspec.convert  # (a partial with the type as keyword costs more than the conversion)


def parse_events(
    items: Sequence[bytes], account_id: int, now: float | None = None, chosen_ids: set[str] | None = None
) -> tuple[list[NewEvent], list[ItemError]]:
    """Validate events' JSON and build what the log stores: the valid events in order, and what is wrong with the
    others (by index in ``items``). Ids the producers chose are added to ``chosen_ids`` (only those can repeat).
    One pass decodes and checks, ids for the rest are made at once, a second pass builds the stored bodies."""
    now = time.time() if now is None else now
    codes = catalog().codes
    checked: list[_Checked] = []
    errors: list[ItemError] = []
    decode, envelope, strict = _decode_item, _envelope, strict_json.check_decoded
    unset = msgspec.UNSET
    for index, raw in enumerate(items):
        try:
            value = decode(raw)
            env, date_error = envelope(value)
        except ValueError as exc:  # msgspec's DecodeError and ValidationError, a string that is not UTF-8
            errors.append(_item_error(index, exc))
            continue
        except RecursionError:
            errors.append(ItemError(index, "event is nested too deeply"))
            continue
        if date_error is not None:
            errors.append(ItemError(index, date_error, "event_date"))
            continue
        try:
            strict(raw, value)
        except StrictJsonError as exc:
            errors.append(ItemError(index, str(exc)))
            continue
        if env.event_type not in codes:
            errors.append(ItemError(index, f"unknown event_type {env.event_type!r}", "event_type"))
        elif type(env.event_data) is not dict:
            errors.append(ItemError(index, "event_data must be an object", "event_data"))
        elif (
            env.custom_data is not unset and env.custom_data is not None and type(env.custom_data) is not dict
        ):
            errors.append(ItemError(index, "custom_data must be an object", "custom_data"))
        elif env.account_id is not None and env.account_id != account_id:
            errors.append(
                ItemError(index, f"account_id {env.account_id} is not the API key's account", "account_id")
            )
        else:
            checked.append(
                _Checked(
                    raw, env.id, env.event_type, env.list_id, env.profile_id, env.account_id, env.is_test
                )
            )
    fresh = iter(new_ids(sum(c.id is None for c in checked)))
    account_field = b'"account_id":' + str(account_id).encode()
    events: list[NewEvent] = []
    for c in checked:
        added = []
        event_id = c.id
        if event_id is None:
            event_id = next(fresh)
            added.append(b'"id":"' + event_id.encode() + b'"')
        elif chosen_ids is not None:
            chosen_ids.add(event_id)
        if c.account_id is None:
            added.append(account_field)
        if c.is_test is None:
            added.append(b'"is_test":false')
        body = c.raw.strip()
        if added:
            body = b"".join((b"{", b",".join(added), b",", memoryview(body)[1:]))
        events.append(NewEvent(account_id, event_id, c.event_type, c.list_id, c.profile_id, now, body))
    return events, errors


def parse_event(
    raw: bytes, index: int, account_id: int, now: float | None = None, chosen_ids: set[str] | None = None
) -> NewEvent | ItemError:
    """One event: :func:`parse_events` of a single item, reported at ``index``."""
    events, errors = parse_events([raw], account_id, now, chosen_ids)
    if errors:
        return ItemError(index, errors[0].error, errors[0].field)
    return events[0]
