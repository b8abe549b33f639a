"""The catalogue against the product owner's seed; schemas; the samples generated from them; the demo's traffic.

The seed is read from ``../shared/seed/event-types.ru.txt`` beside the repository (override with the
``ACTIONHOOKS_SEED`` environment variable). Where it is missing — any clone but this project's own checkout — the
tests that need it skip and say why; this repository's CI sets ``ACTIONHOOKS_REQUIRE_SEED=1`` (``.ci/run``), which
turns the skip into a failure there.

Schemas are checked against the JSON Schema 2020-12 metaschema and every sample is validated against its type's
schema with ``jsonschema`` (a dev dependency), formats included.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from actionhooks.catalog import catalog
from actionhooks.catalog.samples import all_samples, sample
from actionhooks.catalog.schemas import DIALECT, STRUCTURES, all_schemas, event_schema
from actionhooks.catalog.seed import parse_seed, read_seed
from actionhooks.devtools.traffic import default_weights, traffic
from actionhooks.errors import SeedError
from actionhooks.events import NewEvent, parse_event

NO_PROFILE = {"campaign_launch", "camp_error"}
PROFILE_FIELDS = ("profile_id", "_xxh", "_md5", "custom_data")
CODES = [t.code for t in catalog().types]
REPO = Path(__file__).parents[1]


def seed_path() -> Path:
    override = os.environ.get("ACTIONHOOKS_SEED")
    return Path(override) if override else REPO.parent / "shared" / "seed" / "event-types.ru.txt"


@pytest.fixture(scope="module")
def seed_rows() -> list[Any]:
    path = seed_path()
    if not path.is_file():
        why = f"seed file not found: {path} (set ACTIONHOOKS_SEED to its path)"
        if os.environ.get("ACTIONHOOKS_REQUIRE_SEED") == "1":
            pytest.fail(why)
        pytest.skip(why)
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


@pytest.mark.parametrize("delivered", [False, True])
def test_schemas_are_valid_json_schemas(delivered: bool) -> None:
    schemas = all_schemas(delivered=delivered)
    assert list(schemas) == CODES
    for code, schema in schemas.items():
        assert schema["$schema"] == DIALECT
        Draft202012Validator.check_schema(schema)
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


def test_schemas_refuse_what_they_should() -> None:
    send, camp_error = validator("send"), validator("camp_error")
    good = sample("send", 1)
    assert not list(send.iter_errors(good))
    assert list(send.iter_errors({**good, "event_date": "yesterday"}))
    assert list(
        send.iter_errors({**good, "event_data": {"message_id": 1}})
    )  # campaign_id, segment_id missing
    assert list(send.iter_errors({**good, "_md5": "not-hex"}))
    assert list(
        camp_error.iter_errors({**sample("camp_error", 1), "profile_id": "p1"})
    )  # no recipient profile


def test_event_schema_returns_a_copy_and_rejects_unknown_codes() -> None:
    event_schema("send")["properties"].clear()
    assert event_schema("send")["properties"]
    with pytest.raises(KeyError):
        event_schema("no_such_type")


# --- samples ---------------------------------------------------------------------------------------------

_VALIDATORS: dict[tuple[str, bool], Draft202012Validator] = {}


def validator(code: str, delivered: bool = False) -> Draft202012Validator:
    key = (code, delivered)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = Draft202012Validator(
            event_schema(code, delivered=delivered), format_checker=FormatChecker()
        )
    return _VALIDATORS[key]


def check_sample(ev: dict[str, Any]) -> None:
    """A sample is valid by its type's schema, leaves ``id`` and ``account_id`` to ingest, and is coherent."""
    t = catalog().by_code[ev["event_type"]]
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(t.code).iter_errors(ev)
    ]
    assert errors == [], (t.code, errors)
    assert "account_id" not in ev and "id" not in ev
    assert set(ev["event_data"]) <= set(STRUCTURES[t.structure].properties), (
        t.code
    )  # nothing the schema lacks
    if t.has_profile:
        email = ev["custom_data"]["email"].encode()
        assert ev["_xxh"] == xxhash.xxh64(email).hexdigest()
        assert ev["_md5"] == hashlib.md5(email).hexdigest()
        assert {"email", "name", "city"} <= set(ev["custom_data"])


def check_ingest(ev: dict[str, Any]) -> None:
    """Ingest accepts the sample, and what it stores is valid by the delivered form of the schema."""
    res = parse_event(msgspec.json.encode(ev), 0, account_id=1)
    assert isinstance(res, NewEvent), (ev["event_type"], res)
    stored = json.loads(res.payload)
    assert stored["account_id"] == 1 and stored["is_test"] is ev["is_test"] and stored["id"] == res.id
    assert list(validator(ev["event_type"], delivered=True).iter_errors(stored)) == []


@pytest.mark.parametrize("code", CODES)
def test_sample_is_valid(code: str) -> None:
    rng = random.Random(code)
    for _ in range(5):
        ev = sample(code, rng)
        assert ev["event_type"] == code
        check_sample(ev)
        check_ingest(ev)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), code=st.sampled_from(CODES), list_id=st.integers(1, 10**6))
