"""Transport registry: a transport ``type`` → the module that implements it (imported on first use).

Adding a transport = one module (``Settings`` + ``open``), its tests, one line here, one section in
``docs/transports.md``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import msgspec

from ..errors import ValidationError, field_error
from .base import Batch, Message, Receipt, Transport, TransportContext, TransportSettings

TRANSPORTS: dict[str, str] = {
    "http": "actionhooks.transports.http",
    "stub": "actionhooks.transports.stub",
    "rabbitmq_queue": "actionhooks.transports.rabbitmq",
    "rabbitmq_exchange": "actionhooks.transports.rabbitmq",
    "kafka": "actionhooks.transports.kafka",
    "nats": "actionhooks.transports.nats",
}

__all__ = [
    "TRANSPORTS",
    "Batch",
    "Message",
    "Receipt",
    "Transport",
    "TransportContext",
    "TransportSettings",
    "open_transport",
    "parse_settings",
    "transport_module",
]


def transport_module(kind: str) -> ModuleType:
    return importlib.import_module(TRANSPORTS[kind])


def parse_settings(data: Any) -> TransportSettings:
    """Validate a hook's ``transport`` object; errors name the field as ``transport.<name>``."""
    if not isinstance(data, dict):
        raise ValidationError("transport must be an object", "transport")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in TRANSPORTS:
        raise ValidationError(
            f"transport.type must be one of {', '.join(sorted(TRANSPORTS))}", "transport.type"
        )
    settings_type: type[TransportSettings] = transport_module(kind).Settings
    try:
        settings = msgspec.convert(data, settings_type)
    except msgspec.ValidationError as exc:
        raise field_error(exc, "transport") from None
    try:
        settings.check()
    except ValidationError as exc:
        raise ValidationError(exc.message, f"transport.{exc.field}" if exc.field else "transport") from None
    except ValueError as exc:  # a check that tripped over a malformed value (a URL, a port) before naming it
        raise ValidationError(f"invalid transport settings: {exc}", "transport") from None
    return settings


def open_transport(settings: TransportSettings, context: TransportContext) -> Transport:
    kind = msgspec.inspect.type_info(type(settings))
    tag = getattr(kind, "tag", None)
    module = transport_module(str(tag))
    transport: Transport = module.open(settings, context)
    return transport
