"""A hook's settings (what a master user configures) and the filter predicate.

Filters narrow the hook's event types: AND across filter kinds, OR within one kind; an event whose
``event_data`` lacks the attribute a filter looks at does not pass that filter. Which attribute each kind reads:

=============== ==========================
filter          event_data attribute
=============== ==========================
resource_ids    resource_id
campaign_ids    campaign_id
template_ids    message_id (the template)
segment_ids     segment_id
pixel_ids       pixel_id
=============== ==========================

Operational events (``operational.py``) pass the filters; a hook never receives those about itself.

``exclude_flags`` drops the events carrying any of the named flags (``event_data.machine_open`` or
``event_data.suspected_bot`` set to ``true``, docs/capture.md#flags); events without the flag pass.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from .catalog import catalog
from .errors import ValidationError, field_error
from .integrations import TransportSettings, parse_settings
from .operational import OPERATIONAL_CODES

FILTER_ATTRIBUTES: dict[str, str] = {
    "resource_ids": "resource_id",
    "campaign_ids": "campaign_id",
    "template_ids": "message_id",
    "segment_ids": "segment_id",
    "pixel_ids": "pixel_id",
}

IdList = Annotated[list[int], msgspec.Meta(max_length=10_000)]
MAX_RATE = 1_000_000.0  # events a second: the highest max_events_per_second (above it, leave it null)
Flag = Literal["machine_open", "suspected_bot"]  # the flags capture sets (capture/visitor.py)
FLAGS: tuple[Flag, ...] = ("machine_open", "suspected_bot")


class Filters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=False):
    resource_ids: IdList | None = None
    campaign_ids: IdList | None = None
    template_ids: IdList | None = None
    segment_ids: IdList | None = None
    pixel_ids: IdList | None = None
    exclude_flags: Annotated[list[Flag], msgspec.Meta(max_length=2)] | None = None

    def active(self) -> dict[str, frozenset[int]]:
        """attribute → allowed values, for the kinds that are set (an empty list is no filter)."""
        out = {}
        for kind, attribute in FILTER_ATTRIBUTES.items():
            values = getattr(self, kind)
            if values:
                out[attribute] = frozenset(values)
        return out


class _HookInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    event_types: Annotated[list[str], msgspec.Meta(min_length=1)]
    transport: dict[str, Any]
    active: bool = True
    list_id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None  # the log's BIGINT column
    filters: Filters = msgspec.field(default_factory=Filters)
    custom_data_fields: Annotated[list[str], msgspec.Meta(max_length=500)] = msgspec.field(
        default_factory=list
    )
    max_events_per_second: Annotated[float, msgspec.Meta(gt=0, le=MAX_RATE)] | None = None


class HookSpec(msgspec.Struct, kw_only=True, frozen=True):
    """Validated hook settings."""

    name: str
    event_types: tuple[str, ...]
    transport: TransportSettings
    active: bool = True
    list_id: int | None = None
    filters: Filters = msgspec.field(default_factory=Filters)
    custom_data_fields: tuple[str, ...] = ()
    max_events_per_second: float | None = None  # every send of the hook paced to this (dispatch/rate.py)

    def to_builtins(self, *, public: bool) -> dict[str, Any]:
        """JSON-ready settings; ``public`` hides the transport's secrets."""
        return {
            "name": self.name,
            "active": self.active,
            "list_id": self.list_id,
            "event_types": list(self.event_types),
            "filters": msgspec.to_builtins(self.filters),
            "custom_data_fields": list(self.custom_data_fields),
            "max_events_per_second": self.max_events_per_second,
            "transport": self.transport.public() if public else msgspec.to_builtins(self.transport),
        }


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _refuse_control_characters(value: Any, path: str) -> None:
    """Control characters (other than tab and line breaks, which multi-line secrets such as NATS credentials hold)
    have no place in settings: a header value holding one fails every send, a name holding one rewrites a terminal.
    Line breaks are refused where they do harm by each transport's own checks (header values, URLs)."""
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise ValidationError("control characters are not allowed", path or None)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if _CONTROL.search(str(key)):
                raise ValidationError("control characters are not allowed in a key", path or None)
            _refuse_control_characters(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_control_characters(item, f"{path}.{index}")


def validate_hook(data: Any) -> HookSpec:
    """Hook settings as a user sends them: :func:`parse_hook` after refusing control characters anywhere."""
    _refuse_control_characters(data, "")
    return parse_hook(data)


def parse_hook(data: Any) -> HookSpec:
    """Validate hook settings from decoded JSON; ``ValidationError.field`` names the offending field."""
    if not isinstance(data, dict):
        raise ValidationError("hook settings must be a JSON object")
    try:
        raw = msgspec.convert(data, _HookInput)
    except msgspec.ValidationError as exc:
        raise field_error(exc) from None
    known = catalog().codes
    for i, code in enumerate(raw.event_types):
        if code not in known and code not in OPERATIONAL_CODES:
            raise ValidationError(f"unknown event type {code!r}", f"event_types.{i}")
        if code in OPERATIONAL_CODES and raw.list_id is not None:
            raise ValidationError(
                f"{code!r} is an operational event, of no database: a hook receiving it has no list_id",
                f"event_types.{i}",
            )
    transport = parse_settings(raw.transport)
    return HookSpec(
        name=raw.name,
        event_types=tuple(dict.fromkeys(raw.event_types)),
        transport=transport,
        active=raw.active,
        list_id=raw.list_id,
        filters=raw.filters,
        custom_data_fields=tuple(dict.fromkeys(raw.custom_data_fields)),
        max_events_per_second=raw.max_events_per_second,
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: objects merge recursively, ``null`` removes, anything else replaces.

    Secrets shown as ``"***"`` by the API are kept as they were when sent back unchanged."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif value == "***" and key in result:
            continue
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def destination_changes(before: HookSpec, after: HookSpec) -> list[str]:
    """Fields (from the hook's root) by which ``after`` sends somewhere else than ``before``: the transport's
    ``DESTINATION_FIELDS`` that differ, or ``transport.type`` when the transport itself changed."""
    old, new = before.transport, after.transport
    if type(old) is not type(new):
        return ["transport.type"]
    old_values, new_values = msgspec.to_builtins(old), msgspec.to_builtins(new)
    return [
        f"transport.{name}"
        for name in new.DESTINATION_FIELDS
        if _at(old_values, name.split(".")) != _at(new_values, name.split("."))
    ]


def secrets_not_resent(after: HookSpec, patch: dict[str, Any]) -> list[str]:
    """The secrets ``after`` holds that ``patch`` did not carry as a value (absent, or ``"***"`` kept as it was):
    field paths from the hook's root, one per value of a secret that is an object (``transport.headers.X-Key``)."""
    values = msgspec.to_builtins(after.transport)
    sent = patch.get("transport")
    missing = []
    for name in after.transport.SECRET_FIELDS:
        path = name.split(".")
        value, given = _at(values, path), _at(sent, path)
        if isinstance(value, dict):
            missing += [
                f"transport.{name}.{key}"
                for key, item in value.items()
                if item is not None and not _resent(given.get(key) if isinstance(given, dict) else None)
            ]
        elif value is not None and not _resent(given):
            missing.append(f"transport.{name}")
    return missing


def _resent(value: Any) -> bool:
    return value is not None and value != "***"


def _at(data: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


class _EventAttrs(msgspec.Struct):
    event_type: str = ""
    event_data: dict[str, Any] = msgspec.field(default_factory=dict)


_decode_attrs = msgspec.json.Decoder(_EventAttrs).decode


class Matcher:
    """Decides whether one stored event passes a hook's filters (event type and list_id are checked by the
    store's query)."""

    def __init__(self, spec: HookSpec, hook_id: int | None = None) -> None:
        self.rules = spec.filters.active()
        self.excluded = tuple(dict.fromkeys(spec.filters.exclude_flags or ()))
        # operational events about the hook itself are never its own to receive (operational.py)
        self.own_id = hook_id if OPERATIONAL_CODES.intersection(spec.event_types) else None

    @property
    def trivial(self) -> bool:
        return not self.rules and not self.excluded and self.own_id is None

    def __call__(self, payload: bytes) -> bool:
        if self.trivial:
            return True
        try:
            attrs = _decode_attrs(payload)
        except msgspec.MsgspecError:
            return False
        data = attrs.event_data
        if attrs.event_type in OPERATIONAL_CODES:  # the filters are about catalogue events' attributes
            return self.own_id is None or data.get("hook_id") != self.own_id
        for flag in self.excluded:
            if data.get(flag) is True:
                return False
        for attribute, allowed in self.rules.items():
            value = data.get(attribute)
            if not isinstance(value, int) or isinstance(value, bool) or value not in allowed:
                return False
        return True
