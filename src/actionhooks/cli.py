"""The ``actionhooks`` command: serve, demo, accounts, keys, tokens, hooks, event-types, consume."""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from . import integrations
from .catalog import catalog
from .config import Settings
from .errors import ActionhooksError, ConfigError
from .integrations.base import SourceSettings
from .server_limits import ServerLimits
from .store.base import Scope, Store, StoredKey

T = TypeVar("T")

app = typer.Typer(
    help="Capture marketing-platform events and deliver them to hooks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
accounts_app = typer.Typer(help="Accounts and their API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
keys_app = typer.Typer(
    help="An account's API keys: create (scoped ingest | admin), list, revoke. Each prints JSON.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
consume_app = typer.Typer(
    help="Read raw events from a broker into the event log (the ingest path of POST /v1/events).",
    no_args_is_help=True,
)
app.add_typer(consume_app, name="consume")
tokens_app = typer.Typer(
    help="Tracking tokens (docs/capture.md#tokens): the open pixel's and the click link's URLs.",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
hooks_app = typer.Typer(
    help="A hook's replays and dead letters (docs/delivery.md#replay-and-redrive), on the database directly: a"
    " running `serve` on it sends them.",
    no_args_is_help=True,
)
app.add_typer(hooks_app, name="hooks")


class LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


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
    log_format: Annotated[
        LogFormat,
        typer.Option(help="text, or json: one object a line (hook_id, batch_id, outcome of each attempt)"),
    ] = LogFormat.text,
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
    shutdown_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="on SIGTERM, seconds to finish requests and batches in flight; default: "
            "ACTIONHOOKS_SHUTDOWN_TIMEOUT_S (20)",
        ),
    ] = None,
) -> None:
    """Run the API and the dispatcher (and any configured broker consumers) in one process. The server's limits
    are described in docs/operations.md. SIGTERM ends it gracefully: no new requests, requests and batches in flight
    finished and recorded within the shutdown timeout."""
    import dataclasses

    from .service import serve as run_service

    settings = _settings(db)
    if consume is not None:
        settings = dataclasses.replace(settings, consume_file=str(consume))
    if shutdown_timeout is not None:
        settings = dataclasses.replace(settings, shutdown_timeout_s=shutdown_timeout)
    _setup_logging(log_level, log_format)
    limits = ServerLimits(
        max_head_bytes=max_head_bytes,
        head_timeout_s=head_timeout,
        body_timeout_s=body_timeout,
        keep_alive_s=keep_alive,
        max_concurrency=max_concurrency,
    )
    run_service(
        settings,
        host=host,
        port=port,
        log_level=log_level,
        dispatch=dispatch,
        own_logging=log_format is LogFormat.json,
        limits=limits,
    )


@accounts_app.command("create")
def accounts_create(name: str, db: DbOption = None) -> None:
    """Create an account and print its id and API key as JSON (the key is shown only here)."""
    from .api.auth import hash_key, new_api_key
    from .store import open_store

    settings = _settings(db)

    async def run() -> int:
        store = open_store(settings.db)
        await store.open()
        try:
            return await store.create_account(name, hash_key(key))
        finally:
            await store.close()

    key = new_api_key()
    account_id = asyncio.run(run())
    typer.echo(json.dumps({"account_id": account_id, "api_key": key}))


def _with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """``work(store)`` on the opened store of ``settings``, closed afterwards."""
    from .store import open_store

    async def run() -> T:
        store = open_store(settings.db)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _refuse(message: str) -> NoReturn:
    typer.echo(f"actionhooks: {message}", err=True)
    raise typer.Exit(1)


def _echo_key(key: StoredKey, secret: str | None = None) -> None:
    """The key as the API shows it, with its account (and its secret when just made), as one JSON line."""
    import msgspec

    from .api.schema import KeyCreated, KeyView

    view = KeyView.of(key) if secret is None else KeyCreated.made(key, secret)
    typer.echo(msgspec.json.encode({"account_id": key.account_id, **msgspec.to_builtins(view)}).decode())


IdArgument = Annotated[int, typer.Argument(min=1, max=2**63 - 1)]


@keys_app.command("create")
def keys_create(
    account_id: IdArgument,
    name: Annotated[str, typer.Option(help="what the key is for (1–200 characters)")],
    scope: Annotated[Scope, typer.Option(help="ingest: send events only; admin: everything")],
    db: DbOption = None,
) -> None:
    """Create a key of ACCOUNT_ID and print it as JSON, its secret `api_key` included (shown only here)."""
    from .api.auth import hash_key, new_api_key

    if not 1 <= len(name) <= 200:
        raise typer.BadParameter("a name has 1 to 200 characters", param_hint="--name")
    secret = new_api_key()
    key = _with_store(_settings(db), lambda store: store.add_key(account_id, name, scope, hash_key(secret)))
    if key is None:
        _refuse(f"no account {account_id}")
    _echo_key(key, secret)


@keys_app.command("list")
def keys_list(account_id: IdArgument, db: DbOption = None) -> None:
    """Print ACCOUNT_ID's keys as JSON, revoked ones included (never their secrets)."""
    import msgspec

    from .api.schema import KeyList, KeyView

    keys = _with_store(_settings(db), lambda store: store.list_keys(account_id))
    typer.echo(msgspec.json.encode(KeyList([KeyView.of(k) for k in keys])).decode())


@keys_app.command("revoke")
def keys_revoke(key_id: IdArgument, db: DbOption = None) -> None:
    """Revoke key KEY_ID (any key, even an account's last admin key) and print it as JSON. Running processes
    stop accepting it within ACTIONHOOKS_KEY_CACHE_S seconds."""
    key = _with_store(_settings(db), lambda store: store.revoke_key(key_id, keep_an_admin=False))
    if key is None:
        _refuse(f"no key {key_id}")
    _echo_key(key)


OptionalId = Annotated[int | None, typer.Option(min=0, max=2**63 - 1)]


@tokens_app.command("make")
def tokens_make(
    account_id: IdArgument,
    profile_id: Annotated[str | None, typer.Option(help="the recipient")] = None,
    list_id: OptionalId = None,
    message_id: OptionalId = None,
    campaign_id: OptionalId = None,
    resource_id: OptionalId = None,
    channel: Annotated[
        str, typer.Option(help="email, push, sms, viber, whatsapp, telegram_bot or site")
    ] = "email",
    link_url: Annotated[str | None, typer.Option(help="where the click link leads (http or https)")] = None,
    pixel_id: Annotated[
        int | None, typer.Option(min=0, max=2**63 - 1, help="the site pixel (channel site)")
    ] = None,
    db: DbOption = None,
) -> None:
    """Mint a token of ACCOUNT_ID signed with its newest tracking key (the first is made if it has none) and print
    {"token", "open_url", "dwell_url", "click_url"} as JSON, as POST /v1/tracking-tokens answers. The URLs start with
    ACTIONHOOKS_PUBLIC_URL."""
    import time

    import msgspec

    from .api.schema import TrackingToken
    from .capture.tokens import TokenRequest, TrackingKeys
    from .registry import HookRegistry

    settings = _settings(db)
    try:
        wanted = msgspec.convert(
            {
                "profile_id": profile_id,
                "list_id": list_id,
                "message_id": message_id,
                "campaign_id": campaign_id,
                "resource_id": resource_id,
                "channel": channel,
                "link_url": link_url,
                "pixel_id": pixel_id,
            },
            TokenRequest,
        )
    except msgspec.ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None

    async def mint(store: Store) -> str | None:
        if not await store.list_keys(account_id):  # every account is made with a key; revoked ones are listed
            return None
        registry = HookRegistry(store, settings.secret_key)
        await registry.open()
        return await TrackingKeys(store, registry).mint(wanted.claims(account_id, time.time()))

    token = _with_store(settings, mint)
    if token is None:
        _refuse(f"no account {account_id}")
    base = settings.public_url
    made = TrackingToken(
        token=token,
        open_url=f"{base}/t/open/{token}",
        dwell_url=f"{base}/t/dwell/{token}",
        click_url=f"{base}/t/click/{token}" if wanted.link_url else None,
    )
    typer.echo(msgspec.json.encode(made).decode())


def _instant(text: str | None, option: str) -> float | None:
    """An RFC 3339 time with its zone, as Unix seconds."""
    if text is None:
        return None
    import msgspec

    from .api.schema import Instant

    try:
        return msgspec.convert(text, Instant).timestamp()
    except msgspec.ValidationError:
        raise typer.BadParameter(
            "an RFC 3339 time with its zone, e.g. 2026-11-30T06:00:00Z", param_hint=option
        ) from None


async def _hook_or_refuse(store: Store, settings: Settings, hook_id: int) -> Any:
    from .registry import HookRegistry

    registry = HookRegistry(store, settings.secret_key)
    await registry.open()
    hook = await registry.load_hook(hook_id)
    if hook is None:
        _refuse(f"no hook {hook_id}")
    return hook


@hooks_app.command("replay")
def hooks_replay(
    hook_id: IdArgument,
    from_: Annotated[str, typer.Option("--from", help="RFC 3339: events accepted from then on")],
    to: Annotated[str, typer.Option("--to", help="RFC 3339: … and before then")],
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="only this event type (repeat for more; within the hook's)"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="show progress until the replay ends")] = True,
    db: DbOption = None,
) -> None:
    """Replay HOOK_ID's events accepted in [--from, --to) (POST /v1/hooks/{id}/replays), show a progress bar on
    stderr while a running `serve` sends it, and print the replay as JSON. Ctrl-C stops watching, not the replay."""
    import msgspec
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .api.replays import begin_replay
    from .api.schema import ReplayView
    from .errors import ApiError

    settings = _settings(db)
    from_at, to_at = _instant(from_, "--from"), _instant(to, "--to")
    assert from_at is not None and to_at is not None

    async def run(store: Store) -> Any:
        hook = await _hook_or_refuse(store, settings, hook_id)
        try:
            replay = await begin_replay(store, hook, from_at, to_at, event_type or None)
        except ApiError as exc:
            _refuse(f"{exc.error}" + (f" ({exc.field})" if exc.field else ""))
        if not wait:
            return replay
        columns = (
            TextColumn(f"replay {replay.id}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("replay", total=replay.total)
            try:
                while replay.state == "running":
                    await asyncio.sleep(0.5)
                    replay = await store.get_side_delivery(hook_id, replay.id) or replay
                    bar.update(task, completed=replay.sent)
            except (KeyboardInterrupt, asyncio.CancelledError):
                pass
        return replay

    replay = _with_store(settings, run)
    typer.echo(msgspec.json.encode(ReplayView.of(replay)).decode())
    if replay.state == "failed":
        raise typer.Exit(1)


def _selection(
    ids: list[int] | None,
    every: bool,
    reason: str | None,
    failed_after: str | None,
    failed_before: str | None,
) -> Any:
    from .api.replays import selection
    from .errors import ApiError

    body: dict[str, Any] = {"all": every}
    if ids:
        body["ids"] = ids
    if reason is not None:
        body["reason"] = reason
    if _instant(failed_after, "--failed-after") is not None:
        body["failed_after"] = failed_after
    if _instant(failed_before, "--failed-before") is not None:
        body["failed_before"] = failed_before
    try:
        return selection(body)
    except ApiError as exc:
        raise typer.BadParameter(exc.error, param_hint=f"--{(exc.field or 'id').replace('_', '-')}") from None


LetterIds = Annotated[
    list[int] | None, typer.Option("--id", min=1, help="a dead letter's id (repeat for more)")
]
AllLetters = Annotated[
    bool, typer.Option("--all", help="every dead letter of the hook (narrowed by the rest)")
]
Reason = Annotated[str | None, typer.Option(help="only those of this reason (exactly)")]
FailedAfter = Annotated[str | None, typer.Option(help="only those failed at or after (RFC 3339)")]
FailedBefore = Annotated[str | None, typer.Option(help="only those failed before (RFC 3339)")]


@hooks_app.command("redrive")
def hooks_redrive(
    hook_id: IdArgument,
    letter: LetterIds = None,
    every: AllLetters = False,
    reason: Reason = None,
    failed_after: FailedAfter = None,
    failed_before: FailedBefore = None,
    db: DbOption = None,
) -> None:
    """Send HOOK_ID's selected dead letters again in their original order (POST …/dead-letters/redrive); print
    {"redriven": n}. A running `serve` sends them; delivered ones leave the dead letters."""
    pick = _selection(letter, every, reason, failed_after, failed_before)

    async def redrive(store: Store, hook: int) -> int:
        return (await store.redrive_dead_letters(hook, pick))[1]

    _act_on_letters(hook_id, db, "redriven", redrive)


@hooks_app.command("discard")
def hooks_discard(
    hook_id: IdArgument,
    letter: LetterIds = None,
    every: AllLetters = False,
    reason: Reason = None,
    failed_after: FailedAfter = None,
    failed_before: FailedBefore = None,
    db: DbOption = None,
) -> None:
    """Remove HOOK_ID's selected dead letters for good (POST …/dead-letters/discard); print {"discarded": n}."""
    pick = _selection(letter, every, reason, failed_after, failed_before)

    async def discard(store: Store, hook: int) -> int:
        return await store.discard_dead_letters(hook, pick)

    _act_on_letters(hook_id, db, "discarded", discard)


def _act_on_letters(
    hook_id: int, db: str | None, done: str, act: Callable[[Store, int], Awaitable[int]]
) -> None:
    """``act`` on the hook's selected dead letters, on the database; print ``{done: n}``."""
    settings = _settings(db)

    async def run(store: Store) -> int:
        hook = await _hook_or_refuse(store, settings, hook_id)
        return await act(store, hook.id)

    typer.echo(json.dumps({done: _with_store(settings, run)}))


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
    exit_after_traffic: Annotated[
        bool, typer.Option(help="exit after the summary instead of serving the console until Ctrl-C")
    ] = False,
) -> None:
    """Start the service on SQLite, a local receiver and a hook, play traffic of all 80 event types, show counts;
    then serve the console (its address and a key to sign in with are printed) until Ctrl-C."""
    from .devtools.demo import run_demo

    asyncio.run(run_demo(duration=duration, rate=rate, db=db, serve_after=not exit_after_traffic))


AccountOption = Annotated[
    int,
    typer.Option(
        "--account-id", help="the account the events are appended for (no API key: operator process)"
    ),
]
LogLevelOption = Annotated[str, typer.Option(help="debug, info, warning, error")]


def _setup_logging(log_level: str, log_format: LogFormat = LogFormat.text) -> None:
    if log_format is LogFormat.json:
        from pythonjsonlogger.json import JsonFormatter

        handler = logging.StreamHandler()
        # the record's own fields plus whatever it carries as ``extra`` (the attempts' hook_id, batch_id, outcome)
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
        logging.basicConfig(level=log_level.upper(), handlers=[handler], force=True)
    else:
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.lower() != "debug":
        # pika logs each failed connect four or five times at ERROR; the hook's attempts and last_error (or the
        # consumer's own error) already say what happened. With --log-level debug, pika speaks.
        logging.getLogger("pika").setLevel(logging.CRITICAL)


def _consume(make_source: Callable[[], Any], db: str | None, account_id: int, log_level: str) -> None:
    """Run a broker consumer until SIGTERM/SIGINT; exit 1 when the broker, dead letters or the store fail."""
    from .consume.base import serve
    from .errors import ConsumeError

    settings = _settings(db)
    _setup_logging(log_level)
    try:
        source = make_source()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        asyncio.run(serve(source, settings.db, account_id, settings.limits, settings.derive_ttl_s))
    except ConsumeError as exc:
        logging.getLogger("actionhooks.consume").error("%s", exc)
        raise typer.Exit(1) from None


class _SettingOption(NamedTuple):
    """One option of ``actionhooks consume <broker>``: the parameter, and the settings field (dotted) it sets."""

    parameter: inspect.Parameter
    path: str


def _setting_options(kind: type[SourceSettings]) -> list[_SettingOption]:
    """The options of a broker's ``ConsumerSettings``, one per field (nested settings: one per field of theirs),
    with the field's former names (``ALIASES``) as further option names and its description as help."""
    import msgspec

    aliases: dict[str, list[str]] = {}
    for old, path in kind.ALIASES.items():
        aliases.setdefault(path, []).append(old)
    out: list[_SettingOption] = []
    taken: set[str] = set()

    def add(field: msgspec.inspect.Field, path: str, secret: bool) -> None:
        described, kind_ = field.type, field.type
        while isinstance(kind_, msgspec.inspect.Metadata):
            kind_ = kind_.type
        optional = isinstance(kind_, msgspec.inspect.UnionType) and kind_.includes_none
        if isinstance(kind_, msgspec.inspect.UnionType):
            kind_ = next(t for t in kind_.types if not isinstance(t, msgspec.inspect.NoneType))
        if isinstance(kind_, msgspec.inspect.Metadata):  # ``Annotated[int, Meta(…)] | None``
            described, kind_ = kind_, kind_.type
        python: Any = {
            msgspec.inspect.IntType: int,
            msgspec.inspect.FloatType: float,
            msgspec.inspect.BoolType: bool,
        }.get(type(kind_), str)
        help_text = ""
        if isinstance(described, msgspec.inspect.Metadata):
            help_text = (described.extra_json_schema or {}).get("description", "")
        if isinstance(kind_, msgspec.inspect.LiteralType):
            help_text = " | ".join(str(v) for v in kind_.values)
        names = [n for n in dict.fromkeys([field.name, *aliases.get(path, [])]) if n not in taken]
        taken.update(names)
        declarations = [f"--{n.replace('_', '-')}" for n in names]
        if isinstance(kind_, msgspec.inspect.VarTupleType):  # KEY=VALUE pairs
            python, default = list[str] | None, None
        elif field.required:
            default = inspect.Parameter.empty
        else:
            default = field.default
            if default is None or optional:
                python = python | None
        if python is bool:
            declarations = [f"{d}/--no-{d[2:]}" for d in declarations]
        option = typer.Option(
            *declarations,
            help=help_text,
            envvar="ACTIONHOOKS_CONSUME_PASSWORD" if path.endswith("password") else None,
            show_default=not secret,
        )
        name = path.replace(".", "__")
        parameter = inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[python, option], default=default
        )
        out.append(_SettingOption(parameter, path))

    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        secret = field.name in kind.SECRET_FIELDS
        inner = field.type
        if isinstance(inner, msgspec.inspect.UnionType):
            inner = next((t for t in inner.types if isinstance(t, msgspec.inspect.StructType)), inner)
        if isinstance(inner, msgspec.inspect.StructType):
            for sub in inner.fields:
                add(sub, f"{field.name}.{sub.name}", secret)
        else:
            add(field, field.name, secret)
    return out


