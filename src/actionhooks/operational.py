"""Operational events: the service's own notices about an account's hooks, written to the account's log like any
event, so hooks subscribed to them receive them through the same pipeline (docs/delivery.md#operational-events).

They are a group of their own beside the catalogue's 80 types (the catalogue stays the seed's): producers cannot
send them (ingest knows only the catalogue), a hook may list them in ``event_types``.

===================== =====================================================================================
type                  written when
===================== =====================================================================================
``hook.disabled``     auto-disable stopped a hook (``maintenance/auto_disable.py``)
``hook.recovered``    a hook delivered a batch after failures (its first success since)
``hook.dead_lettered`` a hook sent a batch's events to dead letters
===================== =====================================================================================

The message: ``{"id", "account_id", "is_test": false, "event_type", "event_date", "event_data"}`` with
``event_data`` ``{"hook_id", "hook_name", "at", …}`` and per type ``reason``, ``failing_since``,
``failed_attempts`` (disabled); ``last_error``, ``failing_since``, ``failed_attempts`` (recovered); ``reason``,
``events``, ``first_seq``, ``last_seq``, ``event_ids`` (dead_lettered: at most ``MAX_EVENT_IDS``).

Rules: a hook never receives operational events about itself (:class:`~.hooks.Matcher` drops them), its filters on
``event_data`` do not apply to them, and a hook subscribed to them has no ``list_id`` (they belong to no database).
A batch made only of operational events that is dead-lettered writes no ``hook.dead_lettered`` (two hooks failing on
each other's notices would otherwise feed each other for ever).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import msgspec

from .catalog import EventType
from .events import NewEvent
from .ids import new_id
from .store.base import Store

log = logging.getLogger(__name__)

HOOK_DISABLED = "hook.disabled"
HOOK_RECOVERED = "hook.recovered"
HOOK_DEAD_LETTERED = "hook.dead_lettered"
MAX_EVENT_IDS = 100  # ids of dead-lettered events named in one notice

GROUP = "operational"


def _type(code: str, name: str, description_en: str, description_ru: str) -> EventType:
    return EventType(
        code=code,
        name=name,
        group=GROUP,
        group_ru="Служебные события",
        group_en="Operational events",
        description_ru=description_ru,
        description_en=description_en,
        structure="hook_id, hook_name, at, …",
        has_profile=False,
    )


OPERATIONAL_TYPES: tuple[EventType, ...] = (
    _type(
        HOOK_DISABLED,
        "Hook disabled",
        "A hook was stopped by the service: its deliveries failed without a success for too long",
        "Хук остановлен сервисом: доставка не удавалась слишком долго",
    ),
    _type(
        HOOK_RECOVERED,
        "Hook recovered",
        "A hook delivered a batch again after failures",
        "Хук снова доставил пачку после ошибок",
    ),
    _type(
        HOOK_DEAD_LETTERED,
        "Hook dead-lettered events",
        "A hook sent a batch's events to dead letters",
        "Хук отправил события пачки в недоставленные",
    ),
)
OPERATIONAL_CODES: frozenset[str] = frozenset(t.code for t in OPERATIONAL_TYPES)


class _About(msgspec.Struct):
    hook_id: int | None = None


class _Notice(msgspec.Struct):
    event_type: str = ""
    event_data: _About = msgspec.field(default_factory=_About)


_decode_notice = msgspec.json.Decoder(_Notice).decode


def about_hook(payload: bytes) -> int | None:
    """The hook an operational event's message is about (None: not an operational event, or unreadable)."""
    try:
        notice = _decode_notice(payload)
    except msgspec.MsgspecError:
        return None
    return notice.event_data.hook_id if notice.event_type in OPERATIONAL_CODES else None


def rfc3339(at: float) -> str:
    return (
        datetime.datetime.fromtimestamp(at, datetime.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def notice(
    account_id: int, event_type: str, hook_id: int, hook_name: str, at: float, **data: Any
) -> NewEvent:
    """The operational event ``event_type`` about hook ``hook_id``, ready to append to the account's log."""
    assert event_type in OPERATIONAL_CODES, event_type
    event_id = new_id()
    message = {
        "id": event_id,
        "account_id": account_id,
        "is_test": False,
        "event_type": event_type,
        "event_date": rfc3339(at),
        "event_data": {"hook_id": hook_id, "hook_name": hook_name, "at": rfc3339(at), **data},
    }
    return NewEvent(account_id, event_id, event_type, None, None, at, msgspec.json.encode(message))


_EXAMPLES: dict[str, dict[str, Any]] = {
    HOOK_DISABLED: {
        "reason": "deliveries failed without a success for 259200 s (412 failed attempts since …): HTTP 503",
        "failed_attempts": 412,
    },
    HOOK_RECOVERED: {"last_error": "HTTP 503: Service Unavailable", "failed_attempts": 7},
    HOOK_DEAD_LETTERED: {
        "reason": "HTTP 410: Gone",
        "events": 1,
        "first_seq": 1,
        "last_seq": 1,
        "event_ids": [],
    },
}


def sample(account_id: int, event_type: str, hook_id: int, hook_name: str, at: float) -> NewEvent:
    """An example of ``event_type`` about hook ``hook_id`` (the test event of a hook subscribed to it)."""
    data = dict(_EXAMPLES[event_type])
    if event_type != HOOK_DEAD_LETTERED:
        data["failing_since"] = rfc3339(at - 3600)
    return notice(account_id, event_type, hook_id, hook_name, at, **data)


async def publish(store: Store, event: NewEvent) -> bool:
    """Append ``event`` to its account's log; False (and a log line: never lost silently) when the store refused."""
    try:
        await store.append(event.account_id, [event])
    except Exception as exc:
        log.warning(
            "operational event %s (%s) not written: %s: %s",
            event.event_type,
            event.id,
            type(exc).__name__,
            exc,
        )
        return False
    return True
