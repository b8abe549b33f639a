"""Sample messages of every event type, generated from the catalogue's JSON Schemas (``schemas.py``).

``sample(code, rng)`` builds one message as a producer sends it to ingest (the ``event_schema(code)`` form). The
schema decides which fields there are, which are required, their JSON types, enums and bounds; what a field *is*
(its name, within the type's structure) decides a realistic value: a Russian city with its region, postal code,
time zone and coordinates; a browser's User-Agent with its OS and device; an SMTP reply with its reason; a profile
whose ``_xxh`` and ``_md5`` are the hashes of its ``custom_data.email``. An optional field appears where it applies
to the type (``link_url`` on clicks, ``extra_uid`` on push, ``order_id`` on a promo code's activation, …) and is
left out elsewhere; ``id``, ``account_id`` and the fields a producer rarely sends are left to ingest. A field with
no realistic value known here gets a plain one of its schema's type, so a structure that gains a field still
samples valid messages; a field with a ``pattern`` must have a realistic value (``ValueError`` otherwise).

Everything is drawn from the ``rng`` given (a ``random.Random`` or a seed), so a seed gives the same message
every time, except ``event_date``, which is "now" unless ``at_ns`` is given. Addresses use the reserved
``example.*`` domains and links point at ``example.com``: nothing sampled names a real mailbox or site.

Used by the test event (``POST /v1/hooks/{id}/test``), the demo's traffic (``devtools.traffic``) and the tests,
which validate every sample against its schema.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import xxhash

from . import EventType, catalog
from .schemas import Schema, event_schema

Message = dict[str, Any]


def format_event_date(ns: int) -> str:
    """RFC 3339 UTC with 9-digit nanoseconds, e.g. ``2018-03-04T13:13:19.034315796Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _rows(text: str) -> list[list[str]]:
    """The rows of a ``|``-separated table written in this module, cells stripped."""
    return [[c.strip() for c in line.split("|")] for line in text.strip().splitlines()]


# name in Russian | its Latin spelling for the email address
_NAMES = _rows("""
Анна Смирнова | anna.smirnova
Иван Петров | ivan.petrov
Мария Иванова | maria.ivanova
Алексей Кузнецов | alexey.kuznetsov
Екатерина Попова | ekaterina.popova
Дмитрий Соколов | dmitry.sokolov
Ольга Лебедева | olga.lebedeva
Сергей Козлов | sergey.kozlov
Наталья Новикова | natalia.novikova
Андрей Морозов | andrey.morozov
Татьяна Волкова | tatiana.volkova
Михаил Фёдоров | mikhail.fedorov
""")
_MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
# city | region | postal code | time zone | lat | lon | share of traffic
_CITIES = _rows("""
Москва | Москва | 101000 | Europe/Moscow | 55.7558 | 37.6173 | 40
Санкт-Петербург | Санкт-Петербург | 190000 | Europe/Moscow | 59.9343 | 30.3351 | 15
Новосибирск | Новосибирская область | 630000 | Asia/Novosibirsk | 55.0084 | 82.9357 | 6
Екатеринбург | Свердловская область | 620000 | Asia/Yekaterinburg | 56.8389 | 60.6057 | 6
Казань | Республика Татарстан | 420000 | Europe/Moscow | 55.7961 | 49.1064 | 5
Нижний Новгород | Нижегородская область | 603000 | Europe/Moscow | 56.2965 | 43.9361 | 5
Краснодар | Краснодарский край | 350000 | Europe/Moscow | 45.0355 | 38.9753 | 5
Самара | Самарская область | 443000 | Europe/Samara | 53.1959 | 50.1002 | 4
Владивосток | Приморский край | 690000 | Asia/Vladivostok | 43.1155 | 131.8855 | 2
""")
_CITY_WEIGHTS = [float(r[6]) for r in _CITIES]
_IP_PREFIXES = ("95.24", "178.176", "217.118", "188.162", "5.18", "46.242", "83.220", "91.77", "213.87")
_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0"
_IOS = "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
# os | browser | device | user agent
_AGENTS = _rows(f"""
Windows | Chrome | desktop | {_WIN} Safari/537.36
Windows | Yandex Browser | desktop | {_WIN} YaBrowser/24.4.0.0 Safari/537.36
macOS | Safari | desktop | Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) \
Version/17.4 Safari/605.1.15
Linux | Firefox | desktop | Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0
iOS | Mobile Safari | mobile | Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) {_IOS}
Android | Chrome Mobile | mobile | Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) \
Chrome/124.0.0.0 Mobile Safari/537.36
iOS | Mobile Safari | tablet | Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) {_IOS}
""")
_MOBILE = [a for a in _AGENTS if a[2] != "desktop"]
_PAGES = ("/", "/catalog/sale", "/catalog/new", "/product/12345", "/cart", "/blog/spring-collection")
_CHANNELS = frozenset(("email", "sms", "push", "telegram_bot", "telegram_group", "whatsapp", "viber"))

