"""Strict JSON: the fast path (msgspec, counted keys) refuses exactly what the exact path (the standard library's
scanner with hooks) refuses, on JSON written with duplicate keys, white space, escapes and huge numbers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actionhooks import strict_json
from actionhooks.strict_json import StrictJsonError

KEYS = st.sampled_from(["a", "b", "id", 'q"uote', "ключ", "a\\b"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["9" * 320, "1e999", "-1e400"]).map(lambda raw: _Raw(raw)),
)


class _Raw(str):
    """A number written as is (json.dumps cannot write one past a double)."""


def _write(value: object, space: str) -> str:
    """JSON for ``value``; objects are lists of pairs, so keys may repeat."""
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, tuple):
        pairs = [f"{json.dumps(k, ensure_ascii=False)}{space}:{space}{_write(v, space)}" for k, v in value]
        return "{" + f",{space}".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(_write(v, space) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(tuple),
    ),
    max_leaves=12,
)


def _refused(check: object, data: bytes) -> bool:
    try:
        check(data)  # type: ignore[operator]
    except StrictJsonError:
        return True
    return False


@settings(max_examples=400, deadline=None)
@given(VALUES, st.sampled_from(["", " ", "\n"]))
def test_the_fast_path_refuses_exactly_what_the_exact_path_refuses(value: object, space: str) -> None:
    data = _write(value, space).encode()
    assert _refused(strict_json.check, data) == _refused(strict_json._exact, data), data


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',
        b'{"a":{"b":1,"b":2}}',
        b'[{"id":"x","id":"x"}]',
        b'{"a":1e999}',
        b'{"a":' + b"9" * 400 + b"}",
        b'{"a":"\\ud800"}',
        b'{"a":"\xff"}',
        b'{"a":NaN}',
    ],
)
def test_ambiguous_json_is_refused(data: bytes) -> None:
    with pytest.raises(StrictJsonError):
        strict_json.check(data)


def test_plain_json_passes() -> None:
    strict_json.check('{"a":1,"b":{"c":[1.5,"x",null,true]},"ключ":"значение"}'.encode())
