"""The ``actionhooks`` command: serve, demo, accounts, event-types, consume."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .catalog import catalog
from .config import Settings
from .errors import ActionhooksError, ConfigError
from .server_limits import ServerLimits

app = typer.Typer(
    help="Capture marketing-platform events and deliver them to hooks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
accounts_app = typer.Typer(help="Accounts and their API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
consume_app = typer.Typer(
    help="Read raw events from a broker into the event log (the ingest path of POST /v1/events).",
    no_args_is_help=True,
)
app.add_typer(consume_app, name="consume")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="sqlite:///path or postgresql://… (default: ACTIONHOOKS_DB or sqlite:///actionhooks.db)"
    ),
]


def _settings(db: str | None) -> Settings:
    try:
        return Settings.from_env(db)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    dispatch: Annotated[
        bool, typer.Option(help="also run the dispatcher; --no-dispatch for extra API-only processes")
    ] = True,
    consume: Annotated[
        Path | None,
        typer.Option(
            help="JSON file of broker consumers to run in this process (docs/consume.md); "
            "default: ACTIONHOOKS_CONSUME_FILE"
        ),
    ] = None,
    max_head_bytes: Annotated[
        int, typer.Option(min=1024, help="largest request head (request line + headers); larger: 431")
    ] = ServerLimits.max_head_bytes,
    head_timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds a client may take to send a request head; then 408")
    ] = ServerLimits.head_timeout_s,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds a request body may pause; then 408")
    ] = ServerLimits.body_timeout_s,
    keep_alive: Annotated[
        int, typer.Option(min=1, help="seconds an idle keep-alive connection stays open")
    ] = ServerLimits.keep_alive_s,
    max_concurrency: Annotated[
        int, typer.Option(min=1, help="connections + requests in progress; past it requests get 503")
    ] = ServerLimits.max_concurrency,
) -> None:
    """Run the API and the dispatcher (and any configured broker consumers) in one process. The server's limits
    are described in docs/operations.md."""
    import dataclasses

    import uvicorn

    from .api import create_app
    from .api.server import server_config

    settings = _settings(db)
    if consume is not None:
        settings = dataclasses.replace(settings, consume_file=str(consume))
    _setup_logging(log_level)
    limits = ServerLimits(
        max_head_bytes=max_head_bytes,
        head_timeout_s=head_timeout,
        body_timeout_s=body_timeout,
        keep_alive_s=keep_alive,
        max_concurrency=max_concurrency,
    )
    config = server_config(create_app(settings, dispatch=dispatch), host, port, log_level, limits)
    uvicorn.Server(config).run()


@accounts_app.command("create")
def accounts_create(name: str, db: DbOption = None) -> None:
    """Create an account and print its id and API key as JSON (the key is shown only here)."""
    from .api.auth import hash_key, new_api_key
    from .store import open_store

    settings = _settings(db)

    async def run() -> int:
        store = open_store(settings.db, settings.secret_key)
        await store.open()
        try:
            return await store.create_account(name, hash_key(key))
        finally:
            await store.close()

    key = new_api_key()
    account_id = asyncio.run(run())
    typer.echo(json.dumps({"account_id": account_id, "api_key": key}))


@app.command("event-types")
def event_types(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The catalogue of event types."""
    import msgspec

    types = catalog().types
    if as_json:
        typer.echo(msgspec.json.encode([msgspec.to_builtins(t) for t in types]).decode())
        return
    table = Table(title=f"{len(types)} event types")
    for column in ("code", "name", "group", "structure"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", overflow="fold")
    for t in types:
        table.add_row(t.code, t.name, t.group, t.structure, t.description_en)
    Console().print(table)


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="seconds of traffic")] = 20.0,
    rate: Annotated[int, typer.Option(help="events per second to aim for")] = 5000,
    db: DbOption = None,
) -> None:
    """Start the service on SQLite, a local receiver and a hook, play traffic of all 80 event types, show counts."""
    from .demo import run_demo

    asyncio.run(run_demo(duration=duration, rate=rate, db=db))


AccountOption = Annotated[
    int,
    typer.Option(
        "--account-id", help="the account the events are appended for (no API key: operator process)"
    ),
]
PasswordOption = Annotated[
    str | None,
    typer.Option(
        envvar="ACTIONHOOKS_CONSUME_PASSWORD", show_default=False, help="broker password (never logged)"
    ),
]
LogLevelOption = Annotated[str, typer.Option(help="debug, info, warning, error")]


