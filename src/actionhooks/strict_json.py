"""Strict JSON: refuse what different receivers would read differently, before it is stored or acted on.

RFC 8259 leaves some JSON open to interpretation, and msgspec (fast, used everywhere else) accepts it silently:

- duplicate keys in one object (msgspec keeps the last; other parsers keep the first or fail);
- numbers that do not fit a finite IEEE 754 double (``1e999999``, a 400-digit integer): read as infinity, as an
  exact integer, or refused, depending on the receiver;
- strings that are not valid UTF-8, including lone UTF-16 surrogates (``"\\ud800"``), which most parsers refuse.

One pass of the standard library's C scanner with hooks (one call per object and per number) finds the first two
(msgspec cannot: it has no hook for duplicate keys, msgspec issue #648); invalid UTF-8 fails the strict decode of
the bytes, and the rare escaped surrogate is left to msgspec, which refuses unpaired ones. The pass costs about as
much as the rest of an event's validation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

_INFINITY = float("inf")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class StrictJsonError(ValueError):
    """JSON that is well-formed but ambiguous, or not JSON at all; the message says why."""


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
