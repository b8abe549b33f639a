"""Integrations: one folder per destination and source (``http``, ``rabbitmq``, ``kafka``, ``nats``), one registry.

An :class:`Integration` names the modules of one folder, imported on first use so that a broker's client library
stays an optional extra: its transport module (``Settings`` + ``open``, for the transport ``type`` names it
serves), the modules its sends need (the client library: :func:`load_client` imports them in a thread before a
hook's first send) and its consumer module (``ConsumerSettings`` + ``open_source``, for ``actionhooks consume
<name>`` and the consumers file). Adding a broker = one folder, its tests, one ``register`` call here, one page in
``docs/transports/`` (CONTRIBUTING.md). Tests register their own (the ``stub`` transport) with :func:`register`.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import msgspec

from ..errors import ValidationError, field_error
from .base import Batch, Message, Receipt, Transport, TransportContext, TransportSettings


@dataclass(frozen=True)
class Integration:
    """One destination and/or source: ``transport_types`` served by the module ``transport`` (``Settings`` and
    ``open``), whose sends import the modules ``client``; ``consumer`` the module of its broker consumer
    (``ConsumerSettings`` and ``open_source``)."""

    name: str
    transport_types: tuple[str, ...] = ()
    transport: str | None = None
    consumer: str | None = None
    client: tuple[str, ...] = ()

    def transport_module(self) -> ModuleType:
        assert self.transport is not None, f"{self.name} has no transport"
        return importlib.import_module(self.transport)

    def consumer_module(self) -> ModuleType:
        assert self.consumer is not None, f"{self.name} has no consumer"
        return importlib.import_module(self.consumer)


INTEGRATIONS: dict[str, Integration] = {}
_BY_TYPE: dict[str, Integration] = {}


def register(integration: Integration) -> None:
    """Add (or replace) ``integration``; its transport types must not belong to another one."""
    for kind in integration.transport_types:
        owner = _BY_TYPE.get(kind)
        if owner is not None and owner.name != integration.name:
            raise ValueError(f"transport type {kind!r} already belongs to {owner.name}")
    unregister(integration.name)
    INTEGRATIONS[integration.name] = integration
    for kind in integration.transport_types:
        _BY_TYPE[kind] = integration


def unregister(name: str) -> Integration | None:
    """Remove the integration ``name``; returned (None when there was none)."""
    integration = INTEGRATIONS.pop(name, None)
    if integration is not None:
        for kind in integration.transport_types:
            _BY_TYPE.pop(kind, None)
    return integration


_PACKAGE = __name__
register(Integration("http", ("http",), f"{_PACKAGE}.http.transport", client=(f"{_PACKAGE}.http.resolver",)))
register(
    Integration(
        "rabbitmq",
        ("rabbitmq_queue", "rabbitmq_exchange"),
        f"{_PACKAGE}.rabbitmq.transport",
        f"{_PACKAGE}.rabbitmq.consumer",
        client=(f"{_PACKAGE}.rabbitmq.link",),
    )
)
register(
    Integration(
        "kafka",
        ("kafka",),
        f"{_PACKAGE}.kafka.transport",
        f"{_PACKAGE}.kafka.consumer",
        client=("confluent_kafka",),
    )
)
register(
    Integration(
        "nats", ("nats",), f"{_PACKAGE}.nats.transport", f"{_PACKAGE}.nats.consumer", client=("nats",)
    )
)

__all__ = [
    "INTEGRATIONS",
    "Batch",
    "Integration",
    "Message",
    "Receipt",
    "Transport",
    "TransportContext",
    "TransportSettings",
    "brokers",
    "client_modules",
    "load_client",
    "open_for_sending",
    "open_transport",
    "parse_settings",
    "register",
    "transport_module",
    "transport_types",
    "unregister",
]


def transport_types() -> list[str]:
    """The transport ``type`` names a hook may use, sorted."""
    return sorted(_BY_TYPE)


def brokers() -> list[str]:
    """The integrations with a consumer (``actionhooks consume <name>``), in registration order."""
    return [name for name, integration in INTEGRATIONS.items() if integration.consumer is not None]


def transport_module(kind: str) -> ModuleType:
    return _BY_TYPE[kind].transport_module()


def parse_settings(data: Any) -> TransportSettings:
    """Validate a hook's ``transport`` object; errors name the field as ``transport.<name>``."""
    if not isinstance(data, dict):
        raise ValidationError("transport must be an object", "transport")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _BY_TYPE:
        raise ValidationError(
            f"transport.type must be one of {', '.join(transport_types())}", "transport.type"
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


def _integration(settings: TransportSettings) -> Integration:
    # the settings' tag from the type's config: msgspec.inspect.type_info took 0.65 ms a call, twice per worker start
    return _BY_TYPE[str(type(settings).__struct_config__.tag)]


def open_transport(settings: TransportSettings, context: TransportContext) -> Transport:
    transport: Transport = _integration(settings).transport_module().open(settings, context)
    return transport


def client_modules(settings: TransportSettings) -> tuple[str, ...]:
    """The modules the sends of ``settings``' transport import (its client library)."""
    return _integration(settings).client


_LOADED: set[str] = set()  # client modules imported by load_client


async def load_client(settings: TransportSettings) -> None:
    """Import the modules the sends of ``settings``' transport need, in a thread, once per process: the first send
    would import them on the event loop, and every request of every account would wait (aiohttp: 0.15 s on a quiet
    machine; 0.57 s of the event loop under load, measured with py-spy — BENCHMARKS.md). A module that cannot be
    imported (an extra not installed, an import that fails) is left for the send to report, as without this."""
    for name in client_modules(settings):
        if name not in _LOADED:
            try:
                await asyncio.to_thread(importlib.import_module, name)
            except Exception:  # not installed, or failing as it loads: the send imports it again and says why
                continue
            _LOADED.add(name)


async def open_for_sending(settings: TransportSettings, context: TransportContext) -> Transport:
    """:func:`open_transport` once :func:`load_client` has imported its client library off the event loop: how a
    worker, a replay or redrive and the test-event endpoint open the transport they send on."""
    await load_client(settings)
    return open_transport(settings, context)
