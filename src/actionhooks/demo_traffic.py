"""Realistic synthetic events for the demo and the benchmarks.

``make_event(code, rng)`` builds one message of the given type as a producer would send it to ingest: the
envelope of REFERENCE §2 (no ``account_id``: the API key supplies it; no ``id``: ingest assigns one) with
``event_data`` in the type's structure (``catalog/schemas.py``). ``traffic(rng, n)`` draws types with the
weights of a typical account: sends and deliveries dominate, opens and clicks are fewer, errors rare.

Everything is drawn from the ``rng`` given, so a seeded ``random.Random`` gives the same events every time,
except ``event_date``, which is "now" unless ``at_ns`` is given. Addresses use the reserved ``example.*``
domains and links point at ``example.com``: nothing generated names a real mailbox or site.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import xxhash

from .catalog import EventType, catalog

Event = dict[str, Any]


def _rows(text: str) -> list[list[str]]:
    """The rows of a ``|``-separated table written in this module, cells stripped."""
    return [[c.strip() for c in line.split("|")] for line in text.strip().splitlines()]


def _pairs(text: str) -> dict[str, float]:
    """``name=number`` pairs separated by white space."""
    return {k: float(v) for k, _, v in (item.partition("=") for item in text.split())}


# name in Russian | its Latin spelling for the email address
_NAMES = [
    tuple(r)
    for r in _rows("""
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
]
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

# Relative frequencies: sends and deliveries dominate, then opens, clicks; errors are rare.
_WEIGHTS = _pairs("""
send=400 deliv=380 reply=0.5 uopen=60 open=90 uclick=15 click=25 confirm=0.5 confirmsub=1 unsub=1 complain=0.3
sbounce=6 hbounce=4 suppress=3 undeliv=5 read=25 glanced=20 skimmed=15 import_manual=0.3 import_file=3
import_api=8 send_sms=80 click_sms=5 uclick_sms=4 deliv_sms=75 undeliv_sms=3 unsub_sms=0.3 uopen_push=25
open_push=30 send_push=150 click_push=8 uclick_push=6 deliv_push=130 undeliv_push=4 sbounce_push=3
hbounce_push=2 unsub_api=0.5 campaign_launch=0.05 camp_error=0.02 pixel_open=20 promocode_attach=2
promocode_detach=0.3 promocode_activate=0.8 segs_add=2 segs_remove=0.5 profile_merge=0.2 profile_split=0.05
popup_post=1.5 popup_click=3 popup_error=0.1 popup_bounce=0.05 popup_close=5 popup_open=10 popup_custom=0.5
""")
# Messenger types (Telegram, WhatsApp, Viber), by the last part of their code.
_MESSENGER_WEIGHTS = _pairs("send=20 deliv=18 read=10 click=2 uclick=1.5 undeliv=1 subscribe=0.5 unsub=0.2")


def _weight(t: EventType) -> float:
    if t.code in _WEIGHTS:
        return _WEIGHTS[t.code]
    return _MESSENGER_WEIGHTS.get(t.code.rsplit("_", 1)[-1], 1.0)


def default_weights() -> dict[str, float]:
    """The relative frequency of every event type in generated traffic, by code."""
    return {t.code: _weight(t) for t in catalog().types}


