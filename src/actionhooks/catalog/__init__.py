"""The catalogue of event types: data in ``event_types.json``, checked against the product owner's seed.

``catalog()`` returns the loaded :class:`Catalog` (cached). Each :class:`EventType` says its code (as sent in
messages), the interface name, the group (one of the seed's 16 sections), Russian and English descriptions and
which ``event_data`` structure the type uses (see ``docs/messages.md``).
"""

from __future__ import annotations

import functools
from importlib import resources

import msgspec


class EventType(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: str
    group: str
    group_ru: str
    group_en: str
    description_ru: str
    description_en: str
    structure: str
    has_profile: bool = True


class Catalog:
    """The event types, in the seed's order."""

    def __init__(self, types: list[EventType]) -> None:
        self.types: tuple[EventType, ...] = tuple(types)
        self.by_code: dict[str, EventType] = {t.code: t for t in types}
        self.codes: frozenset[str] = frozenset(self.by_code)

    def __contains__(self, code: object) -> bool:
        return code in self.by_code

    def __len__(self) -> int:
        return len(self.types)

    def get(self, code: str) -> EventType | None:
        return self.by_code.get(code)


@functools.cache
def catalog() -> Catalog:
    data = resources.files(__package__).joinpath("event_types.json").read_bytes()
    return Catalog(msgspec.json.decode(data, type=list[EventType]))
