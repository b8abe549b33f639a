"""GeoIP (docs/capture.md#geo): with ``ACTIONHOOKS_GEOIP_DB`` set, the tracking endpoints' events carry the place
MaxMind's reader finds for the visitor's address in a real MaxMind DB file (written here by mmdb-writer, in the
GeoIP2-City layout); an address the database does not know, or no database, gives no geo field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from actionhooks.capture.geo import GeoLocator
from actionhooks.errors import ConfigError

from .support import Service, User, sqlite_service
from .test_tracking import IPHONE, fetch, logged, mint, path

KAZAN = {
    "country": {"iso_code": "RU", "names": {"en": "Russia", "ru": "Россия"}},
    "city": {"names": {"en": "Kazan", "ru": "Казань"}},
    "postal": {"code": "420000"},
    "subdivisions": [{"iso_code": "TA", "names": {"en": "Tatarstan Republic"}}],
    "location": {"time_zone": "Europe/Moscow", "latitude": 55.7887, "longitude": 49.1221},
}
LONDON = {
    "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
    "city": {"names": {"en": "London"}},
    "location": {"time_zone": "Europe/London", "latitude": 51.5142, "longitude": -0.0931},
}


@pytest.fixture
def city_db(tmp_path: Path) -> str:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    writer.insert_network(IPSet(["127.0.0.0/8", "81.2.69.0/24"]), KAZAN)
    writer.insert_network(IPSet(["2a02:db8::/32"]), LONDON)
    file = tmp_path / "city.mmdb"
    writer.to_db_file(str(file))
    return str(file)


def test_the_seeds_geo_fields_from_a_city_database(city_db: str) -> None:
    geo = GeoLocator(city_db)
    assert geo.database_type == "GeoIP2-City"
    assert geo.locate("81.2.69.160") == {
        "country": ".ru",
        "city": "Kazan",
        "postal_code": "420000",
        "region": "Tatarstan Republic",
        "tz": "Europe/Moscow",
        "lat": 55.7887,
        "lon": 49.1221,
    }
    london = geo.locate("2a02:db8::1")
    assert london["country"] == ".uk" and london["city"] == "London"  # the UK's top-level domain, not .gb
    assert "postal_code" not in london and "region" not in london  # what the database lacks stays absent
    assert geo.locate("8.8.8.8") == {}  # an address it does not know
    assert geo.locate("not an address") == {}
    geo.close()


def test_a_file_that_is_not_a_maxmind_db_fails_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "city.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(ConfigError, match="ACTIONHOOKS_GEOIP_DB"):
        GeoLocator(str(bad))


@pytest.fixture
async def located(tmp_path: Path, city_db: str) -> AsyncIterator[Service]:
    """The service on SQLite with the database configured (the tracking tests cover both engines without it)."""
    async with sqlite_service(tmp_path, geoip_db=city_db) as svc:
        yield svc


async def test_open_and_click_carry_the_visitors_place(located: Service) -> None:
    owner: User = await located.user("owner")
    made = await mint(located, owner)
    for url in (made["open_url"], made["click_url"]):
        status, _, _ = await fetch(located, "GET", path(url), {"User-Agent": IPHONE})
        assert status in (200, 302)
    messages: list[dict[str, Any]] = await logged(located, owner)
    raw = [m for m in messages if m["event_type"] in ("open", "click")]
    assert [m["event_type"] for m in raw] == ["open", "click"]
    for message in raw:
        data = message["event_data"]
        assert data["ip"] == "127.0.0.1"
        assert (data["country"], data["city"], data["tz"]) == (".ru", "Kazan", "Europe/Moscow")
        assert (data["lat"], data["lon"]) == (55.7887, 49.1221)
    assert msgspec.json.encode(messages)  # every message stays plain JSON