def test_samples_property(seed: int, code: str, list_id: int) -> None:
    ev = sample(code, random.Random(seed), list_ids=(list_id,))
    assert ev["list_id"] == list_id
    check_sample(ev)
    check_ingest(ev)


def test_sample_is_reproducible_from_a_seed_and_dated() -> None:
    at = 1_520_169_199_034_315_796
    assert sample("click", 7, at_ns=at) == sample("click", random.Random(7), at_ns=at)
    assert sample("click", 7, at_ns=at) != sample("click", 8, at_ns=at)
    assert sample("click", 7, at_ns=at)["event_date"] == "2018-03-04T13:13:19.034315796Z"
    assert all_samples(3, at_ns=at) == all_samples(3, at_ns=at)
    assert list(all_samples(3)) == CODES


def test_optional_fields_appear_where_they_apply() -> None:
    def fields(code: str) -> set[str]:
        return set().union(*(sample(code, seed)["event_data"] for seed in range(30)))

    assert "link_url" in fields("click") and "link_url" not in fields("open")
    assert sample("click", 1)["event_data"]["link_url"].startswith("https://")
    assert "extra_uid" in fields("open_push") and "extra_uid" not in fields("open")
    assert {"reason", "provider_code"} <= fields("hbounce") and "reason" not in fields("deliv")
    assert "order_id" in fields("promocode_activate") and "order_id" not in fields("promocode_attach")
    assert sample("import_file", 1)["event_data"]["source"] == "file"
    assert sample("profile_split", 1)["event_data"]["operation"] == "split"
    places = {(e["city"], e["region"], e["postal_code"], e["tz"]) for e in client_data()}
    assert (
        len({p[0] for p in places}) == len(places) > 1
    )  # a city comes with its own region, postal code, zone
    assert {e["country"] for e in client_data()} == {".ru"}
    with pytest.raises(KeyError):
        sample("no_such_type")


CLIENT_CODES = [c for c in CODES if catalog().by_code[c].structure in ("tracking", "pixel", "popup")] * 3


def client_data() -> list[dict[str, Any]]:
    """``event_data`` of samples of the types that carry the recipient's client fields, each from its own seed."""
    return [sample(code, seed)["event_data"] for seed, code in enumerate(CLIENT_CODES)]


# --- the demo's traffic ----------------------------------------------------------------------------------


def test_traffic_cover_all_then_weighted() -> None:
    events = list(traffic(random.Random(1), 5000, cover_all=True))
    assert [e["event_type"] for e in events[:80]] == CODES
    for ev in events[:400]:
        check_sample(ev)
    counts: dict[str, int] = {}
    for ev in events[80:]:
        counts[ev["event_type"]] = counts.get(ev["event_type"], 0) + 1
    top = sorted(counts, key=counts.__getitem__, reverse=True)[:2]
    assert set(top) == {"send", "deliv"}
    assert counts["send"] > counts.get("open", 0) > counts.get("click", 0) > counts.get("camp_error", 0)


def test_traffic_is_reproducible_from_its_rng() -> None:
    def types(seed: int) -> list[str]:
        return [e["event_type"] for e in traffic(random.Random(seed), 200)]

    assert types(5) == types(5) != types(6)


def test_traffic_weights() -> None:
    assert set(default_weights()) == set(CODES) and all(w > 0 for w in default_weights().values())
    only = list(traffic(random.Random(2), 50, {"viber_read": 1, "popup_open": 0}))
    assert {e["event_type"] for e in only} == {"viber_read"}
    with pytest.raises(ValueError):
        list(traffic(random.Random(2), 5, {"nope": 1}))
    with pytest.raises(ValueError):
        list(traffic(random.Random(2), 10, cover_all=True))


# --- a clone with no seed beside it ----------------------------------------------------------------------


def test_a_clone_without_the_seed_skips_the_seed_tests_with_the_reason(tmp_path: Path) -> None:
    """``make test`` on a user's clone, where no ``../shared/`` exists: this file passes, the seed tests skip."""
    clone = tmp_path / "actionhooks"
    clone.mkdir()
    for part in ("src", "tests"):
        shutil.copytree(REPO / part, clone / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", clone)
    env = {k: v for k, v in os.environ.items() if k not in ("ACTIONHOOKS_SEED", "ACTIONHOOKS_REQUIRE_SEED")}
    env["PYTHONPATH"] = str(clone / "src")
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_catalog.py"]
    command += ["-k", "not a_clone_without_the_seed"]
    done = subprocess.run(command, cwd=clone, capture_output=True, text=True, timeout=300, env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    missing = clone.parent / "shared" / "seed" / "event-types.ru.txt"
    assert done.stdout.count(f"seed file not found: {missing}") == 2, done.stdout  # the two seed tests
    assert re.search(r"^\d+ passed, 2 skipped, 1 deselected in ", done.stdout, re.M), done.stdout

    env["ACTIONHOOKS_REQUIRE_SEED"] = "1"  # this repository's CI: the seed must be there
    done = subprocess.run([*command, "-x"], cwd=clone, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1 and "seed file not found" in done.stdout, done.stdout
