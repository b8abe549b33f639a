"""The catalogue against the product owner's seed; schemas; the demo traffic generator.

The seed is read from ``../shared/seed/event-types.ru.txt`` beside the repository (override with the
``ACTIONHOOKS_SEED`` environment variable). A missing seed fails the tests: it is the source of truth.

``jsonschema`` is not a dependency, so generated events are checked structurally against the structures the
schemas are built from (required keys, JSON types, enums), not by a schema validator.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from actionhooks.catalog import catalog
from actionhooks.catalog.schemas import DIALECT, STRUCTURES, all_schemas, event_schema
from actionhooks.catalog.seed import parse_seed, read_seed
from actionhooks.demo_traffic import default_weights, make_event, traffic
from actionhooks.errors import SeedError
from actionhooks.events import NewEvent, parse_event

NO_PROFILE = {"campaign_launch", "camp_error"}
PROFILE_FIELDS = ("profile_id", "_xxh", "_md5", "custom_data")
EVENT_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")
CODES = [t.code for t in catalog().types]


def seed_path() -> Path:
    override = os.environ.get("ACTIONHOOKS_SEED")
    return (
        Path(override) if override else Path(__file__).parents[2] / "shared" / "seed" / "event-types.ru.txt"
    )


@pytest.fixture(scope="module")
def seed_rows() -> list[Any]:
    path = seed_path()
    if not path.is_file():
        pytest.fail(f"seed file not found: {path} (set ACTIONHOOKS_SEED to its path)")
    return read_seed(path)


# --- the seed parser -------------------------------------------------------------------------------------


def test_parser_handles_continuation_header_and_footnote() -> None:
    text = (
        "Title\nВ интерфейсе | В запросе | Описание |\n---|---|---|\nГруппа А | ||\n"
        "One | one | Первое. |\nTwo | two | Второе,\n  продолжение.\n|\n"
        "Группа Б | ||\nThree | three | Третье (с опечаткой о тписки). |\n*Сноска, без черты.\n"
    )
    rows = parse_seed(text)
    assert [(r.group_ru, r.name, r.code, r.description_ru) for r in rows] == [
        ("Группа А", "One", "one", "Первое."),
        ("Группа А", "Two", "two", "Второе, продолжение."),
        ("Группа Б", "Three", "three", "Третье (с опечаткой о тписки)."),
    ]


@pytest.mark.parametrize(
    "text",
    ["G | ||\nOne | one | never closed", "One | one | before any group |", "G | ||\nOne | one |"],
)
def test_parser_rejects_malformed_tables(text: str) -> None:
    with pytest.raises(SeedError):
        parse_seed(text)


# --- the catalogue against the seed ----------------------------------------------------------------------


def test_catalogue_equals_seed_table(seed_rows: list[Any]) -> None:
    assert len(seed_rows) == 80
    ours = [(t.group_ru, t.name, t.code, t.description_ru) for t in catalog().types]
    assert ours == [tuple(r) for r in seed_rows]


def test_seed_quirks_are_kept(seed_rows: list[Any]) -> None:
    by_code = {r.code: r for r in seed_rows}
    assert by_code["unsub_sms"].description_ru.endswith("был отписан.")  # the row spanning two lines
    assert "о тписки" in by_code["unsub"].description_ru  # the seed's typo, kept verbatim
    assert not any("Meta" in r.description_ru for r in seed_rows)  # the footnote is not a row


def test_groups() -> None:
    types = catalog().types
    slugs = list(dict.fromkeys(t.group for t in types))
    assert len(slugs) == 16
    assert len({t.group_ru for t in types}) == 16
    for slug in slugs:
        members = [t for t in types if t.group == slug]
        assert len({(t.group_ru, t.group_en) for t in members}) == 1, slug
        assert members[0].group_en.strip()
        assert re.fullmatch(r"[a-z][a-z_]*", slug)
    # a group's members are contiguous, as in the seed
    assert [t.group for t in types] == sorted((t.group for t in types), key=slugs.index)


def test_every_type_is_described_and_shaped() -> None:
    assert len(catalog()) == 80 and len(catalog().codes) == 80
    for t in catalog().types:
        assert t.description_en.strip() and t.description_en != t.description_ru, t.code
        assert t.structure in STRUCTURES, t.code
        assert t.has_profile is (t.code not in NO_PROFILE), t.code
    used = {t.structure for t in catalog().types}
    assert used == set(STRUCTURES)


def test_catalogue_file_is_human_readable() -> None:
    raw = resources.files("actionhooks.catalog").joinpath("event_types.json").read_text(encoding="utf-8")
    assert "События Email канала" in raw  # not \u-escaped
    assert raw.startswith("[\n  {\n")
    assert [d["code"] for d in json.loads(raw)] == CODES


# --- schemas ---------------------------------------------------------------------------------------------

_TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
_KEYWORDS = {
    "$schema", "$id", "title", "description", "type", "properties", "required", "additionalProperties",
    "items", "const", "enum", "pattern", "format", "minimum", "maximum", "minItems",
}  # fmt: skip


def _check_schema(schema: Any, where: str) -> None:
    """Well-formedness by the 2020-12 vocabulary we use (no validator is installed)."""
    if isinstance(schema, bool):
        return
    assert isinstance(schema, dict), where
    assert set(schema) <= _KEYWORDS, (where, set(schema) - _KEYWORDS)
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    assert set(kinds) <= _TYPES, where
    if "pattern" in schema:
        re.compile(schema["pattern"])
    if "enum" in schema:
        assert isinstance(schema["enum"], list) and schema["enum"], where
    for name, sub in schema.get("properties", {}).items():
        _check_schema(sub, f"{where}.{name}")
    assert set(schema.get("required", [])) <= set(schema.get("properties", {})), where
    for key in ("items", "additionalProperties"):
        if key in schema:
            _check_schema(schema[key], f"{where}[{key}]")


@pytest.mark.parametrize("delivered", [False, True])
def test_schemas_are_well_formed(delivered: bool) -> None:
    schemas = all_schemas(delivered=delivered)
    assert list(schemas) == CODES
    for code, schema in schemas.items():
        assert schema["$schema"] == DIALECT
        _check_schema(schema, code)
        props = schema["properties"]
        assert props["event_type"]["const"] == code
        assert {"event_type", "event_date", "event_data"} <= set(schema["required"])
        assert ({"id", "account_id", "is_test"} <= set(schema["required"])) is delivered
        assert schema["additionalProperties"] is True
        structure = STRUCTURES[catalog().by_code[code].structure]
        assert set(props["event_data"]["properties"]) == set(structure.properties)
        forbidden = [f for f in PROFILE_FIELDS if props[f] is False]
        assert forbidden == ([] if catalog().by_code[code].has_profile else list(PROFILE_FIELDS)), code
    json.dumps(schemas)  # serialisable


def test_event_schema_returns_a_copy_and_rejects_unknown_codes() -> None:
    event_schema("send")["properties"].clear()
    assert event_schema("send")["properties"]
    with pytest.raises(KeyError):
        event_schema("no_such_type")


# --- generated events ------------------------------------------------------------------------------------

_PY = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list}


def _is(value: Any, kinds: str | list[str]) -> bool:
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind == "null" and value is None:
            return True
        if kind != "boolean" and isinstance(value, bool):
            continue
        if kind in _PY and isinstance(value, _PY[kind]):
            return True
    return False


def check_event(ev: dict[str, Any]) -> None:
    """Structural check of a generated event against its type's schema and structure."""
    t = catalog().by_code[ev["event_type"]]
    schema = event_schema(t.code)
    assert "account_id" not in ev and "id" not in ev
    assert set(schema["required"]) <= set(ev)
    assert EVENT_DATE.match(ev["event_date"]), ev["event_date"]
    for name, value in ev.items():
        prop = schema["properties"].get(name)
        assert prop is not False, (t.code, name)
        if isinstance(prop, dict) and "type" in prop:
            assert _is(value, prop["type"]), (t.code, name, value)
            if "pattern" in prop and value is not None:
                assert re.search(prop["pattern"], value), (t.code, name, value)
    if t.has_profile:
        email = ev["custom_data"]["email"].encode()
        assert ev["_xxh"] == xxhash.xxh64(email).hexdigest()
        assert ev["_md5"] == hashlib.md5(email).hexdigest()
        assert {"email", "name", "city"} <= set(ev["custom_data"])
    structure = STRUCTURES[t.structure]
    data = ev["event_data"]
    assert set(structure.required) <= set(data), (t.code, set(structure.required) - set(data))
    assert set(data) <= set(structure.properties), (t.code, set(data) - set(structure.properties))
    for name, value in data.items():
        prop = structure.properties[name]
        assert _is(value, prop["type"]), (t.code, name, value)
        if "enum" in prop:
            assert value in prop["enum"], (t.code, name, value)
        if "pattern" in prop:
            assert re.search(prop["pattern"], value), (t.code, name, value)
        if prop["type"] == "array":
            assert value and all(isinstance(x, str) for x in value), (t.code, name)
        if "additionalProperties" in prop:
            assert all(_is(v, prop["additionalProperties"]["type"]) for v in value.values()), (t.code, name)
    if t.structure == "tracking" and "click" in t.code:
        assert data["link_url"].startswith("https://")
    if t.structure == "tracking":
        assert data["country"] == ".ru"


