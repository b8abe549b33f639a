"""The ``actionhooks`` command: serve, demo, accounts, event-types."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .catalog import catalog
from .config import Settings
from .errors import ConfigError

app = typer.Typer(help="Capture marketing-platform events and deliver them to hooks.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts and their API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")

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
) -> None:
    """Run the API and the dispatcher in one process."""
    import uvicorn

    from .api import create_app

    settings = _settings(db)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
    )


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
    for column in ("code", "name", "group", "structure", "description"):
        table.add_column(column)
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


def main() -> None:
    app()
