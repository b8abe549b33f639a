"""The hook editor's form: the inputs each transport needs, read from its ``Settings`` struct, and the way back from
the submitted form to the settings the API takes (validated by :func:`actionhooks.hooks.parse_hook`).

Inputs are named after the API's fields so its errors (a dotted ``field``) land next to the input they name:
``name``, ``list_id``, ``event_types``, ``filters.resource_ids``, ``filters.exclude_flags`` (a checkbox per flag),
``custom_data_fields``, ``max_events_per_second`` (empty: no limit), ``transport.type``; a
transport's own settings are prefixed with its type (``http.url``, ``kafka.topic``) because every transport's inputs
are on the page at once, and a tagged union (HTTP ``auth``) adds the variant (``http.auth.oauth2.client_id``).

Secrets (the transport's ``SECRET_FIELDS``) are write-only: their inputs are always empty and say whether a value
is set; left empty on an edit, the stored value is kept (sent to the API's rule as ``"***"``: not re-sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import ValidationError
from ..hooks import FILTER_ATTRIBUTES
from ..integrations import transport_module, transport_types

KEPT = "***"
"""A secret left as it was (the API's own marker for it)."""

FILTER_KINDS = tuple(FILTER_ATTRIBUTES)
EXCLUDE_FLAGS = "filters.exclude_flags"
"""The flags' checkboxes (one input name, one value per flag); the form carries the ticked ones comma-joined."""


@dataclass(frozen=True)
class Input:
    """One setting of a transport. ``path``: dotted, relative to the transport's settings; ``kind``: text,
    integer, number, checkbox, choice, list (comma-separated), lines (``Name: value`` per line) or variant (a
    tagged union: ``variants`` maps each tag to its inputs)."""

    path: str
    kind: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    variants: dict[str, tuple[Input, ...]] = field(default_factory=dict)

    @property
    def leaf(self) -> str:
        return self.path.rpartition(".")[2]


def settings_class(kind: str) -> type[msgspec.Struct]:
    """The struct of transport type ``kind`` (a module's ``Settings`` may be a union of several types)."""
    info = msgspec.inspect.type_info(transport_module(kind).Settings)
    options = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    for option in options:
        if isinstance(option, msgspec.inspect.StructType) and option.tag == kind:
            return option.cls
    raise KeyError(kind)


def transport_inputs(kind: str) -> tuple[Input, ...]:
    """The inputs of transport type ``kind``, required ones first."""
    cls = settings_class(kind)
    secrets: tuple[str, ...] = getattr(cls, "SECRET_FIELDS", ())
    found = _struct_inputs(msgspec.inspect.type_info(cls), "", secrets)
    return tuple(sorted(found, key=lambda i: not i.required))


def all_transport_inputs() -> dict[str, tuple[Input, ...]]:
    return {kind: transport_inputs(kind) for kind in transport_types()}


def _is_secret(path: str, secrets: Sequence[str]) -> bool:
    return any(path == s or path.startswith(s + ".") for s in secrets)


def _struct_inputs(info: msgspec.inspect.Type, prefix: str, secrets: Sequence[str]) -> list[Input]:
    assert isinstance(info, msgspec.inspect.StructType)
    out: list[Input] = []
    for f in info.fields:
        path = prefix + f.encode_name
        default = None if f.required else _default(f)
        out.extend(_inputs_of(f.type, path, f.required, default, secrets))
    return out


def _default(f: msgspec.inspect.Field) -> Any:
    if f.default_factory is not msgspec.NODEFAULT:
        return msgspec.to_builtins(f.default_factory())
    return msgspec.to_builtins(f.default)


def _inputs_of(
    kind: msgspec.inspect.Type, path: str, required: bool, default: Any, secrets: Sequence[str]
) -> list[Input]:
    secret = _is_secret(path, secrets)
    if isinstance(kind, msgspec.inspect.UnionType):
        options = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
        structs = [t for t in options if isinstance(t, msgspec.inspect.StructType)]
        if structs and len(structs) == len(options) and all(s.tag is not None for s in structs):
            variants = {str(s.tag): tuple(_struct_inputs(s, f"{path}.", secrets)) for s in structs}
            tag = default.get(str(structs[0].tag_field)) if isinstance(default, dict) else None
            return [Input(path, "variant", required, tag, tuple(variants), secret, variants)]
        if any(isinstance(t, msgspec.inspect.ListType) for t in options):
            return [Input(path, "list", required, default, secret=secret)]
        if len(options) == 1:
            return _inputs_of(options[0], path, required, default, secrets)
    if isinstance(kind, msgspec.inspect.Metadata):
        return _inputs_of(kind.type, path, required, default, secrets)
    if isinstance(kind, msgspec.inspect.StructType):  # an optional group of settings: one input per field
        return [
            Input(i.path, i.kind, False, i.default, i.choices, i.secret or secret, i.variants)
            for i in _struct_inputs(kind, f"{path}.", secrets)
        ]
    simple = {
        msgspec.inspect.BoolType: "checkbox",
        msgspec.inspect.IntType: "integer",
        msgspec.inspect.FloatType: "number",
        msgspec.inspect.ListType: "list",
        msgspec.inspect.DictType: "lines",
    }
    if isinstance(kind, msgspec.inspect.LiteralType):
        return [Input(path, "choice", required, default, tuple(str(v) for v in kind.values), secret)]
    return [Input(path, simple.get(type(kind), "text"), required, default, secret=secret)]


def input_name(kind: str, item: Input, variant: tuple[Input, str] | None = None) -> str:
    """The form input of ``item``: ``<kind>.<path>``; inside a variant ``<kind>.<union>.<tag>.<rest of path>``."""
    if variant is None:
        return f"{kind}.{item.path}"
    union, tag = variant
    return f"{kind}.{union.path}.{tag}{item.path[len(union.path) :]}"


# -- the form, back to settings -----------------------------------------------------------------------------


def at(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


def _number(text: str, integer: bool) -> Any:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return text  # the API's validation names the field


def _lines(text: str, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValidationError(f"each line is Name: value (not {line.strip()[:40]!r})", path)
        out[name.strip()] = value.strip()
    return out


@dataclass
class TransportForm:
    """A transport read from the form: ``settings`` for the API (kept secrets filled in from ``old``) and
    ``patch``, the same with every kept secret as ``"***"`` (what was really sent, for the secrets rule)."""

    settings: dict[str, Any] = field(default_factory=dict)
    patch: dict[str, Any] = field(default_factory=dict)


def read_transport(kind: str, form: Mapping[str, str], old: Mapping[str, Any] | None) -> TransportForm:
    """The transport settings of type ``kind`` from ``form``; ``old``: the hook's current transport (its secrets
    kept where their inputs are empty), None for a new hook."""
    out = TransportForm({"type": kind}, {"type": kind})
    same = old if old is not None and old.get("type") == kind else None
    _read(kind, transport_inputs(kind), None, form, same, out)
    return out


def _read(
    kind: str,
    inputs: Sequence[Input],
    variant: tuple[Input, str] | None,
    form: Mapping[str, str],
    old: Mapping[str, Any] | None,
    out: TransportForm,
) -> None:
    for item in inputs:
        name = input_name(kind, item, variant)
        raw = form.get(name, "")
        if item.kind == "variant":
            tag = raw or str(item.default or "")
            if not tag:
                continue
            _put(out.settings, f"{item.path}.type", tag)
            _put(out.patch, f"{item.path}.type", tag)
            old_variant = at(old, item.path) if old is not None else None
            same = old if isinstance(old_variant, dict) and old_variant.get("type") == tag else None
            _read(kind, item.variants.get(tag, ()), (item, tag), form, same, out)
            continue
        if item.kind == "checkbox":
            value: Any = name in form
        elif item.kind == "lines":
            value = _lines(raw, f"transport.{item.path}")
            if item.secret:
                kept = at(old, item.path) or {}
                sent = dict(value)
                value = {k: (kept.get(k, v) if v == KEPT else v) for k, v in value.items()}
                if value:
                    _put(out.settings, item.path, value)
                    _put(out.patch, item.path, sent)
                continue
            if not value:
                continue
        elif not raw.strip():
            kept_value = at(old, item.path) if item.secret else None
            if kept_value is not None:
                _put(out.settings, item.path, kept_value)
                _put(out.patch, item.path, KEPT)
            continue
        elif item.kind in ("integer", "number"):
            value = _number(raw.strip(), item.kind == "integer")
        elif item.kind == "list":
            value = [part.strip() for part in raw.replace("\n", ",").split(",") if part.strip()]
        else:
            value = raw
        _put(out.settings, item.path, value)
        _put(out.patch, item.path, value)


def secret_is_set(old: Mapping[str, Any] | None, path: str) -> bool:
    value = at(old, path)
    return value is not None and value != "" and value != {}


def id_list(text: str) -> list[Any]:
    """Comma- or space-separated ids; what is not a number stays text, for the API to name."""
    parts = [p for p in text.replace(",", " ").split() if p]
    return [int(p) if p.lstrip("-").isdigit() else p for p in parts]


def hook_settings(
    form: Mapping[str, str], event_types: list[str], old: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hook's settings from the editor's form and the patch actually sent (see :class:`TransportForm`).
    ``old``: the hook's current settings (secrets included), None for a new hook."""
    kind = form.get("transport.type", "")
    transport = (
        read_transport(kind, form, at(old, "transport"))
        if kind in transport_types()
        else TransportForm({"type": kind}, {"type": kind})
    )
    list_text = form.get("list_id", "").strip()
    rate_text = form.get("max_events_per_second", "").strip()
    settings: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "active": bool(old.get("active", True)) if old is not None else True,
        "list_id": None
        if form.get("database", "all") == "all" or not list_text
        else _number(list_text, True),
        "event_types": event_types,
        "filters": {
            kind: id_list(form.get(f"filters.{kind}", ""))
            for kind in FILTER_KINDS
            if form.get(f"filters.{kind}", "").strip()
        },
        "custom_data_fields": [
            line.strip() for line in form.get("custom_data_fields", "").splitlines() if line.strip()
        ],
        "max_events_per_second": _number(rate_text, False) if rate_text else None,
        "transport": transport.settings,
    }
    flags = [flag for flag in form.get(EXCLUDE_FLAGS, "").split(",") if flag]
    if flags:
        settings["filters"]["exclude_flags"] = flags
    patch = {**settings, "transport": transport.patch}
    return settings, patch


def input_for(field_path: str | None, form: Mapping[str, str]) -> str:
    """The name of the input an API error's ``field`` (dotted) is about, or "" when it names none."""
    if not field_path:
        return ""
    parts = field_path.split(".")
    if parts[0] == "transport" and len(parts) > 1 and parts[1] != "type":
        kind = form.get("transport.type", "")
        if kind not in transport_types():
            return "transport.type"
        names = _names(kind, form)
        rest = parts[1:]
        for n in range(len(rest), 0, -1):
            candidate = ".".join(rest[:n])
            if candidate in names:
                return names[candidate]
        return "transport.type"
    if parts[0] in ("event_types", "custom_data_fields"):
        return parts[0]
    if parts[0] == "filters" and len(parts) > 1:
        return f"filters.{parts[1]}"
    return ".".join(parts[:2]) if parts[0] == "transport" else parts[0]


def _names(kind: str, form: Mapping[str, str]) -> dict[str, str]:
    """API path (relative to the transport) → input name, for the variant chosen in ``form``."""
    out: dict[str, str] = {}
    for item in transport_inputs(kind):
        out[item.path] = input_name(kind, item)
        if item.kind == "variant":
            tag = form.get(input_name(kind, item)) or str(item.default or "")
            for sub in item.variants.get(tag, ()):
                out[sub.path] = input_name(kind, sub, (item, tag))
    return out


def form_values(settings: Mapping[str, Any]) -> dict[str, str]:
    """The editor's input values for stored hook ``settings`` (public ones: secrets are never put in a page)."""
    values: dict[str, str] = {
        "name": str(settings.get("name", "")),
        "database": "all" if settings.get("list_id") is None else "one",
        "list_id": "" if settings.get("list_id") is None else str(settings["list_id"]),
        "custom_data_fields": "\n".join(settings.get("custom_data_fields", ())),
        "max_events_per_second": _rate_text(settings.get("max_events_per_second")),
    }
    for kind in FILTER_KINDS:
        values[f"filters.{kind}"] = ", ".join(str(v) for v in (at(settings, f"filters.{kind}") or ()))
    values[EXCLUDE_FLAGS] = ",".join(at(settings, EXCLUDE_FLAGS) or ())
    transport = settings.get("transport") or {}
    kind = str(transport.get("type", ""))
    values["transport.type"] = kind
    if kind in transport_types():
        _values(kind, transport_inputs(kind), None, transport, values)
    return values


def _rate_text(rate: Any) -> str:
    if rate is None:
        return ""
    return str(int(rate)) if float(rate).is_integer() else str(rate)


def _values(
    kind: str, inputs: Sequence[Input], variant: tuple[Input, str] | None, data: Any, out: dict[str, str]
) -> None:
    for item in inputs:
        name = input_name(kind, item, variant)
        value = at(data, item.path)
        if item.kind == "variant":
            tag = str(value.get("type")) if isinstance(value, dict) else ""
            out[name] = tag
            if tag:
                _values(kind, item.variants.get(tag, ()), (item, tag), data, out)
        elif item.kind == "lines" and isinstance(value, dict):
            out[name] = "\n".join(f"{k}: {KEPT if item.secret else v}" for k, v in value.items())
        elif item.secret or value is None:
            continue
        elif item.kind == "checkbox":
            out[name] = "on" if value else ""
        elif item.kind == "list":
            out[name] = ", ".join(value) if isinstance(value, list) else str(value)
        else:
            out[name] = str(value)