def check_ingest(ev: dict[str, Any]) -> None:
    res = parse_event(msgspec.json.encode(ev), 0, account_id=1)
    assert isinstance(res, NewEvent), (ev["event_type"], res)
    stored = json.loads(res.payload)
    assert stored["account_id"] == 1 and stored["is_test"] is ev["is_test"] and stored["id"] == res.id
    delivered = event_schema(ev["event_type"], delivered=True)
    assert set(delivered["required"]) <= set(stored)


@pytest.mark.parametrize("code", CODES)
def test_generated_event_is_valid(code: str) -> None:
    rng = random.Random(code)
    for _ in range(5):
        ev = make_event(code, rng)
        assert ev["event_type"] == code
        check_event(ev)
        check_ingest(ev)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), code=st.sampled_from(CODES), list_id=st.integers(1, 10**6))
def test_generated_events_property(seed: int, code: str, list_id: int) -> None:
    ev = make_event(code, random.Random(seed), list_ids=(list_id,))
    assert ev["list_id"] == list_id
    check_event(ev)
    check_ingest(ev)


def test_make_event_is_reproducible_and_dated() -> None:
    a = make_event("click", random.Random(7), at_ns=1_520_169_199_034_315_796)
    b = make_event("click", random.Random(7), at_ns=1_520_169_199_034_315_796)
    assert a == b
    assert a["event_date"] == "2018-03-04T13:13:19.034315796Z"


def test_traffic_cover_all_then_weighted() -> None:
    events = list(traffic(random.Random(1), 5000, cover_all=True))
    assert [e["event_type"] for e in events[:80]] == CODES
    for ev in events:
        check_event(ev)
    counts: dict[str, int] = {}
    for ev in events[80:]:
        counts[ev["event_type"]] = counts.get(ev["event_type"], 0) + 1
    top = sorted(counts, key=counts.__getitem__, reverse=True)[:2]
    assert set(top) == {"send", "deliv"}
    assert counts["send"] > counts.get("open", 0) > counts.get("click", 0) > counts.get("camp_error", 0)


def test_traffic_weights() -> None:
    assert set(default_weights()) == set(CODES) and all(w > 0 for w in default_weights().values())
    only = list(traffic(random.Random(2), 50, {"viber_read": 1, "popup_open": 0}))
    assert {e["event_type"] for e in only} == {"viber_read"}
    with pytest.raises(ValueError):
        list(traffic(random.Random(2), 5, {"nope": 1}))
    with pytest.raises(ValueError):
        list(traffic(random.Random(2), 10, cover_all=True))
