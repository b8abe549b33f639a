"""Where a tracking endpoint's visitor is, from a MaxMind DB file (``ACTIONHOOKS_GEOIP_DB``) — never guessed.

Any database in the MaxMind DB format with the GeoIP2 / GeoLite2 *City* layout serves (MaxMind's GeoLite2-City or
GeoIP2-City, DB-IP's "IP to City Lite" in mmdb form, …); a *Country* database gives the country alone. It is read
with MaxMind's own reader (``maxminddb``, memory-mapped: lookups take microseconds and share the file's pages
between processes). The fields are the seed's (REFERENCE §2): ``country`` as a top-level domain (``.ru``; the
United Kingdom's is ``.uk``), ``city``, ``postal_code``, ``region`` (the first subdivision), ``tz`` (IANA),
``lat``, ``lon`` — each only when the database has it for the address. Names are taken in English.

Without a database, or for an address it does not know (a private one, say), no geo field is written.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import maxminddb

from ..errors import ConfigError

# ISO 3166-1 codes whose country-code top-level domain is not the code itself
_TLD_OF = {"GB": "uk"}


class GeoLocator:
    """A MaxMind DB opened once for the process; :meth:`locate` is safe from any thread."""

    def __init__(self, path: str) -> None:
        try:
            self._reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError(
                f"ACTIONHOOKS_GEOIP_DB {path!r} is not a readable MaxMind DB file: {exc}"
            ) from None
        self.database_type = str(self._reader.metadata().database_type)

    def locate(self, ip: str) -> dict[str, Any]:
        """The geo fields the database holds for ``ip`` (none for an address it does not know)."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return {}
        if address.version == 6 and self._reader.metadata().ip_version == 4:
            mapped = address.ipv4_mapped
            if mapped is None:
                return {}
            address = mapped
        try:
            found = self._reader.get(address)
        except (
            ValueError,
            OSError,
            maxminddb.InvalidDatabaseError,
        ):  # a damaged file: no place, never an error
            return {}
        return _fields(found) if isinstance(found, dict) else {}

    def close(self) -> None:
        self._reader.close()


def _name(record: Any) -> str | None:
    names = record.get("names") if isinstance(record, dict) else None
    if not isinstance(names, dict):
        return None
    name = names.get("en")
    return name if isinstance(name, str) and name else None


def _fields(found: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    country = found.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    if isinstance(code, str) and len(code) == 2 and code.isalpha():
        out["country"] = "." + _TLD_OF.get(code.upper(), code).lower()
    city = _name(found.get("city"))
    if city is not None:
        out["city"] = city
    postal = found.get("postal")
    postal_code = postal.get("code") if isinstance(postal, dict) else None
    if isinstance(postal_code, str) and postal_code:
        out["postal_code"] = postal_code
    subdivisions = found.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions:
        region = _name(subdivisions[0])
        if region is not None:
            out["region"] = region
    location = found.get("location")
    if isinstance(location, dict):
        tz = location.get("time_zone")
        if isinstance(tz, str) and tz:
            out["tz"] = tz
        lat, lon = location.get("latitude"), location.get("longitude")
        if (
            isinstance(lat, int | float)
            and isinstance(lon, int | float)
            and -90 <= lat <= 90
            and -180 <= lon <= 180
        ):
            out["lat"], out["lon"] = float(lat), float(lon)
    return out