# event type | provider code (may be empty) | reason
_FAILURES: dict[str, list[tuple[str, str]]] = {}
for _code, _provider, _reason in _rows("""
hbounce | 550 5.1.1 | user unknown
hbounce | 550 5.7.1 | rejected by recipient's policy
sbounce | 421 4.7.0 | try again later
sbounce | 452 4.2.2 | mailbox full
undeliv | 554 5.7.1 | message rejected as spam
undeliv | 550 5.4.1 | recipient address rejected
suppress | | stop list: hardbounced
suppress | | stop list: unsubscribed
complain | | feedback loop report
undeliv_sms | EXPIRED | validity period expired
undeliv_sms | REJECTD | rejected by the operator
undeliv_push | 410 | subscription expired
sbounce_push | 503 | push service unavailable
hbounce_push | UNREGISTERED | invalid subscription identifier
telegram_bot_undeliv | 403 | Forbidden: bot was blocked by the user
telegram_group_undeliv | 400 | Bad Request: chat not found
whatsapp_undeliv | 131026 | message undeliverable
viber_undeliv | REJECTED | rejected by Viber
viber_undeliv | REJECTED | rejected by Devino.Online
"""):
    _FAILURES.setdefault(_code, []).append((_provider, _reason))

_CAMPAIGN_NAMES = ("Весенняя распродажа", "Дайджест недели", "Брошенная корзина")
_CAMPAIGN_ERRORS = (
    ("template_render_failed", "Template rendering failed: unknown variable {{ first_name }}"),
    ("resource_disabled", "The sending resource is disabled"),
    ("segment_empty", "The segment has no subscribed profiles"),
    ("quota_exceeded", "The account's sending quota is exhausted"),
)
_POPUP_ERRORS = {"popup_error": "invalid email format", "popup_bounce": "form submission failed: HTTP 502"}


class _Omit:
    """A field that does not apply to the event type: left out of the message."""


OMIT: Final = _Omit()


class _Draw:
    """One message being sampled: its type, the random source, and the draws several fields share (the city of
    ``city``, ``region`` and ``tz``; the profile of ``profile_id``, ``_md5`` and ``custom_data``).

    A shared draw ``x`` is made by ``_draw_x`` on first use and kept as the attribute ``x`` (as
    ``functools.cached_property`` would, without its lock: the demo samples thousands of messages a second)."""

    mobile: bool
    city: list[str]
    agent: list[str]
    profile: tuple[str, dict[str, Any]]
    failure: tuple[str, str] | None
    campaign_error: tuple[str, str]
    campaign_id: int
    merged: tuple[list[str], list[str]]
    number: int

    def __init__(self, t: EventType, rng: random.Random, list_ids: Sequence[int], at_ns: int | None) -> None:
        self.t, self.code, self.rng, self.list_ids, self.at_ns = t, t.code, rng, list_ids, at_ns

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_draw_"):
            value = getattr(self, f"_draw_{name}")()
            setattr(self, name, value)
            return value
        raise AttributeError(name)

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def page(self) -> str:
        return f"https://shop.example.com{self.rng.choice(_PAGES)}"

    @property
    def channel(self) -> str:
        return self.t.group if self.t.group in _CHANNELS else "email"

    @property
    def sending(self) -> bool:
        """A send (the first try of a message, where sends_trying_num and is_static apply)."""
        return self.code.startswith(("send", "sbounce")) or self.code.endswith("_send")

    def _draw_mobile(self) -> bool:
        if self.t.structure == "tracking":
            return self.t.group != "email"
        return self.rng.random() < 0.6

    def _draw_city(self) -> list[str]:
        return self.rng.choices(_CITIES, weights=_CITY_WEIGHTS)[0]

    def _draw_agent(self) -> list[str]:
        return self.rng.choice(_MOBILE if self.mobile else _AGENTS)

    def _draw_profile(self) -> tuple[str, dict[str, Any]]:
        """The recipient's profile id and the profile fields a hook may pick (``custom_data``)."""
        k = self.rng.randrange(1, 50_000)
        name, latin = _NAMES[k % len(_NAMES)]
        email = f"{latin}{k}@{_MAIL_DOMAINS[k % len(_MAIL_DOMAINS)]}"
        custom: dict[str, Any] = {"email": email, "name": name, "city": _CITIES[k % len(_CITIES)][0]}
        if self.t.group in ("sms", "whatsapp", "viber"):
            custom["phone"] = f"+79{(k * 7919) % 10**9:09d}"
        return hashlib.blake2b(str(k).encode(), digest_size=12).hexdigest(), custom

    @property
    def email(self) -> bytes:
        return str(self.profile[1]["email"]).encode()

    def _draw_failure(self) -> tuple[str, str] | None:
        """(provider code, reason) of a failed or refused delivery; None for the others."""
        return self.rng.choice(_FAILURES[self.code]) if self.code in _FAILURES else None

    def _draw_campaign_error(self) -> tuple[str, str]:
        return self.rng.choice(_CAMPAIGN_ERRORS)

    def _draw_campaign_id(self) -> int:
        return self.rng.randrange(100, 2000)

    def _draw_merged(self) -> tuple[list[str], list[str]]:
        """(source, target) profile ids: many into one for a merge, one into many for a split."""
        many, one = [self.hex(24) for _ in range(self.rng.randrange(2, 4))], [self.hex(24)]
        return (many, one) if self.code == "profile_merge" else (one, many)

    def _draw_number(self) -> int:
        """The number of the popup or segment, in its name too."""
        return self.rng.randrange(1, 40 if self.t.structure == "popup" else 400)


