"""The docs held true: environment variables, transport defaults, batch defaults and routes, read from the code.

- every ``ACTIONHOOKS_*`` variable the package reads is in ``docs/operations.md`` (and the page names no other), with
  the default the settings have;
- every transport's page (``docs/transports/<name>.md``) documents each of its settings, with the default its
  ``Settings`` struct has (``msgspec.inspect``); ``docs/delivery.md``'s batch defaults agree;
- every route of the app is in ``docs/api.md``, and the page documents no route the app lacks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actionhooks.api.app import ROUTES
from actionhooks.config import Settings

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "actionhooks"


def documented_transports() -> dict[str, list[type[msgspec.Struct]]]:
    """Each transport page's name → the ``Settings`` classes of the transport types it documents
    (``rabbitmq_queue`` and ``rabbitmq_exchange`` share ``rabbitmq.md``). The one place that knows where the
    transport registry lives."""
    from actionhooks.integrations import transport_module, transport_types

    from . import stub

    pages: dict[str, list[type[msgspec.Struct]]] = {}
    for kind in transport_types():
        if (
            kind in stub.INTEGRATION.transport_types
        ):  # the tests' stand-in destination, not a product transport
            continue
        info = msgspec.inspect.type_info(transport_module(kind).Settings)
        options = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
        (cls,) = [t.cls for t in options if isinstance(t, msgspec.inspect.StructType) and t.tag == kind]
        pages.setdefault(kind.partition("_")[0], []).append(cls)
    return pages


# -- environment variables --------------------------------------------------------------------------------

VARIABLE = re.compile(r"ACTIONHOOKS_[A-Z0-9_]*[A-Z0-9]")


def variables_read_by_the_code() -> set[str]:
    return {name for path in SRC.rglob("*.py") for name in VARIABLE.findall(path.read_text())}


def configuration_table() -> dict[str, str]:
    """``docs/operations.md``'s configuration table: variable → its default column, backticks removed."""
    rows: dict[str, str] = {}
    for line in (DOCS / "operations.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and VARIABLE.fullmatch(cells[0].strip("`")):
            rows[cells[0].strip("`")] = cells[1].replace("`", "")
    return rows


def test_every_variable_the_code_reads_is_in_the_operations_doc() -> None:
    read = variables_read_by_the_code()
    assert read, "the scan found no variables at all"
    assert sorted(read - set(configuration_table())) == []


def test_the_operations_doc_names_no_variable_the_code_does_not_read() -> None:
    documented = set(VARIABLE.findall((DOCS / "operations.md").read_text()))
    assert sorted(documented - variables_read_by_the_code()) == []


def test_documented_configuration_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in variables_read_by_the_code():
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    table = configuration_table()
    defaults: dict[str, object] = {
        "ACTIONHOOKS_DB": settings.db,
        "ACTIONHOOKS_MAX_BODY_BYTES": settings.limits.max_body_bytes,
        "ACTIONHOOKS_MAX_ITEMS": settings.limits.max_items,
        "ACTIONHOOKS_MAX_PENDING": settings.limits.max_pending,
        "ACTIONHOOKS_MAX_PENDING_PER_ACCOUNT": settings.limits.max_pending_per_account,
        "ACTIONHOOKS_RETRY_INITIAL_S": settings.retry.initial_delay_s,
        "ACTIONHOOKS_RETRY_MAX_DELAY_S": settings.retry.max_delay_s,
        "ACTIONHOOKS_RETRY_MAX_AGE_S": settings.retry.max_age_s,
        "ACTIONHOOKS_SHUTDOWN_TIMEOUT_S": settings.shutdown_timeout_s,
        "ACTIONHOOKS_RETENTION_S": settings.retention.events_s,
        "ACTIONHOOKS_ATTEMPT_RETENTION_S": settings.retention.attempts_s,
        "ACTIONHOOKS_DEAD_LETTER_RETENTION_S": settings.retention.dead_letters_s,
        "ACTIONHOOKS_KEY_CACHE_S": settings.key_cache_s,
        "ACTIONHOOKS_DISABLE_AFTER_S": settings.disable_after_s,
    }
    for name, value in defaults.items():
        assert documented_value(table[name]) == value, name
    assert settings.allow_nets == () and table["ACTIONHOOKS_ALLOW_NETS"] == "none"
    assert settings.consume_file is None and table["ACTIONHOOKS_CONSUME_FILE"] == "none"
    assert settings.retention.max_bytes is None and table["ACTIONHOOKS_RETENTION_MAX_BYTES"] == "none"


# -- transport settings -----------------------------------------------------------------------------------

REQUIRED = object()
PROSE_DEFAULT = re.compile(r"`(\w+)`\s*\(([^()]*?)\bdefault\s+`([^`]+)`")
PROSE_REQUIRED = re.compile(r"`(\w+)`\s*\(required\b")
# defaults the code computes from other settings (``None`` in the struct), as the page states them
COMPUTED = {("rabbitmq", "port"): "5672, or 5671 with tls"}


def documented_value(text: str) -> object:
    """A default as the docs write it: ``required``; ``none`` or ``—`` (no value); a JSON value or a bare word,
    in backticks or not (``none`` in backticks is the string)."""
    text = text.strip()
    quoted = len(text) > 1 and text[0] == text[-1] == "`"
    text = text.strip("`")
    if not quoted and text == "required":
        return REQUIRED
    if not quoted and text in {"none", "—"}:
        return None
    try:
        value: object = json.loads(text)
    except ValueError:
        return text
    return value


def documented_settings(page: str) -> dict[str, object]:
    """A transport page's settings: the rows of its tables with a ``default`` column, and the settings its prose
    introduces as ``name`` (…, default ``value``) or ``name`` (required…)."""
    text = (DOCS / "transports" / f"{page}.md").read_text()
    found: dict[str, object] = {}
    columns: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            columns = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not columns:
            columns = cells
        elif len(columns) > 1 and columns[1] == "default" and not set(cells[0]) <= {"-", ":"}:
            name = cells[0].strip("`")
            found[name] = COMPUTED.get((page, name)) or documented_value(cells[1])
    flat = " ".join(text.split())
    for name, _, default in PROSE_DEFAULT.findall(flat):
        found.setdefault(name, documented_value(default))
    for name in PROSE_REQUIRED.findall(flat):
        found.setdefault(name, REQUIRED)
    return found


def code_default(field: msgspec.inspect.Field) -> object:
    if field.required:
        return REQUIRED
    if field.default_factory is not msgspec.NODEFAULT:
        return msgspec.to_builtins(field.default_factory())
    return msgspec.to_builtins(field.default)


def struct_fields(cls: type[msgspec.Struct]) -> dict[str, msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: f for f in info.fields}


@pytest.mark.parametrize("page", sorted(documented_transports()))
def test_transport_page_documents_every_setting_with_its_default(page: str) -> None:
    documented = documented_settings(page)
    classes = documented_transports()[page]
    every_field = {name for cls in classes for name in struct_fields(cls)}
    assert sorted(set(documented) - every_field) == [], "documented settings the code does not have"
    for cls in classes:
        for name, field in struct_fields(cls).items():
            assert name in documented, f"{page}.md does not document {name}"
            if (page, name) in COMPUTED:
                continue
            assert documented[name] == code_default(field), f"{page}.md: default of {name}"


def test_rabbitmq_computed_port_default_is_the_documented_one() -> None:
    (queue,) = [c for c in documented_transports()["rabbitmq"] if c.__struct_config__.tag == "rabbitmq_queue"]
    base = {"type": "rabbitmq_queue", "host": "mq", "user": "u", "password": "p", "queue": "q"}
    assert msgspec.convert(base, queue).effective_port == 5672  # type: ignore[attr-defined]
    assert msgspec.convert({**base, "tls": True}, queue).effective_port == 5671  # type: ignore[attr-defined]
    assert COMPUTED[("rabbitmq", "port")] == "5672, or 5671 with tls"


def test_delivery_doc_batch_defaults_are_each_transports_defaults() -> None:
    """``docs/delivery.md`` has a table: transport page | ``max_batch_size`` | ``timeout_s``."""
    rows: dict[str, tuple[object, object]] = {}
    for line in (DOCS / "delivery.md").read_text().splitlines():
        match = re.fullmatch(r"\| \[[^]]+\]\(transports/(\w+)\.md\) \| (\S+) \| (\S+) \|", line.strip())
        if match:
            rows[match[1]] = (documented_value(match[2]), documented_value(match[3]))
    pages = documented_transports()
    assert sorted(rows) == sorted(pages)
    for page, classes in pages.items():
        for cls in classes:
            fields = struct_fields(cls)
            expected = (code_default(fields["max_batch_size"]), code_default(fields["timeout_s"]))
            assert rows[page] == expected, page


# -- routes -----------------------------------------------------------------------------------------------

DOCUMENTED_ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)")


def normalized(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def app_routes() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in ROUTES:
        path: Any = getattr(route, "path", None)
        methods: Any = getattr(route, "methods", None) or ()
        found |= {(m, normalized(path)) for m in methods if m != "HEAD"}
    return found


def test_every_route_is_in_the_api_doc_and_no_other() -> None:
    documented = {(m, normalized(p)) for m, p in DOCUMENTED_ROUTE.findall((DOCS / "api.md").read_text())}
    routes = app_routes()
    assert len(routes) >= 10, routes
    assert sorted(routes - documented) == [], "routes missing from docs/api.md"
    assert sorted(documented - routes) == [], "docs/api.md documents routes the app does not have"