def format_event_date(ns: int) -> str:
    """RFC 3339 UTC with 9-digit nanoseconds, e.g. ``2018-03-04T13:13:19.034315796Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


_CHANNELS = frozenset(("email", "sms", "push", "telegram_bot", "telegram_group", "whatsapp", "viber"))


def _channel(t: EventType) -> str:
    return t.group if t.group in _CHANNELS else "email"


def _page(rng: random.Random) -> str:
    return f"https://shop.example.com{rng.choice(_PAGES)}"


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _client(rng: random.Random, mobile: bool) -> dict[str, Any]:
    city, region, postal, tz, lat, lon, _ = rng.choices(_CITIES, weights=_CITY_WEIGHTS)[0]
    os_name, browser, device, ua = rng.choice(_MOBILE if mobile else _AGENTS)
    return {
        "ip": f"{rng.choice(_IP_PREFIXES)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "country": ".ru",
        "city": city,
        "postal_code": postal,
        "region": region,
        "tz": tz,
        "lat": round(float(lat) + rng.uniform(-0.05, 0.05), 4),
        "lon": round(float(lon) + rng.uniform(-0.05, 0.05), 4),
        "user_agent": ua,
        "os": os_name,
        "browser": browser,
        "device": device,
    }


def _message_refs(rng: random.Random) -> dict[str, Any]:
    return {
        "message_id": rng.randrange(1, 300),
        "campaign_id": rng.randrange(100, 2000),
        "segment_id": rng.choice((0, 0, 0, rng.randrange(1, 120))),
        "resource_id": rng.randrange(1, 20),
        "launch_id": _hex(rng, 24),
        "send_message_id": _hex(rng, 32),
    }


def _link(rng: random.Random, t: EventType, data: dict[str, Any]) -> str:
    if t.code in ("confirm", "confirmsub"):
        return f"https://example.com/confirm/{_hex(rng, 20)}"
    if t.code.startswith("unsub"):
        return f"https://example.com/unsubscribe/{_hex(rng, 20)}"
    utm = f"utm_source={_channel(t)}&utm_medium=campaign&utm_campaign=c{data['campaign_id']}"
    return f"{_page(rng)}?{utm}"


def _tracking(t: EventType, rng: random.Random) -> dict[str, Any]:
    data = _message_refs(rng)
    data.update(_client(rng, mobile=t.group not in ("email",)))
    if "click" in t.code or t.code in ("confirm", "confirmsub", "unsub", "unsub_sms"):
        data["link_url"] = _link(rng, t, data)
    if t.group == "push":
        data["extra_uid"] = _hex(rng, 32)
    return data


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


def _delivery(t: EventType, rng: random.Random) -> dict[str, Any]:
    data = _message_refs(rng)
    if t.code in _FAILURES:
        code, reason = rng.choice(_FAILURES[t.code])
        data["reason"] = reason
        if code:
            data["provider_code"] = code
    if t.group == "push":
        data["extra_uid"] = _hex(rng, 32)
    return data


def _import(t: EventType, rng: random.Random) -> dict[str, Any]:
    source = t.code.removeprefix("import_")
    data: dict[str, Any] = {"import_id": rng.randrange(1, 5000), "source": source}
    data["created"] = rng.random() < 0.7
    if source == "file":
        data["file_name"] = rng.choice(("subscribers.csv", "clients_2024.xlsx", "loyalty_export.csv"))
    if source != "api":
        data["user"] = rng.choice(("manager@example.com", "marketing@example.com"))
    return data


def _subscription(t: EventType, rng: random.Random) -> dict[str, Any]:
    if t.group == "unsub_api":
        reason = rng.choice(("user request via support", "CRM opt-out"))
        channel = rng.choice(("email", "sms", "push", "all"))
        return {"channel": channel, "status": "unsubscribed", "source": "api", "reason": reason}
    status = "subscribed" if t.code.endswith("_subscribe") else "unsubscribed"
    data: dict[str, Any] = {"channel": t.group, "status": status, "resource_id": rng.randrange(1, 5)}
    return data | {"subscription_id": str(rng.randrange(10**8, 10**10)), "source": "user"}


_CAMPAIGN_NAMES = ("Весенняя распродажа", "Дайджест недели", "Брошенная корзина")
_CAMPAIGN_ERRORS = (
    ("template_render_failed", "Template rendering failed: unknown variable {{ first_name }}"),
    ("resource_disabled", "The sending resource is disabled"),
    ("segment_empty", "The segment has no subscribed profiles"),
    ("quota_exceeded", "The account's sending quota is exhausted"),
)


def _campaign(rng: random.Random) -> dict[str, Any]:
    ids = {"campaign_id": rng.randrange(100, 2000), "launch_id": _hex(rng, 24)}
    return ids | {
        "message_id": rng.randrange(1, 300),
        "channel": rng.choice(("email", "sms", "push", "viber")),
    }


def _campaign_launch(t: EventType, rng: random.Random) -> dict[str, Any]:
    data = _campaign(rng) | {"campaign_name": rng.choice(_CAMPAIGN_NAMES), "segment_id": rng.randrange(120)}
    kind = rng.choice(("regular", "trigger", "auto"))
    return data | {"campaign_type": kind, "recipients": rng.randrange(100, 500_000)}


def _campaign_error(t: EventType, rng: random.Random) -> dict[str, Any]:
    code, text = rng.choice(_CAMPAIGN_ERRORS)
    return _campaign(rng) | {"error_code": code, "error_text": text}


def _pixel(t: EventType, rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {"pixel_id": rng.randrange(1, 10), "url": _page(rng)}
    if rng.random() < 0.5:
        data["referrer"] = "https://www.example.net/search"
    utm = rng.choice(("email", "sms", "push"))
    data["params"] = {"utm_source": utm, "utm_campaign": f"c{rng.randrange(100, 2000)}"}
    return data | _client(rng, mobile=rng.random() < 0.6)


def _promocode(t: EventType, rng: random.Random) -> dict[str, Any]:
    code = "SALE-" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
    data: dict[str, Any] = {"promocode": code, "pool_id": rng.randrange(1, 30)}
    data["promocode_id"] = rng.randrange(10**6)
    if t.code == "promocode_attach":
        data |= {"campaign_id": rng.randrange(100, 2000), "message_id": rng.randrange(1, 300)}
        data["expires_at"] = format_event_date((int(time.time()) + 30 * 86400) * 10**9)
    elif t.code == "promocode_activate":
        data["order_id"] = f"ORD-{rng.randrange(10**6, 10**7)}"
    return data


def _segment(t: EventType, rng: random.Random) -> dict[str, Any]:
    n = rng.randrange(1, 400)
    return {"segment_id": n, "segment_name": f"Импорт {n}", "import_id": rng.randrange(1, 5000)}


def _profile_merge(t: EventType, rng: random.Random) -> dict[str, Any]:
    many, one = [_hex(rng, 24) for _ in range(rng.randrange(2, 4))], [_hex(rng, 24)]
    merge = t.code == "profile_merge"
    sources, targets = (many, one) if merge else (one, many)
    data = {"operation": "merge" if merge else "split", "request_id": _hex(rng, 16)}
    return data | {"source_profile_ids": sources, "target_profile_ids": targets}


_POPUP_EXTRA: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "click": lambda rng: {"element": rng.choice(("button.cta", "a.promo-link", "img.banner"))},
    "post": lambda rng: {"form_data": {"email": "visitor@example.com", "consent": True}},
    "error": lambda rng: {"error_text": "invalid email format"},
    "bounce": lambda rng: {"error_text": "form submission failed: HTTP 502"},
    "custom": lambda rng: {"custom_event": rng.choice(("scroll_50", "video_play", "quiz_done"))},
}


def _popup(t: EventType, rng: random.Random) -> dict[str, Any]:
    n = rng.randrange(1, 40)
    data: dict[str, Any] = {"popup_id": n, "popup_name": f"Подписка {n}", "page_url": _page(rng)}
    extra = _POPUP_EXTRA.get(t.code.removeprefix("popup_"))
    if extra is not None:
        data |= extra(rng)
    return data | _client(rng, mobile=rng.random() < 0.6)


_BUILDERS: dict[str, Callable[[EventType, random.Random], dict[str, Any]]] = {
    "tracking": _tracking, "delivery": _delivery, "import": _import, "subscription": _subscription,
    "campaign_launch": _campaign_launch, "campaign_error": _campaign_error, "pixel": _pixel,
    "promocode": _promocode, "segment": _segment, "profile_merge": _profile_merge, "popup": _popup,
}  # fmt: skip


def _profile(t: EventType, rng: random.Random) -> dict[str, Any]:
    k = rng.randrange(1, 50_000)
    name, latin = _NAMES[k % len(_NAMES)]
    email = f"{latin}{k}@{_MAIL_DOMAINS[k % len(_MAIL_DOMAINS)]}"
    custom: dict[str, Any] = {"email": email, "name": name, "city": _CITIES[k % len(_CITIES)][0]}
    if t.group in ("sms", "whatsapp", "viber"):
        custom["phone"] = f"+79{(k * 7919) % 10**9:09d}"
    return {
        "profile_id": hashlib.blake2b(str(k).encode(), digest_size=12).hexdigest(),
        "_xxh": xxhash.xxh64(email.encode()).hexdigest(),
        "_md5": hashlib.md5(email.encode()).hexdigest(),
        "custom_data": custom,
    }


def make_event(
    code: str, rng: random.Random, *, list_ids: Sequence[int] = (1, 2, 3), at_ns: int | None = None
) -> Event:
    """One valid message of type ``code`` (KeyError if unknown), dated ``at_ns`` (default: now, jittered)."""
    t = catalog().by_code[code]
    ns = (time.time_ns() - rng.randrange(0, 2 * 10**9)) if at_ns is None else at_ns
    data = _BUILDERS[t.structure](t, rng)
    ev: Event = {"event_type": code, "event_date": format_event_date(ns)}
    profile = _profile(t, rng) if t.has_profile else None
    if profile is not None:
        ev.update(profile_id=profile["profile_id"], _xxh=profile["_xxh"], _md5=profile["_md5"])
    ev["list_id"] = rng.choice(list_ids)
    ev["is_test"] = rng.random() < 0.01
    if t.code.startswith(("send", "sbounce")) or t.code.endswith("_send"):
        ev["is_static"] = rng.random() < 0.3
        if rng.random() < 0.1:
            ev["sends_trying_num"] = rng.randrange(1, 4)
    ev["event_data"] = data
    if profile is not None:
        ev["custom_data"] = profile["custom_data"]
    return ev


def traffic(
    rng: random.Random,
    n: int,
    weights: Mapping[str, float] | None = None,
    *,
    cover_all: bool = False,
    list_ids: Sequence[int] = (1, 2, 3),
) -> Iterator[Event]:
    """``n`` events with types drawn by ``weights`` (code → relative frequency; default :func:`default_weights`).

    With ``cover_all`` the first events are one of each type, in catalogue order (``n`` must be at least the
    number of types). Unknown codes in ``weights`` raise ValueError; codes missing from it are not drawn.
    """
    w = default_weights() if weights is None else dict(weights)
    unknown = set(w) - catalog().codes
    if unknown:
        raise ValueError(f"unknown event types in weights: {sorted(unknown)}")
    codes = [c for c, x in w.items() if x > 0]
    if not codes:
        raise ValueError("weights select no event type")
    cum = list(itertools.accumulate(w[c] for c in codes))
    first: list[str] = []
    if cover_all:
        first = [t.code for t in catalog().types]
        if n < len(first):
            raise ValueError(f"cover_all needs n >= {len(first)}, got {n}")
    for i in range(n):
        code = first[i] if i < len(first) else rng.choices(codes, cum_weights=cum)[0]
        yield make_event(code, rng, list_ids=list_ids)