Field = Callable[[_Draw], Any]


def _when(applies: Callable[[_Draw], bool], value: Field) -> Field:
    return lambda d: value(d) if applies(d) else OMIT


def _link(d: _Draw) -> Any:
    if d.code in ("confirm", "confirmsub"):
        return f"https://example.com/confirm/{d.hex(20)}"
    if d.code.startswith("unsub"):
        return f"https://example.com/unsubscribe/{d.hex(20)}"
    if "click" not in d.code:
        return OMIT
    return f"{d.page()}?utm_source={d.channel}&utm_medium=campaign&utm_campaign=c{d.campaign_id}"


def _failure(part: int) -> Field:
    return lambda d: (d.failure[part] or OMIT) if d.failure else OMIT


def _unsub_api(d: _Draw) -> bool:
    return d.code == "unsub_api"


def _push(d: _Draw) -> bool:
    return d.t.group == "push"


_PROFILE: dict[str, Field] = {
    "profile_id": lambda d: d.profile[0],
    "_xxh": lambda d: xxhash.xxh64(d.email).hexdigest(),
    "_md5": lambda d: hashlib.md5(d.email).hexdigest(),
    "custom_data": lambda d: dict(d.profile[1]),
}

# The envelope's fields (REFERENCE §2): realistic values, or OMIT where ingest or nobody sets them.
_ENVELOPE: dict[str, Field] = {
    "id": lambda d: OMIT,  # ingest assigns one
    "account_id": lambda d: OMIT,  # the API key says it
    "event_date": lambda d: format_event_date(
        time.time_ns() - d.rng.randrange(0, 2 * 10**9) if d.at_ns is None else d.at_ns
    ),
    "list_id": lambda d: d.rng.choice(d.list_ids),
    "is_test": lambda d: d.rng.random() < 0.01,
    "is_static": _when(lambda d: d.sending, lambda d: d.rng.random() < 0.3),
    "sends_trying_num": _when(lambda d: d.sending and d.rng.random() < 0.1, lambda d: d.rng.randrange(1, 4)),
    "subscription_hash_id": lambda d: OMIT,
    "subscription": lambda d: OMIT,
    **_PROFILE,
}

# Where the recipient was when they acted (the schemas' client fields).
_CLIENT: dict[str, Field] = {
    "ip": lambda d: f"{d.rng.choice(_IP_PREFIXES)}.{d.rng.randrange(256)}.{d.rng.randrange(1, 255)}",
    "country": lambda d: ".ru",
    "city": lambda d: d.city[0],
    "region": lambda d: d.city[1],
    "postal_code": lambda d: d.city[2],
    "tz": lambda d: d.city[3],
    "lat": lambda d: round(float(d.city[4]) + d.rng.uniform(-0.05, 0.05), 4),
    "lon": lambda d: round(float(d.city[5]) + d.rng.uniform(-0.05, 0.05), 4),
    "os": lambda d: d.agent[0],
    "browser": lambda d: d.agent[1],
    "device": lambda d: d.agent[2],
    "user_agent": lambda d: d.agent[3],
}

