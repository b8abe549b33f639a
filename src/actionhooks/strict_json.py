"""Strict JSON: refuse what different receivers would read differently, before it is stored or acted on.

RFC 8259 leaves some JSON open to interpretation, and msgspec (fast, used everywhere else) accepts it silently:

- duplicate keys in one object (msgspec keeps the last; other parsers keep the first or fail);
- numbers that do not fit a finite IEEE 754 double (``1e999999``, a 400-digit integer): read as infinity, as an
  exact integer, or refused, depending on the receiver;
- strings that are not valid UTF-8, including lone UTF-16 surrogates (``"\\ud800"``), which most parsers refuse.

How, fast: msgspec decodes the value (ingest decodes each event so once, for this and for its envelope), refusing
invalid UTF-8, unpaired escaped surrogates and floats past the double's range, and keeps one key of a duplicated
pair (it has no hook to tell, issue #648). Without a backslash in the bytes, strings re-encode byte for byte, and
neither numbers nor white space carry a colon: the colons of the bytes and of msgspec's re-encoding of the value
are as many exactly when no pair was dropped — every dropped pair takes at least its own colon with it (compact
JSON, as most producers send it, re-encodes byte for byte: equal bytes need no count). A run of 309
digits (an integer that may not fit a double; msgspec reads it as an exact integer) or a backslash takes the exact
path, one pass of the standard library's scanner with a hook per object and per number.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from .errors import StrictJsonError

_INFINITY = float("inf")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONG = 309  # digits of an integer that may not fit a double (msgspec reads it exactly)
_LONG_DIGITS = b"0" * _LONG
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _finite(text: str) -> float:
    value = float(text)
    if value == _INFINITY or value == -_INFINITY:
        shown = text if len(text) <= 30 else f"{text[:20]}…({len(text)} characters)"
        raise StrictJsonError(f"number {shown} does not fit a finite double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJsonError(f"duplicate key {key[:100]!r} in one object")
            seen.add(key)


def _not_json(name: str) -> None:
    raise StrictJsonError(f"{name} is not a JSON value")


_scan = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_float=_finite, parse_int=_finite, parse_constant=_not_json
).decode


def check(data: bytes) -> None:
    """Raise :class:`StrictJsonError` unless ``data`` is one JSON value that every receiver reads alike."""
    try:
        value = _decode(data)
    except msgspec.DecodeError:
        _exact(data)  # says what is wrong, in its own words
        raise StrictJsonError("JSON is malformed") from None  # (msgspec is the stricter: not reached so far)
    check_decoded(data, value)


def check_decoded(data: bytes, value: Any) -> None:
    """:func:`check` for ``value``, msgspec's decoding of ``data`` (which already refused what is malformed)."""
    if b"\\" in data or (len(data) >= _LONG and _LONG_DIGITS in data.translate(_DIGITS_AS_ZEROS)):
        _exact(data)
        return
    encoded = _encode(value)
    if encoded != data and data.count(b":") != encoded.count(b":"):  # (compact JSON re-encodes as it came)
        _exact(data)  # a pair was dropped: the exact path names the key
        raise StrictJsonError("duplicate key in one object")  # (a dropped pair always shows there)


def _exact(data: bytes) -> None:
    try:
        text = data.decode()  # strict UTF-8: refuses invalid bytes and encoded surrogates
    except UnicodeDecodeError as exc:
        raise StrictJsonError(f"not valid UTF-8 at byte {exc.start}") from None
    try:
        _scan(text)
    except json.JSONDecodeError as exc:
        raise StrictJsonError(f"JSON is malformed: {exc.msg} (character {exc.pos})") from None
    except RecursionError:
        raise StrictJsonError("JSON is nested too deeply") from None
    if b"\\u" in data and _SURROGATE_ESCAPE.search(data):
        try:
            msgspec.json.decode(data)  # pairs escaped surrogates, refuses a lone one
        except msgspec.DecodeError as exc:
            raise StrictJsonError(f"a string is not valid Unicode: {exc}") from None


def decode(data: bytes) -> Any:
    """``data`` decoded (by msgspec) after :func:`check`."""
    check(data)
    return msgspec.json.decode(data)
