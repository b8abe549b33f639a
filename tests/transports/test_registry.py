"""The integrations registry: the transports the service knows, and ``stub`` known only to the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


_IMPORT_THREADS = """
import asyncio, json, sys, threading
from actionhooks.integrations import load_client, parse_settings
hooks = [{"type": "http", "url": "http://127.0.0.1:9/in"}, {"type": "nats", "servers": "127.0.0.1:9", "subject": "s"}]
settings = [parse_settings(h) for h in hooks]
assert "aiohttp" not in sys.modules and "nats" not in sys.modules, "imported before load_client"
on_main = {}
def audit(event, args):
    top = args[0].partition(".")[0] if event == "import" else None
    if top in ("aiohttp", "nats"):
        on_main.setdefault(top, threading.current_thread() is threading.main_thread())
sys.addaudithook(audit)
async def main():
    for s in settings:
        await load_client(s)
asyncio.run(main())
print(json.dumps(on_main))
"""


def test_a_transports_client_library_is_imported_in_a_thread_not_on_the_event_loop() -> None:
    # a fresh interpreter: this one imported aiohttp and nats long ago
    done = subprocess.run([sys.executable, "-c", _IMPORT_THREADS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"aiohttp": False, "nats": False}


async def test_a_client_library_that_cannot_be_imported_is_left_for_the_send_to_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ah_broken_client.py").write_text("raise RuntimeError('fails as it loads')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    clients = ("actionhooks_no_such_client", "ah_broken_client")
    integrations.register(integrations.Integration("stub", ("stub",), stub.__name__, client=clients))
    try:
        await integrations.load_client(stub.Settings(name="n"))  # no error here: the send reports it
    finally:
        integrations.register(stub.INTEGRATION)
    assert "ah_broken_client" not in sys.modules  # so the send's own import raises the error again