def _add_consume_command(broker: str) -> None:
    """``actionhooks consume <broker>``, its options made from the broker's ``ConsumerSettings``."""
    from .consume.configured import open_source, settings_type

    kind = settings_type(broker)
    options = _setting_options(kind)

    def command(account_id: int, db: str | None, log_level: str, **values: Any) -> None:
        data: dict[str, Any] = {}
        for option in options:
            value = values[option.parameter.name]
            if value is None:
                continue
            if isinstance(value, list):  # KEY=VALUE pairs
                pairs = [item.partition("=") for item in value]
                if any(not sep or not key for key, sep, _ in pairs):
                    raise typer.BadParameter(f"--{option.path.replace('_', '-')} takes KEY=VALUE")
                value = [(key, item) for key, _, item in pairs]
            *parents, name = option.path.split(".")
            target = data
            for parent in parents:
                target = target.setdefault(parent, {})
            target[name] = value
        _consume(lambda: open_source(broker, kind.from_options(data)), db, account_id, log_level)

    common = [
        inspect.Parameter("account_id", inspect.Parameter.KEYWORD_ONLY, annotation=AccountOption),
        *(o.parameter for o in options),
        inspect.Parameter("db", inspect.Parameter.KEYWORD_ONLY, annotation=DbOption, default=None),
        inspect.Parameter(
            "log_level", inspect.Parameter.KEYWORD_ONLY, annotation=LogLevelOption, default="info"
        ),
    ]
    command.__signature__ = inspect.Signature(common)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in common}
    command.__doc__ = kind.SUMMARY or f"Consume from {broker} (see docs/consume.md)."
    consume_app.command(broker)(command)


for _broker in integrations.brokers():
    _add_consume_command(_broker)


def main() -> None:
    try:
        app()
    except ActionhooksError as exc:  # a clear message, not a traceback
        typer.echo(f"actionhooks: {exc}", err=True)
        raise SystemExit(2) from None