def _setup_logging(log_level: str) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.lower() != "debug":
        # pika logs each failed connect four or five times at ERROR; the hook's attempts and last_error (or the
        # consumer's own error) already say what happened. With --log-level debug, pika speaks.
        logging.getLogger("pika").setLevel(logging.CRITICAL)


def _consume(make_source: Callable[[], Any], db: str | None, account_id: int, log_level: str) -> None:
    """Run a broker consumer until SIGTERM/SIGINT; exit 1 when the broker, dead letters or the store fail."""
    from .consume.base import ConsumeError, serve

    settings = _settings(db)
    _setup_logging(log_level)
    try:
        source = make_source()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        asyncio.run(serve(source, settings.db, account_id, settings.limits))
    except ConsumeError as exc:
        logging.getLogger("actionhooks.consume").error("%s", exc)
        raise typer.Exit(1) from None


@consume_app.command("rabbitmq")
def consume_rabbitmq(
    account_id: AccountOption,
    queue: Annotated[str, typer.Option(help="the queue to consume (declared durable when missing)")],
    host: str = "127.0.0.1",
    port: int = 5672,
    user: str = "guest",
    password: PasswordOption = None,
    vhost: str = "/",
    prefetch: Annotated[
        int,
        typer.Option(help="messages per batch (QoS prefetch is twice this: the next batch flows meanwhile)"),
    ] = 300,
    dead_letter_queue: Annotated[str | None, typer.Option(help="where invalid messages go")] = None,
    db: DbOption = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Consume a RabbitMQ queue (see docs/consume.md)."""
    from .consume.rabbitmq import RabbitMQSettings, RabbitMQSource

    s = RabbitMQSettings(queue, host, port, user, password or "guest", vhost, prefetch, dead_letter_queue)
    _consume(lambda: RabbitMQSource(s), db, account_id, log_level)


@consume_app.command("kafka")
def consume_kafka(
    account_id: AccountOption,
    bootstrap_servers: Annotated[str, typer.Option(help="host:port[,host:port…]")],
    topic: Annotated[str, typer.Option(help="the topic to consume")],
    group: Annotated[str, typer.Option(help="the consumer group (offsets are committed for it)")],
    batch: Annotated[int, typer.Option(help="records per consume() and per append")] = 500,
    dead_letter_topic: Annotated[str | None, typer.Option(help="where invalid records go")] = None,
    security_protocol: str = "PLAINTEXT",
    sasl_mechanism: str | None = None,
    user: str | None = None,
    password: PasswordOption = None,
    config: Annotated[list[str] | None, typer.Option(help="librdkafka consumer setting KEY=VALUE")] = None,
    db: DbOption = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Consume a Kafka topic with a consumer group (see docs/consume.md)."""
    from .consume.kafka import KafkaSettings, KafkaSource

    pairs = [item.partition("=") for item in config or []]
    if any(not sep or not key for key, sep, _ in pairs):
        raise typer.BadParameter("--config takes KEY=VALUE")
    s = KafkaSettings(
        bootstrap_servers,
        topic,
        group,
        batch,
        dead_letter_topic,
        security_protocol,
        sasl_mechanism,
        user,
        password,
        tuple((key, value) for key, _, value in pairs),
    )
    _consume(lambda: KafkaSource(s), db, account_id, log_level)


@consume_app.command("nats")
def consume_nats(
    account_id: AccountOption,
    servers: Annotated[str, typer.Option(help="nats://host:port[,…]")],
    subject: Annotated[str, typer.Option(help="the subject filter of the consumer")],
    stream: Annotated[str, typer.Option(help="the JetStream stream capturing the subject (must exist)")],
    durable: Annotated[str, typer.Option(help="the durable pull consumer's name (created when missing)")],
    batch: Annotated[int, typer.Option(help="messages per fetch() and per append")] = 200,
    ack_wait: Annotated[float, typer.Option(help="seconds before an unacknowledged message returns")] = 30.0,
    dead_letter_subject: Annotated[str | None, typer.Option(help="where invalid messages go")] = None,
    user: str | None = None,
    password: PasswordOption = None,
    db: DbOption = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Consume a NATS JetStream stream with a durable pull consumer (see docs/consume.md)."""
    from .consume.nats import NatsSettings, NatsSource

    s = NatsSettings(servers, subject, stream, durable, batch, ack_wait, dead_letter_subject, user, password)
    _consume(lambda: NatsSource(s), db, account_id, log_level)


def main() -> None:
    try:
        app()
    except ActionhooksError as exc:  # a clear message, not a traceback
        typer.echo(f"actionhooks: {exc}", err=True)
        raise SystemExit(2) from None