# ``event_data`` fields by name, whatever the structure.
_DATA: dict[str, Field] = {
    **_CLIENT,
    "message_id": lambda d: d.rng.randrange(1, 300),
    "campaign_id": lambda d: d.campaign_id,
    "segment_id": lambda d: d.rng.choice((0, 0, 0, d.rng.randrange(1, 120))),
    "resource_id": lambda d: d.rng.randrange(1, 20),
    "launch_id": lambda d: d.hex(24),
    "send_message_id": lambda d: d.hex(32),
    "link_url": _link,
    "extra_uid": _when(_push, lambda d: d.hex(32)),
    "reason": _failure(1),
    "provider_code": _failure(0),
    "import_id": lambda d: d.rng.randrange(1, 5000),
    "channel": lambda d: d.rng.choice(("email", "sms", "push", "viber")),
    "url": lambda d: d.page(),
    "page_url": lambda d: d.page(),
}

# ``event_data`` fields whose meaning depends on the structure, by "structure.field".
_STRUCTURE_DATA: dict[str, Field] = {
    "import.source": lambda d: d.code.removeprefix("import_"),
    "import.file_name": _when(
        lambda d: d.code == "import_file",
        lambda d: d.rng.choice(("subscribers.csv", "clients_2024.xlsx", "loyalty_export.csv")),
    ),
    "import.user": _when(
        lambda d: d.code != "import_api",
        lambda d: d.rng.choice(("manager@example.com", "marketing@example.com")),
    ),
    "import.created": lambda d: d.rng.random() < 0.7,
    "subscription.channel": lambda d: (
        d.rng.choice(("email", "sms", "push", "all")) if _unsub_api(d) else d.t.group
    ),
    "subscription.status": lambda d: "subscribed" if d.code.endswith("_subscribe") else "unsubscribed",
    "subscription.resource_id": _when(lambda d: not _unsub_api(d), lambda d: d.rng.randrange(1, 5)),
    "subscription.subscription_id": _when(
        lambda d: not _unsub_api(d), lambda d: str(d.rng.randrange(10**8, 10**10))
    ),
    "subscription.source": lambda d: "api" if _unsub_api(d) else "user",
    "subscription.reason": _when(
        _unsub_api, lambda d: d.rng.choice(("user request via support", "CRM opt-out"))
    ),
    "campaign_launch.campaign_name": lambda d: d.rng.choice(_CAMPAIGN_NAMES),
    "campaign_launch.segment_id": lambda d: d.rng.randrange(120),
    "campaign_launch.recipients": lambda d: d.rng.randrange(100, 500_000),
    "campaign_error.error_code": lambda d: d.campaign_error[0],
    "campaign_error.error_text": lambda d: d.campaign_error[1],
    "campaign_error.segment_id": lambda d: OMIT,
    "campaign_error.resource_id": lambda d: OMIT,
    "pixel.pixel_id": lambda d: d.rng.randrange(1, 10),
    "pixel.referrer": _when(lambda d: d.rng.random() < 0.5, lambda d: "https://www.example.net/search"),
    "pixel.params": lambda d: {
        "utm_source": d.rng.choice(("email", "sms", "push")),
        "utm_campaign": f"c{d.rng.randrange(100, 2000)}",
    },
    "promocode.promocode": lambda d: (
        "SALE-" + "".join(d.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
    ),
    "promocode.pool_id": lambda d: d.rng.randrange(1, 30),
    "promocode.promocode_id": lambda d: d.rng.randrange(10**6),
    "promocode.campaign_id": _when(
        lambda d: d.code == "promocode_attach", lambda d: d.rng.randrange(100, 2000)
    ),
    "promocode.message_id": _when(lambda d: d.code == "promocode_attach", lambda d: d.rng.randrange(1, 300)),
    "promocode.expires_at": _when(
        lambda d: d.code == "promocode_attach",
        lambda d: format_event_date((int(time.time()) + 30 * 86400) * 10**9),
    ),
    "promocode.order_id": _when(
        lambda d: d.code == "promocode_activate", lambda d: f"ORD-{d.rng.randrange(10**6, 10**7)}"
    ),
    "segment.segment_id": lambda d: d.number,
    "segment.segment_name": lambda d: f"Импорт {d.number}",
    "profile_merge.operation": lambda d: d.code.removeprefix("profile_"),
    "profile_merge.source_profile_ids": lambda d: d.merged[0],
    "profile_merge.target_profile_ids": lambda d: d.merged[1],
    "profile_merge.request_id": lambda d: d.hex(16),
    "popup.popup_id": lambda d: d.number,
    "popup.popup_name": lambda d: f"Подписка {d.number}",
    "popup.element": _when(
        lambda d: d.code == "popup_click",
        lambda d: d.rng.choice(("button.cta", "a.promo-link", "img.banner")),
    ),
    "popup.form_data": _when(
        lambda d: d.code == "popup_post", lambda d: {"email": "visitor@example.com", "consent": True}
    ),
    "popup.error_text": lambda d: _POPUP_ERRORS.get(d.code, OMIT),
    "popup.custom_event": _when(
        lambda d: d.code == "popup_custom", lambda d: d.rng.choice(("scroll_50", "video_play", "quiz_done"))
    ),
}


def _plain(d: _Draw, name: str, schema: Schema) -> Any:
    """A value of the field's schema when nothing more realistic is known (see the module's docstring)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return d.rng.choice(schema["enum"])
    kinds = schema.get("type", "string")
    kind = next(k for k in ([kinds] if isinstance(kinds, str) else kinds) if k != "null")
    if kind == "integer":
        return d.rng.randrange(int(schema.get("minimum", 1)), int(schema.get("maximum", 10_000)) + 1)
    if kind == "number":
        return round(d.rng.uniform(schema.get("minimum", 0), schema.get("maximum", 100)), 4)
    if kind == "boolean":
        return d.rng.random() < 0.5
    if kind == "array":
        return [_plain(d, name, schema.get("items", {})) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "object":
        return {}
    if "pattern" in schema:
        raise ValueError(f"{d.code}: no sample value for {name!r}, whose schema has a pattern")
    if schema.get("format") == "date-time":
        return format_event_date(time.time_ns())
    return f"{name}-{d.hex(8)}"


class _Slot(NamedTuple):
    """One field of a type's message: its name, schema and how its value is drawn (None: from the schema)."""

    name: str
    schema: Schema
    value: Field | None


@functools.cache
def _plan(code: str) -> tuple[tuple[_Slot, ...], tuple[_Slot, ...]]:
    """The envelope's and ``event_data``'s fields of ``code``'s schema, in schema order (cached: the demo samples
    thousands of messages a second)."""
    schema = event_schema(code)
    structure = catalog().by_code[code].structure
    envelope = tuple(
        _Slot(name, sub, _ENVELOPE.get(name))
        for name, sub in schema["properties"].items()
        if sub is not False and name != "event_data"  # False: the type carries no such field
    )
    data = tuple(
        _Slot(name, sub, _STRUCTURE_DATA.get(f"{structure}.{name}", _DATA.get(name)))
        for name, sub in schema["properties"]["event_data"]["properties"].items()
    )
    return envelope, data


def _fill(d: _Draw, slots: tuple[_Slot, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for slot in slots:
        value = _plain(d, slot.name, slot.schema) if slot.value is None else slot.value(d)
        if value is not OMIT:
            out[slot.name] = value
    return out


def sample(
    code: str,
    rng: random.Random | int | None = None,
    *,
    list_ids: Sequence[int] = (1, 2, 3),
    at_ns: int | None = None,
) -> Message:
    """One valid message of type ``code`` (KeyError if unknown) as a producer sends it to ingest.

    ``rng``: the random source, or a seed (None: a fresh unseeded one). ``list_ids``: the databases ``list_id`` is
    drawn from. ``at_ns``: the ``event_date`` in nanoseconds since the epoch (default: now, less up to 2 s).
    """
    t = catalog().by_code[code]
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    d = _Draw(t, rng, list_ids, at_ns)
    envelope, data = _plan(code)
    message = _fill(d, envelope)
    message["event_data"] = _fill(d, data)
    return message


def all_samples(seed: int = 0, *, at_ns: int | None = None) -> dict[str, Message]:
    """One sample of every event type, by code in catalogue order, all drawn from one ``seed``."""
    rng = random.Random(seed)
    return {t.code: sample(t.code, rng, at_ns=at_ns) for t in catalog().types}
