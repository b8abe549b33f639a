"""The events the public tracking endpoints record: an open or a click from a verified token's claims and the
request's visitor (ip, user agent parsed, flags). They go through the same append and derivation as ingest."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import msgspec

from ..events import NewEvent
from ..ids import new_ids
from . import visitor
from .tokens import Claims

OPEN_TYPES = {"email": "open", "push": "open_push"}
CLICK_TYPES = {
    "email": "click",
    "push": "click_push",
    "sms": "click_sms",
    "viber": "viber_click",
    "whatsapp": "whatsapp_click",
    "telegram_bot": "telegram_bot_click",
}
_encode = msgspec.json.Encoder().encode


class Visit(NamedTuple):
    """What the request tells of its sender (``place``: the geo fields of its address, :mod:`.geo`)."""

    ip: str | None
    user_agent: str
    method: str
    place: Mapping[str, Any] = MappingProxyType({})


def event_date(now: float) -> str:
    """RFC 3339 UTC with microseconds (``Z``), as the log's messages carry it."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def visitor_data(visit: Visit) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if visit.ip:
        data["ip"] = visit.ip
    data.update(visit.place)
    if visit.user_agent:
        data["user_agent"] = visit.user_agent[:1024]
        found = visitor.agent(visit.user_agent)
        for name in ("os", "browser", "device"):
            value = getattr(found, name)
            if value is not None:
                data[name] = value
    return data


def tracking_event(
    claims: Claims,
    visit: Visit,
    *,
    click: bool,
    now: float | None = None,
    bursts: visitor.ClickBursts | None = None,
    extra: dict[str, Any] | None = None,
) -> NewEvent | None:
    """The ``open`` / ``click`` (of the token's channel) a fetch records; None when the channel has no such
    event (an open pixel of an SMS). ``bursts``: the clicks seen lately, to flag every link clicked at once;
    ``extra``: more ``event_data`` (the measured ``dwell_s``)."""
    now = time.time() if now is None else now
    event_type = (CLICK_TYPES if click else OPEN_TYPES).get(claims.ch)
    if event_type is None:
        return None
    age = None if claims.t is None else now - claims.t
    data: dict[str, Any] = {}
    for name, value in (("message_id", claims.m), ("campaign_id", claims.c), ("resource_id", claims.r)):
        if value is not None:
            data[name] = value
    data.update(visitor_data(visit))
    if click and claims.u is not None:
        data["link_url"] = claims.u
    if not click:
        reason = visitor.machine_open(visit.user_agent, age)
        if reason is not None:
            data["machine_open"] = True
            data["machine_open_reason"] = reason
    bot = visitor.suspected_bot(visit.user_agent, visit.method, age, click=click)
    if click and bursts is not None and claims.u is not None:
        burst = bursts.click(claims.a, claims.p, claims.m, claims.u, now)
        bot = bot or burst
    if extra:
        data.update(extra)
    if bot is not None:
        data["suspected_bot"] = True
        data["suspected_bot_reason"] = bot
    return build(claims.a, event_type, claims.p, claims.l, data, now)


def build(
    account_id: int,
    event_type: str,
    profile_id: str | None,
    list_id: int | None,
    data: dict[str, Any],
    now: float,
) -> NewEvent:
    """A message as ingest would store it (a fresh UUIDv7 ``id``, ``is_test`` false)."""
    (event_id,) = new_ids(1)
    message: dict[str, Any] = {
        "id": event_id,
        "account_id": account_id,
        "is_test": False,
        "event_type": event_type,
        "event_date": event_date(now),
    }
    if profile_id is not None:
        message["profile_id"] = profile_id
    if list_id is not None:
        message["list_id"] = list_id
    message["event_data"] = data
    return NewEvent(account_id, event_id, event_type, list_id, profile_id, now, _encode(message))
