"""JSON Schemas (draft 2020-12) of the messages, one per event type.

Every message has the general envelope of REFERENCE §2 plus our ``id``; what differs between types is
``event_data``, whose shape is one of the :data:`STRUCTURES` (each type names its structure in the catalogue).
``tracking`` and ``delivery`` follow the platform's public documentation; the others are of our design, since
the public record does not give them (``docs/messages.md`` says which is which).

Two forms of each schema:

- ``event_schema(code)``: the message as a producer may send it to ingest. ``id``, ``account_id`` and
  ``is_test`` are optional there, because ingest adds them (``account_id`` comes from the API key).
- ``event_schema(code, delivered=True)``: the message as a receiver gets it: those three are always present.

Unknown fields are allowed at the top level and inside ``event_data``: producers may add fields, and receivers
must ignore what they do not know. Optional envelope fields may be ``null`` (ingest accepts that; historical
exports carry ``null`` where the profile has since been deleted). Types with no recipient profile
(``has_profile`` false) must not carry the profile fields.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, NamedTuple

from ..ids import ID_PATTERN
from . import catalog

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# The same grammar ingest checks (events.valid_event_date also checks that the date exists).
EVENT_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"

Schema = dict[str, Any]


def _t(kind: str, description: str, **extra: Any) -> Schema:
    return {"type": kind, "description": description, **extra}


def _nullable(kind: str, description: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], "description": description, **extra}


class Structure(NamedTuple):
    """The shape of ``event_data`` shared by a family of event types."""

    description: str
    properties: dict[str, Schema]
    required: tuple[str, ...]
    designed: bool  # True: our design (the public record does not give it); False: as publicly documented


_MESSAGE_REFS: dict[str, Schema] = {
    "message_id": _t("integer", "the message template"),
    "campaign_id": _t("integer", "the campaign"),
    "segment_id": _t("integer", "the segment the campaign was sent to; 0 = none"),
    "resource_id": _t("integer", "the sending resource (sender address, SMS name, push app, bot, …)"),
    "launch_id": _t("string", "the campaign launch"),
    "send_message_id": _t("string", "this send of the message to this recipient"),
}

# Where the recipient was when they acted (tracking, pixel and popup events).
_CLIENT: dict[str, Schema] = {
    "ip": _t("string", "the client's IP address"),
    "country": _t("string", "the country as a top-level domain, e.g. .ru", pattern=r"^\.[a-z]{2,}$"),
    "city": _t("string", "city"),
    "postal_code": _t("string", "postal code"),
    "region": _t("string", "region"),
    "tz": _t("string", "time zone (IANA name)"),
    "lat": _t("number", "latitude", minimum=-90, maximum=90),
    "lon": _t("number", "longitude", minimum=-180, maximum=180),
    "user_agent": _t("string", "the client's User-Agent"),
    "os": _t("string", "operating system"),
    "browser": _t("string", "browser or app"),
    "device": _t("string", "device kind: desktop, mobile, tablet"),
}

_MSG_REQUIRED = ("message_id", "campaign_id", "segment_id")

STRUCTURES: dict[str, Structure] = {
    "tracking": Structure(
        "A recipient's action on a message: opens, clicks, unsubscribe and confirm links, dwell time.",
        {
            **_MESSAGE_REFS,
            **_CLIENT,
            "link_url": _t("string", "the link clicked (clicks, confirm and unsubscribe links)"),
            "extra_uid": _t("string", "the push subscription's device/app id (push only)"),
        },
        _MSG_REQUIRED,
        designed=False,
    ),
    "delivery": Structure(
        "What happened to a message on its way: sent, delivered, read receipts, bounces, suppression, complaints,"
        " replies.",
        {
            **_MESSAGE_REFS,
            "reason": _t("string", "why it failed or was refused: the provider's diagnostic or our reason"),
            "provider_code": _t("string", "the provider's status code, e.g. an SMTP reply '550 5.1.1'"),
            "extra_uid": _t("string", "the push subscription's device/app id (push only)"),
        },
        _MSG_REQUIRED,
        designed=False,
    ),
    "import": Structure(
        "A profile was added to a database by an import.",
        {
            "import_id": _t("integer", "the import job"),
            "source": _t("string", "how the profile came in", enum=["manual", "file", "api"]),
            "file_name": _t("string", "the imported file's name (file imports)"),
            "user": _t("string", "the platform user who ran the import (manual and file imports)"),
            "created": _t("boolean", "true: a new profile; false: an existing profile was updated"),
        },
        ("import_id", "source"),
        designed=True,
    ),
    "subscription": Structure(
        "A profile's subscription to a channel changed (API unsubscribe, messenger subscribe/unsubscribe).",
        {
            "channel": _t("string", "email, sms, push, telegram_bot, whatsapp, viber, … or all"),
            "status": _t(
                "string", "the new status", enum=["subscribed", "unsubscribed", "complainer", "hardbounced"]
            ),
            "resource_id": _t("integer", "the channel's resource (bot, business account, …); absent = all"),
            "subscription_id": _t("string", "the subscription (chat id, phone, …)"),
            "source": _t("string", "who changed it", enum=["api", "user", "provider"]),
            "reason": _t("string", "a free-text reason, when given"),
        },
        ("channel", "status"),
        designed=True,
    ),
    "campaign_launch": Structure(
        "A campaign started a launch. No recipient profile.",
        {
            "campaign_id": _MESSAGE_REFS["campaign_id"],
            "launch_id": _MESSAGE_REFS["launch_id"],
            "campaign_name": _t("string", "the campaign's name"),
            "campaign_type": _t("string", "regular, trigger or auto", enum=["regular", "trigger", "auto"]),
            "channel": _t("string", "the channel it sends through"),
            "message_id": _MESSAGE_REFS["message_id"],
            "segment_id": _MESSAGE_REFS["segment_id"],
            "recipients": _t("integer", "profiles planned for this launch", minimum=0),
        },
        ("campaign_id", "launch_id"),
        designed=True,
    ),
    "campaign_error": Structure(
        "A campaign hit an error while running. No recipient profile.",
        {
            "campaign_id": _MESSAGE_REFS["campaign_id"],
            "launch_id": _MESSAGE_REFS["launch_id"],
            "error_code": _t("string", "a stable machine-readable code, e.g. template_render_failed"),
            "error_text": _t("string", "a human-readable explanation"),
            "message_id": _MESSAGE_REFS["message_id"],
            "segment_id": _MESSAGE_REFS["segment_id"],
            "resource_id": _MESSAGE_REFS["resource_id"],
            "channel": _t("string", "the channel concerned"),
        },
        ("campaign_id", "error_code", "error_text"),
        designed=True,
    ),
    "pixel": Structure(
        "A pixel on the customer's site was loaded.",
        {
            "pixel_id": _t("integer", "the pixel"),
            "url": _t("string", "the page the pixel is on"),
            "referrer": _t("string", "the page's referrer"),
            "params": {
                "type": "object",
                "description": "the pixel request's own parameters (utm_*, custom ones)",
                "additionalProperties": {"type": "string"},
            },
            **_CLIENT,
        },
        ("pixel_id", "url"),
        designed=True,
    ),
    "promocode": Structure(
        "A promo code was attached to, detached from or activated by a profile.",
        {
            "promocode": _t("string", "the code itself"),
            "pool_id": _t("integer", "the pool the code belongs to"),
            "promocode_id": _t("integer", "the code's id"),
            "campaign_id": _MESSAGE_REFS["campaign_id"],
            "message_id": _MESSAGE_REFS["message_id"],
            "order_id": _t("string", "the order the code was used for (activation)"),
            "expires_at": _t("string", "when the code expires, RFC 3339", format="date-time"),
        },
        ("promocode", "pool_id"),
        designed=True,
    ),
    "segment": Structure(
        "A profile entered or left a static segment created by an import.",
        {
            "segment_id": _t("integer", "the static segment"),
            "segment_name": _t("string", "its name"),
            "import_id": _t("integer", "the import that created or filled it"),
        },
        ("segment_id",),
        designed=True,
    ),
    "profile_merge": Structure(
        "Profiles were merged or a profile split through the API. The envelope's profile_id is the merge's"
        " target or the split's source.",
        {
            "operation": _t("string", "merge or split", enum=["merge", "split"]),
            "source_profile_ids": _t(
                "array",
                "profiles merged (merge) or the one split (split)",
                items={"type": "string"},
                minItems=1,
            ),
            "target_profile_ids": _t(
                "array",
                "the profile merged into (merge) or the profiles split into (split)",
                items={"type": "string"},
                minItems=1,
            ),
            "request_id": _t("string", "the API request that did it"),
        },
        ("operation", "source_profile_ids", "target_profile_ids"),
        designed=True,
    ),
    "popup": Structure(
        "A visitor's interaction with a popup on the customer's site.",
        {
            "popup_id": _t("integer", "the popup"),
            "popup_name": _t("string", "its name"),
            "page_url": _t("string", "the page it was shown on"),
            "element": _t("string", "the element clicked (popup_click)"),
            "form_data": {
                "type": "object",
                "description": "the submitted form's fields (popup_post)",
                "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
            },
            "error_text": _t("string", "what went wrong (popup_error, popup_bounce)"),
            "custom_event": _t("string", "the customer-defined event's name (popup_custom)"),
            **_CLIENT,
        },
        ("popup_id",),
        designed=True,
    ),
}

_PROFILE_FIELDS = ("profile_id", "_xxh", "_md5", "custom_data", "subscription", "subscription_hash_id")

_SUBSCRIPTION_ITEM: Schema = {
    "type": "object",
    "properties": {
        "resource_id": {"type": "integer"},
        "channel": {"type": "string"},
        "email": {"type": ["string", "null"]},
        "phone": {"type": ["string", "null"]},
        "subscription_id": {"type": ["string", "integer"]},
        "provider": {"type": ["string", "null"]},
        "priority": {"type": ["integer", "null"]},
        "status": {"type": ["string", "integer"]},
        "ccsub": {"type": ["object", "null"]},
    },
}


def _envelope(delivered: bool) -> tuple[dict[str, Schema], list[str]]:
    props: dict[str, Schema] = {
        "id": {
            "type": "string",
            "pattern": ID_PATTERN,
            "description": "the event's id: the producer's, or a UUIDv7 given at ingest",
        },
        "event_type": {"type": "string"},
        "event_date": _t(
            "string", "RFC 3339, UTC, up to nanoseconds", format="date-time", pattern=EVENT_DATE_PATTERN
        ),
        "profile_id": _nullable("string", "the recipient's profile"),
        "_xxh": _nullable("string", "xxHash64 (hex) of the profile's email", pattern="^[0-9a-f]{16}$"),
        "_md5": _nullable("string", "MD5 (hex) of the profile's email", pattern="^[0-9a-f]{32}$"),
        "list_id": _nullable("integer", "the database"),
        "account_id": _nullable("integer", "the account (set from the API key at ingest)"),
        "sends_trying_num": _nullable("integer", "send attempts; present only when > 0", minimum=0),
        "is_test": _nullable("boolean", "from a test send"),
        "is_static": _nullable("boolean", "whether the content used dynamic substitutions"),
        "subscription_hash_id": _nullable("string", "the subscription's hash"),
        "custom_data": _nullable("object", "the profile fields chosen in the hook's settings"),
        "subscription": _nullable("array", "subscription details", items=_SUBSCRIPTION_ITEM),
    }
    required = ["event_type", "event_date", "event_data"]
    if delivered:
        for name, kind in (("id", "string"), ("account_id", "integer"), ("is_test", "boolean")):
            props[name] = {**props[name], "type": kind}
        required += ["id", "account_id", "is_test"]
    return props, required


def event_data_schema(structure: str) -> Schema:
    """The schema of ``event_data`` for a structure name (KeyError if unknown)."""
    s = STRUCTURES[structure]
    return {
        "type": "object",
        "description": s.description,
        "properties": copy.deepcopy(s.properties),
        "required": list(s.required),
    }


@functools.cache
def _schema(code: str, delivered: bool) -> Schema:
    et = catalog().get(code)
    if et is None:
        raise KeyError(f"unknown event type {code!r}")
    envelope, required = _envelope(delivered)
    props: dict[str, Schema | bool] = dict(envelope)
    props["event_type"] = {"const": code, "description": et.description_en}
    props["event_data"] = event_data_schema(et.structure)
    if not et.has_profile:
        for name in _PROFILE_FIELDS:
            props[name] = False  # a type with no recipient profile carries no profile fields
    kind = "delivered" if delivered else "ingest"
    return {
        "$schema": DIALECT,
        "$id": f"urn:actionhooks:schema:{kind}:{code}",
        "title": f"{et.name} ({code})",
        "description": f"{et.description_en} event_data structure: {et.structure}.",
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": True,
    }


def event_schema(code: str, *, delivered: bool = False) -> Schema:
    """The JSON Schema of one event type's message (a fresh copy; KeyError if the code is unknown)."""
    return copy.deepcopy(_schema(code, delivered))


def all_schemas(*, delivered: bool = False) -> dict[str, Schema]:
    """Every event type's schema, by code, in catalogue order."""
    return {t.code: event_schema(t.code, delivered=delivered) for t in catalog().types}
