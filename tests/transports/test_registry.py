"""The integrations registry: the transports the service knows, and ``stub`` known only to the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actionhooks import integrations
from actionhooks.cli import app
from actionhooks.errors import ValidationError
from tests import stub
from tests.support import Service, User


@pytest.fixture
def without_stub() -> Iterator[None]:
    """The registry as the service has it: ``tests/conftest.py`` registered ``stub`` for the dispatcher's tests."""
    integrations.unregister(stub.INTEGRATION.name)
    try:
        yield
    finally:
        integrations.register(stub.INTEGRATION)


@pytest.mark.usefixtures("without_stub")
async def test_the_public_api_refuses_a_stub_hook_and_does_not_name_it(service: Service, owner: User) -> None:
    body = {"name": "h", "event_types": ["deliv"], "transport": {"type": "stub", "name": "x"}}
    status, answer, _ = await service.call("POST", "/v1/hooks", owner, body)
    assert status == 422, answer
    assert answer["field"] == "transport.type"
    assert answer["error"] == (
        "transport.type must be one of http, kafka, nats, rabbitmq_exchange, rabbitmq_queue"
    )


def test_register_adds_a_transport_type_and_refuses_to_take_another_s() -> None:
    assert "stub" in integrations.transport_types()  # conftest's registration
    assert integrations.parse_settings({"type": "stub", "name": "n"}) == stub.Settings(name="n")
    with pytest.raises(ValueError, match="already belongs to rabbitmq"):
        integrations.register(integrations.Integration("mine", ("rabbitmq_queue",), stub.__name__))
    assert integrations.INTEGRATIONS["rabbitmq"].transport_types == ("rabbitmq_queue", "rabbitmq_exchange")


@pytest.mark.usefixtures("without_stub")
def test_unknown_type_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        integrations.parse_settings({"type": "stub"})
    assert info.value.field == "transport.type"


def test_brokers_have_a_consume_command_each() -> None:
    assert integrations.brokers() == ["rabbitmq", "kafka", "nats"]
    consume = next(g for g in app.registered_groups if g.name == "consume")
    assert consume.typer_instance is not None
    assert [c.name for c in consume.typer_instance.registered_commands] == integrations.brokers()
